"""When a schedule fires: its expression, zone, start/end dates and flexible window."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from nubes.events.schedule_expressions import (
    ScheduleExpression,
    ScheduleExpressionError,
    parse_schedule_expression,
)


def _epoch(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).timestamp()
    return float(value)


def expression_of(doc: dict[str, Any]) -> ScheduleExpression:
    """The parsed ScheduleExpression (ValueError if invalid)."""
    return parse_schedule_expression(doc["ScheduleExpression"], allow_at=True, strict_units=False)


def next_nominal(doc: dict[str, Any], after: float, *, first: bool) -> float | None:
    """The schedule's next nominal fire time strictly after ``after`` (for the
    first run of a rate schedule without StartDate: its creation), respecting
    StartDate and EndDate; None when it has no more."""
    try:
        expression = expression_of(doc)
    except ScheduleExpressionError:
        return None
    zone = doc.get("ScheduleExpressionTimezone") or "UTC"
    start = _epoch(doc.get("StartDate"))
    end = _epoch(doc.get("EndDate"))
    moment = dt.datetime.fromtimestamp(after, dt.UTC)
    if expression.kind == "at":
        if not first:
            return None
        when = expression.next_fire_time(dt.datetime.fromtimestamp(0, dt.UTC), tz=zone)
        # already past (created late): its timer is due, so it fires at once
        found = when.timestamp() if when is not None else None
    elif expression.kind == "rate":
        anchor = start if start is not None else float(doc["CreationDate"])
        if first and anchor >= after:
            found = anchor
        else:
            anchor_dt = dt.datetime.fromtimestamp(anchor, dt.UTC)
            nxt = expression.next_fire_time(moment, start=anchor_dt)
            found = None if nxt is None else nxt.timestamp()
    else:
        start_dt = dt.datetime.fromtimestamp(start, dt.UTC) if start is not None else None
        nxt = expression.next_fire_time(moment, start=start_dt, tz=zone)
        found = None if nxt is None else nxt.timestamp()
    if found is None or (end is not None and found > end):
        return None
    return found


def flexible_delay(doc: dict[str, Any]) -> float:
    """A random delay within the FlexibleTimeWindow (0 when its Mode is OFF)."""
    window = doc.get("FlexibleTimeWindow") or {}
    if window.get("Mode") != "FLEXIBLE":
        return 0.0
    return random.uniform(0, float(window.get("MaximumWindowInMinutes") or 0) * 60)
