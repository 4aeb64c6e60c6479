"""AWS::Logs::LogGroup — Ref is the group name; GetAtt Arn (``...:log-group:NAME:*``)."""

from __future__ import annotations

from typing import Any

from nubes.aws.errors import AwsError
from nubes.deploy.resources.base import (
    HandlerContext,
    Outcome,
    ResourceHandler,
    as_int,
    ignore_missing,
    tags_map,
)


class LogGroup(ResourceHandler):
    """A CloudWatch Logs log group."""

    type_name = "AWS::Logs::LogGroup"
    attributes = ("Arn",)
    replace_on = frozenset({"LogGroupName"})
    name_property = "LogGroupName"

    def _outcome(self, ctx: HandlerContext, name: str) -> Outcome:
        return Outcome(name, {"Arn": ctx.arn("logs", f"log-group:{name}:*")})

    async def _retention(self, ctx: HandlerContext, name: str, props: dict[str, Any]) -> None:
        if "RetentionInDays" in props:
            await ctx.call("logs", "PutRetentionPolicy", {"logGroupName": name, "retentionInDays": as_int(props["RetentionInDays"])})
        else:
            await ctx.call("logs", "DeleteRetentionPolicy", {"logGroupName": name})

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        name = props.get("LogGroupName") or ctx.physical_name(512)
        params: dict[str, Any] = {"logGroupName": name}
        if props.get("KmsKeyId"):
            params["kmsKeyId"] = props["KmsKeyId"]
        if props.get("Tags"):
            params["tags"] = tags_map(props["Tags"])
        if props.get("LogGroupClass"):
            params["logGroupClass"] = props["LogGroupClass"]
        await ctx.call("logs", "CreateLogGroup", params)
        if "RetentionInDays" in props:
            await self._retention(ctx, name, props)
        return self._outcome(ctx, name)

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        if props.get("RetentionInDays") != old.get("RetentionInDays"):
            await self._retention(ctx, physical_id, props)
        return self._outcome(ctx, physical_id)

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        try:
            await ctx.call("logs", "DeleteLogGroup", {"logGroupName": physical_id})
        except AwsError as exc:
            ignore_missing(exc)


class LogStream(ResourceHandler):
    """A log stream; Ref is its name."""

    type_name = "AWS::Logs::LogStream"
    attributes = ()
    replace_always = True

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        name = props.get("LogStreamName") or ctx.physical_name(512)
        await ctx.call("logs", "CreateLogStream", {"logGroupName": props["LogGroupName"], "logStreamName": name})
        return Outcome(name)

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        try:
            await ctx.call("logs", "DeleteLogStream", {"logGroupName": props.get("LogGroupName", ""), "logStreamName": physical_id})
        except AwsError as exc:
            ignore_missing(exc)


class SubscriptionFilter(ResourceHandler):
    """Delivers a group's matching events to Lambda/Kinesis/Firehose; Ref is the filter name."""

    type_name = "AWS::Logs::SubscriptionFilter"
    attributes = ()
    replace_on = frozenset({"LogGroupName", "FilterName"})
    name_property = "FilterName"

    async def _put(self, ctx: HandlerContext, name: str, props: dict[str, Any]) -> Outcome:
        params: dict[str, Any] = {"logGroupName": props["LogGroupName"], "filterName": name,
                                  "filterPattern": props.get("FilterPattern", ""), "destinationArn": props["DestinationArn"]}
        for key, member in (("RoleArn", "roleArn"), ("Distribution", "distribution")):
            if key in props:
                params[member] = props[key]
        await ctx.call("logs", "PutSubscriptionFilter", params)
        return Outcome(name)

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        return await self._put(ctx, props.get("FilterName") or ctx.physical_name(512), props)

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        return await self._put(ctx, physical_id, props)

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        try:
            await ctx.call("logs", "DeleteSubscriptionFilter", {"logGroupName": props.get("LogGroupName", ""), "filterName": physical_id})
        except AwsError as exc:
            ignore_missing(exc)


class MetricFilter(ResourceHandler):
    """Turns matching log events into CloudWatch metrics; Ref is the filter name."""

    type_name = "AWS::Logs::MetricFilter"
    attributes = ()
    replace_on = frozenset({"LogGroupName", "FilterName"})
    name_property = "FilterName"

    async def _put(self, ctx: HandlerContext, name: str, props: dict[str, Any]) -> Outcome:
        transformations = []
        for item in props.get("MetricTransformations") or []:
            entry = {"metricName": item["MetricName"], "metricNamespace": item["MetricNamespace"], "metricValue": str(item["MetricValue"])}
            if "DefaultValue" in item:
                entry["defaultValue"] = float(item["DefaultValue"])
            if "Unit" in item:
                entry["unit"] = item["Unit"]
            if "Dimensions" in item:
                entry["dimensions"] = {d["Key"]: d["Value"] for d in item["Dimensions"]}
            transformations.append(entry)
        await ctx.call("logs", "PutMetricFilter", {"logGroupName": props["LogGroupName"], "filterName": name,
                                                   "filterPattern": props.get("FilterPattern", ""),
                                                   "metricTransformations": transformations})
        return Outcome(name)

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        return await self._put(ctx, props.get("FilterName") or ctx.physical_name(512), props)

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        return await self._put(ctx, physical_id, props)

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        try:
            await ctx.call("logs", "DeleteMetricFilter", {"logGroupName": props.get("LogGroupName", ""), "filterName": physical_id})
        except AwsError as exc:
            ignore_missing(exc)


HANDLERS = (LogGroup, LogStream, SubscriptionFilter, MetricFilter)
