"""When EventBridge Scheduler schedules run: rate/cron/at with zone, start and end."""

from __future__ import annotations

import datetime as dt

from nubes.services.scheduler.timing import flexible_delay, next_nominal


def ts(*args: int) -> float:
    return dt.datetime(*args, tzinfo=dt.UTC).timestamp()


def test_rate_starts_at_creation_or_start_date() -> None:
    doc = {"ScheduleExpression": "rate(10 minutes)", "CreationDate": ts(2024, 1, 1, 12)}
    assert next_nominal(doc, ts(2024, 1, 1, 12), first=True) == ts(2024, 1, 1, 12)
    assert next_nominal(doc, ts(2024, 1, 1, 12), first=False) == ts(2024, 1, 1, 12, 10)
    assert next_nominal(doc, ts(2024, 1, 1, 12, 25), first=False) == ts(2024, 1, 1, 12, 30)
    doc["StartDate"] = ts(2024, 1, 2)
    assert next_nominal(doc, ts(2024, 1, 1, 12), first=True) == ts(2024, 1, 2)
    assert next_nominal(doc, ts(2024, 1, 2, 0, 5), first=False) == ts(2024, 1, 2, 0, 10)


def test_cron_in_a_zone_with_an_end_date() -> None:
    doc = {
        "ScheduleExpression": "cron(0 9 * * ? *)", "ScheduleExpressionTimezone": "Asia/Tokyo",
        "CreationDate": ts(2024, 1, 1), "EndDate": ts(2024, 1, 3, 1),
    }  # fmt: skip
    # 09:00 in Tokyo is 00:00 UTC
    assert next_nominal(doc, ts(2024, 1, 1, 12), first=True) == ts(2024, 1, 2)
    assert next_nominal(doc, ts(2024, 1, 2), first=False) == ts(2024, 1, 3)
    assert next_nominal(doc, ts(2024, 1, 3), first=False) is None  # past EndDate


def test_at_fires_once_even_when_late() -> None:
    doc = {"ScheduleExpression": "at(2024-05-01T10:00:00)",
           "ScheduleExpressionTimezone": "Europe/Paris", "CreationDate": ts(2024, 1, 1)}  # fmt: skip
    assert next_nominal(doc, ts(2024, 1, 1), first=True) == ts(2024, 5, 1, 8)
    # created (or found after downtime) past its time: due at once, nominal time kept
    assert next_nominal(doc, ts(2024, 6, 1), first=True) == ts(2024, 5, 1, 8)
    assert next_nominal(doc, ts(2024, 5, 1, 8), first=False) is None


def test_flexible_window() -> None:
    assert flexible_delay({"FlexibleTimeWindow": {"Mode": "OFF"}}) == 0.0
    delays = {flexible_delay({"FlexibleTimeWindow": {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 5}})
              for _ in range(50)}  # fmt: skip
    assert all(0 <= d <= 300 for d in delays) and len(delays) > 1
