"""Alarm state decisions from period values (CloudWatch's evaluation rules)."""

from __future__ import annotations

from typing import Any

import pytest

from nubes.services.cloudwatch.evaluate import decide


def _alarm(**overrides: Any) -> dict[str, Any]:
    alarm = {"ComparisonOperator": "GreaterThanThreshold", "Threshold": 10.0, "EvaluationPeriods": 3,
             "StateValue": "INSUFFICIENT_DATA", "StateReason": "initial"}  # fmt: skip
    alarm.update(overrides)
    return alarm


@pytest.mark.parametrize(
    ("overrides", "values", "state"),
    [
        ({}, [11.0, 12.0, 13.0], "ALARM"),
        ({}, [11.0, 5.0, 13.0], "OK"),
        ({"DatapointsToAlarm": 2}, [11.0, 5.0, 13.0], "ALARM"),
        ({}, [None, None, None], "INSUFFICIENT_DATA"),
        ({"TreatMissingData": "notBreaching"}, [None, None, None], "OK"),
        ({"TreatMissingData": "breaching"}, [None, None, 11.0], "ALARM"),
        ({"TreatMissingData": "ignore", "StateValue": "ALARM"}, [None, None, None], "ALARM"),
        ({"ComparisonOperator": "LessThanOrEqualToThreshold"}, [10.0, 1.0, 0.0], "ALARM"),
    ],
)
def test_decide(overrides: dict[str, Any], values: list[float | None], state: str) -> None:
    periods = [(i * 60_000, v) for i, v in enumerate(values)]
    assert decide(_alarm(**overrides), periods)[0] == state
