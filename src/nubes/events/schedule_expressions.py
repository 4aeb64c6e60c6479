"""Schedule expressions of EventBridge rules and EventBridge Scheduler.

* ``rate(value unit)`` — a fixed period from an anchor (the rule's creation or
  the schedule's start date); ``day`` means 24 hours, whatever DST does.
* ``cron(minutes hours day-of-month month day-of-week year)`` — AWS's six-field
  cron: ``, - * /`` everywhere, ``?`` in one of the two day fields, ``L`` and
  ``W`` in day-of-month, ``L`` and ``#`` in day-of-week (1 = SUN ... 7 = SAT),
  month and weekday names. Evaluated in the schedule's time zone: a time that
  DST skips does not fire, a time DST repeats fires once (the first), as
  EventBridge Scheduler documents.
* ``at(yyyy-mm-ddThh:mm:ss)`` — one time, in the schedule's time zone (Scheduler only).

``next_fire_time(after)`` returns the first fire time strictly after ``after``
as an aware UTC datetime, or None when the expression never fires again.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC = dt.UTC
INVALID = "Parameter ScheduleExpression is not valid."
MAX_YEAR = 2199
MIN_YEAR = 1970

_MONTHS = {name: i for i, name in enumerate(calendar.month_abbr) if name}
_MONTHS = {k.upper(): v for k, v in _MONTHS.items()}
_WEEKDAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
_UNITS = {"minute": 60, "hour": 3600, "day": 86400}


class ScheduleExpressionError(ValueError):
    """An invalid schedule expression; ``str(error)`` is AWS's message."""


@lru_cache(maxsize=512)
def timezone(name: str | None) -> ZoneInfo:
    """The zone for an IANA name (``UTC`` when empty); ``ScheduleExpressionError`` if unknown."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleExpressionError(f"Invalid time zone: {name}") from None


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class RateExpression:
    """``rate(value unit)``."""

    text: str
    seconds: int

    kind = "rate"

    def next_fire_time(
        self, after: dt.datetime, *, start: dt.datetime | None = None, tz: str | None = None
    ) -> dt.datetime | None:
        """The first ``start + k * period`` strictly after ``after`` (``start``
        itself if it is later); ``start`` defaults to ``after``."""
        after = _aware(after).astimezone(UTC)
        anchor = _aware(start).astimezone(UTC) if start is not None else after
        if anchor > after:
            return anchor
        periods = int((after - anchor).total_seconds() // self.seconds) + 1
        return anchor + dt.timedelta(seconds=periods * self.seconds)


@dataclass(frozen=True)
class AtExpression:
    """``at(yyyy-mm-ddThh:mm:ss)``: one wall-clock time."""

    text: str
    when: dt.datetime  # naive, in the schedule's zone

    kind = "at"

    def fire_time(self, tz: str | None = None) -> dt.datetime:
        """The instant (UTC) this fires."""
        return self.when.replace(tzinfo=timezone(tz)).astimezone(UTC)

    def next_fire_time(
        self, after: dt.datetime, *, start: dt.datetime | None = None, tz: str | None = None
    ) -> dt.datetime | None:
        """The fire time if it is after ``after``, else None."""
        when = self.fire_time(tz)
        return when if when > _aware(after) else None


@dataclass(frozen=True)
class _DaySpec:
    """One item of a day field that is not a plain set of numbers."""

    #: ``L`` (last day), ``LW``, ``W`` (nearest weekday to ``n``), ``nL`` (last
    #: weekday n of the month), ``#`` (k-th weekday n)
    kind: str
    n: int = 0
    k: int = 0


@dataclass(frozen=True)
class CronExpression:
    """``cron(minutes hours day-of-month month day-of-week year)``."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    dom: frozenset[int] | None  # None: ``?``
    dom_specs: tuple[_DaySpec, ...]
    months: frozenset[int]
    dow: frozenset[int] | None  # None: ``?``
    dow_specs: tuple[_DaySpec, ...]
    years: frozenset[int]

    kind = "cron"

    def _day_matches(self, year: int, month: int, day: int) -> bool:
        if self.dom is not None or self.dom_specs:
            if day in (self.dom or ()):
                return True
            return any(_dom_spec_matches(s, year, month, day) for s in self.dom_specs)
        weekday = _aws_weekday(year, month, day)
        if weekday in (self.dow or ()):
            return True
        return any(_dow_spec_matches(s, year, month, day, weekday) for s in self.dow_specs)

    def next_local(self, moment: dt.datetime) -> dt.datetime | None:
        """The first matching naive wall-clock minute at or after ``moment``."""
        t = moment.replace(second=0, microsecond=0)
        if t < moment:
            t += dt.timedelta(minutes=1)
        while True:
            if t.year > MAX_YEAR:
                return None
            if t.year not in self.years:
                later = [y for y in self.years if y > t.year]
                if not later:
                    return None
                t = dt.datetime(min(later), 1, 1)
                continue
            if t.month not in self.months:
                t = _next_month(t)
                continue
            if not self._day_matches(t.year, t.month, t.day):
                t = dt.datetime(t.year, t.month, t.day) + dt.timedelta(days=1)
                continue
            if t.hour not in self.hours:
                t = t.replace(minute=0) + dt.timedelta(hours=1)
                continue
            later_minutes = [m for m in self.minutes if m >= t.minute]
            if not later_minutes:
                t = t.replace(minute=0) + dt.timedelta(hours=1)
                continue
            return t.replace(minute=min(later_minutes))

    def next_fire_time(
        self, after: dt.datetime, *, start: dt.datetime | None = None, tz: str | None = None
    ) -> dt.datetime | None:
        """The first matching minute strictly after ``after`` (and not before
        ``start``), evaluated in zone ``tz``; skipped wall times never fire and
        repeated ones fire once."""
        zone = timezone(tz)
        after = _aware(after).astimezone(UTC)
        if start is not None and _aware(start) > after:
            after = _aware(start).astimezone(UTC) - dt.timedelta(microseconds=1)
        # start early enough in wall time that a DST fall-back cannot hide a match
        local = after.astimezone(zone).replace(tzinfo=None) - dt.timedelta(hours=3)
        while True:
            candidate = self.next_local(local)
            if candidate is None:
                return None
            aware = candidate.replace(tzinfo=zone, fold=0)
            instant = aware.astimezone(UTC)
            exists = instant.astimezone(zone).replace(tzinfo=None) == candidate
            if exists and instant > after:
                return instant
            local = candidate + dt.timedelta(minutes=1)


ScheduleExpression = RateExpression | CronExpression | AtExpression


def _next_month(t: dt.datetime) -> dt.datetime:
    if t.month == 12:
        return dt.datetime(t.year + 1, 1, 1)
    return dt.datetime(t.year, t.month + 1, 1)


def _aws_weekday(year: int, month: int, day: int) -> int:
    """1 = Sunday ... 7 = Saturday."""
    return (dt.date(year, month, day).weekday() + 1) % 7 + 1


def _nearest_weekday(year: int, month: int, day: int) -> int:
    """The weekday (Mon-Fri) nearest to ``day`` without leaving the month."""
    last = calendar.monthrange(year, month)[1]
    day = min(day, last)
    weekday = dt.date(year, month, day).weekday()  # Mon=0
    if weekday == 5:  # Saturday: Friday before, or Monday after if on the 1st
        return day - 1 if day > 1 else day + 2
    if weekday == 6:  # Sunday: Monday after, or Friday before if on the last day
        return day + 1 if day < last else day - 2
    return day


def _dom_spec_matches(spec: _DaySpec, year: int, month: int, day: int) -> bool:
    last = calendar.monthrange(year, month)[1]
    if spec.kind == "L":
        return day == last
    if spec.kind == "LW":
        return day == _nearest_weekday(year, month, last)
    if spec.kind == "W":
        return spec.n <= last and day == _nearest_weekday(year, month, spec.n)
    return False


def _dow_spec_matches(spec: _DaySpec, year: int, month: int, day: int, weekday: int) -> bool:
    if weekday != spec.n:
        return False
    if spec.kind == "L":
        return day + 7 > calendar.monthrange(year, month)[1]
    if spec.kind == "#":
        return (day - 1) // 7 + 1 == spec.k
    return False


# --------------------------------------------------------------------------- parsing


def _number(token: str, low: int, high: int, names: dict[str, int] | None = None) -> int:
    upper = token.upper()
    if names is not None and upper in names:
        return names[upper]
    if not token.isdigit():
        raise ScheduleExpressionError(INVALID)
    value = int(token)
    if not low <= value <= high:
        raise ScheduleExpressionError(INVALID)
    return value


def _field(text: str, low: int, high: int, names: dict[str, int] | None = None) -> frozenset[int]:
    """A field of numbers: ``*``, ``a``, ``a-b`` (wrapping), ``x/step``, lists."""
    values: set[int] = set()
    for item in text.split(","):
        base, _, step_text = item.partition("/")
        step = 1
        if step_text:
            step = _number(step_text, 1, high if high > 0 else 1)
        if base == "*":
            first, last = low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            first, last = _number(a, low, high, names), _number(b, low, high, names)
        else:
            first = _number(base, low, high, names)
            last = high if step_text else first
        span = last - first if last >= first else last + (high - low + 1) - first
        for offset in range(0, span + 1, step):
            value = first + offset
            if value > high:
                value -= high - low + 1
            values.add(value)
    return frozenset(values)


def _dom_field(text: str) -> tuple[frozenset[int] | None, tuple[_DaySpec, ...]]:
    if text == "?":
        return None, ()
    specs: list[_DaySpec] = []
    plain: list[str] = []
    for item in text.split(","):
        upper = item.upper()
        if upper in ("L", "LW"):
            specs.append(_DaySpec(upper))
        elif upper.endswith("W"):
            specs.append(_DaySpec("W", _number(upper[:-1], 1, 31)))
        else:
            plain.append(item)
    numbers = _field(",".join(plain), 1, 31) if plain else frozenset()
    return numbers, tuple(specs)


def _dow_field(text: str) -> tuple[frozenset[int] | None, tuple[_DaySpec, ...]]:
    if text == "?":
        return None, ()
    specs: list[_DaySpec] = []
    plain: list[str] = []
    for item in text.split(","):
        upper = item.upper()
        if upper == "L":
            plain.append("7")  # a bare L is the last day of the week, Saturday
        elif "#" in upper:
            day, _, nth = upper.partition("#")
            specs.append(_DaySpec("#", _number(day, 1, 7, _WEEKDAYS), _number(nth, 1, 5)))
        elif upper.endswith("L"):
            specs.append(_DaySpec("L", _number(upper[:-1], 1, 7, _WEEKDAYS)))
        else:
            plain.append(item)
    numbers = _field(",".join(plain), 1, 7, _WEEKDAYS) if plain else frozenset()
    return numbers, tuple(specs)


def parse_cron(text: str, body: str) -> CronExpression:
    """The six fields of ``cron(...)``."""
    fields = body.split()
    if len(fields) != 6:
        raise ScheduleExpressionError(INVALID)
    minutes, hours, dom_text, month_text, dow_text, year_text = fields
    if (dom_text == "?") == (dow_text == "?"):
        # exactly one of the day fields must be "?"
        raise ScheduleExpressionError(INVALID)
    dom, dom_specs = _dom_field(dom_text)
    dow, dow_specs = _dow_field(dow_text)
    return CronExpression(
        text=text,
        minutes=_field(minutes, 0, 59),
        hours=_field(hours, 0, 23),
        dom=dom,
        dom_specs=dom_specs,
        months=_field(month_text, 1, 12, _MONTHS),
        dow=dow,
        dow_specs=dow_specs,
        years=_field(year_text, MIN_YEAR, MAX_YEAR),
    )


def parse_rate(text: str, body: str, *, strict_units: bool) -> RateExpression:
    """``value unit``: a positive integer and minute(s), hour(s) or day(s); with
    ``strict_units`` (EventBridge rules) the unit is singular exactly when value is 1."""
    parts = body.split()
    if len(parts) != 2 or not parts[0].isdigit():
        raise ScheduleExpressionError(INVALID)
    value, unit = int(parts[0]), parts[1]
    singular = unit[:-1] if unit.endswith("s") else unit
    if value < 1 or singular not in _UNITS:
        raise ScheduleExpressionError(INVALID)
    if strict_units and (unit == singular) != (value == 1):
        raise ScheduleExpressionError(INVALID)
    return RateExpression(text=text, seconds=value * _UNITS[singular])


_AT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")


def parse_at(text: str, body: str) -> AtExpression:
    """``yyyy-mm-ddThh:mm:ss``."""
    if not _AT.fullmatch(body):
        raise ScheduleExpressionError(INVALID)
    try:
        when = dt.datetime.fromisoformat(body)
    except ValueError:
        raise ScheduleExpressionError(INVALID) from None
    return AtExpression(text=text, when=when)


_EXPRESSION = re.compile(r"(rate|cron|at)\((.*)\)", re.DOTALL)


@lru_cache(maxsize=4096)
def parse_schedule_expression(
    text: str, *, allow_at: bool = False, strict_units: bool = True
) -> ScheduleExpression:
    """Parse ``rate(...)``, ``cron(...)`` and (with ``allow_at``) ``at(...)``;
    ``ScheduleExpressionError`` with AWS's message if invalid."""
    match = _EXPRESSION.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ScheduleExpressionError(INVALID)
    kind, body = match.group(1), match.group(2).strip()
    if kind == "rate":
        return parse_rate(text, body, strict_units=strict_units)
    if kind == "cron":
        return parse_cron(text, body)
    if not allow_at:
        raise ScheduleExpressionError(INVALID)
    return parse_at(text, body)


def next_fire_time(
    expression: str,
    after: dt.datetime,
    *,
    start: dt.datetime | None = None,
    tz: str | None = None,
    allow_at: bool = True,
) -> dt.datetime | None:
    """Shorthand: parse ``expression`` and return its next fire time after ``after``."""
    parsed = parse_schedule_expression(expression, allow_at=allow_at, strict_units=False)
    return parsed.next_fire_time(after, start=start, tz=tz)
