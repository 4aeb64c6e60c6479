"""Schedule rules: a durable timer per enabled rule with a ScheduleExpression.

Each tick queues a ``Scheduled Event`` for every target of the rule in the same
transaction that moves the timer to the next tick — once per tick even across
restarts. After downtime a rule fires once for the ticks it missed, then
continues on schedule (no burst), as EventBridge does.
"""

from __future__ import annotations

from typing import Any

from nubes.events.schedule_expressions import ScheduleExpressionError, parse_schedule_expression
from nubes.services.events import store as st
from nubes.services.events.common import iso_time, now
from nubes.services.events.connections import ConnectionOperations
from nubes.services.events.delivery import enqueue
from nubes.services.events.ingest import delivery_docs
from nubes.services.events.targets import fast_id
from nubes.services.events.timers import run_timers, set_due
from nubes.storage.base import Txn
from nubes.storage.keys import pack

TIMERS = "events.schedule"


def _item(region: str, rule: str) -> str:
    return f"{region}/{rule}"


def next_tick(rule: dict[str, Any], after: float) -> float | None:
    """The rule's next fire time after ``after`` (rate: from its creation), or None."""
    import datetime as dt

    try:
        expression = parse_schedule_expression(rule["ScheduleExpression"])
    except (ScheduleExpressionError, KeyError):
        return None
    start = dt.datetime.fromtimestamp(float(rule.get("CreatedAt") or after), dt.UTC)
    moment = dt.datetime.fromtimestamp(after, dt.UTC)
    found = expression.next_fire_time(moment, start=start if expression.kind == "rate" else None)
    return None if found is None else found.timestamp()


class ScheduleOperations(ConnectionOperations):
    """Keeps schedule rules' timers and fires them."""

    def schedule_rule_changed(self, txn: Txn, region: str, rule: dict[str, Any] | None) -> None:
        if rule is None or rule.get("EventBusName", "default") != "default":
            return
        item = _item(region, rule["Name"])
        if rule.get("ScheduleExpression") and rule.get("State", "ENABLED") != "DISABLED":
            set_due(txn, TIMERS, item, next_tick(rule, now()))
        else:
            set_due(txn, TIMERS, item, None)

    def schedules_changed(self) -> None:
        self.app.bus.wake(TIMERS)

    async def run_schedules(self) -> None:
        """The background task that fires schedule rules."""
        await run_timers(self.app, TIMERS, self._fire_rule, self.wake_deliveries)

    def _fire_rule(self, txn: Txn, item: str, due: float, current: float) -> None:
        region, _, name = item.partition("/")
        rule = st.get_json(txn, st.RULES, pack(region, "default", name))
        if rule is None or rule.get("State") == "DISABLED" or not rule.get("ScheduleExpression"):
            return
        event = {
            "version": "0", "id": fast_id(), "detail-type": "Scheduled Event",
            "source": "aws.events", "account": self.account, "time": iso_time(due),
            "region": region, "resources": [rule["Arn"]], "detail": {},
        }  # fmt: skip
        targets = st.targets_of_rule(txn, region, "default", name)
        for doc in delivery_docs(region, rule, targets, event, current):
            enqueue(txn, st.DELIVERIES, doc, now=current)
        set_due(txn, TIMERS, item, next_tick(rule, max(current, due)))
