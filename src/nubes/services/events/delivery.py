"""The durable delivery queue: at-least-once, retried, dead-lettered.

A delivery (one event for one target) is written to a store queue in the same
transaction that accepted the event, then the worker is woken. The worker
leases deliveries, calls the target, and acks; a failure is retried with
exponential backoff while the target's RetryPolicy allows
(``MaximumRetryAttempts``, default 185; ``MaximumEventAgeInSeconds``, default
86,400), then goes to the target's dead-letter queue with the attributes AWS
documents, or is dropped. A lease outlives a crash only by ``visibility``
seconds, after which another pass (or node) delivers it again.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import orjson

from nubes.services.events.targets import DeliveryError
from nubes.services.events.timers import raise_if_cancelled
from nubes.storage.base import QueueMessage, Txn

if TYPE_CHECKING:
    from nubes.app import App

log = logging.getLogger(__name__)

DEFAULT_MAX_RETRIES = 185
DEFAULT_MAX_AGE = 86_400

Deliver = Callable[[dict[str, Any]], Awaitable[None]]
DeadLetter = Callable[[dict[str, Any], DeliveryError, int, str | None], Awaitable[None]]


#: how long a leased (or fast-path) delivery stays invisible to other passes
VISIBILITY = 60.0


def enqueue(txn: Txn, queue: str, doc: dict[str, Any], *, now: float, direct: bool = False) -> int:
    """Add one delivery (inside the transaction that accepted its event). With
    ``direct`` the caller delivers it right after the commit
    (``DeliveryWorker.deliver_now``): it stays invisible meanwhile."""
    if direct:
        doc = {**doc, "direct": True}
        return txn.enqueue(queue, orjson.dumps(doc), now=now, delay=VISIBILITY)
    return txn.enqueue(queue, orjson.dumps(doc), now=now)


@dataclass
class RetryDecision:
    retry_in: float | None
    exhausted: str | None


def decide(
    doc: dict[str, Any], error: DeliveryError, attempts: int, now: float, base: float
) -> RetryDecision:
    """Retry (after how long) or give up (and which limit ran out)."""
    policy = doc.get("retry") or {}
    max_retries = int(policy.get("MaximumRetryAttempts", DEFAULT_MAX_RETRIES))
    max_age = int(policy.get("MaximumEventAgeInSeconds", DEFAULT_MAX_AGE))
    if not error.retriable:
        return RetryDecision(None, None)
    retries_done = attempts - 1
    if retries_done >= max_retries:
        return RetryDecision(None, "MaximumRetryAttempts")
    delay = min(base * (2 ** min(retries_done, 16)), 300.0) * (0.75 + random.random() / 2)
    if now + delay - float(doc.get("created", now)) > max_age:
        return RetryDecision(None, "MaximumEventAgeInSeconds")
    return RetryDecision(delay, None)


def _lease(queue: str, now: float, visibility: float, limit: int, txn: Txn) -> list[QueueMessage]:
    return txn.lease(queue, now=now, visibility=visibility, limit=limit)


class DeliveryWorker:
    """Drains one delivery queue with ``deliver``; failures go to ``dead_letter``."""

    def __init__(
        self,
        app: App,
        queue: str,
        deliver: Deliver,
        dead_letter: DeadLetter,
        *,
        batch: int = 128,
        parallel_batches: int = 4,
        visibility: float = VISIBILITY,
        retry_base: float = 1.0,
    ) -> None:
        self.app = app
        self.queue = queue
        self.deliver = deliver
        self.dead_letter = dead_letter
        self.batch = batch
        self.parallel_batches = parallel_batches
        self.visibility = visibility
        self.retry_base = retry_base
        self.delivered = 0
        self.failed = 0

    async def run(self) -> None:
        """Deliver until cancelled: lease a batch, deliver it in the background
        (up to ``parallel_batches`` at once), lease the next."""
        store = self.app.store
        slots = asyncio.Semaphore(self.parallel_batches)
        while True:
            await slots.acquire()
            now = time.time()
            try:
                leased = await store.write(
                    partial(_lease, self.queue, now, self.visibility, self.batch)
                )
            except Exception:
                slots.release()
                log.exception("leasing deliveries from %s failed", self.queue)
                await asyncio.sleep(1.0)
                continue
            if leased:
                task = self.app.spawn(self._batch(leased), name=f"{self.queue}-batch")
                task.add_done_callback(lambda _: slots.release())
                continue
            slots.release()
            due = await store.read(lambda txn: txn.next_visible_at(self.queue))
            timeout = 30.0 if due is None else min(max(due - time.time(), 0.0), 30.0)
            if timeout > 0:
                await self.app.bus.wait(self.queue, timeout)
                raise_if_cancelled()

    async def _batch(self, messages: list[QueueMessage]) -> None:
        """Deliver leased messages concurrently, then settle them in one write."""
        work = []
        for message in messages:
            doc: dict[str, Any] = orjson.loads(message.value)
            # a delivery first tried on the fast path was attempted before any lease
            attempt = message.receive_count + (1 if doc.get("direct") else 0)
            work.append((message.id, message.lease_token, doc, attempt))
        await self._run(work)

    def deliver_now(self, items: list[tuple[int, dict[str, Any]]]) -> None:
        """The fast path: deliver just-committed messages at once, without waiting
        for a lease. They were enqueued invisible for ``visibility`` seconds (see
        ``enqueue(direct=True)``), so if this process dies first the worker
        delivers them when that runs out."""
        if items:
            work = [(message_id, None, doc, 1) for message_id, doc in items]
            self.app.spawn(self._run(work), name=f"{self.queue}-now")

    async def _run(self, work: Sequence[tuple[int, str | None, dict[str, Any], int]]) -> None:
        outcomes = await asyncio.gather(
            *(self._handle(doc, attempt) for _, _, doc, attempt in work)
        )

        def settle(txn: Txn) -> None:
            for (message_id, token, _, _), visible_at in zip(work, outcomes, strict=True):
                if visible_at is None:
                    txn.ack(self.queue, message_id, token)
                else:
                    txn.set_visible_at(self.queue, message_id, visible_at, token)

        await self.app.store.write(settle)
        if any(v is not None for v in outcomes):
            self.app.bus.wake(self.queue)  # the runner may be asleep past the retry time

    async def _handle(self, doc: dict[str, Any], attempt: int) -> float | None:
        """Deliver one; None when it is done with (delivered or dead-lettered), else
        when to try again."""
        doc["_attempt"] = attempt  # 1 on the first try
        try:
            await self.deliver(doc)
        except DeliveryError as exc:
            return await self._failed(doc, exc, attempt)
        except Exception as exc:
            log.exception("delivery from %s crashed", self.queue)
            return await self._failed(doc, DeliveryError("InternalException", str(exc)), attempt)
        self.delivered += 1
        return None

    async def _failed(
        self, doc: dict[str, Any], error: DeliveryError, attempt: int
    ) -> float | None:
        now = time.time()
        decision = decide(doc, error, attempt, now, self.retry_base)
        if decision.retry_in is not None:
            return now + decision.retry_in
        self.failed += 1
        try:
            await self.dead_letter(doc, error, attempt - 1, decision.exhausted)
        except Exception:
            log.exception("dead-lettering a delivery from %s failed", self.queue)
        return None
