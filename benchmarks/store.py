"""Store speed: group commit vs commit-per-write, and point reads.

``python -m benchmarks.store [--seconds S] [--postgres URL]`` prints one JSON object per line:
``{"bench", "metric", "value", "unit", "baseline", "ratio", ...}``. Baselines are
measured in the same run on the same disk:

* writes: the same store with group commit off (``max_batch=1``: one COMMIT per
  write), and a bare ``sqlite3`` loop committing each write on its own (same WAL
  pragmas, no asyncio, no threads) — the floor no request path reaches;
* reads: plain ``sqlite3`` point SELECTs in a tight loop on one thread.
  ``inline`` is the default path (point reads run on the loop under a time
  budget); ``threaded`` sends every read to the reader thread.

Our numbers include everything a request pays: the asyncio future, the hop to
the store thread and back, the transaction around the function.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from nubes.storage.sqlite import SqliteStore

WRITERS = 32
READERS = 32
VALUE = b"x" * 200


def emit(metric: str, value: float, unit: str, baseline: float | None, **extra: Any) -> None:
    """Print one result line."""
    ratio = None if not baseline else round(value / baseline, 3)
    line = {
        "bench": "store",
        "metric": metric,
        "value": round(value, 1),
        "unit": unit,
        "baseline": None if baseline is None else round(baseline, 1),
        "ratio": ratio,
        **extra,
    }
    print(json.dumps(line), flush=True)


def baseline_commit_per_write(path: Path, seconds: float, synchronous: str) -> float:
    """Writes/s of plain sqlite3, one transaction per write."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS kv (tbl TEXT NOT NULL, k BLOB NOT NULL, v BLOB NOT NULL,"
        " PRIMARY KEY (tbl, k)) WITHOUT ROWID"
    )
    n = 0
    deadline = time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < deadline:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", ("t", b"k%d" % n, VALUE))
        conn.execute("COMMIT")
        n += 1
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed


def baseline_point_reads(path: Path, keys: int, seconds: float) -> float:
    """Point reads/s of plain sqlite3 on the calling thread."""
    conn = sqlite3.connect(path, isolation_level=None)
    n = 0
    deadline = time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < deadline:
        conn.execute(
            "SELECT v FROM kv WHERE tbl = ? AND k = ?", ("r", b"k%d" % (n % keys))
        ).fetchone()
        n += 1
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed


async def group_commit_writes(store: SqliteStore, seconds: float, writers: int) -> float:
    """Writes/s with ``writers`` tasks each awaiting one write after another."""
    deadline = time.perf_counter() + seconds
    counts = [0] * writers

    async def writer(w: int) -> None:
        while time.perf_counter() < deadline:
            key = b"w%d-%d" % (w, counts[w])
            await store.write(lambda t, key=key: t.put("t", key, VALUE))
            counts[w] += 1

    start = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    return sum(counts) / (time.perf_counter() - start)


async def store_reads(store: SqliteStore, keys: int, seconds: float, readers: int) -> float:
    """Point reads/s with ``readers`` tasks each awaiting one read after another."""
    deadline = time.perf_counter() + seconds
    counts = [0] * readers

    async def reader(r: int) -> None:
        while time.perf_counter() < deadline:
            key = b"k%d" % ((r * 7919 + counts[r]) % keys)
            value = await store.read(lambda t, key=key: t.get("r", key))
            assert value == VALUE
            counts[r] += 1

    start = time.perf_counter()
    await asyncio.gather(*(reader(r) for r in range(readers)))
    return sum(counts) / (time.perf_counter() - start)


async def run(seconds: float) -> None:
    """All measurements, each against its same-run baseline."""
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        root = Path(tmp)
        for durability, synchronous in (("normal", "NORMAL"), ("full", "FULL")):
            raw = baseline_commit_per_write(root / f"base-{durability}.db", seconds, synchronous)
            rates = {}
            for max_batch in (1, 256):
                store = await asyncio.to_thread(
                    SqliteStore,
                    root / f"store-{durability}-{max_batch}.db",
                    durability=durability,
                    max_batch=max_batch,
                )
                try:
                    rates[max_batch] = await group_commit_writes(store, seconds, WRITERS)
                    if max_batch > 1:
                        single = await group_commit_writes(store, seconds, 1)
                finally:
                    await store.close()
            emit(f"writes_per_s_{WRITERS}_writers_{durability}", rates[256], "writes/s", rates[1],
                 baseline_name="same store, group commit off (commit per write)")  # fmt: skip
            emit(f"writes_per_s_{WRITERS}_writers_{durability}_vs_raw", rates[256], "writes/s",
                 raw, baseline_name="bare sqlite3 loop, commit per write, 1 connection")  # fmt: skip
            emit(f"write_latency_1_writer_{durability}", 1e6 / single, "us/write", 1e6 / raw,
                 baseline_name="bare sqlite3 loop, commit per write, 1 connection")  # fmt: skip

        keys = 10_000
        for inline in (True, False):
            store = await asyncio.to_thread(SqliteStore, root / "reads.db", inline_reads=inline)
            try:
                await store.write(
                    lambda t: [t.put("r", b"k%d" % i, VALUE) for i in range(keys)] and None
                )
                base = baseline_point_reads(store.path, keys, seconds)
                ours = await store_reads(store, keys, seconds, READERS)
                single = await store_reads(store, keys, seconds, 1)
            finally:
                await store.close()
            how = "inline" if inline else "threaded"
            emit(f"point_reads_per_s_{READERS}_readers_{how}", ours, "reads/s", base,
                 baseline_name="sqlite3 SELECT inline on one thread")  # fmt: skip
            emit(f"read_latency_1_reader_{how}", 1e6 / single, "us/read", 1e6 / base,
                 baseline_name="sqlite3 SELECT inline on one thread")  # fmt: skip


def baseline_pg(url: str, schema: str, seconds: float) -> tuple[float, float]:
    """(writes/s, reads/s) of bare psycopg on one connection, one transaction each."""
    import psycopg

    from nubes.storage.postgres import resolve_schema

    conninfo, _ = resolve_schema(url, schema)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        rates = []
        for sql in (
            "INSERT INTO kv VALUES (%s, %s, %s) ON CONFLICT (tbl, k) DO UPDATE SET v = excluded.v",
            "SELECT v FROM kv WHERE tbl = %s AND k = %s",
        ):
            n = 0
            deadline = time.perf_counter() + seconds
            start = time.perf_counter()
            while time.perf_counter() < deadline:
                key = b"b%d" % (n % 1000)
                args = ("pgb", key, VALUE) if sql.startswith("INSERT") else ("pgb", key)
                with conn.transaction():
                    conn.execute(sql, args).rowcount  # noqa: B018 - the round trip is the point
                n += 1
            rates.append(n / (time.perf_counter() - start))
    return rates[0], rates[1]


async def run_postgres(url: str, seconds: float) -> None:
    """The PostgreSQL backend against bare psycopg, in a throw-away schema."""
    import uuid

    from nubes.storage.postgres import PostgresStore

    schema = f"nubes_bench_{uuid.uuid4().hex[:8]}"
    store = await asyncio.to_thread(PostgresStore, url, schema=schema)
    try:
        raw_writes, raw_reads = await asyncio.to_thread(baseline_pg, url, schema, seconds)
        ours = await group_commit_writes(store, seconds, WRITERS)
        emit(f"pg_writes_per_s_{WRITERS}_writers", ours, "writes/s", raw_writes,
             baseline_name="bare psycopg, 1 connection, transaction per write")  # fmt: skip
        await store.write(lambda t: [t.put("r", b"k%d" % i, VALUE) for i in range(1000)] and None)
        reads = await store_reads(store, 1000, seconds, 1)
        emit("pg_read_latency_1_reader", 1e6 / reads, "us/read", 1e6 / raw_reads,
             baseline_name="bare psycopg, 1 connection, transaction per read")  # fmt: skip
    finally:
        await store.write(lambda t: t.delete_prefix("r") and None)
        await store.close()
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def main(argv: list[str] | None = None) -> None:
    """Entry point: ``python -m benchmarks.store``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--postgres", metavar="URL", help="also measure this PostgreSQL")
    args = parser.parse_args(argv)

    async def everything() -> None:
        await run(args.seconds)
        if args.postgres:
            await run_postgres(args.postgres, args.seconds)

    try:
        import uvloop
    except ImportError:
        asyncio.run(everything())
    else:
        uvloop.run(everything())


if __name__ == "__main__":
    main(sys.argv[1:])
