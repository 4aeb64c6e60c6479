"""Where CloudWatch Logs keeps its records (the only module that knows the tables).

* ``logs.groups``  — ``(region, group)`` → group record (JSON)
* ``logs.streams`` — ``(region, group, stream)`` → stream record (JSON), which also
  holds ``seq``, the per-stream counter that orders events with equal timestamps
* ``logs.events``  — ``(region, group, stream, timestamp, seq)`` → ``[message, ingestionTime]``

Events are keyed by time within their stream, so time ranges are prefix scans and
retention deletes from the front of each stream.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import Any

import orjson

from nubes.storage.base import Txn
from nubes.storage.keys import pack, prefix_end, unpack

GROUPS = "logs.groups"
STREAMS = "logs.streams"
EVENTS = "logs.events"

_PAGE = 500


def group_key(region: str, group: str) -> bytes:
    """Key of a log group record."""
    return pack(region, group)


def stream_key(region: str, group: str, stream: str) -> bytes:
    """Key of a log stream record."""
    return pack(region, group, stream)


def event_key(region: str, group: str, stream: str, timestamp: int, seq: int) -> bytes:
    """Key of one event."""
    return pack(region, group, stream, timestamp, seq)


def get_json(txn: Txn, table: str, key: bytes) -> dict[str, Any] | None:
    """A JSON record, or None."""
    raw = txn.get(table, key)
    return None if raw is None else orjson.loads(raw)


def put_json(txn: Txn, table: str, key: bytes, doc: dict[str, Any]) -> None:
    """Store a JSON record."""
    txn.put(table, key, orjson.dumps(doc))


def list_streams(txn: Txn, region: str, group: str) -> list[dict[str, Any]]:
    """Every stream record of a group, in name order."""
    return [orjson.loads(v) for _, v in txn.scan(STREAMS, prefix=pack(region, group))]


def iter_stream_events(
    txn: Txn,
    region: str,
    group: str,
    stream: str,
    *,
    start: tuple[int, int] | None = None,
    end_time: int | None = None,
    reverse: bool = False,
    before: tuple[int, int] | None = None,
) -> Iterator[tuple[int, int, str, int]]:
    """``(timestamp, seq, message, ingestionTime)`` of a stream's events, in key order
    from ``start`` (inclusive) and below ``end_time`` / ``before`` (exclusive), paged."""
    prefix = pack(region, group, stream)
    low = prefix + pack(*start) if start is not None else prefix
    high: bytes | None = prefix_end(prefix)
    if end_time is not None:
        high = prefix + pack(end_time)
    if before is not None:
        bound = prefix + pack(*before)
        high = bound if high is None or bound < high else high
    while True:
        page = txn.scan(EVENTS, start=low, end=high, reverse=reverse, limit=_PAGE)
        for key, value in page:
            parts = unpack(key)
            message, ingestion = orjson.loads(value)
            yield int(parts[3]), int(parts[4]), message, ingestion
        if len(page) < _PAGE:
            return
        last = page[-1][0]
        if reverse:
            high = last
        else:
            low = last + b"\x00"


def merge_group_events(
    txn: Txn,
    region: str,
    group: str,
    streams: list[str],
    *,
    start_time: int | None,
    end_time: int | None,
    after: tuple[int, str, int] | None,
) -> Iterator[tuple[int, str, int, str, int]]:
    """Events of several streams merged in ``(timestamp, stream, seq)`` order, strictly
    after ``after``: ``(timestamp, stream, seq, message, ingestionTime)``."""

    def one(stream: str) -> Iterator[tuple[int, str, int, str, int]]:
        start = (start_time, 0) if start_time is not None else None
        if after is not None and (start is None or (after[0], 0) > start):
            start = (after[0], 0)
        for ts, seq, message, ingestion in iter_stream_events(
            txn, region, group, stream, start=start, end_time=end_time
        ):
            if after is not None and (ts, stream, seq) <= after:
                continue
            yield ts, stream, seq, message, ingestion

    return heapq.merge(*(one(s) for s in streams))


def delete_stream_events(txn: Txn, region: str, group: str, stream: str, before_time: int | None = None) -> int:
    """Delete a stream's events (all, or those older than ``before_time``)."""
    prefix = pack(region, group, stream)
    if before_time is None:
        return txn.delete_prefix(EVENTS, prefix)
    removed = 0
    while True:
        page = txn.scan(EVENTS, start=prefix, end=prefix + pack(before_time), limit=_PAGE)
        for key, _ in page:
            txn.delete(EVENTS, key)
        removed += len(page)
        if len(page) < _PAGE:
            return removed
