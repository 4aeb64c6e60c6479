"""AWS::CloudWatch::Alarm — Ref is the alarm name; GetAtt Arn."""

from __future__ import annotations

from typing import Any

from nubes.aws.errors import AwsError
from nubes.deploy.resources.base import (
    HandlerContext,
    Outcome,
    ResourceHandler,
    ignore_missing,
    tags_list,
)

_KEYS = (
    "AlarmDescription", "ActionsEnabled", "OKActions", "AlarmActions", "InsufficientDataActions",
    "MetricName", "Namespace", "Statistic", "ExtendedStatistic", "Dimensions", "Period", "Unit",
    "EvaluationPeriods", "DatapointsToAlarm", "Threshold", "ComparisonOperator", "TreatMissingData",
    "EvaluateLowSampleCountPercentile", "Metrics", "ThresholdMetricId",
)  # fmt: skip
_NUMBERS = {"Period": int, "EvaluationPeriods": int, "DatapointsToAlarm": int, "Threshold": float}


class Alarm(ResourceHandler):
    """A metric alarm; PutMetricAlarm both creates and updates it."""

    type_name = "AWS::CloudWatch::Alarm"
    attributes = ("Arn",)
    replace_on = frozenset({"AlarmName"})
    name_property = "AlarmName"

    async def _put(self, ctx: HandlerContext, name: str, props: dict[str, Any], tags: bool) -> Outcome:
        params: dict[str, Any] = {"AlarmName": name}
        for key in _KEYS:
            if key in props:
                value = props[key]
                params[key] = _NUMBERS[key](value) if key in _NUMBERS else value
        if tags and props.get("Tags"):
            params["Tags"] = tags_list(props["Tags"])
        await ctx.call("cloudwatch", "PutMetricAlarm", params)
        return Outcome(name, {"Arn": ctx.arn("cloudwatch", f"alarm:{name}")})

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        return await self._put(ctx, props.get("AlarmName") or ctx.physical_name(255), props, True)

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        return await self._put(ctx, physical_id, props, False)

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        try:
            await ctx.call("cloudwatch", "DeleteAlarms", {"AlarmNames": [physical_id]})
        except AwsError as exc:
            ignore_missing(exc)


HANDLERS = (Alarm,)
