"""Metric alarm evaluation: the last ``EvaluationPeriods`` periods of each alarm's
metric against its threshold, ``DatapointsToAlarm`` of them breaching for ALARM,
``TreatMissingData`` for periods without data. A state change notifies the SNS
topics among the alarm's actions with AWS's alarm message.

Alarms on metric math (``Metrics``) are not evaluated (they keep their state).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from nubes.services.cloudwatch import metrics as m
from nubes.services.cloudwatch.alarms import ALARMS
from nubes.storage.base import Txn
from nubes.storage.keys import unpack

log = logging.getLogger(__name__)

#: how often alarms are evaluated when no metric data arrives
INTERVAL_S = 10.0
LEASES = "cloudwatch.leases"

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanOrEqualToThreshold": lambda v, t: v >= t,
    "GreaterThanThreshold": lambda v, t: v > t,
    "LessThanThreshold": lambda v, t: v < t,
    "LessThanOrEqualToThreshold": lambda v, t: v <= t,
}
_WORDS = {
    "GreaterThanOrEqualToThreshold": "greater than or equal to", "GreaterThanThreshold": "greater than",
    "LessThanThreshold": "less than", "LessThanOrEqualToThreshold": "less than or equal to",
}  # fmt: skip


def period_values(txn: Txn, region: str, alarm: dict[str, Any], now: float) -> list[tuple[int, float | None]]:
    """(period start ms, statistic or None) for the alarm's evaluation window, oldest first."""
    period = int(alarm["Period"])
    count = int(alarm["EvaluationPeriods"])
    period_ms = period * 1000
    end = int(now * 1000) - int(now * 1000) % period_ms + period_ms  # include the current period
    start = end - count * period_ms
    dims = m.dims_key(alarm.get("Dimensions"))
    points = m.read_points(txn, region, alarm["Namespace"], alarm["MetricName"], dims, start, end)
    buckets = m.aggregate(points, period, alarm.get("Unit"))
    stat = alarm.get("Statistic") or alarm.get("ExtendedStatistic") or "Average"
    return [(s, m.statistic(buckets[s], stat) if s in buckets else None) for s in range(start, end, period_ms)]


def decide(alarm: dict[str, Any], values: list[tuple[int, float | None]]) -> tuple[str, str, list[float]]:
    """(new state, reason, breaching values) for one alarm."""
    compare = _COMPARE.get(alarm["ComparisonOperator"])
    if compare is None:
        return alarm["StateValue"], alarm.get("StateReason", ""), []
    threshold = float(alarm["Threshold"])
    missing = alarm.get("TreatMissingData") or "missing"
    needed = int(alarm.get("DatapointsToAlarm") or alarm["EvaluationPeriods"])
    present = [v for _, v in values if v is not None]
    breaching = [v for v in present if compare(v, threshold)]
    n_missing = len(values) - len(present)
    hits = len(breaching) + (n_missing if missing == "breaching" else 0)
    word = _WORDS[alarm["ComparisonOperator"]]
    if hits >= needed:
        shown = ", ".join(f"{v}" for v in breaching) or "missing data"
        return "ALARM", (f"Threshold Crossed: {hits} datapoint(s) [{shown}] was {word} the threshold "
                         f"({threshold})."), breaching  # fmt: skip
    if not present and missing in ("missing", "ignore"):
        if missing == "ignore":
            return alarm["StateValue"], alarm.get("StateReason", ""), []
        return "INSUFFICIENT_DATA", "Insufficient Data: no datapoints were received for the evaluation window.", []
    return "OK", (f"Threshold Crossed: {len(present)} datapoint(s) were not {word} the threshold "
                  f"({threshold})."), []  # fmt: skip


def evaluate_all(txn: Txn, now: float) -> list[tuple[str, dict[str, Any], str]]:
    """Evaluate every single-metric alarm; store changes; return (region, alarm, old state)."""
    changed = []
    for key, raw in txn.scan(ALARMS):
        alarm = orjson.loads(raw)
        if not alarm.get("MetricName") or not alarm.get("Period") or not alarm.get("EvaluationPeriods"):
            continue
        region = str(unpack(key)[0])
        state, reason, breaching = decide(alarm, period_values(txn, region, alarm, now))
        if state == alarm["StateValue"]:
            continue
        old = alarm["StateValue"]
        alarm.update(StateValue=state, StateReason=reason, StateUpdatedTimestamp=now, StateTransitionedTimestamp=now,
                     StateReasonData=orjson.dumps({"version": "1.0", "queryDate": _iso(now),
                                                   "recentDatapoints": breaching,
                                                   "threshold": alarm["Threshold"]}).decode())  # fmt: skip
        txn.put(ALARMS, key, orjson.dumps(alarm))
        changed.append((region, alarm, old))
    return changed


def _iso(epoch: float) -> str:
    when = dt.datetime.fromtimestamp(epoch, dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}+0000"


def notification(region: str, account: str, alarm: dict[str, Any], old: str) -> dict[str, Any]:
    """The JSON message CloudWatch publishes to SNS on a state change."""
    return {
        "AlarmName": alarm["AlarmName"], "AlarmDescription": alarm.get("AlarmDescription"),
        "AWSAccountId": account, "AlarmConfigurationUpdatedTimestamp": _iso(alarm["AlarmConfigurationUpdatedTimestamp"]),
        "NewStateValue": alarm["StateValue"], "NewStateReason": alarm["StateReason"],
        "StateChangeTime": _iso(alarm["StateUpdatedTimestamp"]), "Region": region, "AlarmArn": alarm["AlarmArn"],
        "OldStateValue": old, "OKActions": alarm.get("OKActions", []), "AlarmActions": alarm.get("AlarmActions", []),
        "InsufficientDataActions": alarm.get("InsufficientDataActions", []),
        "Trigger": {
            "MetricName": alarm["MetricName"], "Namespace": alarm["Namespace"],
            "StatisticType": "Statistic" if alarm.get("Statistic") else "ExtendedStatistic",
            "Statistic": (alarm.get("Statistic") or "").upper(), "Unit": alarm.get("Unit"),
            "Dimensions": [{"value": d["Value"], "name": d["Name"]} for d in alarm.get("Dimensions") or []],
            "Period": alarm["Period"], "EvaluationPeriods": alarm["EvaluationPeriods"],
            "ComparisonOperator": alarm["ComparisonOperator"], "Threshold": alarm["Threshold"],
            "TreatMissingData": alarm.get("TreatMissingData", "missing"),
        },
    }  # fmt: skip


async def notify(app: Any, region: str, alarm: dict[str, Any], old: str) -> None:
    """Publish a state change to the alarm's SNS actions for the new state."""
    if not alarm.get("ActionsEnabled", True):
        return
    member = {"ALARM": "AlarmActions", "OK": "OKActions"}.get(alarm["StateValue"], "InsufficientDataActions")
    message = orjson.dumps(notification(region, app.settings.account_id, alarm, old)).decode()
    subject = f'{alarm["StateValue"]}: "{alarm["AlarmName"]}" in {region}'[:100]
    for arn in alarm.get(member) or []:
        if arn.split(":")[2:3] != ["sns"]:
            log.info("alarm action %s is not an SNS topic; nubes only notifies SNS", arn)
            continue
        try:
            await app.call("sns", "Publish", {"TopicArn": arn, "Message": message, "Subject": subject},
                           region=arn.split(":")[3])  # fmt: skip
        except Exception:
            log.exception("alarm %s could not notify %s", alarm["AlarmName"], arn)


def _lead(txn: Txn, node: str, now: float) -> bool:
    """Hold the evaluator lease: one node of a scale-out cluster evaluates (and notifies)."""
    raw = txn.get(LEASES, b"evaluator")
    lease = orjson.loads(raw) if raw is not None else None
    if lease is not None and lease["node"] != node and lease["until"] > now:
        return False
    txn.put(LEASES, b"evaluator", orjson.dumps({"node": node, "until": now + 3 * INTERVAL_S}))
    return True


def _evaluate_if_leader(txn: Txn, node: str, now: float) -> list[tuple[str, dict[str, Any], str]]:
    return evaluate_all(txn, now) if _lead(txn, node, now) else []


async def evaluate_forever(app: Any) -> None:
    """Evaluate alarms every few seconds, and soon after new metric data."""
    node = uuid.uuid4().hex
    while True:
        woke = await app.bus.wait("cloudwatch:metrics", INTERVAL_S)
        if woke:
            await asyncio.sleep(1.0)  # coalesce bursts of PutMetricData
        try:
            changed = await app.store.write(lambda txn: _evaluate_if_leader(txn, node, time.time()))
            for region, alarm, old in changed:
                await notify(app, region, alarm, old)
        except Exception:
            log.exception("alarm evaluation failed")
