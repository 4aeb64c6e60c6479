"""``Txn`` for PostgreSQL: the contract's operations as SQL on one connection."""

from __future__ import annotations

from typing import Any

import psycopg

from nubes.storage._common import (
    QUEUE_COLUMNS,
    check_limit,
    queue_message,
    read_only_error,
    scan_bounds,
    scan_statements,
)
from nubes.storage.base import QueueMessage

_SCAN = scan_statements("%s")
_LEASE_SET = (
    "UPDATE queue_messages AS q SET visible_at = %s, receive_count = q.receive_count + 1,"
    " first_received_at = coalesce(q.first_received_at, %s),"
    " lease_token = replace(gen_random_uuid()::text, '-', '')"
    " FROM c WHERE q.id = c.id RETURNING "
) + ", ".join(f"q.{c.strip()}" for c in QUEUE_COLUMNS.split(","))
# SKIP LOCKED: concurrent leasers on other nodes take the next messages instead
# of waiting for (or double-leasing) the ones being leased right now.
_LEASE = (
    "WITH c AS (SELECT id FROM queue_messages WHERE queue = %s AND visible_at <= %s"
    " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED) " + _LEASE_SET
)
# FIFO: only messages with no older invisible (in flight or delayed) message of
# their group (``blocked``: each group's first invisible message); run under a
# per-queue advisory lock (see ``lease``).
_LEASE_EXCLUSIVE = (
    "WITH blocked AS (SELECT grp, min(id) AS first FROM queue_messages"
    " WHERE queue = %s AND visible_at > %s AND grp IS NOT NULL GROUP BY grp),"
    " c AS (SELECT m.id FROM queue_messages AS m LEFT JOIN blocked AS b ON b.grp = m.grp"
    " WHERE m.queue = %s AND m.visible_at <= %s AND (b.first IS NULL OR m.id < b.first)"
    " ORDER BY m.id LIMIT %s FOR UPDATE OF m SKIP LOCKED) " + _LEASE_SET
)


class PostgresTxn:
    """``Txn`` over one psycopg connection inside an open transaction."""

    __slots__ = ("_begin", "_c", "_writable")

    def __init__(self, conn: psycopg.Connection[Any], writable: bool, begin: str) -> None:
        self._c = conn
        self._writable = writable
        #: the BEGIN still to send, pipelined with the first statement
        self._begin: str | None = begin

    @property
    def begun(self) -> bool:
        """Whether a transaction was opened (a function may issue no statement)."""
        return self._begin is None

    def _execute(self, sql: str, args: tuple[Any, ...] | list[Any]) -> psycopg.Cursor[Any]:
        begin = self._begin
        if begin is None:
            return self._c.execute(sql, args)
        # BEGIN travels with the first statement: one round trip instead of two.
        self._begin = None
        with self._c.pipeline():
            self._c.execute(begin)
            cursor = self._c.execute(sql, args)
        return cursor

    def _need_write(self, operation: str) -> None:
        if not self._writable:
            raise read_only_error(operation)

    def _one(self, sql: str, args: tuple[Any, ...]) -> Any:
        return self._execute(sql, args).fetchone()

    def _all(self, sql: str, args: tuple[Any, ...] | list[Any]) -> list[Any]:
        return self._execute(sql, args).fetchall()

    def _rowcount(self, sql: str, args: tuple[Any, ...]) -> int:
        return int(self._execute(sql, args).rowcount)

    # -- tables -------------------------------------------------------------
    def get(self, table: str, key: bytes) -> bytes | None:
        """The value stored under ``key``, or None."""
        row = self._one("SELECT v FROM kv WHERE tbl = %s AND k = %s", (table, key))
        return None if row is None else bytes(row[0])

    def put(self, table: str, key: bytes, value: bytes) -> None:
        """Insert or replace."""
        self._need_write("put")
        if type(key) is not bytes:
            raise TypeError(f"keys are bytes, not {type(key).__name__}")
        self._execute(
            "INSERT INTO kv (tbl, k, v) VALUES (%s, %s, %s)"
            " ON CONFLICT (tbl, k) DO UPDATE SET v = excluded.v",
            (table, key, value),
        )

    def insert(self, table: str, key: bytes, value: bytes) -> bool:
        """Insert only if absent; False (and no change) if the key exists."""
        self._need_write("insert")
        if type(key) is not bytes:
            raise TypeError(f"keys are bytes, not {type(key).__name__}")
        return (
            self._rowcount(
                "INSERT INTO kv (tbl, k, v) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                (table, key, value),
            )
            > 0
        )

    def delete(self, table: str, key: bytes) -> bool:
        """Remove; True if something was removed."""
        self._need_write("delete")
        return self._rowcount("DELETE FROM kv WHERE tbl = %s AND k = %s", (table, key)) > 0

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
        """Records in ``[start, end)`` starting with ``prefix``, in bytewise key order."""
        check_limit(limit)
        low, high = scan_bounds(prefix, start, end)
        if (high is not None and low >= high) or limit == 0:
            return []
        args: list[Any] = [table, low]
        if high is not None:
            args.append(high)
        if limit is not None:
            args.append(limit)
        rows = self._all(_SCAN[(high is not None, reverse, limit is not None)], args)
        return [(bytes(k), bytes(v)) for k, v in rows]

    def count(self, table: str, *, prefix: bytes = b"") -> int:
        """How many records start with ``prefix``."""
        low, high = scan_bounds(prefix, None, None)
        if high is None:
            row = self._one("SELECT count(*) FROM kv WHERE tbl = %s AND k >= %s", (table, low))
        else:
            row = self._one(
                "SELECT count(*) FROM kv WHERE tbl = %s AND k >= %s AND k < %s",
                (table, low, high),
            )
        return int(row[0])

    def delete_prefix(self, table: str, prefix: bytes = b"") -> int:
        """Remove every record whose key starts with ``prefix``; returns how many."""
        self._need_write("delete_prefix")
        low, high = scan_bounds(prefix, None, None)
        if high is None:
            return self._rowcount("DELETE FROM kv WHERE tbl = %s AND k >= %s", (table, low))
        return self._rowcount(
            "DELETE FROM kv WHERE tbl = %s AND k >= %s AND k < %s", (table, low, high)
        )

    # -- logs ---------------------------------------------------------------
    def append(self, log: str, value: bytes) -> int:
        """Append; the head row outlives trims and drops, so numbers are never reused."""
        self._need_write("append")
        row = self._one(
            "INSERT INTO log_heads (log, last) VALUES (%s, 1)"
            " ON CONFLICT (log) DO UPDATE SET last = log_heads.last + 1 RETURNING last",
            (log,),
        )
        seq = int(row[0])
        self._execute("INSERT INTO logs (log, seq, v) VALUES (%s, %s, %s)", (log, seq, value))
        return seq

    def read_log(self, log: str, *, after: int = 0, limit: int = 100) -> list[tuple[int, bytes]]:
        """Records with sequence number > ``after``, ascending, at most ``limit``."""
        check_limit(limit)
        rows = self._all(
            "SELECT seq, v FROM logs WHERE log = %s AND seq > %s ORDER BY seq LIMIT %s",
            (log, after, limit),
        )
        return [(int(s), bytes(v)) for s, v in rows]

    def log_bounds(self, log: str) -> tuple[int, int]:
        """(first, last) sequence numbers present; (0, 0) for an empty log."""
        row = self._one("SELECT min(seq), max(seq) FROM logs WHERE log = %s", (log,))
        return (0, 0) if row[0] is None else (int(row[0]), int(row[1]))

    def trim_log(self, log: str, *, before: int) -> int:
        """Drop records with sequence number < ``before``; returns how many."""
        self._need_write("trim_log")
        return self._rowcount("DELETE FROM logs WHERE log = %s AND seq < %s", (log, before))

    def drop_log(self, log: str) -> None:
        """Remove a whole log's records (its numbering continues if it is reused)."""
        self._need_write("drop_log")
        self._execute("DELETE FROM logs WHERE log = %s", (log,))

    # -- queues -------------------------------------------------------------
    def enqueue(
        self, queue: str, value: bytes, *, now: float, delay: float = 0.0, group: str | None = None
    ) -> int:
        """Add a message visible from ``now + delay``; returns its id."""
        self._need_write("enqueue")
        row = self._one(
            "INSERT INTO queue_messages (queue, grp, value, enqueued_at, visible_at)"
            " VALUES (%s, %s, %s, %s, %s) RETURNING id",
            (queue, group, value, now, now + delay),
        )
        return int(row[0])

    def lease(
        self,
        queue: str,
        *,
        now: float,
        visibility: float,
        limit: int = 1,
        exclusive_groups: bool = False,
    ) -> list[QueueMessage]:
        """Lease up to ``limit`` visible messages in id order (see ``Txn.lease``)."""
        self._need_write("lease")
        check_limit(limit)
        if limit == 0:
            return []
        if exclusive_groups:
            # SKIP LOCKED alone could hand a group's next message to one node while
            # another leases the group's head: leasers of a FIFO queue take turns.
            self._execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"nubes.queue.{queue}",))
            rows = self._all(
                _LEASE_EXCLUSIVE, (queue, now, queue, now, limit, now + visibility, now)
            )
        else:
            rows = self._all(_LEASE, (queue, now, limit, now + visibility, now))
        return sorted((queue_message(r) for r in rows), key=lambda m: m.id)

    def ack(self, queue: str, message_id: int, lease_token: str | None = None) -> bool:
        """Delete a message (only under its current lease when ``lease_token`` is given)."""
        self._need_write("ack")
        if lease_token is None:
            return (
                self._rowcount(
                    "DELETE FROM queue_messages WHERE id = %s AND queue = %s", (message_id, queue)
                )
                > 0
            )
        return (
            self._rowcount(
                "DELETE FROM queue_messages WHERE id = %s AND queue = %s AND lease_token = %s",
                (message_id, queue, lease_token),
            )
            > 0
        )

    def set_visible_at(
        self, queue: str, message_id: int, visible_at: float, lease_token: str | None = None
    ) -> bool:
        """Change when a message becomes visible (extend or end a lease)."""
        self._need_write("set_visible_at")
        sql = "UPDATE queue_messages SET visible_at = %s WHERE id = %s AND queue = %s"
        args: tuple[Any, ...] = (visible_at, message_id, queue)
        if lease_token is not None:
            sql += " AND lease_token = %s"
            args += (lease_token,)
        return self._rowcount(sql, args) > 0

    def get_message(self, queue: str, message_id: int) -> QueueMessage | None:
        """One message, visible or not."""
        row = self._one(
            f"SELECT {QUEUE_COLUMNS} FROM queue_messages WHERE id = %s AND queue = %s",
            (message_id, queue),
        )
        return None if row is None else queue_message(row)

    def peek(self, queue: str, *, after_id: int = 0, limit: int = 100) -> list[QueueMessage]:
        """Messages in id order regardless of visibility, without leasing them."""
        check_limit(limit)
        rows = self._all(
            f"SELECT {QUEUE_COLUMNS} FROM queue_messages WHERE queue = %s AND id > %s"
            " ORDER BY id LIMIT %s",
            (queue, after_id, limit),
        )
        return [queue_message(r) for r in rows]

    def queue_stats(self, queue: str, *, now: float) -> tuple[int, int, int]:
        """(visible, in flight, delayed) counts."""
        row = self._one(
            "SELECT count(*) FILTER (WHERE visible_at <= %s),"
            " count(*) FILTER (WHERE visible_at > %s AND receive_count > 0),"
            " count(*) FILTER (WHERE visible_at > %s AND receive_count = 0)"
            " FROM queue_messages WHERE queue = %s",
            (now, now, now, queue),
        )
        return int(row[0]), int(row[1]), int(row[2])

    def next_visible_at(self, queue: str) -> float | None:
        """The earliest ``visible_at`` of the queue's messages; None if it is empty."""
        row = self._one("SELECT min(visible_at) FROM queue_messages WHERE queue = %s", (queue,))
        return None if row[0] is None else float(row[0])

    def purge(self, queue: str) -> int:
        """Delete every message; returns how many."""
        self._need_write("purge")
        return self._rowcount("DELETE FROM queue_messages WHERE queue = %s", (queue,))
