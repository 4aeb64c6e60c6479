"""Shared pieces of the EventBridge provider: names, ARNs, errors, paging."""

from __future__ import annotations

import base64
import datetime as dt
import re
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from nubes.aws.errors import AwsError
from nubes.services.base import RequestContext

T = TypeVar("T")

_BUS_NAME = re.compile(r"[/.\-_A-Za-z0-9]{1,256}")
_RULE_NAME = re.compile(r"[.\-_A-Za-z0-9]{1,64}")


def now() -> float:
    """Unix seconds."""
    return time.time()


def timestamp(seconds: float | None) -> dt.datetime | None:
    """A stored unix time as the datetime the wire layer serializes."""
    return None if seconds is None else dt.datetime.fromtimestamp(seconds, dt.UTC)


def iso_time(seconds: float) -> str:
    """An event's ``time``: ISO 8601 UTC to the second, as EventBridge writes it."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def validation(message: str) -> AwsError:
    """ValidationException, the error EventBridge uses for bad input."""
    return AwsError("ValidationException", message, 400)


def not_found(message: str) -> AwsError:
    return AwsError("ResourceNotFoundException", message, 400)


def already_exists(message: str) -> AwsError:
    return AwsError("ResourceAlreadyExistsException", message, 400)


def bus_not_found(name: str) -> AwsError:
    return not_found(f"Event bus {name} does not exist.")


def rule_not_found(name: str, bus: str) -> AwsError:
    return not_found(f"Rule {name} does not exist on EventBus {bus}.")


def bus_name(value: str | None) -> str:
    """A bus given by name or ARN → its name (``default`` when absent)."""
    if not value:
        return "default"
    if value.startswith("arn:"):
        _, _, resource = value.partition(":event-bus/")
        if not resource:
            raise validation(
                f"Parameter {value} is not valid. Reason: Provided Arn is not in correct format."
            )
        return resource
    return value


def check_bus_name(name: str) -> None:
    """Custom bus names: 1-256 of ``/.-_A-Za-z0-9``, not starting with ``aws.``."""
    if not _BUS_NAME.fullmatch(name):
        raise validation(
            f"1 validation error detected: Value '{name}' at 'name' failed to satisfy "
            "constraint: Member must satisfy regular expression pattern: [/\\.\\-_A-Za-z0-9]+"
        )


def check_rule_name(name: str) -> None:
    if not _RULE_NAME.fullmatch(name):
        raise validation(
            f"1 validation error detected: Value '{name}' at 'name' failed to satisfy "
            "constraint: Member must satisfy regular expression pattern: [\\.\\-_A-Za-z0-9]+"
        )


def bus_arn(ctx: RequestContext, name: str) -> str:
    return ctx.arn("events", f"event-bus/{name}")


def rule_arn(region: str, account: str, bus: str, rule: str) -> str:
    """Rules of the default bus are ``rule/<name>``, others ``rule/<bus>/<name>``."""
    path = f"rule/{rule}" if bus == "default" else f"rule/{bus}/{rule}"
    return f"arn:aws:events:{region}:{account}:{path}"


def encode_token(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode()


def decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        raise validation("The NextToken provided is invalid.") from None


def paginate(
    items: Sequence[T],
    params: dict[str, Any],
    name_of: Callable[[T], str],
    *,
    limit_key: str = "Limit",
    default_limit: int = 100,
) -> tuple[list[T], str | None]:
    """One page of ``items`` (sorted by name) after ``NextToken``, and the next token."""
    limit = int(params.get(limit_key) or default_limit)
    token = params.get("NextToken")
    start = 0
    if token:
        after = decode_token(token)
        start = next((i for i, item in enumerate(items) if name_of(item) > after), len(items))
    page = list(items[start : start + limit])
    more = start + limit < len(items)
    return page, (encode_token(name_of(page[-1])) if more and page else None)
