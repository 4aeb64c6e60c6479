"""STS operations. Temporary credentials are stored where the gateway's
authenticator finds them (``sts.credentials``), so they sign requests like any key."""

from __future__ import annotations

import datetime as dt
import secrets
import string
import time
from typing import Any

import orjson

from nubes.aws.errors import AwsError
from nubes.gateway.auth import STS_CREDENTIALS_TABLE
from nubes.services.base import Provider, RequestContext
from nubes.storage.base import Txn

_ALNUM = string.ascii_uppercase + string.digits


def _key_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(16))


def _unique_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(17))


class StsProvider(Provider):
    """GetCallerIdentity, AssumeRole, GetSessionToken, AssumeRoleWithWebIdentity."""

    async def _identity_of(self, ctx: RequestContext) -> dict[str, Any]:
        account = ctx.account_id
        if ctx.access_key:
            raw = await self.app.store.read(lambda txn: txn.get(STS_CREDENTIALS_TABLE, ctx.access_key.encode()))  # type: ignore[union-attr]
            if raw is not None:
                doc = orjson.loads(raw)
                return {"UserId": doc["UserId"], "Account": account, "Arn": doc["Arn"]}
        return {"UserId": "AKIAIOSFODNN7EXAMPLE", "Account": account, "Arn": f"arn:aws:iam::{account}:root"}

    async def get_caller_identity(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return await self._identity_of(ctx)

    async def _issue(self, duration: int, user_id: str, arn: str, session: bool = True) -> dict[str, Any]:
        access_key = _key_id("ASIA")
        secret = secrets.token_urlsafe(30)[:40]
        token = secrets.token_urlsafe(96)
        expiration = time.time() + duration
        record = {
            "AccessKeyId": access_key, "SecretAccessKey": secret, "SessionToken": token,
            "Expiration": expiration, "UserId": user_id, "Arn": arn,
        }  # fmt: skip

        def save(txn: Txn) -> None:
            txn.put(STS_CREDENTIALS_TABLE, access_key.encode(), orjson.dumps(record))

        await self.app.store.write(save)
        return {
            "AccessKeyId": access_key,
            "SecretAccessKey": secret,
            "SessionToken": token,
            "Expiration": dt.datetime.fromtimestamp(expiration, dt.UTC),
        }

    @staticmethod
    def _duration(params: dict[str, Any], default: int, maximum: int) -> int:
        duration = int(params.get("DurationSeconds") or default)
        if duration < 900 or duration > maximum:
            raise AwsError(
                "ValidationError",
                f"1 validation error detected: Value '{duration}' at 'durationSeconds' failed to satisfy "
                f"constraint: Member must have value {'greater than or equal to 900' if duration < 900 else f'less than or equal to {maximum}'}",
                400,
            )
        return duration

    async def assume_role(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        role_arn: str = params["RoleArn"]
        session_name: str = params["RoleSessionName"]
        parts = role_arn.split(":")
        if len(parts) < 6 or not parts[5].startswith("role/"):
            raise AwsError("ValidationError", f"{role_arn} is invalid", 400)
        duration = self._duration(params, 3600, 43200)
        role_name = parts[5].split("/")[-1]
        role_id = _unique_id("AROA")
        assumed_arn = f"arn:aws:sts::{parts[4] or ctx.account_id}:assumed-role/{role_name}/{session_name}"
        creds = await self._issue(duration, f"{role_id}:{session_name}", assumed_arn)
        return {
            "Credentials": creds,
            "AssumedRoleUser": {"AssumedRoleId": f"{role_id}:{session_name}", "Arn": assumed_arn},
            "PackedPolicySize": 0,
            "SourceIdentity": params.get("SourceIdentity"),
        }

    async def assume_role_with_web_identity(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        result = await self.assume_role(ctx, params)
        result["SubjectFromWebIdentityToken"] = "web-identity"
        result["Audience"] = params.get("ProviderId") or "sts.amazonaws.com"
        return result

    async def get_session_token(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        duration = self._duration(params, 43200, 129600)
        identity = await self._identity_of(ctx)
        return {"Credentials": await self._issue(duration, identity["UserId"], identity["Arn"])}
