"""Every acknowledged write survives SIGKILL of the process that made it.

A child process writes through the store with many concurrent writers (so
writes go through group commit) and prints each key as soon as its ``write()``
returned. The parent kills it with SIGKILL mid-stream, reopens the store, and
checks that every printed key is there.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nubes.storage.sqlite import SqliteStore

PG_URL = os.environ.get("NUBES_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from nubes.settings import Settings
    from nubes.storage import open_store

    async def main() -> None:
        settings = Settings.load({"data_dir": sys.argv[1], "store": sys.argv[2]}, env={})
        store = await open_store(settings)
        counter = iter(range(10**9))

        async def writer() -> None:
            for i in counter:
                key = b"k%09d" % i
                def fn(t, key=key):
                    t.put("durable", key, b"v" + key)
                    t.append("durable-log", key)
                    t.enqueue("durable-q", key, now=0.0)
                await store.write(fn)
                sys.stdout.write(key.decode() + "\\n")
                sys.stdout.flush()

        await asyncio.gather(*(writer() for _ in range(16)))

    asyncio.run(main())
    """
)


def _run_and_kill(data_dir: Path, store: str, acks_wanted: int = 400) -> set[bytes]:
    """Start the writer child, SIGKILL it after ``acks_wanted`` acks; the acked keys."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data_dir), store],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    acked: set[bytes] = set()
    deadline = time.monotonic() + 60
    try:
        assert proc.stdout is not None
        while len(acked) < acks_wanted and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            acked.add(line.strip())
        # kill while writes are still in flight, then collect acks already printed
        proc.send_signal(signal.SIGKILL)
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    acked.update(line.strip() for line in rest.splitlines() if line.strip())
    assert len(acked) >= acks_wanted, f"child acknowledged only {len(acked)}: {err.decode()}"
    assert proc.returncode == -signal.SIGKILL
    return acked


def _check(store: Any, acked: set[bytes]) -> None:
    rows = store.read_sync(lambda t: dict(t.scan("durable")))
    missing = [k for k in acked if rows.get(k) != b"v" + k]
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:3]}"
    log = store.read_sync(lambda t: t.read_log("durable-log", limit=10**6))
    assert acked <= {v for _, v in log}
    seqs = [s for s, _ in log]
    assert seqs == list(range(1, len(seqs) + 1))  # no holes from torn batches
    messages = store.read_sync(lambda t: t.peek("durable-q", limit=10**6))
    assert acked <= {m.value for m in messages}
    # the store is writable again after the crash
    assert store.write_sync(lambda t: t.insert("durable", b"after", b"crash")) is True


def test_sqlite_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    acked = _run_and_kill(tmp_path, "sqlite")
    store = SqliteStore(tmp_path / "nubes.db")
    try:
        _check(store, acked)
    finally:
        store.close_sync()


@pytest.fixture
def pg_schema() -> Iterator[str]:
    try:
        import psycopg

        admin = psycopg.connect(PG_URL, autocommit=True, connect_timeout=3)
    except Exception as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {PG_URL} is required with CI=true: {exc}")
        pytest.skip(f"PostgreSQL at {PG_URL} is not reachable: {exc}")
    schema = f"nubes_test_{uuid.uuid4().hex[:12]}"
    try:
        yield schema
    finally:
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.close()


def test_postgres_acknowledged_writes_survive_sigkill(tmp_path: Path, pg_schema: str) -> None:
    from nubes.storage.postgres import PostgresStore

    url = f"{PG_URL}?options=-csearch_path%3D{pg_schema}"
    acked = _run_and_kill(tmp_path, url, acks_wanted=200)
    store = PostgresStore(url)
    try:
        _check(store, acked)
    finally:
        store.close_sync()


BLOB_CHILD = textwrap.dedent(
    """
    import sys, time
    from nubes.storage.blobs import BlobStore

    blobs = BlobStore(sys.argv[1])
    done = blobs.put_sync(b"whole")
    print(done.id, flush=True)
    with blobs.writer_sync() as w:
        w.write(b"half of a blob")
        print("writing", flush=True)
        time.sleep(60)  # killed here, mid-write
    """
)


def test_blob_killed_mid_write_leaves_no_visible_blob(tmp_path: Path) -> None:
    from nubes.storage.blobs import BlobStore

    proc = subprocess.Popen(
        [sys.executable, "-c", BLOB_CHILD, str(tmp_path)], stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        committed = proc.stdout.readline().decode().strip()
        assert proc.stdout.readline().strip() == b"writing"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert list(tmp_path.glob("*/.tmp-*"))  # the interrupted write left its temp file
    blobs = BlobStore(tmp_path)
    assert blobs.removed_temp_files == 1
    assert list(blobs.ids()) == [committed]
    assert blobs.read_sync(committed) == b"whole"
