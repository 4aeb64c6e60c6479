"""AWS::Lambda::EventSourceMapping, Url, EventInvokeConfig and LayerVersion."""

from __future__ import annotations

from typing import Any

from nubes.aws.errors import AwsError
from nubes.deploy.resources.base import HandlerContext, Outcome, ResourceHandler, ignore_missing

_ESM_UPDATABLE = (
    "Enabled", "BatchSize", "MaximumBatchingWindowInSeconds", "FilterCriteria", "DestinationConfig",
    "MaximumRecordAgeInSeconds", "BisectBatchOnFunctionError", "MaximumRetryAttempts",
    "ParallelizationFactor", "FunctionResponseTypes", "ScalingConfig", "TumblingWindowInSeconds",
)  # fmt: skip
_ESM_CREATE = ("EventSourceArn", "FunctionName", "StartingPosition", "StartingPositionTimestamp", "Queues", "Topics")


class EventSourceMapping(ResourceHandler):
    """Ref is the mapping's UUID; GetAtt Id and EventSourceMappingArn."""

    type_name = "AWS::Lambda::EventSourceMapping"
    attributes = ("Id", "EventSourceMappingArn")
    replace_on = frozenset({"EventSourceArn", "StartingPosition", "StartingPositionTimestamp", "Queues", "Topics"})

    def _outcome(self, ctx: HandlerContext, out: dict[str, Any]) -> Outcome:
        uuid = out["UUID"]
        arn = out.get("EventSourceMappingArn") or ctx.arn("lambda", f"event-source-mapping:{uuid}")
        return Outcome(uuid, {"Id": uuid, "EventSourceMappingArn": arn})

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        params = {k: props[k] for k in (*_ESM_CREATE, *_ESM_UPDATABLE) if k in props}
        return self._outcome(ctx, await ctx.call("lambda", "CreateEventSourceMapping", params))

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        params = {k: props[k] for k in _ESM_UPDATABLE if k in props}
        params["UUID"] = physical_id
        if props.get("FunctionName") != old.get("FunctionName"):
            params["FunctionName"] = props["FunctionName"]
        return self._outcome(ctx, await ctx.call("lambda", "UpdateEventSourceMapping", params))

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        try:
            await ctx.call("lambda", "DeleteEventSourceMapping", {"UUID": physical_id})
        except AwsError as exc:
            ignore_missing(exc)


class Url(ResourceHandler):
    """A function URL; Ref and GetAtt FunctionArn, GetAtt FunctionUrl."""

    type_name = "AWS::Lambda::Url"
    attributes = ("FunctionArn", "FunctionUrl")
    replace_on = frozenset({"TargetFunctionArn", "Qualifier"})

    def _params(self, props: dict[str, Any]) -> dict[str, Any]:
        params: dict[str, Any] = {"FunctionName": props["TargetFunctionArn"]}
        for key in ("Qualifier", "AuthType", "Cors", "InvokeMode"):
            if key in props:
                params[key] = props[key]
        return params

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        out = await ctx.call("lambda", "CreateFunctionUrlConfig", self._params(props))
        return Outcome(out["FunctionArn"], {"FunctionArn": out["FunctionArn"], "FunctionUrl": out["FunctionUrl"]})

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        out = await ctx.call("lambda", "UpdateFunctionUrlConfig", self._params(props))
        return Outcome(out["FunctionArn"], {"FunctionArn": out["FunctionArn"], "FunctionUrl": out["FunctionUrl"]})

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        params = {k: v for k, v in self._params(props).items() if k in ("FunctionName", "Qualifier")}
        try:
            await ctx.call("lambda", "DeleteFunctionUrlConfig", params)
        except AwsError as exc:
            ignore_missing(exc)


class EventInvokeConfig(ResourceHandler):
    """Asynchronous invocation settings of a function (or a qualifier)."""

    type_name = "AWS::Lambda::EventInvokeConfig"
    attributes = ()
    replace_on = frozenset({"FunctionName", "Qualifier"})

    def _params(self, props: dict[str, Any]) -> dict[str, Any]:
        keys = ("FunctionName", "Qualifier", "MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig")
        return {k: props[k] for k in keys if k in props}

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        await ctx.call("lambda", "PutFunctionEventInvokeConfig", self._params(props))
        return Outcome(f"{props['FunctionName']}|{props.get('Qualifier', '$LATEST')}")

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        await ctx.call("lambda", "PutFunctionEventInvokeConfig", self._params(props))
        return Outcome(physical_id)

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        params = {k: v for k, v in self._params(props).items() if k in ("FunctionName", "Qualifier")}
        try:
            await ctx.call("lambda", "DeleteFunctionEventInvokeConfig", params)
        except AwsError as exc:
            ignore_missing(exc)


class LayerVersion(ResourceHandler):
    """A layer version; Ref is its ARN. Every change publishes a new one."""

    type_name = "AWS::Lambda::LayerVersion"
    attributes = ("LayerVersionArn",)
    replace_always = True

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        params: dict[str, Any] = {
            "LayerName": props.get("LayerName") or f"{ctx.stack_name}-{ctx.logical_id}"[:140],
            "Content": {k: v for k, v in (props.get("Content") or {}).items() if k in ("S3Bucket", "S3Key", "S3ObjectVersion")},
        }
        for key in ("Description", "CompatibleRuntimes", "CompatibleArchitectures", "LicenseInfo"):
            if key in props:
                params[key] = props[key]
        out = await ctx.call("lambda", "PublishLayerVersion", params)
        arn = out["LayerVersionArn"]
        return Outcome(arn, {"LayerVersionArn": arn})

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        layer, _, version = physical_id.rpartition(":")
        try:
            await ctx.call("lambda", "DeleteLayerVersion", {"LayerName": layer.rsplit(":", 1)[-1], "VersionNumber": int(version)})
        except (AwsError, ValueError) as exc:
            if isinstance(exc, AwsError):
                ignore_missing(exc)


HANDLERS = (EventSourceMapping, Url, EventInvokeConfig, LayerVersion)
