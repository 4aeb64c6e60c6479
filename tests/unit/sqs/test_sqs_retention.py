"""In-process SQS: retention sweep and a receive dropping expired messages."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from nubes.services.sqs.models import QUEUES_TABLE, Queue, queue_key
from nubes.services.sqs.provider import SqsProvider
from nubes.settings import Settings
from nubes.storage.sqlite import SqliteStore


class _App:
    """Just what the SQS provider touches: settings, store, bus, spawn."""

    def __init__(self, store: SqliteStore, data_dir: Path) -> None:
        from nubes.events.bus import EventBus

        self.settings = Settings(data_dir=data_dir)
        self.store = store
        self.bus = EventBus()

    def spawn(self, coro: Any, name: str | None = None) -> None:
        coro.close()


def _run(tmp_path: Path, body: Any) -> None:
    async def main() -> None:
        store = SqliteStore(tmp_path / "db.sqlite")
        try:
            provider = SqsProvider(_App(store, tmp_path))  # type: ignore[arg-type]
            await body(provider, store)
        finally:
            await store.close()

    asyncio.run(main())


def test_sweep_drops_messages_past_retention(tmp_path: Path) -> None:
    async def body(provider: SqsProvider, store: SqliteStore) -> None:
        queue = Queue.new("old", "us-east-1", "000000000000", {"MessageRetentionPeriod": "60"}, {})
        now = time.time()

        def seed(txn: Any) -> None:
            txn.put(QUEUES_TABLE, queue.key, queue.dump())
            txn.enqueue(queue.store_queue, b'{"m":"1"}', now=now - 120)  # expired
            txn.enqueue(queue.store_queue, b'{"m":"2"}', now=now - 30)  # still retained

        await store.write(seed)
        assert await provider.sweep() == 1
        left = await store.read(lambda txn: txn.peek(queue.store_queue))
        assert [m.value for m in left] == [b'{"m":"2"}']

    _run(tmp_path, body)


def test_receive_skips_expired(tmp_path: Path) -> None:
    async def body(provider: SqsProvider, store: SqliteStore) -> None:
        queue = Queue.new("old2", "us-east-1", "000000000000", {"MessageRetentionPeriod": "60"}, {})
        now = time.time()

        def seed(txn: Any) -> None:
            txn.put(QUEUES_TABLE, queue.key, queue.dump())
            txn.enqueue(queue.store_queue, b'{"m":"1"}', now=now - 120)

        await store.write(seed)
        loaded = await provider.load_queue(queue_key("us-east-1", "000000000000", "old2"))
        assert loaded is not None
        assert await provider.receive(loaded, 10, 30.0, 0.0) == []
        assert await store.read(lambda txn: txn.peek(queue.store_queue)) == []

    _run(tmp_path, body)


def test_shutdown_ends_long_polls(tmp_path: Path) -> None:
    async def body(provider: SqsProvider, store: SqliteStore) -> None:
        queue = Queue.new("idle", "us-east-1", "000000000000", {}, {})
        await store.write(lambda txn: txn.put(QUEUES_TABLE, queue.key, queue.dump()))
        started = time.monotonic()
        poll = asyncio.ensure_future(provider.receive(queue, 1, 30.0, 10.0))
        await asyncio.sleep(0.2)
        assert not poll.done()
        provider.end_long_polls()
        assert await asyncio.wait_for(poll, 2) == []
        assert time.monotonic() - started < 2

    _run(tmp_path, body)


def test_send_wakes_long_poll_quickly(tmp_path: Path) -> None:
    async def body(provider: SqsProvider, store: SqliteStore) -> None:
        queue = Queue.new("wake", "us-east-1", "000000000000", {}, {})
        await store.write(lambda txn: txn.put(QUEUES_TABLE, queue.key, queue.dump()))
        poll = asyncio.ensure_future(provider.receive(queue, 1, 30.0, 10.0))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await store.write(lambda txn: txn.enqueue(queue.store_queue, b'{"m":"x"}', now=time.time()))
        provider.notify(queue)
        got = await asyncio.wait_for(poll, 2)
        assert len(got) == 1
        assert time.monotonic() - started < 0.5  # woken, not polled

    _run(tmp_path, body)
