"""AWS::DynamoDB::Table — Ref is the table name; GetAtt Arn and StreamArn."""

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
    tags_list,
)


def _throughput(value: dict[str, Any]) -> dict[str, int]:
    return {k: as_int(value[k]) for k in ("ReadCapacityUnits", "WriteCapacityUnits") if k in value}


def _index(index: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {k: index[k] for k in ("IndexName", "KeySchema", "Projection") if k in index}
    if "ProvisionedThroughput" in index:
        out["ProvisionedThroughput"] = _throughput(index["ProvisionedThroughput"])
    return out


def _stream_spec(props: dict[str, Any]) -> dict[str, Any] | None:
    spec = props.get("StreamSpecification")
    if not spec:
        return None
    return {"StreamEnabled": True, "StreamViewType": spec["StreamViewType"]}


class Table(ResourceHandler):
    """A DynamoDB table with indexes, stream, TTL and tags."""

    type_name = "AWS::DynamoDB::Table"
    attributes = ("Arn", "StreamArn")
    replace_on = frozenset({"TableName", "KeySchema", "LocalSecondaryIndexes"})
    name_property = "TableName"

    async def _outcome(self, ctx: HandlerContext, name: str) -> Outcome:
        table = (await ctx.call("dynamodb", "DescribeTable", {"TableName": name}))["Table"]
        attributes = {"Arn": table["TableArn"]}
        if table.get("LatestStreamArn"):
            attributes["StreamArn"] = table["LatestStreamArn"]
        return Outcome(name, attributes)

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        name = props.get("TableName") or ctx.physical_name(255)
        params: dict[str, Any] = {
            "TableName": name,
            "KeySchema": props["KeySchema"],
            "AttributeDefinitions": props.get("AttributeDefinitions", []),
            "BillingMode": props.get("BillingMode", "PROVISIONED"),
        }
        if "ProvisionedThroughput" in props:
            params["ProvisionedThroughput"] = _throughput(props["ProvisionedThroughput"])
        for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            if props.get(key):
                params[key] = [_index(i) for i in props[key]]
        stream = _stream_spec(props)
        if stream:
            params["StreamSpecification"] = stream
        if props.get("SSESpecification"):
            params["SSESpecification"] = props["SSESpecification"]
        if props.get("TableClass"):
            params["TableClass"] = props["TableClass"]
        if "DeletionProtectionEnabled" in props:
            params["DeletionProtectionEnabled"] = as_bool(props["DeletionProtectionEnabled"])
        if props.get("Tags"):
            params["Tags"] = tags_list(props["Tags"])
        await ctx.call("dynamodb", "CreateTable", params)
        await self._ttl(ctx, name, props, {})
        return await self._outcome(ctx, name)

    async def _ttl(self, ctx: HandlerContext, name: str, props: dict[str, Any], old: dict[str, Any]) -> None:
        spec, before = props.get("TimeToLiveSpecification"), old.get("TimeToLiveSpecification")
        if spec == before:
            return
        if spec and as_bool(spec.get("Enabled", False)):
            ttl = {"Enabled": True, "AttributeName": spec["AttributeName"]}
        elif before and as_bool(before.get("Enabled", False)):
            ttl = {"Enabled": False, "AttributeName": before["AttributeName"]}
        else:
            return
        await ctx.call("dynamodb", "UpdateTimeToLive", {"TableName": name, "TimeToLiveSpecification": ttl})

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        params: dict[str, Any] = {"TableName": physical_id}
        if props.get("BillingMode", "PROVISIONED") != old.get("BillingMode", "PROVISIONED"):
            params["BillingMode"] = props.get("BillingMode", "PROVISIONED")
        if props.get("ProvisionedThroughput") != old.get("ProvisionedThroughput") and props.get("ProvisionedThroughput"):
            params["ProvisionedThroughput"] = _throughput(props["ProvisionedThroughput"])
        if _stream_spec(props) != _stream_spec(old):
            params["StreamSpecification"] = _stream_spec(props) or {"StreamEnabled": False}
        updates = self._gsi_updates(props, old)
        if updates:
            params["GlobalSecondaryIndexUpdates"] = updates
            params["AttributeDefinitions"] = props.get("AttributeDefinitions", [])
        if props.get("DeletionProtectionEnabled") != old.get("DeletionProtectionEnabled"):
            params["DeletionProtectionEnabled"] = as_bool(props.get("DeletionProtectionEnabled", False))
        if len(params) > 1:
            await ctx.call("dynamodb", "UpdateTable", params)
        await self._ttl(ctx, physical_id, props, old)
        return await self._outcome(ctx, physical_id)

    def _gsi_updates(self, props: dict[str, Any], old: dict[str, Any]) -> list[dict[str, Any]]:
        new = {i["IndexName"]: i for i in props.get("GlobalSecondaryIndexes") or []}
        before = {i["IndexName"]: i for i in old.get("GlobalSecondaryIndexes") or []}
        updates: list[dict[str, Any]] = [{"Delete": {"IndexName": n}} for n in before if n not in new]
        updates += [{"Create": _index(i)} for n, i in new.items() if n not in before]
        for name, index in new.items():
            if name in before and index != before[name]:
                if index.get("KeySchema") != before[name].get("KeySchema") or index.get("Projection") != before[name].get("Projection"):
                    raise AwsError("ValidationError", f"Cannot update GSI {name}: its KeySchema or Projection changed; rename the index to replace it")
                if "ProvisionedThroughput" in index:
                    updates.append({"Update": {"IndexName": name, "ProvisionedThroughput": _throughput(index["ProvisionedThroughput"])}})
        return updates

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        try:
            await ctx.call("dynamodb", "DeleteTable", {"TableName": physical_id})
        except AwsError as exc:
            ignore_missing(exc)


HANDLERS = (Table,)
