"""The SQLite queue schema: its index set, the migration of data dirs made with the
old ``queue_messages`` table, and message ids that are never issued twice."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from nubes.storage.base import QueueMessage, Txn
from nubes.storage.sqlite import SqliteStore

#: the queue table as nubes created it before queue_items (AUTOINCREMENT, full group index)
_OLD_SCHEMA = """
CREATE TABLE queue_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    grp TEXT,
    value BLOB NOT NULL,
    enqueued_at REAL NOT NULL,
    visible_at REAL NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    first_received_at REAL,
    lease_token TEXT NOT NULL DEFAULT ''
);
CREATE INDEX queue_messages_visible ON queue_messages (queue, visible_at, receive_count);
CREATE INDEX queue_messages_order ON queue_messages (queue, id);
CREATE INDEX queue_messages_group ON queue_messages (queue, grp, id);
"""


def _schema(path: Path) -> dict[str, str]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL AND type IN ('table', 'index')"
        ).fetchall()
    finally:
        conn.close()
    return {str(name): str(sql) for name, sql in rows}


def _write(store: SqliteStore, fn: object) -> object:
    return asyncio.run(store.write(fn))  # type: ignore[arg-type]


def test_new_database_has_no_autoincrement_and_a_partial_group_index(tmp_path: Path) -> None:
    path = tmp_path / "nubes.db"
    SqliteStore(path).close_sync()
    schema = _schema(path)
    assert "queue_messages" not in schema
    assert "AUTOINCREMENT" not in schema["queue_items"]
    indexes = {name for name in schema if name.startswith("queue_items_")}
    assert indexes == {"queue_items_visible", "queue_items_order", "queue_items_fifo"}
    assert "WHERE grp IS NOT NULL" in schema["queue_items_fifo"]


def test_old_database_migrates_its_messages_ids_and_high_water(tmp_path: Path) -> None:
    """A data dir with the old table: messages keep their ids, leases and groups; an id
    AUTOINCREMENT had issued (its message since deleted) is not issued again; a second
    start changes nothing."""
    path = tmp_path / "nubes.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(_OLD_SCHEMA)
    now = time.time()
    conn.executemany(
        "INSERT INTO queue_messages (queue, grp, value, enqueued_at, visible_at, receive_count,"
        " lease_token) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            ("q", "g1", b"a", now, now + 60, 1, "tok"),  # in flight
            ("q", "g1", b"b", now, now, 0, ""),
            ("q", None, b"c", now, now, 0, ""),
            ("q", None, b"gone", now, now, 0, ""),
        ],
    )
    conn.execute("DELETE FROM queue_messages WHERE value = ?", (b"gone",))  # id 4 was issued
    conn.close()

    for round_ in range(2):  # idempotent: the second start finds the migrated schema
        store = SqliteStore(path)
        try:
            schema = _schema(path)
            assert "queue_messages" not in schema
            assert "queue_messages_group" not in schema

            def look(txn: Txn) -> list[QueueMessage]:
                return txn.peek("q", limit=10)

            messages = asyncio.run(store.read(look))
            assert [(m.id, m.value, m.group) for m in messages][:3] == [
                (1, b"a", "g1"),
                (2, b"b", "g1"),
                (3, b"c", None),
            ]
            assert (messages[0].lease_token, messages[0].receive_count) == ("tok", 1)
            if round_ == 0:
                new_id = _write(store, lambda txn: txn.enqueue("q", b"d", now=time.time()))
                assert new_id == 5

                # FIFO: g1's first message is in flight, so only the ungrouped ones
                def lease(txn: Txn) -> list[bytes]:
                    got = txn.lease(
                        "q", now=time.time(), visibility=30, limit=10, exclusive_groups=True
                    )
                    return [m.value for m in got]

                assert _write(store, lease) == [b"c", b"d"]
        finally:
            store.close_sync()


def test_ids_are_never_issued_twice_after_the_newest_message_goes(tmp_path: Path) -> None:
    """Deleting (ack or purge) the newest message and restarting must not hand its id
    to the next message: FIFO sequence numbers are made from ids."""
    path = tmp_path / "nubes.db"
    store = SqliteStore(path)
    try:
        first = _write(store, lambda txn: txn.enqueue("q", b"1", now=time.time()))
        second = _write(store, lambda txn: txn.enqueue("q", b"2", now=time.time()))
        assert isinstance(first, int) and isinstance(second, int) and second > first
        assert _write(store, lambda txn: txn.ack("q", second)) is True
    finally:
        store.close_sync()
    store = SqliteStore(path)
    try:
        third = _write(store, lambda txn: txn.enqueue("q", b"3", now=time.time()))
        assert isinstance(third, int) and third > second
        assert _write(store, lambda txn: txn.enqueue("other", b"x", now=time.time())) == third + 1
        assert _write(store, lambda txn: txn.purge("other")) == 1
        assert _write(store, lambda txn: txn.purge("q")) == 2
        assert _write(store, lambda txn: txn.purge("q")) == 0
    finally:
        store.close_sync()
    store = SqliteStore(path)
    try:
        fourth = _write(store, lambda txn: txn.enqueue("q", b"4", now=time.time()))
        assert fourth == third + 2

        def undone(txn: Txn) -> None:  # a rolled-back delete leaves no high-water mark
            txn.ack("q", fourth)
            raise RuntimeError("undo")

        try:
            _write(store, undone)
        except RuntimeError:
            pass
        assert asyncio.run(store.read(lambda txn: txn.get_message("q", fourth))) is not None
    finally:
        store.close_sync()


def test_fifo_lease_plan_uses_the_partial_index_once_analyzed(tmp_path: Path) -> None:
    """The FIFO lease's blocked-groups scan says ``grp IS NOT NULL``, so SQLite may
    use the partial index (it does once statistics say it is selective)."""
    from nubes.storage._sqlitetxn import _LEASE_EXCLUSIVE

    path = tmp_path / "nubes.db"
    SqliteStore(path).close_sync()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.executemany(
            "INSERT INTO queue_items (queue, grp, value, enqueued_at, visible_at)"
            " VALUES (?, ?, ?, ?, ?)",
            [(f"q{i % 3}", f"g{i % 7}" if i % 3 == 0 else None, b"x", i, i) for i in range(600)],
        )
        conn.execute("ANALYZE")
        plan = " | ".join(
            str(row[3])
            for row in conn.execute(
                "EXPLAIN QUERY PLAN " + _LEASE_EXCLUSIVE, (1, 1, "q0", 1, "q0", 1, 10)
            )
        )
    finally:
        conn.close()
    assert "queue_items_fifo" in plan, plan
