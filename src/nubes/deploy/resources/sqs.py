"""AWS::SQS::Queue (Ref: queue URL; GetAtt Arn, QueueName, QueueUrl) and
AWS::SQS::QueuePolicy."""

from __future__ import annotations

from typing import Any

from nubes.aws.errors import AwsError
from nubes.deploy.resources.base import (
    HandlerContext,
    Outcome,
    ResourceHandler,
    as_bool,
    ignore_missing,
    json_text,
    tags_map,
)

_ATTRIBUTES = (
    "DelaySeconds", "MaximumMessageSize", "MessageRetentionPeriod", "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout", "RedrivePolicy", "RedriveAllowPolicy", "ContentBasedDeduplication",
    "KmsMasterKeyId", "KmsDataKeyReusePeriodSeconds", "SqsManagedSseEnabled", "DeduplicationScope",
    "FifoThroughputLimit",
)  # fmt: skip
#: what SQS resets an attribute to when the template drops it
_DEFAULTS = {
    "DelaySeconds": "0", "MaximumMessageSize": "262144", "MessageRetentionPeriod": "345600",
    "ReceiveMessageWaitTimeSeconds": "0", "VisibilityTimeout": "30", "RedrivePolicy": "",
}  # fmt: skip


def _attribute_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json_text(value)
    return str(value)


def _queue_name(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


class Queue(ResourceHandler):
    """An SQS queue (standard or FIFO)."""

    type_name = "AWS::SQS::Queue"
    attributes = ("Arn", "QueueName", "QueueUrl")
    replace_on = frozenset({"QueueName", "FifoQueue"})
    name_property = "QueueName"

    def _outcome(self, ctx: HandlerContext, url: str) -> Outcome:
        name = _queue_name(url)
        return Outcome(url, {"Arn": ctx.arn("sqs", name), "QueueName": name, "QueueUrl": url})

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        fifo = as_bool(props.get("FifoQueue", False))
        name = props.get("QueueName") or ctx.physical_name(80, suffix=".fifo" if fifo else "")
        attributes = {k: _attribute_text(props[k]) for k in _ATTRIBUTES if k in props}
        if fifo:
            attributes["FifoQueue"] = "true"
        params: dict[str, Any] = {"QueueName": name, "Attributes": attributes}
        if props.get("Tags"):
            params["tags"] = tags_map(props["Tags"])
        url = (await ctx.call("sqs", "CreateQueue", params))["QueueUrl"]
        return self._outcome(ctx, url)

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        attributes: dict[str, str] = {}
        for key in _ATTRIBUTES:
            if props.get(key) != old.get(key):
                if key in props:
                    attributes[key] = _attribute_text(props[key])
                elif key in _DEFAULTS:
                    attributes[key] = _DEFAULTS[key]
        if attributes:
            await ctx.call("sqs", "SetQueueAttributes", {"QueueUrl": physical_id, "Attributes": attributes})
        return self._outcome(ctx, physical_id)

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        try:
            await ctx.call("sqs", "DeleteQueue", {"QueueUrl": physical_id})
        except AwsError as exc:
            ignore_missing(exc, "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")


class QueuePolicy(ResourceHandler):
    """Sets the ``Policy`` attribute of each queue in ``Queues`` (URLs)."""

    type_name = "AWS::SQS::QueuePolicy"
    attributes = ("Id",)

    async def _apply(self, ctx: HandlerContext, queues: list[str], policy: str) -> None:
        for url in queues:
            await ctx.call("sqs", "SetQueueAttributes", {"QueueUrl": url, "Attributes": {"Policy": policy}})

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        await self._apply(ctx, list(props["Queues"]), json_text(props["PolicyDocument"]))
        physical = f"{ctx.stack_name}-{ctx.logical_id}-{ctx.stack_id.rsplit('/', 1)[-1][:8]}"
        return Outcome(physical, {"Id": physical})

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        removed = [q for q in old.get("Queues", []) if q not in props["Queues"]]
        await self._apply(ctx, removed, "")
        await self._apply(ctx, list(props["Queues"]), json_text(props["PolicyDocument"]))
        return Outcome(physical_id, {"Id": physical_id})

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        for url in props.get("Queues", []):
            try:
                await ctx.call("sqs", "SetQueueAttributes", {"QueueUrl": url, "Attributes": {"Policy": ""}})
            except AwsError as exc:
                ignore_missing(exc, "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")


class QueueInlinePolicy(ResourceHandler):
    """The policy of one queue (``Queue`` is its URL)."""

    type_name = "AWS::SQS::QueueInlinePolicy"
    attributes = ()
    replace_on = frozenset({"Queue"})

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        await ctx.call("sqs", "SetQueueAttributes", {"QueueUrl": props["Queue"], "Attributes": {"Policy": json_text(props["PolicyDocument"])}})
        return Outcome(f"{props['Queue']}|policy")

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        return await self.create(ctx, props)

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        try:
            await ctx.call("sqs", "SetQueueAttributes", {"QueueUrl": props.get("Queue", ""), "Attributes": {"Policy": ""}})
        except AwsError as exc:
            ignore_missing(exc, "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")


HANDLERS = (Queue, QueuePolicy, QueueInlinePolicy)
