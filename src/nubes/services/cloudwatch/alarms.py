"""Metric alarms: stored, described, set by hand (``SetAlarmState``); tags.

``evaluate`` moves them between OK, ALARM and INSUFFICIENT_DATA from their metrics.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from nubes.services.base import Provider, RequestContext
from nubes.services.cloudwatch.metrics import cw_error
from nubes.storage.base import Txn
from nubes.storage.keys import pack

ALARMS = "cloudwatch.alarms"
_COMPARISONS = ("GreaterThanOrEqualToThreshold", "GreaterThanThreshold", "LessThanThreshold",
                "LessThanOrEqualToThreshold", "LessThanLowerOrGreaterThanUpperThreshold",
                "LessThanLowerThreshold", "GreaterThanUpperThreshold")  # fmt: skip
_STATES = ("OK", "ALARM", "INSUFFICIENT_DATA")


def _public(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if not k.startswith("_")}


class AlarmsMixin(Provider):
    """PutMetricAlarm, DescribeAlarms(ForMetric), DeleteAlarms, SetAlarmState,
    Enable/DisableAlarmActions, Tag/Untag/ListTagsForResource."""

    async def put_metric_alarm(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name: str = params["AlarmName"]
        if params.get("ComparisonOperator") not in _COMPARISONS:
            raise cw_error("ValidationException", "ComparisonOperator is not valid.")
        if not params.get("Metrics") and not params.get("MetricName"):
            raise cw_error("ValidationException", "Either MetricName or Metrics must be specified.")
        if params.get("MetricName") and not (params.get("Statistic") or params.get("ExtendedStatistic")):
            raise cw_error("ValidationException", "Either Statistic or ExtendedStatistic must be specified.")
        now = time.time()
        key = pack(ctx.region, name)

        def write(txn: Txn) -> None:
            raw = txn.get(ALARMS, key)
            old = orjson.loads(raw) if raw is not None else None
            doc = {k: v for k, v in params.items() if k != "Tags" and v is not None}
            doc.update({
                "AlarmArn": ctx.arn("cloudwatch", f"alarm:{name}"), "AlarmConfigurationUpdatedTimestamp": now,
                "ActionsEnabled": params.get("ActionsEnabled", True),
                "StateValue": old["StateValue"] if old else "INSUFFICIENT_DATA",
                "StateReason": old["StateReason"] if old else "Unchecked: Initial alarm creation",
                "StateUpdatedTimestamp": old["StateUpdatedTimestamp"] if old else now,
                "StateTransitionedTimestamp": old.get("StateTransitionedTimestamp", now) if old else now,
                "_tags": {**(old or {}).get("_tags", {}), **{t["Key"]: t["Value"] for t in params.get("Tags") or []}},
            })  # fmt: skip
            for member in ("OKActions", "AlarmActions", "InsufficientDataActions", "Dimensions"):
                doc.setdefault(member, [])
            txn.put(ALARMS, key, orjson.dumps(doc))

        await self.app.store.write(write)
        return {}

    async def _alarms(self, region: str) -> list[dict[str, Any]]:
        rows = await self.app.store.read(lambda txn: txn.scan(ALARMS, prefix=pack(region)))
        return [orjson.loads(v) for _, v in rows]

    async def describe_alarms(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        alarms = await self._alarms(ctx.region)
        names = params.get("AlarmNames")
        prefix = params.get("AlarmNamePrefix")
        if names and prefix:
            raise cw_error("InvalidParameterCombinationException",
                           "AlarmNamePrefix and AlarmNames cannot be specified together.")  # fmt: skip
        selected = [
            a for a in alarms
            if (not names or a["AlarmName"] in names)
            and (not prefix or a["AlarmName"].startswith(prefix))
            and (not params.get("StateValue") or a["StateValue"] == params["StateValue"])
            and (not params.get("ActionPrefix") or any(x.startswith(params["ActionPrefix"])
                                                        for x in a.get("AlarmActions") or []))
        ]  # fmt: skip
        types = params.get("AlarmTypes") or ["MetricAlarm"]
        limit = int(params.get("MaxRecords") or 50)
        offset = int(params["NextToken"]) if str(params.get("NextToken") or "").isdigit() else 0
        page = selected[offset : offset + limit]
        out: dict[str, Any] = {"MetricAlarms": [_public(a) for a in page] if "MetricAlarm" in types else [],
                               "CompositeAlarms": []}  # fmt: skip
        if offset + limit < len(selected):
            out["NextToken"] = str(offset + limit)
        return out

    async def describe_alarms_for_metric(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        alarms = await self._alarms(ctx.region)
        dims = sorted((d["Name"], d["Value"]) for d in params.get("Dimensions") or [])
        found = [
            _public(a) for a in alarms
            if a.get("MetricName") == params["MetricName"] and a.get("Namespace") == params["Namespace"]
            and (not dims or sorted((d["Name"], d["Value"]) for d in a.get("Dimensions") or []) == dims)
            and (not params.get("Statistic") or a.get("Statistic") == params["Statistic"])
        ]  # fmt: skip
        return {"MetricAlarms": found}

    async def delete_alarms(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        names = params["AlarmNames"]

        def write(txn: Txn) -> list[str]:
            missing = [n for n in names if txn.get(ALARMS, pack(ctx.region, n)) is None]
            if missing:
                return missing
            for n in names:
                txn.delete(ALARMS, pack(ctx.region, n))
            return []

        missing = await self.app.store.write(write)
        if missing:
            raise cw_error("ResourceNotFound", f"1 of the alarms you specified ({missing[0]}) does not exist.", 404)
        return {}

    async def _update(self, ctx: RequestContext, name: str, change: Any) -> None:
        key = pack(ctx.region, name)

        def write(txn: Txn) -> bool:
            raw = txn.get(ALARMS, key)
            if raw is None:
                return False
            doc = orjson.loads(raw)
            change(doc)
            txn.put(ALARMS, key, orjson.dumps(doc))
            return True

        if not await self.app.store.write(write):
            raise cw_error("ResourceNotFound", f"Alarm {name} not found", 404)

    async def set_alarm_state(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        state = params["StateValue"]
        if state not in _STATES:
            raise cw_error("ValidationException", f"StateValue {state} is not valid.")
        now = time.time()

        def change(doc: dict[str, Any]) -> None:
            if doc["StateValue"] != state:
                doc["StateTransitionedTimestamp"] = now
            doc.update(StateValue=state, StateReason=params["StateReason"], StateUpdatedTimestamp=now)
            if params.get("StateReasonData"):
                doc["StateReasonData"] = params["StateReasonData"]

        await self._update(ctx, params["AlarmName"], change)
        return {}

    async def enable_alarm_actions(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        for name in params["AlarmNames"]:
            await self._update(ctx, name, lambda d: d.__setitem__("ActionsEnabled", True))
        return {}

    async def disable_alarm_actions(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        for name in params["AlarmNames"]:
            await self._update(ctx, name, lambda d: d.__setitem__("ActionsEnabled", False))
        return {}

    def _alarm_name(self, arn: str) -> str:
        if ":alarm:" not in arn:
            raise cw_error("InvalidParameterValueException", f"Invalid resource ARN: {arn}")
        return arn.split(":alarm:", 1)[1]

    async def tag_resource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        tags = {t["Key"]: t["Value"] for t in params["Tags"]}
        await self._update(ctx, self._alarm_name(params["ResourceARN"]), lambda d: d.setdefault("_tags", {}).update(tags))
        return {}

    async def untag_resource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        def change(doc: dict[str, Any]) -> None:
            for key in params["TagKeys"]:
                doc.setdefault("_tags", {}).pop(key, None)

        await self._update(ctx, self._alarm_name(params["ResourceARN"]), change)
        return {}

    async def list_tags_for_resource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = self._alarm_name(params["ResourceARN"])
        found = [a for a in await self._alarms(ctx.region) if a["AlarmName"] == name]
        if not found:
            raise cw_error("ResourceNotFoundException", f"Alarm {name} not found", 404)
        return {"Tags": [{"Key": k, "Value": v} for k, v in sorted(found[0].get("_tags", {}).items())]}
