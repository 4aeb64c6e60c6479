"""Firing schedules and invoking their targets.

A due timer queues one invocation (a durable delivery, retried per the target's
RetryPolicy, then dead-lettered) and moves the schedule to its next run in the
same transaction. One-time schedules and recurring ones past their EndDate are
complete: deleted when ActionAfterCompletion is DELETE.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson

from nubes.aws.errors import AwsError
from nubes.services.events.delivery import enqueue
from nubes.services.events.targets import DeliveryError, call, fast_id, invoke, send_to_queue
from nubes.services.events.timers import set_due
from nubes.services.scheduler import store as st
from nubes.services.scheduler import universal
from nubes.services.scheduler.timing import flexible_delay, next_nominal
from nubes.storage.base import Txn
from nubes.storage.keys import pack

if TYPE_CHECKING:
    from nubes.app import App

UNIVERSAL_PREFIX = universal.PREFIX


def schedule_timer(txn: Txn, region: str, doc: dict[str, Any], now: float, *, first: bool) -> None:
    """Set (or clear) a schedule's timer from its state and expression."""
    item = st.timer_item(region, doc["GroupName"], doc["Name"])
    if doc.get("State") == "DISABLED":
        set_due(txn, st.TIMERS, item, None)
        return
    nominal = next_nominal(doc, now, first=first)
    doc["NextScheduled"] = nominal
    set_due(txn, st.TIMERS, item, None if nominal is None else nominal + flexible_delay(doc))


def fire(txn: Txn, item: str, due: float, now: float, account: str) -> None:
    """One due schedule: queue its invocation, move it to its next run."""
    region, group, name = item.split("/", 2)
    key = pack(region, group, name)
    doc = st.get_json(txn, st.SCHEDULES, key)
    if doc is None or doc.get("State") == "DISABLED":
        return
    scheduled = float(doc.get("NextScheduled") or due)
    target = doc["Target"]
    delivery = {
        "kind": "scheduler", "region": region, "schedule_arn": doc["Arn"], "group": group,
        "target": target, "scheduled": scheduled, "execution_id": fast_id(),
        "created": now, "retry": target.get("RetryPolicy") or {},
        "dlq": (target.get("DeadLetterConfig") or {}).get("Arn"),
    }  # fmt: skip
    enqueue(txn, st.DELIVERIES, delivery, now=now)
    nominal = next_nominal(doc, max(now, scheduled), first=False)
    if nominal is None:
        if doc.get("ActionAfterCompletion") == "DELETE":
            txn.delete(st.SCHEDULES, key)
            return
        doc["NextScheduled"] = None
        st.put_json(txn, st.SCHEDULES, key, doc)
        return
    doc["NextScheduled"] = nominal
    st.put_json(txn, st.SCHEDULES, key, doc)
    set_due(txn, st.TIMERS, item, nominal + flexible_delay(doc))


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def payload_of(doc: dict[str, Any], attempt: int) -> str:
    """The target's Input with the ``<aws.scheduler.*>`` context attributes filled in."""
    text = doc["target"].get("Input")
    if text is None:
        text = "{}"
    values = {
        "<aws.scheduler.schedule-arn>": doc["schedule_arn"],
        "<aws.scheduler.scheduled-time>": _iso(float(doc["scheduled"])),
        "<aws.scheduler.execution-id>": doc["execution_id"],
        "<aws.scheduler.attempt-number>": str(attempt),
    }
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return str(text)


async def deliver(app: App, urls: dict[str, str], doc: dict[str, Any]) -> None:
    """Invoke a schedule's target (the delivery worker's callback)."""
    target = doc["target"]
    payload = payload_of(doc, int(doc.get("_attempt", 1)))
    arn: str = target["Arn"]
    if arn.startswith(UNIVERSAL_PREFIX):
        try:
            params = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise DeliveryError(
                "ValidationException", "Input is not valid JSON", retriable=False
            ) from None
        if not isinstance(params, dict):
            raise DeliveryError(
                "ValidationException", "Input must be a JSON object", retriable=False
            )
        service, operation = universal.resolve(arn)
        try:
            params = universal.coerce(service, operation, params)
        except AwsError as exc:
            raise DeliveryError.from_aws(exc) from None
        await call(app, service, operation, params, doc["region"])
        return
    await invoke(app, target, payload, event_id=doc["execution_id"], urls=urls)


async def dead_letter(
    app: App,
    urls: dict[str, str],
    doc: dict[str, Any],
    error: DeliveryError,
    retries: int,
    exhausted: str | None,
) -> None:
    """Send a failed invocation's payload to the schedule's DLQ with its attributes."""
    dlq = doc.get("dlq")
    if not dlq:
        return
    attempt = int(doc.get("_attempt", retries + 1))
    attributes = {
        "ERROR_CODE": error.code,
        "ERROR_MESSAGE": error.message or error.code,
        "RETRY_ATTEMPTS": str(retries),
        "SCHEDULE_ARN": doc["schedule_arn"],
        "TARGET_ARN": doc["target"]["Arn"],
        "X-Amz-Scheduler-Attempt": str(attempt),
        "X-Amz-Scheduler-Schedule-Arn": doc["schedule_arn"],
        "X-Amz-Scheduler-Target-Arn": doc["target"]["Arn"],
    }
    if exhausted:
        attributes["EXHAUSTED_RETRY_CONDITION"] = exhausted
    await send_to_queue(app, dlq, payload_of(doc, attempt), attributes=attributes, urls=urls)
