"""AWS errors as raised by services and serialized by the wire layer.

A provider raises ``AwsError("ResourceNotFoundException", "Function not found: ...")``;
the protocol serializer turns it into the body, headers and status the service's
protocol uses. When ``status`` is not given the HTTP status comes from the error
shape in the service's botocore model (``error.httpStatusCode``), else 400.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class AwsError(Exception):
    """An error with an AWS error code, message, HTTP status and extra members."""

    def __init__(
        self,
        code: str,
        message: str = "",
        status: int | None = None,
        *,
        sender_fault: bool = True,
        fields: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.sender_fault = sender_fault
        #: extra members of the error shape (e.g. ``CancellationReasons``)
        self.fields: dict[str, Any] = dict(fields or {})
        self.headers: dict[str, str] = dict(headers or {})


def validation_error(message: str, code: str = "ValidationException") -> AwsError:
    """AWS's generic input validation error."""
    return AwsError(code, message, 400)


def not_implemented(service: str, operation: str) -> AwsError:
    """The error for an operation nubes does not implement (never a fake success)."""
    return AwsError(
        "NotImplemented",
        f"The operation {operation} of service {service} is not implemented by nubes",
        501,
        sender_fault=False,
    )


def internal_error(message: str = "We encountered an internal error. Please try again.") -> AwsError:
    return AwsError("InternalFailure", message, 500, sender_fault=False)
