"""rate/cron/at schedule expressions with AWS's six-field cron and time zones."""

from __future__ import annotations

import datetime as dt

import pytest

from nubes.events.schedule_expressions import (
    INVALID,
    AtExpression,
    CronExpression,
    RateExpression,
    ScheduleExpressionError,
    next_fire_time,
    parse_schedule_expression,
    timezone,
)

UTC = dt.UTC


def t(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def fires(expr: str, after: dt.datetime, n: int, tz: str | None = None) -> list[dt.datetime]:
    parsed = parse_schedule_expression(expr, allow_at=True)
    out: list[dt.datetime] = []
    for _ in range(n):
        nxt = parsed.next_fire_time(after, tz=tz)
        assert nxt is not None
        out.append(nxt)
        after = nxt
    return out


def test_rate_from_anchor() -> None:
    rate = parse_schedule_expression("rate(5 minutes)")
    assert isinstance(rate, RateExpression)
    assert rate.seconds == 300
    start = t(2024, 1, 1, 0, 0, 30)
    assert rate.next_fire_time(t(2024, 1, 1, 0, 7), start=start) == t(2024, 1, 1, 0, 10, 30)
    assert rate.next_fire_time(t(2024, 1, 1, 0, 10, 30), start=start) == t(2024, 1, 1, 0, 15, 30)
    assert rate.next_fire_time(t(2023, 1, 1), start=start) == start
    assert parse_schedule_expression("rate(1 day)").seconds == 86400  # type: ignore[union-attr]
    assert parse_schedule_expression("rate(2 hours)").seconds == 7200  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "expr",
    [
        "rate(0 minutes)", "rate(1 minutes)", "rate(5 minute)", "rate(5 weeks)", "rate(x minutes)",
        "rate(5)", "rate(-1 minutes)", "cron(* * * * *)", "cron(0 12 * * * *)",
        "cron(0 12 ? * ? *)", "cron(60 * * * ? *)", "cron(0 24 * * ? *)", "cron(0 0 32 * ? *)",
        "cron(0 0 ? 13 * *)", "cron(0 0 ? * 8 *)", "cron(0 0 ? * FOO *)", "cron(0 0 * * ? 1969)",
        "cron(0 0 ? * 3#6 *)", "at(2024-01-01T00:00:00)", "every 5 minutes", "", "rate 5 minutes",
        "cron(0/0 * * * ? *)",
    ],
)  # fmt: skip
def test_invalid_expressions(expr: str) -> None:
    with pytest.raises(ScheduleExpressionError, match="Parameter ScheduleExpression is not valid"):
        parse_schedule_expression(expr)
    assert str(ScheduleExpressionError(INVALID)) == "Parameter ScheduleExpression is not valid."


def test_scheduler_accepts_loose_units_and_at() -> None:
    assert parse_schedule_expression("rate(1 minutes)", strict_units=False).seconds == 60  # type: ignore[union-attr]
    at = parse_schedule_expression("at(2024-03-01T10:30:00)", allow_at=True)
    assert isinstance(at, AtExpression)
    assert at.fire_time("America/New_York") == t(2024, 3, 1, 15, 30)
    assert at.next_fire_time(t(2024, 3, 1), tz="UTC") == t(2024, 3, 1, 10, 30)
    assert at.next_fire_time(t(2024, 3, 2), tz="UTC") is None
    with pytest.raises(ScheduleExpressionError):
        parse_schedule_expression("at(2024-02-30T10:30:00)", allow_at=True)


def test_cron_docs_examples() -> None:
    # 10:15 UTC every day
    assert fires("cron(15 10 * * ? *)", t(2024, 1, 1), 2) == [
        t(2024, 1, 1, 10, 15), t(2024, 1, 2, 10, 15)]  # fmt: skip
    # 6:00 PM Monday through Friday
    got = fires("cron(0 18 ? * MON-FRI *)", t(2024, 1, 5, 19), 2)  # Friday evening
    assert got == [t(2024, 1, 8, 18), t(2024, 1, 9, 18)]
    # 8:00 AM on the first day of the month
    assert fires("cron(0 8 1 * ? *)", t(2024, 1, 1, 9), 1) == [t(2024, 2, 1, 8)]
    # every 10 minutes on weekdays
    got = fires("cron(0/10 * ? * MON-FRI *)", t(2024, 1, 5, 23, 55), 2)
    assert got == [t(2024, 1, 8, 0, 0), t(2024, 1, 8, 0, 10)]
    # every 5 minutes between 8:00 AM and 5:55 PM weekdays
    assert fires("cron(0/5 8-17 ? * MON-FRI *)", t(2024, 1, 8, 17, 55), 1) == [t(2024, 1, 9, 8)]
    # 9:00 AM on the first Monday of each month
    assert fires("cron(0 9 ? * 2#1 *)", t(2024, 1, 1, 10), 2) == [
        t(2024, 2, 5, 9), t(2024, 3, 4, 9)]  # fmt: skip


def test_cron_last_and_weekday_specials() -> None:
    assert fires("cron(0 0 L * ? *)", t(2024, 2, 1), 2) == [t(2024, 2, 29), t(2024, 3, 31)]
    # last Friday of the month (6 = FRI)
    assert fires("cron(0 0 ? * 6L *)", t(2024, 1, 1), 2) == [t(2024, 1, 26), t(2024, 2, 23)]
    # nearest weekday to the 15th: 2024-06-15 is a Saturday -> Friday 14th
    assert fires("cron(0 0 15W * ? *)", t(2024, 6, 1), 1) == [t(2024, 6, 14)]
    # 1W when the 1st is a Saturday -> Monday 3rd (never leaves the month)
    assert fires("cron(0 0 1W * ? *)", t(2024, 5, 31), 1) == [t(2024, 6, 3)]
    # LW: last weekday; 2024-03-31 is a Sunday -> Friday 29th
    assert fires("cron(0 0 LW * ? *)", t(2024, 3, 1), 1) == [t(2024, 3, 29)]
    # names, lists and a year limit
    assert fires("cron(30 12 ? JAN,JUL SUN 2025)", t(2024, 1, 1), 1) == [t(2025, 1, 5, 12, 30)]
    assert parse_schedule_expression("cron(0 0 1 1 ? 2020)").next_fire_time(t(2021, 1, 1)) is None


def test_cron_wrapping_range_and_steps() -> None:
    cron = parse_schedule_expression("cron(50-10/10 * * * ? *)")
    assert isinstance(cron, CronExpression)
    assert cron.minutes == frozenset({50, 0, 10})
    cron = parse_schedule_expression("cron(0 0 ? * FRI-MON *)")
    assert isinstance(cron, CronExpression)
    assert cron.dow == frozenset({6, 7, 1, 2})


def test_cron_time_zone_and_dst() -> None:
    ny = "America/New_York"
    # 9:00 New York is 14:00 UTC in winter and 13:00 UTC in summer
    assert fires("cron(0 9 * * ? *)", t(2024, 1, 10), 1, ny) == [t(2024, 1, 10, 14)]
    assert fires("cron(0 9 * * ? *)", t(2024, 7, 10), 1, ny) == [t(2024, 7, 10, 13)]
    # spring forward 2024-03-10: 02:30 does not exist that day -> skipped
    got = fires("cron(30 2 * * ? *)", t(2024, 3, 9, 12), 2, ny)
    assert got == [t(2024, 3, 11, 6, 30), t(2024, 3, 12, 6, 30)]
    # fall back 2024-11-03: 01:30 happens twice -> fires once (the first)
    got = fires("cron(30 1 * * ? *)", t(2024, 11, 2, 12), 2, ny)
    assert got == [t(2024, 11, 3, 5, 30), t(2024, 11, 4, 6, 30)]
    # every 30 minutes across fall back: each wall time once
    got = fires("cron(0/30 * * * ? *)", t(2024, 11, 3, 4, 59), 4, ny)
    assert got == [t(2024, 11, 3, 5, 0), t(2024, 11, 3, 5, 30), t(2024, 11, 3, 7, 0),
                   t(2024, 11, 3, 7, 30)]  # fmt: skip


def test_start_date_and_shorthand() -> None:
    got = next_fire_time("cron(0 * * * ? *)", t(2024, 1, 1), start=t(2024, 2, 1, 0, 30))
    assert got == t(2024, 2, 1, 1)
    assert next_fire_time("cron(0 * * * ? *)", t(2024, 1, 1), start=t(2024, 2, 1)) == t(2024, 2, 1)
    with pytest.raises(ScheduleExpressionError, match="Invalid time zone"):
        timezone("Mars/Olympus")
