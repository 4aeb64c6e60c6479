"""Rules and their targets; TestEventPattern."""

from __future__ import annotations

import re
from typing import Any

import orjson

from nubes.aws.errors import AwsError
from nubes.events.patterns import PatternError, compile_pattern, matches
from nubes.events.schedule_expressions import ScheduleExpressionError, parse_schedule_expression
from nubes.services.base import RequestContext
from nubes.services.events import store as st
from nubes.services.events.common import (
    bus_name,
    bus_not_found,
    check_rule_name,
    now,
    paginate,
    rule_arn,
    rule_not_found,
    validation,
)
from nubes.services.events.core import EventsBase
from nubes.services.events.transform import check_target_input
from nubes.storage.base import Txn
from nubes.storage.keys import pack, unpack

MAX_TARGETS_PER_RULE = 5
_TARGET_ID = re.compile(r"[.\-_A-Za-z0-9]{1,64}")
_RULE_FIELDS = (
    "Name", "Arn", "EventPattern", "ScheduleExpression", "State", "Description", "RoleArn",
    "ManagedBy", "EventBusName", "CreatedBy",
)  # fmt: skip
_EVENT_FIELDS = ("id", "account", "source", "time", "region", "detail-type")


def invalid_pattern(error: PatternError) -> AwsError:
    return AwsError(
        "InvalidEventPatternException", f"Event pattern is not valid. Reason: {error.reason}", 400
    )


def check_pattern(pattern: str) -> None:
    """InvalidEventPatternException unless ``pattern`` is a valid event pattern."""
    try:
        compile_pattern(pattern)
    except PatternError as exc:
        raise invalid_pattern(exc) from None


def rule_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: doc[k] for k in _RULE_FIELDS if doc.get(k) is not None}


class RuleOperations(EventsBase):
    """PutRule ... ListRuleNamesByTarget, TestEventPattern."""

    async def put_rule(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = params["Name"]
        check_rule_name(name)
        bus = bus_name(params.get("EventBusName"))
        pattern, schedule = params.get("EventPattern"), params.get("ScheduleExpression")
        if not pattern and not schedule:
            raise validation("Parameter(s) EventPattern or ScheduleExpression must be specified.")
        if pattern:
            check_pattern(pattern)
        if schedule:
            if bus != "default":
                raise validation("ScheduleExpression is supported only on the default event bus.")
            try:
                parse_schedule_expression(schedule)
            except ScheduleExpressionError as exc:
                raise validation(str(exc)) from None
        state = params.get("State") or "ENABLED"
        arn = rule_arn(ctx.region, self.account, bus, name)
        tags = {t["Key"]: t["Value"] for t in params.get("Tags") or []}

        def put(txn: Txn) -> bool:
            if st.get_bus(txn, ctx.region, self.account, bus) is None:
                return False
            key = pack(ctx.region, bus, name)
            old = st.get_json(txn, st.RULES, key) or {}
            doc: dict[str, Any] = {
                "Name": name, "Arn": arn, "State": state, "EventBusName": bus,
                "CreatedBy": self.account, "CreatedAt": old.get("CreatedAt") or now(),
            }  # fmt: skip
            for field in ("EventPattern", "ScheduleExpression", "Description", "RoleArn"):
                if params.get(field):
                    doc[field] = params[field]
            st.put_json(txn, st.RULES, key, doc)
            if tags:
                st.put_tags(txn, arn, {**st.get_tags(txn, arn), **tags})
            st.bump_generation(txn, ctx.region, self.account, bus)
            self.schedule_rule_changed(txn, ctx.region, doc)
            return True

        if not await self.write(put):
            raise bus_not_found(bus)
        self.schedules_changed()
        return {"RuleArn": arn}

    def schedule_rule_changed(self, txn: Txn, region: str, rule: dict[str, Any] | None) -> None:
        """Hook: keep the schedule timer of a rule in step (see ``schedules``)."""

    def schedules_changed(self) -> None:
        """Hook: wake the schedule runner."""

    async def _rule(self, region: str, bus: str, name: str) -> dict[str, Any]:
        def get(txn: Txn) -> dict[str, Any] | bool | None:
            if st.get_bus(txn, region, self.account, bus) is None:
                return False
            return st.get_json(txn, st.RULES, pack(region, bus, name))

        doc = await self.read(get)
        if doc is False:
            raise bus_not_found(bus)
        if not isinstance(doc, dict):
            raise rule_not_found(name, bus)
        return doc

    async def describe_rule(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bus = bus_name(params.get("EventBusName"))
        return rule_view(await self._rule(ctx.region, bus, params["Name"]))

    async def list_rules(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bus = bus_name(params.get("EventBusName"))
        prefix = params.get("NamePrefix") or ""

        def scan(txn: Txn) -> list[dict[str, Any]] | None:
            if st.get_bus(txn, ctx.region, self.account, bus) is None:
                return None
            return [
                r for r in st.rules_of_bus(txn, ctx.region, bus) if r["Name"].startswith(prefix)
            ]

        rules = await self.read(scan)
        if rules is None:
            raise bus_not_found(bus)
        page, token = paginate(rules, params, lambda r: str(r["Name"]))
        out: dict[str, Any] = {"Rules": [rule_view(r) for r in page]}
        if token:
            out["NextToken"] = token
        return out

    async def delete_rule(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bus = bus_name(params.get("EventBusName"))
        name = params["Name"]

        def delete(txn: Txn) -> str:
            key = pack(ctx.region, bus, name)
            doc = st.get_json(txn, st.RULES, key)
            if doc is None:
                return ""
            if txn.count(st.TARGETS, prefix=key):
                return "targets"
            txn.delete(st.RULES, key)
            st.put_tags(txn, doc["Arn"], {})
            st.bump_generation(txn, ctx.region, self.account, bus)
            doc["State"] = "DISABLED"
            self.schedule_rule_changed(txn, ctx.region, doc)
            return ""

        if await self.write(delete) == "targets":
            raise validation("Rule can't be deleted since it has targets.")
        return {}

    async def _set_state(self, ctx: RequestContext, params: dict[str, Any], state: str) -> None:
        bus = bus_name(params.get("EventBusName"))
        name = params["Name"]

        def update(txn: Txn) -> bool:
            key = pack(ctx.region, bus, name)
            doc = st.get_json(txn, st.RULES, key)
            if doc is None:
                return False
            doc["State"] = state
            st.put_json(txn, st.RULES, key, doc)
            st.bump_generation(txn, ctx.region, self.account, bus)
            self.schedule_rule_changed(txn, ctx.region, doc)
            return True

        if not await self.write(update):
            raise rule_not_found(name, bus)
        self.schedules_changed()

    async def enable_rule(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self._set_state(ctx, params, "ENABLED")
        return {}

    async def disable_rule(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self._set_state(ctx, params, "DISABLED")
        return {}

    # -- targets -------------------------------------------------------------------

    async def put_targets(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bus = bus_name(params.get("EventBusName"))
        name = params["Rule"]
        targets: list[dict[str, Any]] = params.get("Targets") or []
        for target in targets:
            if not _TARGET_ID.fullmatch(str(target.get("Id", ""))):
                raise validation(f"Parameter Id is not valid for target {target.get('Id')}.")
            if not str(target.get("Arn", "")).startswith("arn:"):
                raise validation(
                    f"Parameter {target.get('Arn')} is not valid. Reason: Provided Arn is not in correct format."
                )
            check_target_input(target)
            arn = str(target["Arn"])
            fifo = arn.startswith("arn:aws:sqs:") and arn.endswith(".fifo")
            if fifo and not (target.get("SqsParameters") or {}).get("MessageGroupId"):
                raise validation(
                    f"Parameter(s) SqsParameters must be specified for target: {target['Id']}."
                )
        if len({t["Id"] for t in targets}) != len(targets):
            raise validation("Target ids must be unique within a PutTargets request.")

        def put(txn: Txn) -> str:
            if st.get_bus(txn, ctx.region, self.account, bus) is None:
                return "bus"
            rule_key = pack(ctx.region, bus, name)
            if txn.get(st.RULES, rule_key) is None:
                return "rule"
            existing = {t["Id"] for t in st.targets_of_rule(txn, ctx.region, bus, name)}
            if len(existing | {t["Id"] for t in targets}) > MAX_TARGETS_PER_RULE:
                return "limit"
            for target in targets:
                st.put_json(txn, st.TARGETS, pack(ctx.region, bus, name, target["Id"]), target)
            st.bump_generation(txn, ctx.region, self.account, bus)
            return ""

        problem = await self.write(put)
        if problem == "bus":
            raise bus_not_found(bus)
        if problem == "rule":
            raise rule_not_found(name, bus)
        if problem == "limit":
            raise AwsError(
                "LimitExceededException",
                f"The requested resource exceeds the maximum number allowed. Limit: {MAX_TARGETS_PER_RULE}",
                400,
            )
        return {"FailedEntryCount": 0, "FailedEntries": []}

    async def remove_targets(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bus = bus_name(params.get("EventBusName"))
        name = params["Rule"]
        ids: list[str] = params.get("Ids") or []

        def remove(txn: Txn) -> bool:
            if txn.get(st.RULES, pack(ctx.region, bus, name)) is None:
                return False
            for target_id in ids:
                txn.delete(st.TARGETS, pack(ctx.region, bus, name, target_id))
            st.bump_generation(txn, ctx.region, self.account, bus)
            return True

        if not await self.write(remove):
            raise rule_not_found(name, bus)
        return {"FailedEntryCount": 0, "FailedEntries": []}

    async def list_targets_by_rule(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        bus = bus_name(params.get("EventBusName"))
        name = params["Rule"]
        await self._rule(ctx.region, bus, name)
        targets = await self.read(lambda txn: st.targets_of_rule(txn, ctx.region, bus, name))
        page, token = paginate(targets, params, lambda t: str(t["Id"]))
        out: dict[str, Any] = {"Targets": page}
        if token:
            out["NextToken"] = token
        return out

    async def list_rule_names_by_target(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        bus = bus_name(params.get("EventBusName"))
        arn = params["TargetArn"]

        def scan(txn: Txn) -> list[str]:
            # the rule name is part of the target's key, not of its document
            found = {
                str(unpack(key)[2])
                for key, raw in txn.scan(st.TARGETS, prefix=pack(ctx.region, bus))
                if orjson.loads(raw).get("Arn") == arn
            }
            return sorted(found)

        names = await self.read(scan)
        page, token = paginate(names, params, lambda n: n)
        out: dict[str, Any] = {"RuleNames": page}
        if token:
            out["NextToken"] = token
        return out

    async def test_event_pattern(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        pattern = params["EventPattern"]
        try:
            event = orjson.loads(params["Event"])
        except orjson.JSONDecodeError:
            raise validation("Parameter Event is not valid.") from None
        if not isinstance(event, dict) or any(f not in event for f in _EVENT_FIELDS):
            raise validation("Parameter Event is not valid.")
        try:
            return {"Result": matches(pattern, event)}
        except PatternError as exc:
            raise invalid_pattern(exc) from None
