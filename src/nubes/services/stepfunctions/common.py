"""Shared helpers of the Step Functions provider: errors, names, ARNs."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections.abc import AsyncIterator
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from nubes.aws.errors import AwsError
from nubes.aws.protocol.values import require_each
from nubes.workflows.definition import StateMachine, load
from nubes.workflows.errors import InvalidDefinition

if TYPE_CHECKING:
    from nubes.events.bus import EventBus

_NAME = re.compile(r"^[^\s<>{}\[\]?*\"#%\\^|~`$&,;:/\x00-\x1f\x7f-\x9f]{1,80}$")
MAX_INPUT = 262_144


def error(code: str, message: str, status: int = 400) -> AwsError:
    """A Step Functions error."""
    return AwsError(code, message, status)


def check_name(name: Any, what: str = "name") -> str:
    """AWS's naming rules for machines, executions, activities, aliases."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise error("InvalidName", f"Invalid Name: '{name}'")
    return name


def now() -> float:
    """Unix seconds."""
    return time.time()


def new_id() -> str:
    """A random id (execution names, revision ids)."""
    return str(uuid.uuid4())


@lru_cache(maxsize=256)
def machine_from(definition: str) -> StateMachine:
    """A validated machine for a definition text (cached: definitions are immutable
    per revision)."""
    return load(definition)


def validated(definition: Any) -> StateMachine:
    """Parse a definition for Create/Update, raising InvalidDefinition as AWS does."""
    if not isinstance(definition, str):
        raise error("InvalidDefinition", "Invalid State Machine Definition: 'definition must be a "
                    "string'")
    try:
        return machine_from(definition)
    except InvalidDefinition as exc:
        raise error("InvalidDefinition", exc.message) from None


def parse_arn(arn: Any, kind: str) -> tuple[str, str, str | None]:
    """(region, name, qualifier) of a ``stateMachine``/``activity``/``execution`` ARN;
    InvalidArn if it is not one."""
    parts = arn.split(":") if isinstance(arn, str) else []
    if len(parts) < 7 or parts[:3] != ["arn", "aws", "states"] or parts[5] != kind:
        raise error("InvalidArn", f"Invalid Arn: '{arn}'")
    qualifier = parts[7] if len(parts) > 7 else None
    return parts[3], parts[6], qualifier


def tags_out(tags: dict[str, str]) -> list[dict[str, str]]:
    """Tags as the API lists them."""
    return [{"key": k, "value": v} for k, v in tags.items()]


def tags_in(tags: Any) -> dict[str, str]:
    """Tags from ``[{key, value}]``."""
    require_each(tags or (), "key", path="tags")
    return {str(t["key"]): str(t.get("value", "")) for t in tags or ()}


def page(items: list[Any], params: dict[str, Any], default: int = 100) -> tuple[list[Any],
                                                                                 str | None]:
    """Offset paging with an opaque ``nextToken``."""
    try:
        start = int(params.get("nextToken") or 0)
    except ValueError:
        raise error("InvalidToken", f"Invalid Token: '{params.get('nextToken')}'") from None
    size = int(params.get("maxResults") or default) or default
    chunk = items[start : start + size]
    more = start + size < len(items)
    return chunk, (str(start + size) if more else None)


@contextlib.asynccontextmanager
async def listening(bus: EventBus, name: str, timeout: float) -> AsyncIterator[
        asyncio.Task[bool]]:
    """Start waiting for a wake-up of ``name`` *before* the caller checks the store,
    so a wake-up between that check and the wait is not lost. Yields the waiting
    task (done when woken or after ``timeout``)."""
    task = asyncio.ensure_future(bus.wait(name, timeout))
    await asyncio.sleep(0)  # let the waiter register
    try:
        yield task
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
