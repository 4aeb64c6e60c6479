"""SQS's transactions on the store: send, receive (with redrive), delete, visibility.

Every function here is a synchronous transaction body run by ``store.write``; it
only touches the store (a backend may run it more than once).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import orjson

from nubes.services.sqs.models import DEDUP_TABLE, DEDUP_WINDOW, Queue, sqs_error
from nubes.storage.base import QueueMessage, Txn

#: sequence numbers are 20-digit strings like AWS's, ascending with the store id
_SEQUENCE_BASE = 10_000_000_000_000_000_000


def sequence_number(message_id: int) -> str:
    """A FIFO sequence number from a store message id."""
    return str(_SEQUENCE_BASE + message_id)


def receipt_handle(queue: Queue, message: QueueMessage) -> str:
    """The receipt handle of one lease of a message."""
    raw = f"{queue.qid}:{message.id}:{message.lease_token}".encode()
    return base64.urlsafe_b64encode(raw).decode()


def parse_receipt_handle(queue: Queue, handle: str) -> tuple[int, str]:
    """(store message id, lease token) of a receipt handle of this queue."""
    try:
        qid, message_id, token = base64.urlsafe_b64decode(handle.encode()).decode().split(":", 2)
        if qid != queue.qid:
            raise ValueError(qid)
        return int(message_id), token
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise sqs_error(
            "ReceiptHandleIsInvalid",
            f'The input receipt handle "{handle}" is not a valid receipt handle.',
        ) from None


@dataclass(slots=True)
class Outgoing:
    """One message about to be sent (validated)."""

    entry_id: str
    doc: dict[str, Any]
    delay: float
    group: str | None
    dedup_id: str | None


@dataclass(slots=True)
class Sent:
    entry_id: str
    message_id: str
    sequence: str | None
    doc: dict[str, Any]


def send_messages(txn: Txn, queue: Queue, outgoing: list[Outgoing], now: float) -> list[Sent]:
    """Enqueue messages; a FIFO duplicate within 5 minutes returns the first one's id."""
    results: list[Sent] = []
    fifo = queue.fifo
    scoped = fifo and queue.attributes.get("DeduplicationScope") == "messageGroup"
    store_queue = queue.store_queue
    for out in outgoing:
        dedup_key: bytes | None = None
        if fifo and out.dedup_id is not None:
            scope = out.group or "" if scoped else ""
            dedup_key = f"{queue.qid}/{scope}/{out.dedup_id}".encode()
            existing = txn.get(DEDUP_TABLE, dedup_key)
            if existing is not None:
                seen = orjson.loads(existing)
                if seen["e"] > now:
                    results.append(Sent(out.entry_id, seen["m"], seen.get("q"), out.doc))
                    continue
        message_id = txn.enqueue(
            store_queue, orjson.dumps(out.doc), now=now, delay=out.delay, group=out.group
        )
        sequence = sequence_number(message_id) if fifo else None
        if dedup_key is not None:
            record = {"m": out.doc["m"], "q": sequence, "e": now + DEDUP_WINDOW}
            txn.put(DEDUP_TABLE, dedup_key, orjson.dumps(record))
        results.append(Sent(out.entry_id, out.doc["m"], sequence, out.doc))
    return results


@dataclass
class Received:
    message: QueueMessage
    doc: dict[str, Any]


@dataclass
class ReceiveOutcome:
    messages: list[Received]
    #: earliest time a message of the queue becomes visible (None: queue empty)
    next_visible: float | None
    #: messages moved to the dead-letter queue by this receive
    moved_to_dlq: int


def receive_messages(
    txn: Txn, queue: Queue, dlq: Queue | None, *, now: float, visibility: float, limit: int
) -> ReceiveOutcome:
    """Lease up to ``limit`` messages; drop expired ones and move those past
    maxReceiveCount to the dead-letter queue (in this same transaction)."""
    redrive = queue.redrive
    max_receives = redrive[1] if redrive is not None and dlq is not None else None
    retention = queue.int_attr("MessageRetentionPeriod")
    out: list[Received] = []
    moved = 0
    while len(out) < limit:
        leased = txn.lease(
            queue.store_queue,
            now=now,
            visibility=visibility,
            limit=limit - len(out),
            exclusive_groups=queue.fifo,
        )
        if not leased:
            break
        for message in leased:
            if message.enqueued_at + retention <= now:
                txn.ack(queue.store_queue, message.id)
                continue
            doc = orjson.loads(message.value)
            if (
                max_receives is not None
                and dlq is not None
                and message.receive_count > max_receives
            ):
                move_message(txn, message, doc, queue, dlq, now)
                moved += 1
                continue
            out.append(Received(message, doc))
    next_visible = None if out else txn.next_visible_at(queue.store_queue)
    return ReceiveOutcome(out, next_visible, moved)


def move_message(
    txn: Txn,
    message: QueueMessage,
    doc: dict[str, Any],
    source: Queue,
    target: Queue,
    now: float,
    *,
    mark_source: bool = True,
) -> None:
    """Move one message to another queue (dead-letter or redrive), keeping its id and
    body; a dead-lettered message remembers its source queue for the redrive."""
    moved = dict(doc)
    if mark_source:
        moved["src"] = source.arn
    group = message.group if target.fifo else None
    if target.fifo and group is None:
        group = "default"
    txn.enqueue(target.store_queue, orjson.dumps(moved), now=now, group=group)
    txn.ack(source.store_queue, message.id)


def purge_expired(txn: Txn, queue: Queue, now: float, limit: int = 500) -> int:
    """Delete messages older than the retention period (oldest first); returns how many."""
    retention = queue.int_attr("MessageRetentionPeriod")
    removed = 0
    for message in txn.peek(queue.store_queue, limit=limit):
        if message.enqueued_at + retention > now:
            break
        txn.ack(queue.store_queue, message.id)
        removed += 1
    return removed


def sweep_dedup(txn: Txn, queue: Queue, now: float) -> int:
    """Forget deduplication ids older than the 5-minute window."""
    removed = 0
    for key, value in txn.scan(DEDUP_TABLE, prefix=f"{queue.qid}/".encode(), limit=1000):
        if orjson.loads(value)["e"] <= now:
            txn.delete(DEDUP_TABLE, key)
            removed += 1
    return removed
