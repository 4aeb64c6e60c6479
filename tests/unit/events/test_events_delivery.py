"""The durable delivery queue: retries with backoff, age and attempt limits, DLQ."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from nubes.app import App
from nubes.services.events.delivery import DeliveryWorker, decide, enqueue
from nubes.services.events.targets import DeliveryError
from nubes.settings import Settings
from nubes.storage import open_store

QUEUE = "test.deliveries"


def test_decide() -> None:
    retriable = DeliveryError("ThrottlingException", "slow down")
    permanent = DeliveryError("ResourceNotFoundException", "gone", retriable=False)
    doc: dict[str, Any] = {"created": 1000.0, "retry": {"MaximumRetryAttempts": 2}}
    first = decide(doc, retriable, 1, 1000.0, 1.0)
    assert first.retry_in is not None and 0.75 <= first.retry_in <= 1.25
    second = decide(doc, retriable, 2, 1000.0, 1.0)
    assert second.retry_in is not None and 1.5 <= second.retry_in <= 2.5  # backoff doubles
    assert decide(doc, retriable, 3, 1000.0, 1.0).exhausted == "MaximumRetryAttempts"
    assert decide(doc, permanent, 1, 1000.0, 1.0) == decide(doc, permanent, 1, 1000.0, 1.0)
    assert decide(doc, permanent, 1, 1000.0, 1.0).retry_in is None
    assert decide(doc, permanent, 1, 1000.0, 1.0).exhausted is None
    aged = {"created": 1000.0, "retry": {"MaximumEventAgeInSeconds": 60}}
    assert decide(aged, retriable, 1, 1100.0, 1.0).exhausted == "MaximumEventAgeInSeconds"
    assert decide({"created": 0.0}, retriable, 185, 1.0, 1.0).retry_in is not None  # AWS default
    assert decide({"created": 0.0}, retriable, 186, 1.0, 1.0).exhausted == "MaximumRetryAttempts"
    assert DeliveryError("QueueDoesNotExist", "").dlq_code == "RESOURCE_NOT_FOUND"
    assert DeliveryError("ResourceNotFoundException", "").dlq_code == "RESOURCE_NOT_FOUND"
    assert DeliveryError("AccessDeniedException", "").dlq_code == "NO_PERMISSIONS"


async def _worker(
    tmp: Path, failures: dict[str, int], **kw: Any
) -> tuple[App, DeliveryWorker, list[Any], list[Any]]:
    settings = Settings(data_dir=tmp)
    app = App(settings, store=await open_store(settings))
    delivered: list[Any] = []
    dead: list[Any] = []

    async def deliver(doc: dict[str, Any]) -> None:
        left = failures.get(doc["name"], 0)
        if left:
            failures[doc["name"]] = left - 1
            raise DeliveryError(doc.get("code", "ServiceUnavailable"), "try later",
                                retriable=doc.get("retriable", True))  # fmt: skip
        delivered.append((doc["name"], doc["_attempt"]))

    async def dead_letter(
        doc: dict[str, Any], error: DeliveryError, retries: int, why: str | None
    ) -> None:
        dead.append((doc["name"], error.code, retries, why))

    worker = DeliveryWorker(app, QUEUE, deliver, dead_letter, **kw)
    app.spawn(worker.run())
    return app, worker, delivered, dead


async def _put(app: App, *docs: dict[str, Any]) -> None:
    now = time.time()
    await app.store.write(
        lambda txn: [enqueue(txn, QUEUE, {"created": now, **d}, now=now) for d in docs]
    )
    app.bus.wake(QUEUE)


async def _until(check: Any, timeout: float = 10.0) -> None:
    deadline = time.time() + timeout
    while not check():
        assert time.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("batch", [1, 128])
def test_retry_then_deliver_and_dead_letter(tmp_path: Path, batch: int) -> None:
    async def body() -> None:
        failures = {"flaky": 2, "broken": 99, "gone": 1}
        app, worker, delivered, dead = await _worker(
            tmp_path, failures, retry_base=0.05, batch=batch
        )
        await _put(
            app,
            {"name": "ok"},
            {"name": "flaky"},
            {"name": "broken", "retry": {"MaximumRetryAttempts": 1}},
            {"name": "gone", "code": "ResourceNotFoundException", "retriable": False},
        )
        await _until(lambda: len(delivered) == 2 and len(dead) == 2)
        assert sorted(delivered) == [("flaky", 3), ("ok", 1)]  # third attempt succeeded
        assert (worker.delivered, worker.failed) == (2, 2)
        assert sorted(dead) == [
            ("broken", "ServiceUnavailable", 1, "MaximumRetryAttempts"),
            ("gone", "ResourceNotFoundException", 0, None),  # no retries for permanent errors
        ]
        # the worker acks a delivery after the target has it: wait for the ack to commit
        deadline = time.time() + 10
        while True:
            stats = await app.store.read(lambda txn: txn.queue_stats(QUEUE, now=time.time() + 1000))
            if stats == (0, 0, 0) or time.time() > deadline:
                break
            await asyncio.sleep(0.02)
        assert stats == (0, 0, 0)  # everything settled
        await app.stop()

    asyncio.run(asyncio.wait_for(body(), 30))


def test_api_destination_rate_limit_bucket() -> None:
    from nubes.services.events.connections import _Bucket

    async def body() -> None:
        bucket = _Bucket(20.0)
        begin = time.monotonic()
        taken = [await bucket.take(5.0) for _ in range(30)]  # 20 at once, 10 more at 20/s
        assert all(taken)
        assert 0.4 <= time.monotonic() - begin < 2.0
        slow = _Bucket(1.0)
        assert await slow.take(0.1)
        assert not await slow.take(0.1)  # the next token is a second away: retry later

    asyncio.run(body())
