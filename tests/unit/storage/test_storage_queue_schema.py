"""The SQLite queue schema: the index set, its migration on existing data dirs, and
that FIFO leases still find their group index."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from nubes.storage.base import Txn
from nubes.storage.sqlite import SqliteStore


def _indexes(path: Path) -> dict[str, str]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'queue_messages'"
            " AND sql IS NOT NULL"
        ).fetchall()
    finally:
        conn.close()
    return {str(name): str(sql) for name, sql in rows}


def test_new_database_indexes_groups_of_fifo_messages_only(tmp_path: Path) -> None:
    path = tmp_path / "nubes.db"
    SqliteStore(path).close_sync()
    indexes = _indexes(path)
    assert "queue_messages_group" not in indexes
    assert "WHERE grp IS NOT NULL" in indexes["queue_messages_fifo"]
    assert set(indexes) == {"queue_messages_visible", "queue_messages_order", "queue_messages_fifo"}


def test_old_database_migrates_and_keeps_its_messages(tmp_path: Path) -> None:
    """A data dir made before the partial index: the full group index is replaced,
    the messages stay, and opening it again changes nothing."""
    path = tmp_path / "nubes.db"
    SqliteStore(path).close_sync()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP INDEX queue_messages_fifo")
    conn.execute("CREATE INDEX queue_messages_group ON queue_messages (queue, grp, id)")
    now = time.time()
    conn.executemany(
        "INSERT INTO queue_messages (queue, grp, value, enqueued_at, visible_at)"
        " VALUES (?, ?, ?, ?, ?)",
        [("q", "g1", b"a", now, now), ("q", "g1", b"b", now, now), ("q", None, b"c", now, now)],
    )
    conn.close()

    for _ in range(2):  # idempotent: a second start finds the migrated schema
        store = SqliteStore(path)
        try:
            indexes = _indexes(path)
            assert "queue_messages_group" not in indexes
            assert "queue_messages_fifo" in indexes

            def lease(txn: Txn) -> list[bytes]:
                got = txn.lease(
                    "q", now=time.time(), visibility=30, limit=10, exclusive_groups=True
                )
                for m in got:
                    txn.set_visible_at("q", m.id, 0.0)  # hand them back for the next round
                return [m.value for m in got]

            # nothing of g1 is in flight: both its messages and the ungrouped one, in order
            assert asyncio.run(store.write(lease)) == [b"a", b"b", b"c"]
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
            "INSERT INTO queue_messages (queue, grp, value, enqueued_at, visible_at)"
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
    assert "queue_messages_fifo" in plan, plan
