"""SendMessage(Batch), ReceiveMessage, DeleteMessage(Batch), ChangeMessageVisibility(Batch)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from nubes.aws.errors import AwsError
from nubes.services.base import RequestContext
from nubes.services.sqs.base import SqsBase, sqs_operation
from nubes.services.sqs.messages import (
    check_attributes,
    check_body,
    dedup_id_of,
    md5_hex,
    md5_of_attributes,
    new_message_id,
    select_attributes,
    stored_attributes,
    wire_attributes,
)
from nubes.services.sqs.models import MAX_BATCH, Queue, invalid_parameter, sqs_error
from nubes.services.sqs.queues import (
    Outgoing,
    Received,
    ReceiveOutcome,
    Sent,
    parse_receipt_handle,
    receipt_handle,
    receive_messages,
    send_messages,
    sequence_number,
)
from nubes.storage.base import Txn

_BATCH_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
_SYSTEM_NAMES = (
    "SenderId", "SentTimestamp", "ApproximateReceiveCount", "ApproximateFirstReceiveTimestamp",
    "SequenceNumber", "MessageDeduplicationId", "MessageGroupId", "AWSTraceHeader", "DeadLetterQueueSourceArn",
)  # fmt: skip
#: ReceiveMessage through the internal client (event source mappings) may take
#: more than AWS's 10 per call: a Lambda batch can hold up to 10,000
INTERNAL_MAX_RECEIVE = 10_000
#: SendMessageBatch through the internal client: SNS hands a queue all its deliveries at once
INTERNAL_MAX_SEND = 1_000


def check_batch(entries: list[dict[str, Any]], entry_name: str, limit: int = MAX_BATCH) -> None:
    """AWS's batch rules: 1..10 entries, distinct well-formed ids."""
    if not entries:
        raise sqs_error(
            "EmptyBatchRequest", f"There should be at least one {entry_name} in the request."
        )
    if len(entries) > limit:
        raise sqs_error(
            "TooManyEntriesInBatchRequest",
            f"Maximum number of entries per request are {limit}. You have sent {len(entries)}.",
        )
    seen: set[str] = set()
    for entry in entries:
        entry_id = str(entry.get("Id", ""))
        if not _BATCH_ID.match(entry_id):
            raise sqs_error(
                "InvalidBatchEntryId",
                "A batch entry id can only contain alphanumeric characters, hyphens and underscores. "
                "It can be at most 80 letters long.",
            )
        if entry_id in seen:
            raise sqs_error("BatchEntryIdsNotDistinct", f"Id {entry_id} repeated.")
        seen.add(entry_id)


def _failure(entry_id: str, error: AwsError) -> dict[str, Any]:
    return {
        "Id": entry_id,
        "SenderFault": error.sender_fault,
        "Code": error.code,
        "Message": error.message,
    }


class MessagingOps(SqsBase):
    """The message operations of the SQS provider."""

    # -- send -----------------------------------------------------------------------

    def _outgoing(
        self, ctx: RequestContext, queue: Queue, entry: dict[str, Any], entry_id: str
    ) -> Outgoing:
        body = entry.get("MessageBody")
        if body is None:
            raise sqs_error(
                "MissingParameter", "The request must contain the parameter MessageBody."
            )
        attributes = entry.get("MessageAttributes")
        system = entry.get("MessageSystemAttributes")
        size = check_attributes(attributes) if attributes else 0
        if system:
            size += check_attributes(system, system=True)
        data = check_body(body, queue.max_message_size, size)
        group = entry.get("MessageGroupId")
        dedup = entry.get("MessageDeduplicationId")
        delay_param = entry.get("DelaySeconds")
        if queue.fifo:
            if not group:
                raise sqs_error(
                    "MissingParameter", "The request must contain the parameter MessageGroupId."
                )
            if delay_param not in (None, 0):
                raise invalid_parameter(
                    f"Value {delay_param} for parameter DelaySeconds is invalid. Reason: The request include "
                    "parameter that is not valid for this queue type."
                )
            if dedup is None:
                if not queue.content_based_dedup:
                    raise invalid_parameter(
                        "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly"
                    )
                dedup = dedup_id_of(body)
        elif dedup is not None:
            raise invalid_parameter(
                "Value "
                + str(dedup)
                + " for parameter MessageDeduplicationId is invalid. Reason: The request "
                "includes a parameter that is not valid for this queue type."
            )
        if delay_param is None:
            delay = queue.delay_seconds
        else:
            delay = int(delay_param)
            if not 0 <= delay <= 900:
                raise invalid_parameter(
                    f"Value {delay_param} for parameter DelaySeconds is invalid. Reason: DelaySeconds must be >= 0 and <= 900."
                )
        doc: dict[str, Any] = {
            "m": new_message_id(), "b": body, "mb": md5_hex(data),
            "s": ctx.access_key or ctx.account_id, "t": int(time.time() * 1000),
        }  # fmt: skip
        if attributes:
            doc["a"] = stored_attributes(attributes)
        trace = system.get("AWSTraceHeader") if system else None
        if trace is not None:
            doc["x"] = trace.get("StringValue")
            doc["xm"] = md5_of_attributes({"AWSTraceHeader": trace})
        if group:
            doc["g"] = group
        if dedup is not None:
            doc["d"] = dedup
        return Outgoing(entry_id, doc, float(delay), group if queue.fifo else None, dedup)

    async def _commit_sends(self, queue: Queue, outgoing: list[Outgoing]) -> list[Sent]:
        now = time.time()
        sent: list[Sent] = await self.app.store.write(
            lambda txn: send_messages(txn, queue, outgoing, now)
        )
        self.notify(queue)
        return sent

    @staticmethod
    def _sent_result(sent: Sent) -> dict[str, Any]:
        out: dict[str, Any] = {"MessageId": sent.message_id, "MD5OfMessageBody": sent.doc["mb"]}
        if "a" in sent.doc:
            out["MD5OfMessageAttributes"] = md5_of_attributes(sent.doc["a"])
        if "xm" in sent.doc:
            out["MD5OfMessageSystemAttributes"] = sent.doc["xm"]
        if sent.sequence is not None:
            out["SequenceNumber"] = sent.sequence
        return out

    @sqs_operation
    async def send_message(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Durably enqueue one message, then wake receivers."""
        queue = await self.queue_of(ctx, params["QueueUrl"])
        sent = await self._commit_sends(queue, [self._outgoing(ctx, queue, params, "")])
        return self._sent_result(sent[0])

    @sqs_operation
    async def send_message_batch(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        """Up to 10 messages in one transaction; invalid entries fail on their own.
        Internal callers (SNS fan-out) may send up to 1,000 at once; each message
        still obeys the queue's size limit."""
        queue = await self.queue_of(ctx, params["QueueUrl"])
        entries = params.get("Entries") or []
        internal = ctx.http is None
        check_batch(
            entries, "SendMessageBatchRequestEntry", INTERNAL_MAX_SEND if internal else MAX_BATCH
        )
        total = 0 if internal else sum(len(str(e.get("MessageBody", "")).encode()) for e in entries)
        limit = queue.max_message_size
        if total > limit:
            raise sqs_error(
                "BatchRequestTooLong",
                f"Batch requests cannot be longer than {limit} bytes. You have sent {total} bytes.",
            )
        failed: list[dict[str, Any]] = []
        outgoing: list[Outgoing] = []
        for entry in entries:
            try:
                outgoing.append(self._outgoing(ctx, queue, entry, entry["Id"]))
            except AwsError as error:
                failed.append(_failure(entry["Id"], error))
        sent = await self._commit_sends(queue, outgoing) if outgoing else []
        successful = [{"Id": s.entry_id, **self._sent_result(s)} for s in sent]
        return {"Successful": successful, "Failed": failed}

    # -- receive --------------------------------------------------------------------

    @sqs_operation
    async def receive_message(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Lease messages; with WaitTimeSeconds, wait for a send (woken, not polled)."""
        queue = await self.queue_of(ctx, params["QueueUrl"])
        limit = params.get("MaxNumberOfMessages")
        max_limit = MAX_BATCH if ctx.http is not None else INTERNAL_MAX_RECEIVE
        if limit is not None and not 1 <= limit <= max_limit:
            raise invalid_parameter(
                f"Value {limit} for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and {max_limit}, if provided."
            )
        wait = params.get("WaitTimeSeconds")
        if wait is None:
            wait = queue.int_attr("ReceiveMessageWaitTimeSeconds")
        if not 0 <= wait <= 20:
            raise invalid_parameter(
                f"Value {wait} for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided."
            )
        visibility = params.get("VisibilityTimeout")
        if visibility is None:
            visibility = queue.visibility_timeout
        if not 0 <= visibility <= 43200:
            raise invalid_parameter(
                f"Value {visibility} for parameter VisibilityTimeout is invalid. Reason: Must be >= 0 and <= 43200, if provided."
            )
        outcome = await self.receive(queue, limit or 1, float(visibility), float(wait))
        system_names = set(params.get("AttributeNames") or []) | set(
            params.get("MessageSystemAttributeNames") or []
        )
        attribute_names = params.get("MessageAttributeNames") or []
        messages = [self._render(queue, r, system_names, attribute_names) for r in outcome]
        return {"Messages": messages} if messages else {}

    async def receive(
        self, queue: Queue, limit: int, visibility: float, wait: float
    ) -> list[Received]:
        """Lease up to ``limit`` messages, waiting up to ``wait`` seconds for some."""
        dlq = await self.dead_letter_queue(queue)
        deadline = time.monotonic() + wait
        signal = queue.signal
        while True:
            generation = self.generation(queue)
            now = time.time()

            def lease(txn: Txn, now: float = now) -> ReceiveOutcome:
                return receive_messages(
                    txn, queue, dlq, now=now, visibility=visibility, limit=limit
                )

            outcome = await self.app.store.write(lease)
            if outcome.moved_to_dlq and dlq is not None:
                self.notify(dlq)
            remaining = deadline - time.monotonic()
            if outcome.messages or remaining <= 0 or self.stopping:
                return outcome.messages
            if self.generation(queue) != generation:
                continue  # a send landed while we leased: look again before sleeping
            timeout = remaining
            if outcome.next_visible is not None:
                due = outcome.next_visible - time.time()
                # due <= 0: visible messages held back by in-flight FIFO groups; a delete
                # wakes us, the bounded wait only covers leases that simply run out
                timeout = min(timeout, max(due, 0.001) if due > 0 else 1.0)
            await self.wait_for_messages(signal, timeout)

    def _render(
        self, queue: Queue, received: Received, system_names: set[str], attribute_names: list[str]
    ) -> dict[str, Any]:
        message, doc = received.message, received.doc
        out: dict[str, Any] = {
            "MessageId": doc["m"], "ReceiptHandle": receipt_handle(queue, message),
            "MD5OfBody": doc["mb"], "Body": doc["b"],
        }  # fmt: skip
        if system_names:
            everything = {
                "SenderId": doc["s"],
                "SentTimestamp": str(doc["t"]),
                "ApproximateReceiveCount": str(message.receive_count),
                "ApproximateFirstReceiveTimestamp": str(
                    int((message.first_received_at or time.time()) * 1000)
                ),
            }
            if queue.fifo:
                everything["SequenceNumber"] = sequence_number(message.id)
                everything["MessageGroupId"] = doc.get("g", "")
                if "d" in doc:
                    everything["MessageDeduplicationId"] = doc["d"]
            elif "g" in doc:
                everything["MessageGroupId"] = doc["g"]
            if "x" in doc:
                everything["AWSTraceHeader"] = doc["x"]
            if "src" in doc:
                everything["DeadLetterQueueSourceArn"] = doc["src"]
            wanted = _SYSTEM_NAMES if "All" in system_names else system_names
            out["Attributes"] = {k: v for k, v in everything.items() if k in wanted}
        selected = select_attributes(doc.get("a") or {}, attribute_names)
        if selected:
            out["MessageAttributes"] = wire_attributes(selected)
            out["MD5OfMessageAttributes"] = md5_of_attributes(selected)
        return out

    # -- delete and visibility ---------------------------------------------------------

    async def _delete(self, queue: Queue, handle: str) -> None:
        message_id, token = parse_receipt_handle(queue, handle)
        await self.app.store.write(lambda txn: txn.ack(queue.store_queue, message_id, token))
        if queue.fifo:
            self.notify(queue)  # the message's group may be free for waiting receivers now

    @sqs_operation
    async def delete_message(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Delete a received message (a stale receipt handle deletes nothing, as on AWS)."""
        queue = await self.queue_of(ctx, params["QueueUrl"])
        await self._delete(queue, params["ReceiptHandle"])
        return {}

    @sqs_operation
    async def delete_message_batch(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        """Delete up to 10 received messages; bad handles fail on their own."""
        queue = await self.queue_of(ctx, params["QueueUrl"])
        entries = params.get("Entries") or []
        check_batch(entries, "DeleteMessageBatchRequestEntry")
        return await self._batch(entries, lambda e: self._delete(queue, e["ReceiptHandle"]))

    async def _change_visibility(self, queue: Queue, handle: str, timeout: int | None) -> None:
        if timeout is None:
            raise sqs_error(
                "MissingParameter", "The request must contain the parameter VisibilityTimeout."
            )
        if not 0 <= timeout <= 43200:
            raise invalid_parameter(
                f"Value {timeout} for parameter VisibilityTimeout is invalid. Reason: Must be >= 0 and <= 43200, if provided."
            )
        message_id, token = parse_receipt_handle(queue, handle)
        now = time.time()

        def change(txn: Txn) -> bool:
            message = txn.get_message(queue.store_queue, message_id)
            if message is None or message.lease_token != token or message.visible_at <= now:
                return False
            return txn.set_visible_at(queue.store_queue, message_id, now + timeout, token)

        if not await self.app.store.write(change):
            raise sqs_error(
                "MessageNotInflight" if queue.fifo else "InvalidParameterValue",
                f"Value {handle} for parameter ReceiptHandle is invalid. Reason: Message does not exist or "
                "is not available for visibility timeout change.",
            )
        if timeout == 0:
            self.notify(queue)

    @sqs_operation
    async def change_message_visibility(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        """Extend or end an in-flight message's visibility timeout."""
        queue = await self.queue_of(ctx, params["QueueUrl"])
        await self._change_visibility(
            queue, params["ReceiptHandle"], params.get("VisibilityTimeout")
        )
        return {}

    @sqs_operation
    async def change_message_visibility_batch(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        """Change up to 10 messages' visibility; bad handles fail on their own."""
        queue = await self.queue_of(ctx, params["QueueUrl"])
        entries = params.get("Entries") or []
        check_batch(entries, "ChangeMessageVisibilityBatchRequestEntry")
        return await self._batch(
            entries,
            lambda e: self._change_visibility(
                queue, e["ReceiptHandle"], e.get("VisibilityTimeout")
            ),
        )

    @staticmethod
    async def _batch(
        entries: list[dict[str, Any]], action: Callable[[dict[str, Any]], Awaitable[None]]
    ) -> dict[str, Any]:
        results = await asyncio.gather(*(action(e) for e in entries), return_exceptions=True)
        successful: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        for entry, result in zip(entries, results, strict=True):
            if isinstance(result, AwsError):
                failed.append(_failure(entry["Id"], result))
            elif isinstance(result, BaseException):
                raise result
            else:
                successful.append({"Id": entry["Id"]})
        return {"Successful": successful, "Failed": failed}
