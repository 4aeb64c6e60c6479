"""AWS::KMS::Key (Ref: key id; GetAtt Arn, KeyId) and AWS::KMS::Alias (Ref: alias name)."""

from __future__ import annotations

from typing import Any

from nubes.aws.errors import AwsError
from nubes.deploy.resources.base import (
    HandlerContext,
    Outcome,
    ResourceHandler,
    as_bool,
    as_int,
    ignore_missing,
    json_text,
    tags_list,
)


class Key(ResourceHandler):
    """A KMS key. Deleting schedules deletion (PendingWindowInDays, default 30)."""

    type_name = "AWS::KMS::Key"
    attributes = ("Arn", "KeyId")
    replace_on = frozenset({"KeySpec", "KeyUsage", "MultiRegion", "Origin"})

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        params: dict[str, Any] = {}
        for key in ("Description", "KeyUsage", "KeySpec", "Origin", "MultiRegion"):
            if key in props:
                params[key] = props[key]
        if "KeyPolicy" in props:
            params["Policy"] = json_text(props["KeyPolicy"])
        if props.get("Tags"):
            params["Tags"] = [{"TagKey": t["Key"], "TagValue": t["Value"]} for t in tags_list(props["Tags"])]
        meta = (await ctx.call("kms", "CreateKey", params))["KeyMetadata"]
        key_id = meta["KeyId"]
        if "Enabled" in props and not as_bool(props["Enabled"]):
            await ctx.call("kms", "DisableKey", {"KeyId": key_id})
        return Outcome(key_id, {"Arn": meta["Arn"], "KeyId": key_id})

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        if props.get("Description") != old.get("Description"):
            await ctx.call("kms", "UpdateKeyDescription", {"KeyId": physical_id, "Description": props.get("Description", "")})
        if as_bool(props.get("Enabled", True)) != as_bool(old.get("Enabled", True)):
            op = "EnableKey" if as_bool(props.get("Enabled", True)) else "DisableKey"
            await ctx.call("kms", op, {"KeyId": physical_id})
        meta = (await ctx.call("kms", "DescribeKey", {"KeyId": physical_id}))["KeyMetadata"]
        return Outcome(physical_id, {"Arn": meta["Arn"], "KeyId": physical_id})

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        window = as_int(props.get("PendingWindowInDays", 30))
        try:
            await ctx.call("kms", "ScheduleKeyDeletion", {"KeyId": physical_id, "PendingWindowInDays": window})
        except AwsError as exc:
            # an already-pending key counts as deleted
            if exc.code != "KMSInvalidStateException":
                ignore_missing(exc, "NotFoundException")


class Alias(ResourceHandler):
    """A KMS alias; TargetKeyId changes in place."""

    type_name = "AWS::KMS::Alias"
    attributes = ()
    replace_on = frozenset({"AliasName"})
    name_property = "AliasName"

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        await ctx.call("kms", "CreateAlias", {"AliasName": props["AliasName"], "TargetKeyId": props["TargetKeyId"]})
        return Outcome(props["AliasName"])

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        await ctx.call("kms", "UpdateAlias", {"AliasName": physical_id, "TargetKeyId": props["TargetKeyId"]})
        return Outcome(physical_id)

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        try:
            await ctx.call("kms", "DeleteAlias", {"AliasName": physical_id})
        except AwsError as exc:
            ignore_missing(exc, "NotFoundException")


HANDLERS = (Key, Alias)
