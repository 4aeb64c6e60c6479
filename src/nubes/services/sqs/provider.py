"""The SQS provider: queue management here, messages in ``messaging``, redrive in ``moves``."""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from botocore.model import OperationModel

from nubes.services.base import RequestContext
from nubes.services.sqs.base import sqs_operation
from nubes.services.sqs.messaging import MessagingOps
from nubes.services.sqs.models import (
    COMPUTED_ATTRIBUTES,
    DEDUP_TABLE,
    INT_ATTRIBUTES,
    PURGE_WINDOW,
    QUEUE_ATTRIBUTE_NAMES,
    QUEUES_TABLE,
    Queue,
    allows_source,
    check_queue_name,
    invalid_parameter,
    queue_key,
    queue_not_found,
    sqs_error,
    validate_attributes,
)
from nubes.services.sqs.moves import MoveTaskOps
from nubes.services.sqs.query import query_operation_model
from nubes.services.sqs.queues import purge_expired, sweep_dedup
from nubes.storage.base import Txn

log = logging.getLogger(__name__)

#: how often expired messages and deduplication ids are swept
SWEEP_SECONDS = 30.0
MAX_TAGS = 50


#: what an attribute is when it was never set (for CreateQueue's "same attributes?" check)
_IMPLICIT = {
    "SqsManagedSseEnabled": "true",
    "FifoQueue": "false",
    "ContentBasedDeduplication": "false",
}


def _fifo_defaults() -> dict[str, str]:
    return {"FifoQueue": "true", "ContentBasedDeduplication": "false", "DeduplicationScope": "queue",
            "FifoThroughputLimit": "perQueue"}  # fmt: skip


def _has_expired(txn: Txn, queue: Queue, now: float) -> bool:
    oldest = txn.peek(queue.store_queue, limit=1)
    return bool(oldest) and oldest[0].enqueued_at + queue.int_attr("MessageRetentionPeriod") <= now


class SqsProvider(MessagingOps, MoveTaskOps):
    """Amazon SQS on the store's queue primitive."""

    async def start(self) -> None:
        """Start the retention sweeper and resume message move tasks."""
        self.app.spawn(self._sweep_forever(), name="sqs-sweeper")
        # the server may announce its shutdown before it waits for open requests
        self.app.bus.subscribe("nubes:stopping", lambda _: self.end_long_polls())
        await self.resume_move_tasks()

    async def stop(self) -> None:
        """Answer waiting long polls so shutdown is not held up."""
        self.end_long_polls()

    # -- queues ---------------------------------------------------------------------

    async def _check_redrive(
        self, ctx: RequestContext, queue_arn: str, fifo: bool, attrs: dict[str, str]
    ) -> None:
        raw = attrs.get("RedrivePolicy")
        if not raw:
            return
        target_arn = orjson.loads(raw)["deadLetterTargetArn"]
        dlq = await self.queue_by_arn(target_arn)
        if dlq is None:
            raise invalid_parameter(
                f"Value {raw} for parameter RedrivePolicy is invalid. Reason: Dead letter target does not exist."
            )
        if dlq.fifo != fifo:
            kind = "FIFO" if fifo else "standard"
            raise invalid_parameter(
                f"Value {raw} for parameter RedrivePolicy is invalid. Reason: Dead-letter queue must be same type of queue as the source. ({kind})"
            )
        if not allows_source(dlq, queue_arn):
            raise invalid_parameter(
                f"Value {raw} for parameter RedrivePolicy is invalid. Reason: Queue {queue_arn} is not allowed to use "
                f"{dlq.arn} as its dead-letter queue."
            )

    @sqs_operation
    async def create_queue(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Create a queue, or return the existing one when its attributes match."""
        name: str = params["QueueName"]
        given = {k: str(v) for k, v in (params.get("Attributes") or {}).items()}
        fifo = given.get("FifoQueue", "false").lower() == "true"
        check_queue_name(name, fifo)
        attrs = validate_attributes(given, fifo)
        tags = dict(params.get("tags") or {})
        if fifo:
            attrs = {**_fifo_defaults(), **attrs}
        queue = Queue.new(name, ctx.region, ctx.account_id, attrs, tags)
        await self._check_redrive(ctx, queue.arn, fifo, attrs)

        def create(txn: Txn) -> Queue:
            raw = txn.get(QUEUES_TABLE, queue.key)
            if raw is None:
                txn.put(QUEUES_TABLE, queue.key, queue.dump())
                return queue
            existing = Queue.load(raw)
            for attr, value in attrs.items():
                current = existing.attributes.get(attr)
                if current is None and attr in INT_ATTRIBUTES:
                    current = str(INT_ATTRIBUTES[attr][2])
                current = current if current is not None else _IMPLICIT.get(attr, "")
                if current != value:
                    raise sqs_error(
                        "QueueNameExists",
                        f"A queue already exists with the same name and a different value for attribute {attr}",
                    )
            return existing

        stored = await self.app.store.write(create)
        self.remember(stored.key, stored)
        return {"QueueUrl": stored.url(ctx.endpoint)}

    @sqs_operation
    async def delete_queue(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Delete a queue and every message in it."""
        queue = await self.queue_of(ctx, params["QueueUrl"])

        def delete(txn: Txn) -> None:
            txn.delete(QUEUES_TABLE, queue.key)
            txn.purge(queue.store_queue)
            txn.delete_prefix(DEDUP_TABLE, f"{queue.qid}/".encode())

        await self.app.store.write(delete)
        self.remember(queue.key, None)
        self.notify(queue)
        return {}

    @sqs_operation
    async def get_queue_url(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """The URL of a queue by name (and owner account)."""
        account = params.get("QueueOwnerAWSAccountId") or ctx.account_id
        queue = await self.load_queue(queue_key(ctx.region, account, params["QueueName"]))
        if queue is None:
            raise queue_not_found()
        return {"QueueUrl": queue.url(ctx.endpoint)}

    async def _all_queues(
        self, ctx: RequestContext, name_prefix: str = "", after: str | None = None
    ) -> list[Queue]:
        prefix = f"{ctx.region}/{ctx.account_id}/".encode()
        start = prefix + after.encode() + b"\x00" if after else None
        rows = await self.app.store.read(
            lambda txn: txn.scan(QUEUES_TABLE, prefix=prefix + name_prefix.encode(), start=start)
        )
        return [Queue.load(value) for _, value in rows]

    @sqs_operation
    async def list_queues(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Queue URLs by name prefix, paginated by MaxResults/NextToken."""
        max_results = params.get("MaxResults")
        if max_results is not None and not 1 <= max_results <= 1000:
            raise invalid_parameter(
                f"Value {max_results} for parameter MaxResults is invalid. Reason: MaxResults must be an integer between 1 and 1000."
            )
        after: str | None = None
        if params.get("NextToken"):
            try:
                after = base64.urlsafe_b64decode(params["NextToken"].encode()).decode()
            except ValueError:
                raise invalid_parameter("Invalid NextToken value.") from None
        queues = await self._all_queues(ctx, params.get("QueueNamePrefix") or "", after)
        limit = max_results or 1000
        page = queues[:limit]
        out: dict[str, Any] = {}
        if page:
            out["QueueUrls"] = [q.url(ctx.endpoint) for q in page]
        if max_results is not None and len(queues) > limit:
            out["NextToken"] = base64.urlsafe_b64encode(page[-1].name.encode()).decode()
        return out

    async def _update(self, queue: Queue, change: Callable[[Queue], None]) -> Queue:
        def update(txn: Txn) -> Queue:
            raw = txn.get(QUEUES_TABLE, queue.key)
            if raw is None:
                raise queue_not_found()
            current = Queue.load(raw)
            if current.qid != queue.qid:
                raise queue_not_found()
            change(current)
            txn.put(QUEUES_TABLE, current.key, current.dump())
            return current

        updated = await self.app.store.write(update)
        self.remember(updated.key, updated)
        return updated

    @sqs_operation
    async def get_queue_attributes(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        """The requested attributes (``All`` for every one), counts computed now."""
        queue = await self.queue_of(ctx, params["QueueUrl"])
        names = set(params.get("AttributeNames") or [])
        if not names:
            return {}
        for name in names - QUEUE_ATTRIBUTE_NAMES:
            raise sqs_error("InvalidAttributeName", f"Unknown Attribute {name}.")
        now = time.time()
        visible, in_flight, delayed = await self.app.store.read(
            lambda txn: txn.queue_stats(queue.store_queue, now=now)
        )
        attrs: dict[str, str] = {
            "QueueArn": queue.arn,
            "ApproximateNumberOfMessages": str(visible),
            "ApproximateNumberOfMessagesNotVisible": str(in_flight),
            "ApproximateNumberOfMessagesDelayed": str(delayed),
            "CreatedTimestamp": str(int(queue.created)),
            "LastModifiedTimestamp": str(int(queue.modified)),
        }
        for attr in ("VisibilityTimeout", "MaximumMessageSize", "MessageRetentionPeriod", "DelaySeconds",
                     "ReceiveMessageWaitTimeSeconds"):  # fmt: skip
            attrs[attr] = str(queue.int_attr(attr))
        attrs["SqsManagedSseEnabled"] = queue.attributes.get("SqsManagedSseEnabled", "true")
        for attr, value in queue.attributes.items():
            if value != "" and attr not in attrs:
                attrs[attr] = value
        if "KmsMasterKeyId" in attrs:
            attrs.setdefault("KmsDataKeyReusePeriodSeconds", "300")
        if "All" in names:
            return {"Attributes": attrs}
        return {"Attributes": {k: v for k, v in attrs.items() if k in names}}

    @sqs_operation
    async def set_queue_attributes(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        """Change settable attributes (an empty RedrivePolicy removes it)."""
        queue = await self.queue_of(ctx, params["QueueUrl"])
        given = {k: str(v) for k, v in (params.get("Attributes") or {}).items()}
        for name in given:
            if name in COMPUTED_ATTRIBUTES:
                raise sqs_error("InvalidAttributeName", f"Unknown Attribute {name}.")
        attrs = validate_attributes(given, queue.fifo)
        await self._check_redrive(ctx, queue.arn, queue.fifo, attrs)

        def change(current: Queue) -> None:
            for name, value in attrs.items():
                if value == "" and name in (
                    "RedrivePolicy",
                    "RedriveAllowPolicy",
                    "Policy",
                    "KmsMasterKeyId",
                ):
                    current.attributes.pop(name, None)
                else:
                    current.attributes[name] = value
            current.modified = time.time()

        await self._update(queue, change)
        return {}

    @sqs_operation
    async def purge_queue(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Delete every message; a second purge within 60 seconds is refused."""
        queue = await self.queue_of(ctx, params["QueueUrl"])
        now = time.time()

        def purge(txn: Txn) -> None:
            raw = txn.get(QUEUES_TABLE, queue.key)
            if raw is None:
                raise queue_not_found()
            current = Queue.load(raw)
            if now - current.last_purge < PURGE_WINDOW:
                raise sqs_error(
                    "PurgeQueueInProgress",
                    f"Only one PurgeQueue operation on {queue.name} is allowed every 60 seconds.",
                )
            current.last_purge = now
            txn.put(QUEUES_TABLE, current.key, current.dump())
            txn.purge(current.store_queue)

        await self.app.store.write(purge)
        self._cache.pop(queue.key, None)
        return {}

    @sqs_operation
    async def list_dead_letter_source_queues(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        """Queues whose RedrivePolicy names this queue."""
        queue = await self.queue_of(ctx, params["QueueUrl"])
        sources = [q for q in await self._all_queues(ctx) if (q.redrive or ("", 0))[0] == queue.arn]
        limit = params.get("MaxResults") or 1000
        return {"queueUrls": [q.url(ctx.endpoint) for q in sources[:limit]]}

    # -- tags and permissions -----------------------------------------------------------

    @sqs_operation
    async def tag_queue(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Add or replace tags (at most 50)."""
        queue = await self.queue_of(ctx, params["QueueUrl"])
        tags = dict(params.get("Tags") or {})
        if not tags:
            raise sqs_error("MissingParameter", "The request must contain the parameter Tags.")
        if len({**queue.tags, **tags}) > MAX_TAGS:
            raise invalid_parameter(f"Too many tags added for queue {queue.name}.")
        await self._update(queue, lambda q: q.tags.update(tags))
        return {}

    @sqs_operation
    async def untag_queue(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Remove tags."""
        queue = await self.queue_of(ctx, params["QueueUrl"])
        keys = list(params.get("TagKeys") or [])

        def untag(q: Queue) -> None:
            for key in keys:
                q.tags.pop(key, None)

        await self._update(queue, untag)
        return {}

    @sqs_operation
    async def list_queue_tags(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """The queue's tags."""
        queue = await self.queue_of(ctx, params["QueueUrl"])
        return {"Tags": dict(queue.tags)} if queue.tags else {}

    @sqs_operation
    async def add_permission(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Add a statement to the queue's Policy, as AWS does."""
        queue = await self.queue_of(ctx, params["QueueUrl"])
        label = params["Label"]
        statement = {
            "Sid": label, "Effect": "Allow",
            "Principal": {"AWS": [f"arn:aws:iam::{a}:root" for a in params["AWSAccountIds"]]},
            "Action": [a if a == "*" else f"SQS:{a}" for a in params["Actions"]], "Resource": queue.arn,
        }  # fmt: skip

        def add(q: Queue) -> None:
            policy = orjson.loads(q.attributes.get("Policy") or "{}") or {
                "Version": "2012-10-17", "Id": f"{q.arn}/SQSDefaultPolicy", "Statement": []}  # fmt: skip
            if any(s.get("Sid") == label for s in policy.get("Statement", [])):
                raise invalid_parameter(
                    f"Value {label} for parameter Label is invalid. Reason: Already exists."
                )
            policy.setdefault("Statement", []).append(statement)
            q.attributes["Policy"] = orjson.dumps(policy).decode()

        await self._update(queue, add)
        return {}

    @sqs_operation
    async def remove_permission(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        """Remove a statement (by label) from the queue's Policy."""
        queue = await self.queue_of(ctx, params["QueueUrl"])
        label = params["Label"]

        def remove(q: Queue) -> None:
            policy = orjson.loads(q.attributes.get("Policy") or "{}")
            statements = policy.get("Statement", [])
            kept = [s for s in statements if s.get("Sid") != label]
            if len(kept) == len(statements):
                raise invalid_parameter(
                    f"Value {label} for parameter Label is invalid. Reason: can't find label on existing policy."
                )
            if kept:
                policy["Statement"] = kept
                q.attributes["Policy"] = orjson.dumps(policy).decode()
            else:
                q.attributes.pop("Policy", None)

        await self._update(queue, remove)
        return {}

    # -- housekeeping -------------------------------------------------------------------

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            try:
                await self.sweep()
            except Exception:
                log.exception("SQS sweep failed")

    async def sweep(self) -> int:
        """Drop messages past their retention period and expired dedup ids; returns
        how many messages were dropped."""
        rows = await self.app.store.read(lambda txn: txn.scan(QUEUES_TABLE))
        now = time.time()
        dropped = 0
        for _, raw in rows:
            queue = Queue.load(raw)
            if not queue.fifo and not await self.app.store.read(
                functools.partial(_has_expired, queue=queue, now=now)
            ):
                continue  # nothing to do: no write transaction for this queue

            def sweep(txn: Txn, queue: Queue = queue) -> int:
                removed = purge_expired(txn, queue, now)
                if queue.fifo:
                    sweep_dedup(txn, queue, now)
                return removed

            dropped += await self.app.store.write(sweep)
        return dropped

    def query_operation_model(self, name: str) -> OperationModel:
        """The operation as old query-protocol SDKs spell it (used by the gateway)."""
        return query_operation_model(name)
