"""Pieces both backends share: scan bounds and statements, queue rows, the
read-only guard."""

from __future__ import annotations

from typing import Any

from nubes.storage.base import QueueMessage, StoreError
from nubes.storage.keys import prefix_end

#: the columns every queue query selects, in ``QueueMessage`` order
QUEUE_COLUMNS = (
    "queue, id, value, grp, enqueued_at, visible_at, receive_count, first_received_at, lease_token"
)


def scan_bounds(
    prefix: bytes, start: bytes | None, end: bytes | None
) -> tuple[bytes, bytes | None]:
    """Fold ``prefix``/``start``/``end`` into one half-open range ``[low, high)``.

    ``high`` None means unbounded. The range may be empty (``low >= high``).
    """
    low = prefix if start is None or start < prefix else start
    high = prefix_end(prefix) if prefix else None
    if end is not None and (high is None or end < high):
        high = end
    return low, high


#: (bounded above, descending, limited) -> ``SELECT`` of a table scan
ScanStatements = dict[tuple[bool, bool, bool], str]


def scan_statements(mark: str) -> ScanStatements:
    """Every ``SELECT k, v`` a ``scan`` may need, keyed by (``high`` given,
    ``reverse``, ``limit`` given), with the backend's placeholder ``mark``
    (``?`` for SQLite, ``%s`` for psycopg). Arguments go in the order table,
    low, [high], [limit]."""
    statements: ScanStatements = {}
    for bounded in (False, True):
        for reverse in (False, True):
            for limited in (False, True):
                sql = f"SELECT k, v FROM kv WHERE tbl = {mark} AND k >= {mark}"
                if bounded:
                    sql += f" AND k < {mark}"
                sql += " ORDER BY k DESC" if reverse else " ORDER BY k"
                if limited:
                    sql += f" LIMIT {mark}"
                statements[(bounded, reverse, limited)] = sql
    return statements


def queue_message(row: tuple[Any, ...]) -> QueueMessage:
    """A ``QueueMessage`` from a row selected with :data:`QUEUE_COLUMNS`."""
    return QueueMessage(
        queue=row[0],
        id=int(row[1]),
        value=bytes(row[2]),
        group=row[3],
        enqueued_at=float(row[4]),
        visible_at=float(row[5]),
        receive_count=int(row[6]),
        first_received_at=None if row[7] is None else float(row[7]),
        lease_token=row[8],
    )


def read_only_error(operation: str) -> StoreError:
    """What a write operation raises inside ``Store.read``."""
    return StoreError(f"{operation} is a write: use store.write(), not store.read()")


def check_limit(limit: int | None) -> None:
    """Reject negative limits (a caller bug) before they reach SQL."""
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
