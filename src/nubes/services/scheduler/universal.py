"""Universal targets (``arn:aws:scheduler:::aws-sdk:<service>:<apiAction>``): the
schedule's Input is the API request as JSON, so blobs arrive as text and
timestamps as ISO 8601; they are converted to what the botocore shape says
before the internal call."""

from __future__ import annotations

import datetime as dt
from typing import Any

from botocore.model import ListShape, MapShape, Shape, StructureShape

from nubes.aws.errors import AwsError
from nubes.aws.spec import service_model

PREFIX = "arn:aws:scheduler:::aws-sdk:"
#: SDK client names in universal target ARNs that differ from botocore's
SDK_SERVICES = {"sfn": "stepfunctions", "eventbridge": "events", "cloudwatchlogs": "logs"}


def resolve(arn: str) -> tuple[str, str]:
    """``(botocore service, operation)`` of a universal target ARN."""
    service, _, action = arn[len(PREFIX) :].partition(":")
    return SDK_SERVICES.get(service, service), action[:1].upper() + action[1:]


def coerce(service: str, operation: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with blob members as bytes and timestamps as datetimes
    (AwsError ``ValidationException`` for an unknown service or operation)."""
    try:
        shape = service_model(service).operation_model(operation).input_shape
    except Exception:
        raise AwsError(
            "ValidationException", f"Unknown universal target {service}:{operation}", 400
        ) from None
    if shape is None:
        return params
    out = _coerce(shape, params)
    return out if isinstance(out, dict) else params


def _coerce(shape: Shape, value: Any) -> Any:
    if isinstance(shape, StructureShape) and isinstance(value, dict):
        members = shape.members
        return {k: _coerce(members[k], v) if k in members else v for k, v in value.items()}
    if isinstance(shape, ListShape) and isinstance(value, list):
        return [_coerce(shape.member, v) for v in value]
    if isinstance(shape, MapShape) and isinstance(value, dict):
        return {k: _coerce(shape.value, v) for k, v in value.items()}
    if shape.type_name == "blob" and isinstance(value, str):
        return value.encode()
    if shape.type_name == "timestamp" and isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if shape.type_name == "timestamp" and isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    return value
