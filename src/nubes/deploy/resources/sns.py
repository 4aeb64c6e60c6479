"""AWS::SNS::Topic (Ref: topic ARN; GetAtt TopicArn, TopicName), Subscription
(Ref: subscription ARN) and TopicPolicy."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from nubes.aws.errors import AwsError
from nubes.deploy.resources.base import (
    HandlerContext,
    Outcome,
    ResourceHandler,
    as_bool,
    ignore_missing,
    json_text,
    tags_list,
)

_TOPIC_ATTRIBUTES = ("DisplayName", "KmsMasterKeyId", "ContentBasedDeduplication", "SignatureVersion",
                     "TracingConfig", "DeliveryStatusLogging", "FifoThroughputScope")
_SUBSCRIPTION_ATTRIBUTES = ("DeliveryPolicy", "FilterPolicy", "FilterPolicyScope", "RawMessageDelivery",
                            "RedrivePolicy", "SubscriptionRoleArn", "ReplayPolicy")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


class Topic(ResourceHandler):
    """An SNS topic, with the inline ``Subscription`` list."""

    type_name = "AWS::SNS::Topic"
    attributes = ("TopicArn", "TopicName")
    replace_on = frozenset({"TopicName", "FifoTopic"})
    name_property = "TopicName"

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        fifo = as_bool(props.get("FifoTopic", False))
        name = props.get("TopicName") or ctx.physical_name(256, suffix=".fifo" if fifo else "")
        attributes = {k: _text(props[k]) for k in _TOPIC_ATTRIBUTES if k in props}
        if fifo:
            attributes["FifoTopic"] = "true"
        params: dict[str, Any] = {"Name": name, "Attributes": attributes}
        if props.get("Tags"):
            params["Tags"] = tags_list(props["Tags"])
        arn = (await ctx.call("sns", "CreateTopic", params))["TopicArn"]
        for sub in props.get("Subscription") or []:
            await ctx.call("sns", "Subscribe", {"TopicArn": arn, "Protocol": sub["Protocol"], "Endpoint": sub["Endpoint"]})
        return Outcome(arn, {"TopicArn": arn, "TopicName": name})

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        for key in _TOPIC_ATTRIBUTES:
            if props.get(key) != old.get(key):
                await ctx.call("sns", "SetTopicAttributes", {"TopicArn": physical_id, "AttributeName": key, "AttributeValue": _text(props.get(key, ""))})
        before = {(s["Protocol"], s["Endpoint"]) for s in old.get("Subscription") or []}
        after = {(s["Protocol"], s["Endpoint"]) for s in props.get("Subscription") or []}
        for protocol, endpoint in after - before:
            await ctx.call("sns", "Subscribe", {"TopicArn": physical_id, "Protocol": protocol, "Endpoint": endpoint})
        if before - after:
            listed = await ctx.call("sns", "ListSubscriptionsByTopic", {"TopicArn": physical_id})
            for sub in listed.get("Subscriptions", []):
                if (sub["Protocol"], sub["Endpoint"]) in before - after:
                    await ctx.call("sns", "Unsubscribe", {"SubscriptionArn": sub["SubscriptionArn"]})
        return Outcome(physical_id, {"TopicArn": physical_id, "TopicName": physical_id.rsplit(":", 1)[-1]})

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        try:
            await ctx.call("sns", "DeleteTopic", {"TopicArn": physical_id})
        except AwsError as exc:
            ignore_missing(exc)


class Subscription(ResourceHandler):
    """One subscription; attributes change in place."""

    type_name = "AWS::SNS::Subscription"
    attributes = ("Arn",)
    replace_on = frozenset({"TopicArn", "Protocol", "Endpoint"})

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        attributes = {k: _text(props[k]) for k in _SUBSCRIPTION_ATTRIBUTES if k in props}
        params: dict[str, Any] = {"TopicArn": props["TopicArn"], "Protocol": props["Protocol"],
                                  "Attributes": attributes, "ReturnSubscriptionArn": True}
        if "Endpoint" in props:
            params["Endpoint"] = props["Endpoint"]
        arn = (await ctx.call("sns", "Subscribe", params))["SubscriptionArn"]
        return Outcome(arn, {"Arn": arn})

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        for key in _SUBSCRIPTION_ATTRIBUTES:
            if props.get(key) != old.get(key):
                await ctx.call("sns", "SetSubscriptionAttributes", {"SubscriptionArn": physical_id, "AttributeName": key, "AttributeValue": _text(props.get(key, ""))})
        return Outcome(physical_id, {"Arn": physical_id})

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        try:
            await ctx.call("sns", "Unsubscribe", {"SubscriptionArn": physical_id})
        except AwsError as exc:
            ignore_missing(exc)


class TopicPolicy(ResourceHandler):
    """Sets the ``Policy`` attribute of each topic in ``Topics``."""

    type_name = "AWS::SNS::TopicPolicy"
    attributes: ClassVar[tuple[str, ...] | None] = ("Id",)

    async def _apply(self, ctx: HandlerContext, topics: list[str], policy: str) -> None:
        for arn in topics:
            await ctx.call("sns", "SetTopicAttributes", {"TopicArn": arn, "AttributeName": "Policy", "AttributeValue": policy})

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        await self._apply(ctx, list(props["Topics"]), json_text(props["PolicyDocument"]))
        physical = f"{ctx.stack_name}-{ctx.logical_id}"
        return Outcome(physical, {"Id": physical})

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        await self._apply(ctx, list(props["Topics"]), json_text(props["PolicyDocument"]))
        return Outcome(physical_id, {"Id": physical_id})

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        # Topics go back to their default policy; a deleted topic needs nothing.
        for arn in props.get("Topics", []):
            try:
                await ctx.call("sns", "SetTopicAttributes", {"TopicArn": arn, "AttributeName": "Policy", "AttributeValue": ""})
            except AwsError as exc:
                ignore_missing(exc)


class TopicInlinePolicy(TopicPolicy):
    """The policy of one topic (``TopicArn``)."""

    type_name = "AWS::SNS::TopicInlinePolicy"
    attributes = ()
    replace_on = frozenset({"TopicArn"})

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        return await super().create(ctx, {"Topics": [props["TopicArn"]], "PolicyDocument": props["PolicyDocument"]})

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        return await self.create(ctx, props)

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        await super().delete(ctx, physical_id, {"Topics": [props.get("TopicArn", "")]})


HANDLERS = (Topic, Subscription, TopicPolicy, TopicInlinePolicy)
