"""AWS::Events::Rule (Ref: rule name, ``bus|rule`` on a custom bus; GetAtt Arn),
EventBus (Ref: name; GetAtt Arn, Name) and Archive (Ref: name; GetAtt Arn)."""

from __future__ import annotations

from typing import Any

from nubes.aws.errors import AwsError
from nubes.deploy.resources.base import (
    HandlerContext,
    Outcome,
    ResourceHandler,
    as_int,
    ignore_missing,
    json_text,
    tags_list,
)


def _bus(props: dict[str, Any]) -> str:
    bus = str(props.get("EventBusName") or "default")
    # EventBusName may be given as an ARN.
    return bus.rsplit("/", 1)[-1] if bus.startswith("arn:") else bus


class Rule(ResourceHandler):
    """A rule with its targets."""

    type_name = "AWS::Events::Rule"
    attributes = ("Arn",)
    replace_on = frozenset({"Name", "EventBusName"})
    name_property = "Name"

    async def _put(self, ctx: HandlerContext, name: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        bus = _bus(props)
        params: dict[str, Any] = {"Name": name, "EventBusName": bus, "State": props.get("State", "ENABLED")}
        if "EventPattern" in props:
            params["EventPattern"] = json_text(props["EventPattern"])
        for key in ("ScheduleExpression", "Description", "RoleArn"):
            if key in props:
                params[key] = props[key]
        if props.get("Tags") and not old:
            params["Tags"] = tags_list(props["Tags"])
        arn = (await ctx.call("events", "PutRule", params))["RuleArn"]
        targets = [dict(t) for t in props.get("Targets") or []]
        stale = [t["Id"] for t in old.get("Targets") or [] if t["Id"] not in {n["Id"] for n in targets}]
        if stale:
            await ctx.call("events", "RemoveTargets", {"Rule": name, "EventBusName": bus, "Ids": stale})
        for target in targets:
            if isinstance(target.get("Input"), dict):
                target["Input"] = json_text(target["Input"])
        if targets:
            result = await ctx.call("events", "PutTargets", {"Rule": name, "EventBusName": bus, "Targets": targets})
            if result.get("FailedEntryCount"):
                failed = result["FailedEntries"][0]
                raise AwsError("InvalidRequest", f"{failed.get('ErrorCode')}: {failed.get('ErrorMessage')}")
        physical = name if bus == "default" else f"{bus}|{name}"
        return Outcome(physical, {"Arn": arn})

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        return await self._put(ctx, props.get("Name") or ctx.physical_name(64), props, {})

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        return await self._put(ctx, physical_id.rsplit("|", 1)[-1], props, old)

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        bus, name = _bus(props), physical_id.rsplit("|", 1)[-1]
        try:
            ids = [t["Id"] for t in props.get("Targets") or []]
            if ids:
                await ctx.call("events", "RemoveTargets", {"Rule": name, "EventBusName": bus, "Ids": ids, "Force": True})
            await ctx.call("events", "DeleteRule", {"Name": name, "EventBusName": bus, "Force": True})
        except AwsError as exc:
            ignore_missing(exc)


class EventBus(ResourceHandler):
    """A custom event bus."""

    type_name = "AWS::Events::EventBus"
    attributes = ("Arn", "Name", "Policy")
    replace_on = frozenset({"Name", "EventSourceName"})
    name_property = "Name"

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        params: dict[str, Any] = {"Name": props["Name"]}
        for key in ("EventSourceName", "Description", "KmsKeyIdentifier", "DeadLetterConfig"):
            if key in props:
                params[key] = props[key]
        if props.get("Tags"):
            params["Tags"] = tags_list(props["Tags"])
        arn = (await ctx.call("events", "CreateEventBus", params))["EventBusArn"]
        if props.get("Policy"):
            await ctx.call("events", "PutPermission", {"EventBusName": props["Name"], "Policy": json_text(props["Policy"])})
        return Outcome(props["Name"], {"Arn": arn, "Name": props["Name"], "Policy": json_text(props.get("Policy") or "")})

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        params: dict[str, Any] = {k: props[k] for k in ("Description", "KmsKeyIdentifier", "DeadLetterConfig") if k in props}
        described = await ctx.call("events", "UpdateEventBus", {"Name": physical_id, **params})
        if props.get("Policy") != old.get("Policy") and props.get("Policy"):
            await ctx.call("events", "PutPermission", {"EventBusName": physical_id, "Policy": json_text(props["Policy"])})
        return Outcome(physical_id, {"Arn": described.get("Arn", ctx.arn("events", f"event-bus/{physical_id}")),
                                     "Name": physical_id, "Policy": json_text(props.get("Policy") or "")})

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        try:
            await ctx.call("events", "DeleteEventBus", {"Name": physical_id})
        except AwsError as exc:
            ignore_missing(exc)


class Archive(ResourceHandler):
    """An event archive on a bus."""

    type_name = "AWS::Events::Archive"
    attributes = ("Arn",)
    replace_on = frozenset({"ArchiveName", "SourceArn"})
    name_property = "ArchiveName"

    def _params(self, props: dict[str, Any]) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if "EventPattern" in props:
            params["EventPattern"] = json_text(props["EventPattern"])
        if "RetentionDays" in props:
            params["RetentionDays"] = as_int(props["RetentionDays"])
        if "Description" in props:
            params["Description"] = props["Description"]
        return params

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        name = props.get("ArchiveName") or ctx.physical_name(48)
        out = await ctx.call("events", "CreateArchive", {"ArchiveName": name, "EventSourceArn": props["SourceArn"], **self._params(props)})
        return Outcome(name, {"Arn": out["ArchiveArn"]})

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        out = await ctx.call("events", "UpdateArchive", {"ArchiveName": physical_id, **self._params(props)})
        return Outcome(physical_id, {"Arn": out["ArchiveArn"]})

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        try:
            await ctx.call("events", "DeleteArchive", {"ArchiveName": physical_id})
        except AwsError as exc:
            ignore_missing(exc)


HANDLERS = (Rule, EventBus, Archive)
