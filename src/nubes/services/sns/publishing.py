"""Publish and PublishBatch: validate, match filter policies, write the fan-out durably."""

from __future__ import annotations

import re
import time
from typing import Any

import orjson

from nubes.aws.errors import AwsError
from nubes.services.base import RequestContext
from nubes.services.sns.delivery import SIGNAL, DeliveryOps, timestamp
from nubes.services.sns.messages import (
    batch_error,
    check_attributes,
    check_message,
    content_dedup_id,
    filter_matches,
    new_message_id,
    stored_attributes,
)
from nubes.services.sns.models import (
    DEDUP_TABLE,
    DEDUP_WINDOW,
    DELIVERY_QUEUE,
    FIFO_DELIVERY_QUEUE,
    MAX_BATCH,
    MAX_MESSAGE_BYTES,
    SEQUENCE_TABLE,
    Subscription,
    Topic,
    invalid,
)
from nubes.storage.base import Txn

_BATCH_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


def _check_batch(entries: list[dict[str, Any]]) -> None:
    if not entries:
        raise AwsError("EmptyBatchRequest", "The batch request doesn't contain any entries.", 400)
    if len(entries) > MAX_BATCH:
        raise AwsError(
            "TooManyEntriesInBatchRequest",
            "The batch request contains more entries than permissible.",
            400,
        )
    ids = [str(e.get("Id", "")) for e in entries]
    if any(not _BATCH_ID.match(i) for i in ids):
        raise AwsError(
            "InvalidBatchEntryId",
            "The Id of a batch entry in a batch request doesn't abide by the specification.",
            400,
        )
    if len(set(ids)) != len(ids):
        raise AwsError(
            "BatchEntryIdsNotDistinct",
            "Two or more batch entries in the request have the same Id.",
            400,
        )
    total = sum(len(str(e.get("Message", "")).encode()) for e in entries)
    if total > MAX_MESSAGE_BYTES:
        raise AwsError(
            "BatchRequestTooLong",
            "The length of all the messages put together is more than the limit.",
            400,
        )


class PublishOps(DeliveryOps):
    """Publishing to topics."""

    def _message(self, ctx: RequestContext, topic: Topic, entry: dict[str, Any]) -> dict[str, Any]:
        attributes = entry.get("MessageAttributes") or {}
        size = check_attributes(attributes)
        check_message(
            entry.get("Message"), entry.get("Subject"), entry.get("MessageStructure"), size
        )
        group, dedup = entry.get("MessageGroupId"), entry.get("MessageDeduplicationId")
        if topic.fifo:
            if not group:
                raise invalid("The MessageGroupId parameter is required for FIFO topics")
            if dedup is None:
                if not topic.content_based_dedup:
                    raise invalid(
                        "The topic should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly"
                    )
                dedup = content_dedup_id(entry["Message"])
        else:
            if dedup is not None:
                raise invalid(
                    "MessageDeduplicationId Reason: The request includes MessageDeduplicationId parameter that is not valid for this topic type"
                )
            if group is not None:
                raise invalid(
                    "MessageGroupId Reason: The request includes MessageGroupId parameter that is not valid for this topic type"
                )
        message: dict[str, Any] = {
            "id": new_message_id(), "topic": topic.arn, "message": entry["Message"], "ts": timestamp(),
            "endpoint": ctx.endpoint or self.app.settings.endpoint,
        }  # fmt: skip
        for key, value in (("subject", entry.get("Subject")), ("structure", entry.get("MessageStructure")),
                           ("group", group), ("dedup", dedup)):  # fmt: skip
            if value is not None:
                message[key] = value
        if attributes:
            message["attrs"] = stored_attributes(attributes)
        return message

    async def _commit(self, topic: Topic, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Write the messages' delivery records (one per matching confirmed
        subscription) in one transaction; returns the messages as published."""
        subs = [s for s in await self.subscriptions_of(topic.arn) if s.confirmed]
        targets: list[list[Subscription]] = [
            [s for s in subs if filter_matches(s, m)] for m in messages
        ]
        now = time.time()

        def publish(txn: Txn) -> list[dict[str, Any]]:
            published = []
            for message, matched in zip(messages, targets, strict=True):
                out = dict(message)
                if topic.fifo:
                    key = f"{topic.arn}/{message['dedup']}".encode()
                    seen = txn.get(DEDUP_TABLE, key)
                    if seen is not None and orjson.loads(seen)["e"] > now:
                        first = orjson.loads(seen)
                        published.append({**out, "id": first["m"], "seq": first["q"]})
                        continue
                    counter = int(txn.get(SEQUENCE_TABLE, topic.arn.encode()) or b"0") + 1
                    txn.put(SEQUENCE_TABLE, topic.arn.encode(), str(counter).encode())
                    out["seq"] = str(10_000_000_000_000_000_000 + counter)
                    txn.put(
                        DEDUP_TABLE,
                        key,
                        orjson.dumps({"m": out["id"], "q": out["seq"], "e": now + DEDUP_WINDOW}),
                    )
                if topic.fifo:  # per subscription, so each keeps its group's order on retries
                    for sub in matched:
                        record = orjson.dumps({"k": "n", "sub": sub.arn, "m": out})
                        txn.enqueue(
                            FIFO_DELIVERY_QUEUE,
                            record,
                            now=now,
                            group=f"{sub.arn}|{out.get('group')}",
                        )
                elif matched:  # one record lists every matching subscription
                    record = orjson.dumps(
                        {"k": "n", "subs": [sub.arn for sub in matched], "m": out}
                    )
                    txn.enqueue(DELIVERY_QUEUE, record, now=now)
                published.append(out)
            return published

        published = await self.app.store.write(publish)
        if any(targets):
            self.app.bus.wake(SIGNAL)
        return published

    async def publish(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Publish one message to a topic; acknowledged once its fan-out is durable."""
        if params.get("PhoneNumber"):
            raise AwsError(
                "NotImplemented",
                "nubes does not send SMS (Publish with PhoneNumber)",
                501,
                sender_fault=False,
            )
        arn = params.get("TopicArn") or params.get("TargetArn")
        if not arn:
            raise invalid("TopicArn or TargetArn Reason: no value for required parameter")
        topic = await self.topic_of(ctx, arn)
        published = await self._commit(topic, [self._message(ctx, topic, params)])
        out = {"MessageId": published[0]["id"]}
        if "seq" in published[0]:
            out["SequenceNumber"] = published[0]["seq"]
        return out

    async def publish_batch(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Up to 10 messages in one transaction; invalid entries fail on their own."""
        topic = await self.topic_of(ctx, params.get("TopicArn"))
        entries = params.get("PublishBatchRequestEntries") or []
        _check_batch(entries)
        failed: list[dict[str, Any]] = []
        ids: list[str] = []
        messages: list[dict[str, Any]] = []
        for entry in entries:
            try:
                messages.append(self._message(ctx, topic, entry))
                ids.append(entry["Id"])
            except AwsError as error:
                failed.append(batch_error(entry["Id"], error))
        published = await self._commit(topic, messages) if messages else []
        successful = []
        for entry_id, message in zip(ids, published, strict=True):
            item = {"Id": entry_id, "MessageId": message["id"]}
            if "seq" in message:
                item["SequenceNumber"] = message["seq"]
            successful.append(item)
        return {"Successful": successful, "Failed": failed}
