"""AWS::Scheduler::Schedule (Ref: name; GetAtt Arn) and ScheduleGroup (Ref: name;
GetAtt Arn, CreationDate, LastModificationDate, State)."""

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

_SCHEDULE = ("ScheduleExpression", "ScheduleExpressionTimezone", "FlexibleTimeWindow", "Target", "State",
             "Description", "StartDate", "EndDate", "KmsKeyArn", "ActionAfterCompletion", "GroupName")


class Schedule(ResourceHandler):
    """An EventBridge Scheduler schedule; everything but the name changes in place."""

    type_name = "AWS::Scheduler::Schedule"
    attributes = ("Arn",)
    replace_on = frozenset({"Name", "GroupName"})
    name_property = "Name"

    def _params(self, name: str, props: dict[str, Any]) -> dict[str, Any]:
        return {"Name": name, **{k: props[k] for k in _SCHEDULE if k in props}}

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        name = props.get("Name") or ctx.physical_name(64)
        out = await ctx.call("scheduler", "CreateSchedule", self._params(name, props))
        return Outcome(name, {"Arn": out["ScheduleArn"]})

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        out = await ctx.call("scheduler", "UpdateSchedule", self._params(physical_id, props))
        return Outcome(physical_id, {"Arn": out["ScheduleArn"]})

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        params = {"Name": physical_id}
        if props.get("GroupName"):
            params["GroupName"] = props["GroupName"]
        try:
            await ctx.call("scheduler", "DeleteSchedule", params)
        except AwsError as exc:
            ignore_missing(exc)


class ScheduleGroup(ResourceHandler):
    """A schedule group."""

    type_name = "AWS::Scheduler::ScheduleGroup"
    attributes = ("Arn", "CreationDate", "LastModificationDate", "State")
    replace_on = frozenset({"Name"})
    name_property = "Name"

    async def _outcome(self, ctx: HandlerContext, name: str) -> Outcome:
        group = await ctx.call("scheduler", "GetScheduleGroup", {"Name": name})
        return Outcome(name, {"Arn": group["Arn"], "State": group.get("State", "ACTIVE"),
                              "CreationDate": str(group.get("CreationDate", "")),
                              "LastModificationDate": str(group.get("LastModificationDate", ""))})

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        name = props.get("Name") or ctx.physical_name(64)
        params: dict[str, Any] = {"Name": name}
        if props.get("Tags"):
            params["Tags"] = tags_list(props["Tags"])
        await ctx.call("scheduler", "CreateScheduleGroup", params)
        return await self._outcome(ctx, name)

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        return await self._outcome(ctx, physical_id)

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        try:
            await ctx.call("scheduler", "DeleteScheduleGroup", {"Name": physical_id})
        except AwsError as exc:
            ignore_missing(exc)


HANDLERS = (Schedule, ScheduleGroup)
