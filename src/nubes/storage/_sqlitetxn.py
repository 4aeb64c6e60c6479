"""``Txn`` for SQLite: the contract's operations as SQL on one connection."""

from __future__ import annotations

import sqlite3
from typing import Any

from nubes.storage._common import (
    QUEUE_COLUMNS,
    check_limit,
    queue_message,
    read_only_error,
    scan_bounds,
    scan_statements,
)
from nubes.storage.base import QueueMessage

_SCAN = scan_statements("?")
# Ids are never issued twice (see the schema): one past the largest present and
# the high-water mark of deleted ones. Both are single b-tree seeks, and unlike
# AUTOINCREMENT nothing is written per send beyond the message itself.
_ENQUEUE = (
    "INSERT INTO queue_items (id, queue, grp, value, enqueued_at, visible_at)"
    " VALUES (max(coalesce((SELECT max(id) FROM queue_items), 0),"
    " coalesce((SELECT last FROM queue_high_water WHERE name = 'queue_items'), 0)) + 1,"
    " ?, ?, ?, ?, ?)"
)
# After a delete: remember the deleted id if it was the largest present, so the
# next enqueue does not issue it again (written only when the newest message goes).
_HIGH_WATER = (
    "INSERT INTO queue_high_water (name, last) SELECT 'queue_items', ?"
    " WHERE ? > coalesce((SELECT max(id) FROM queue_items), 0)"
    " ON CONFLICT (name) DO UPDATE SET last = max(last, excluded.last)"
)
_LEASE = (
    "UPDATE queue_items SET visible_at = ?, receive_count = receive_count + 1,"
    " first_received_at = coalesce(first_received_at, ?),"
    " lease_token = lower(hex(randomblob(12)))"
    " WHERE id IN (SELECT id FROM queue_items WHERE queue = ? AND visible_at <= ?"
    " ORDER BY id LIMIT ?)"
    f" RETURNING {QUEUE_COLUMNS}"
)
# FIFO: a message qualifies only if no older message of its group is invisible
# (in flight or delayed), so each group hands out its oldest messages in order.
# ``blocked`` finds each group's first invisible message once, which keeps this
# linear in the queue's length (a per-message NOT EXISTS was quadratic).
_LEASE_EXCLUSIVE = (
    "UPDATE queue_items SET visible_at = ?, receive_count = receive_count + 1,"
    " first_received_at = coalesce(first_received_at, ?),"
    " lease_token = lower(hex(randomblob(12)))"
    " WHERE id IN (WITH blocked AS (SELECT grp, min(id) AS first FROM queue_items"
    " WHERE queue = ? AND visible_at > ? AND grp IS NOT NULL GROUP BY grp)"
    " SELECT m.id FROM queue_items AS m LEFT JOIN blocked AS b ON b.grp = m.grp"
    " WHERE m.queue = ? AND m.visible_at <= ? AND (b.first IS NULL OR m.id < b.first)"
    " ORDER BY m.id LIMIT ?)"
    f" RETURNING {QUEUE_COLUMNS}"
)


class SqliteTxn:
    """``Txn`` over one SQLite connection (see ``storage.base.Txn`` for the contract)."""

    __slots__ = ("_c", "_writable")

    def __init__(self, conn: sqlite3.Connection, writable: bool) -> None:
        self._c = conn
        self._writable = writable

    def _need_write(self, operation: str) -> None:
        if not self._writable:
            raise read_only_error(operation)

    # -- tables -------------------------------------------------------------
    def get(self, table: str, key: bytes) -> bytes | None:
        """The value stored under ``key``, or None."""
        row = self._c.execute("SELECT v FROM kv WHERE tbl = ? AND k = ?", (table, key)).fetchone()
        return None if row is None else bytes(row[0])

    def put(self, table: str, key: bytes, value: bytes) -> None:
        """Insert or replace."""
        self._need_write("put")
        if type(key) is not bytes:  # a str key would be stored as TEXT and sort apart
            raise TypeError(f"keys are bytes, not {type(key).__name__}")
        self._c.execute(
            "INSERT OR REPLACE INTO kv (tbl, k, v) VALUES (?, ?, ?)", (table, key, value)
        )

    def insert(self, table: str, key: bytes, value: bytes) -> bool:
        """Insert only if absent; False (and no change) if the key exists."""
        self._need_write("insert")
        if type(key) is not bytes:
            raise TypeError(f"keys are bytes, not {type(key).__name__}")
        cur = self._c.execute(
            "INSERT OR IGNORE INTO kv (tbl, k, v) VALUES (?, ?, ?)", (table, key, value)
        )
        return cur.rowcount > 0

    def delete(self, table: str, key: bytes) -> bool:
        """Remove; True if something was removed."""
        self._need_write("delete")
        return self._c.execute("DELETE FROM kv WHERE tbl = ? AND k = ?", (table, key)).rowcount > 0

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
        """Records in ``[start, end)`` starting with ``prefix``, in key order."""
        check_limit(limit)
        low, high = scan_bounds(prefix, start, end)
        if (high is not None and low >= high) or limit == 0:
            return []
        args: list[Any] = [table, low]
        if high is not None:
            args.append(high)
        if limit is not None:
            args.append(limit)
        sql = _SCAN[(high is not None, reverse, limit is not None)]
        return self._c.execute(sql, args).fetchall()

    def count(self, table: str, *, prefix: bytes = b"") -> int:
        """How many records start with ``prefix``."""
        low, high = scan_bounds(prefix, None, None)
        if high is None:
            row = self._c.execute(
                "SELECT count(*) FROM kv WHERE tbl = ? AND k >= ?", (table, low)
            ).fetchone()
        else:
            row = self._c.execute(
                "SELECT count(*) FROM kv WHERE tbl = ? AND k >= ? AND k < ?", (table, low, high)
            ).fetchone()
        return int(row[0])

    def delete_prefix(self, table: str, prefix: bytes = b"") -> int:
        """Remove every record whose key starts with ``prefix``; returns how many."""
        self._need_write("delete_prefix")
        low, high = scan_bounds(prefix, None, None)
        if high is None:
            cur = self._c.execute("DELETE FROM kv WHERE tbl = ? AND k >= ?", (table, low))
        else:
            cur = self._c.execute(
                "DELETE FROM kv WHERE tbl = ? AND k >= ? AND k < ?", (table, low, high)
            )
        return cur.rowcount

    # -- logs ---------------------------------------------------------------
    def append(self, log: str, value: bytes) -> int:
        """Append; the head row outlives trims and drops, so numbers are never reused."""
        self._need_write("append")
        seq = self._c.execute(
            "INSERT INTO log_heads (log, last) VALUES (?, 1)"
            " ON CONFLICT (log) DO UPDATE SET last = last + 1 RETURNING last",
            (log,),
        ).fetchone()[0]
        self._c.execute("INSERT INTO logs (log, seq, v) VALUES (?, ?, ?)", (log, seq, value))
        return int(seq)

    def read_log(self, log: str, *, after: int = 0, limit: int = 100) -> list[tuple[int, bytes]]:
        """Records with sequence number > ``after``, ascending, at most ``limit``."""
        check_limit(limit)
        return self._c.execute(
            "SELECT seq, v FROM logs WHERE log = ? AND seq > ? ORDER BY seq LIMIT ?",
            (log, after, limit),
        ).fetchall()

    def log_bounds(self, log: str) -> tuple[int, int]:
        """(first, last) sequence numbers present; (0, 0) for an empty log."""
        row = self._c.execute(
            "SELECT min(seq), max(seq) FROM logs WHERE log = ?", (log,)
        ).fetchone()
        return (0, 0) if row[0] is None else (int(row[0]), int(row[1]))

    def trim_log(self, log: str, *, before: int) -> int:
        """Drop records with sequence number < ``before``; returns how many."""
        self._need_write("trim_log")
        return self._c.execute("DELETE FROM logs WHERE log = ? AND seq < ?", (log, before)).rowcount

    def drop_log(self, log: str) -> None:
        """Remove a whole log's records (its numbering continues if it is reused)."""
        self._need_write("drop_log")
        self._c.execute("DELETE FROM logs WHERE log = ?", (log,))

    # -- queues -------------------------------------------------------------
    def enqueue(
        self, queue: str, value: bytes, *, now: float, delay: float = 0.0, group: str | None = None
    ) -> int:
        """Add a message visible from ``now + delay``; returns its id."""
        self._need_write("enqueue")
        cur = self._c.execute(_ENQUEUE, (queue, group, value, now, now + delay))
        return int(cur.lastrowid or 0)

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
            rows = self._c.execute(
                _LEASE_EXCLUSIVE, (now + visibility, now, queue, now, queue, now, limit)
            ).fetchall()
        else:
            rows = self._c.execute(_LEASE, (now + visibility, now, queue, now, limit)).fetchall()
        return sorted((queue_message(r) for r in rows), key=lambda m: m.id)

    def ack(self, queue: str, message_id: int, lease_token: str | None = None) -> bool:
        """Delete a message (only under its current lease when ``lease_token`` is given)."""
        self._need_write("ack")
        if lease_token is None:
            cur = self._c.execute(
                "DELETE FROM queue_items WHERE id = ? AND queue = ?", (message_id, queue)
            )
        else:
            cur = self._c.execute(
                "DELETE FROM queue_items WHERE id = ? AND queue = ? AND lease_token = ?",
                (message_id, queue, lease_token),
            )
        if cur.rowcount <= 0:
            return False
        self._c.execute(_HIGH_WATER, (message_id, message_id))
        return True

    def set_visible_at(
        self, queue: str, message_id: int, visible_at: float, lease_token: str | None = None
    ) -> bool:
        """Change when a message becomes visible (extend or end a lease)."""
        self._need_write("set_visible_at")
        sql = "UPDATE queue_items SET visible_at = ? WHERE id = ? AND queue = ?"
        args: tuple[Any, ...] = (visible_at, message_id, queue)
        if lease_token is not None:
            sql += " AND lease_token = ?"
            args += (lease_token,)
        return self._c.execute(sql, args).rowcount > 0

    def get_message(self, queue: str, message_id: int) -> QueueMessage | None:
        """One message, visible or not."""
        row = self._c.execute(
            f"SELECT {QUEUE_COLUMNS} FROM queue_items WHERE id = ? AND queue = ?",
            (message_id, queue),
        ).fetchone()
        return None if row is None else queue_message(row)

    def peek(self, queue: str, *, after_id: int = 0, limit: int = 100) -> list[QueueMessage]:
        """Messages in id order regardless of visibility, without leasing them."""
        check_limit(limit)
        rows = self._c.execute(
            f"SELECT {QUEUE_COLUMNS} FROM queue_items WHERE queue = ? AND id > ?"
            " ORDER BY id LIMIT ?",
            (queue, after_id, limit),
        ).fetchall()
        return [queue_message(r) for r in rows]

    def queue_stats(self, queue: str, *, now: float) -> tuple[int, int, int]:
        """(visible, in flight, delayed) counts."""
        # Two index-only range counts over (queue, visible_at, receive_count).
        visible = self._c.execute(
            "SELECT count(*) FROM queue_items WHERE queue = ? AND visible_at <= ?",
            (queue, now),
        ).fetchone()[0]
        row = self._c.execute(
            "SELECT count(*), coalesce(sum(receive_count > 0), 0) FROM queue_items"
            " WHERE queue = ? AND visible_at > ?",
            (queue, now),
        ).fetchone()
        return int(visible), int(row[1]), int(row[0]) - int(row[1])

    def next_visible_at(self, queue: str) -> float | None:
        """The earliest ``visible_at`` of the queue's messages; None if it is empty."""
        row = self._c.execute(
            "SELECT min(visible_at) FROM queue_items WHERE queue = ?", (queue,)
        ).fetchone()
        return None if row[0] is None else float(row[0])

    def purge(self, queue: str) -> int:
        """Delete every message; returns how many."""
        self._need_write("purge")
        newest = self._c.execute(
            "SELECT max(id) FROM queue_items WHERE queue = ?", (queue,)
        ).fetchone()[0]
        if newest is None:
            return 0
        removed: int = self._c.execute("DELETE FROM queue_items WHERE queue = ?", (queue,)).rowcount
        self._c.execute(_HIGH_WATER, (newest, newest))
        return removed
