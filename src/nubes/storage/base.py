"""The store contract every service uses, and every backend implements.

Services never talk SQL. They run small *synchronous* functions inside a
transaction on the store's own threads::

    def put(txn: Txn) -> None:
        txn.put("ssm.parameters", name.encode(), orjson.dumps(record))

    await app.store.write(put)          # committed before this returns
    value = await app.store.read(lambda txn: txn.get("ssm.parameters", key))

A write function may run more than once (a backend retries on conflicts), so it
must do nothing but store operations; side effects go after ``write`` returns.
A write function that raises rolls back everything it did and the exception
propagates to the caller; other concurrent writes are unaffected.

Three kinds of data:

* **tables** — ordered key/value records. Keys are ``bytes`` compared bytewise
  (services encode composite keys order-preservingly, see ``storage.keys``);
  values are ``bytes`` (services pick their encoding, usually orjson).
  Secondary lookups are further tables the service maintains in the same
  transaction.
* **logs** — append-only sequences per name (streams, execution history): each
  append gets the next sequence number of that log, starting at 1.
* **queues** — messages with visibility leases (SQS, async invokes, retries):
  a leased message is invisible until its lease runs out or it is acked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

T = TypeVar("T")


class StoreError(Exception):
    """The store could not be used (connection lost, schema mismatch, disk full)."""


@dataclass(frozen=True)
class QueueMessage:
    """A message as stored in a queue."""

    queue: str
    id: int
    value: bytes
    group: str | None
    #: unix seconds when it was enqueued
    enqueued_at: float
    #: unix seconds from when it can be leased
    visible_at: float
    #: how many times it was leased so far (including the lease that returned it)
    receive_count: int
    #: unix seconds of the first lease, or None
    first_received_at: float | None
    #: token of the current lease (changes with every lease); empty if never leased
    lease_token: str


class Txn(Protocol):
    """Operations available inside one transaction."""

    # -- tables -------------------------------------------------------------
    def get(self, table: str, key: bytes) -> bytes | None:
        """The value stored under ``key``, or None."""

    def put(self, table: str, key: bytes, value: bytes) -> None:
        """Insert or replace."""

    def insert(self, table: str, key: bytes, value: bytes) -> bool:
        """Insert only if absent; False (and no change) if the key exists."""

    def delete(self, table: str, key: bytes) -> bool:
        """Remove; True if something was removed."""

    def scan(
        self,
        table: str,
        *,
        prefix: bytes = b"",
        start: bytes | None = None,
        end: bytes | None = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> list[tuple[bytes, bytes]]:
        """Records with ``key.startswith(prefix)`` and ``start <= key < end``, in key
        order (descending if ``reverse``), at most ``limit`` of them."""

    def count(self, table: str, *, prefix: bytes = b"") -> int:
        """How many records start with ``prefix``."""

    def delete_prefix(self, table: str, prefix: bytes = b"") -> int:
        """Remove every record whose key starts with ``prefix``; returns how many."""

    # -- logs ---------------------------------------------------------------
    def append(self, log: str, value: bytes) -> int:
        """Append and return the new record's sequence number (1, 2, 3, ... per log;
        never reused, even after trimming)."""

    def read_log(self, log: str, *, after: int = 0, limit: int = 100) -> list[tuple[int, bytes]]:
        """Records with sequence number > ``after``, ascending, at most ``limit``."""

    def log_bounds(self, log: str) -> tuple[int, int]:
        """(first, last) sequence numbers present; (0, 0) for an empty log."""

    def trim_log(self, log: str, *, before: int) -> int:
        """Drop records with sequence number < ``before``; returns how many."""

    def drop_log(self, log: str) -> None:
        """Remove a whole log's records. Its numbering is kept: appending to the
        same name again continues after the last number ever handed out."""

    # -- queues -------------------------------------------------------------
    def enqueue(
        self, queue: str, value: bytes, *, now: float, delay: float = 0.0, group: str | None = None
    ) -> int:
        """Add a message visible from ``now + delay``; returns its id (ascending per
        store, so ids order messages by arrival)."""

    def lease(
        self,
        queue: str,
        *,
        now: float,
        visibility: float,
        limit: int = 1,
        exclusive_groups: bool = False,
    ) -> list[QueueMessage]:
        """Lease up to ``limit`` visible messages in id order, making each invisible
        until ``now + visibility`` and bumping its receive count. With
        ``exclusive_groups`` (FIFO), messages of a group that has a message in flight
        are skipped, and within a group only the oldest messages are returned."""

    def ack(self, queue: str, message_id: int, lease_token: str | None = None) -> bool:
        """Delete a message; with ``lease_token``, only if that lease is the current
        one. True if deleted."""

    def set_visible_at(
        self, queue: str, message_id: int, visible_at: float, lease_token: str | None = None
    ) -> bool:
        """Change when a message becomes visible (extend or end a lease)."""

    def get_message(self, queue: str, message_id: int) -> QueueMessage | None:
        """One message, visible or not."""

    def peek(self, queue: str, *, after_id: int = 0, limit: int = 100) -> list[QueueMessage]:
        """Messages in id order regardless of visibility, without leasing them."""

    def queue_stats(self, queue: str, *, now: float) -> tuple[int, int, int]:
        """(visible, in flight, delayed) counts. In flight = leased and not yet
        visible again; delayed = never leased and not yet visible."""

    def next_visible_at(self, queue: str) -> float | None:
        """The earliest ``visible_at`` among messages not visible now, or of all
        messages; None if the queue is empty (used to sleep until due)."""

    def purge(self, queue: str) -> int:
        """Delete every message; returns how many."""


class Store(Protocol):
    """A backend: runs transaction functions durably."""

    #: ``sqlite`` or ``postgresql``
    backend: str

    async def read(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn`` in a read-only view (writes in it are an error). Like a write
        function, it may run more than once (a backend may restart a slow read
        elsewhere), so it must do nothing but store operations."""

    async def write(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn`` in a transaction, committed durably before this returns."""

    def read_sync(self, fn: Callable[[Txn], T]) -> T:
        """Blocking ``read``, for start-up, the CLI and tests; not on the event loop."""

    def write_sync(self, fn: Callable[[Txn], T]) -> T:
        """Blocking ``write``, for start-up, the CLI and tests; not on the event loop."""

    async def close(self) -> None:
        """Finish pending writes and release connections."""
