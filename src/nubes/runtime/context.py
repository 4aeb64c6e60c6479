"""The ``context`` object a Python handler receives, shaped like AWS's.

Attribute names and types follow the AWS Lambda Python runtime: static fields
come from the instance's environment (so ``memory_limit_in_mb`` is a string, as
on AWS), ``identity`` is always an object, ``client_context`` is ``None`` unless
the caller sent one.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any


class CognitoIdentity:
    """``context.identity``: the Amazon Cognito identity of a mobile caller."""

    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self, identity: dict[str, Any] | None) -> None:
        identity = identity or {}
        self.cognito_identity_id: str | None = identity.get("cognitoIdentityId")
        self.cognito_identity_pool_id: str | None = identity.get("cognitoIdentityPoolId")

    def __repr__(self) -> str:
        return (
            f"CognitoIdentity([cognito_identity_id={self.cognito_identity_id},"
            f"cognito_identity_pool_id={self.cognito_identity_pool_id}])"
        )


class Client:
    """``context.client_context.client``: the mobile app that invoked the function."""

    __slots__ = (
        "app_package_name",
        "app_title",
        "app_version_code",
        "app_version_name",
        "installation_id",
    )

    def __init__(self, client: dict[str, Any]) -> None:
        self.installation_id: str | None = client.get("installation_id")
        self.app_title: str | None = client.get("app_title")
        self.app_version_name: str | None = client.get("app_version_name")
        self.app_version_code: str | None = client.get("app_version_code")
        self.app_package_name: str | None = client.get("app_package_name")


class ClientContext:
    """``context.client_context``: what the caller passed as ``ClientContext``."""

    __slots__ = ("client", "custom", "env")

    def __init__(self, ctx: dict[str, Any]) -> None:
        client = ctx.get("client")
        self.client: Client | None = Client(client) if isinstance(client, dict) else None
        self.custom: Any = ctx.get("custom")
        self.env: Any = ctx.get("env")


class LambdaContext:
    """The handler's second argument."""

    def __init__(
        self,
        request_id: str,
        deadline_ms: int,
        invoked_function_arn: str,
        client_context: dict[str, Any] | None,
        identity: dict[str, Any] | None,
    ) -> None:
        env = os.environ
        self.aws_request_id = request_id
        self.log_group_name = env.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME")
        self.memory_limit_in_mb = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.invoked_function_arn = invoked_function_arn
        self.tenant_id: str | None = None
        self.client_context = ClientContext(client_context) if client_context else None
        self.identity = CognitoIdentity(identity)
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the invocation times out (never negative)."""
        left = self._deadline_ms - int(time.time() * 1000)
        return left if left > 0 else 0

    def log(self, msg: object) -> None:
        """Write ``msg`` to the function's log as is (no newline added), like AWS's runtime."""
        sys.stdout.write(str(msg))

    def __repr__(self) -> str:
        return (
            f"LambdaContext([aws_request_id={self.aws_request_id},"
            f"log_group_name={self.log_group_name},log_stream_name={self.log_stream_name},"
            f"function_name={self.function_name},memory_limit_in_mb={self.memory_limit_in_mb},"
            f"function_version={self.function_version},"
            f"invoked_function_arn={self.invoked_function_arn},"
            f"client_context={self.client_context},identity={self.identity}])"
        )
