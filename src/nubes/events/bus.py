"""The in-process event bus: publish/subscribe between services, and wake-ups.

Services never import each other. A producer that wrote something durably
publishes a topic (``"s3:object-created"``, ``"sqs:message-sent"``) or wakes a
named waiter (``"sqs:<queue-arn>"``) so consumers react in microseconds instead
of polling. The store stays the source of truth: a consumer that misses a
wake-up (or runs on another node) still finds the work on its next pass.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

Handler = Callable[[Any], Awaitable[None] | None]


class EventBus:
    """Topic subscriptions and named wake-up signals for one app."""

    def __init__(self) -> None:
        self._subscribers: dict[str, list[Handler]] = defaultdict(list)
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._tasks: set[asyncio.Task[None]] = set()
        #: forwards wake-ups to other nodes (set by ``events.broker`` in a cluster)
        self.relay: Callable[[str], None] | None = None

    def subscribe(self, topic: str, handler: Handler) -> Callable[[], None]:
        """Call ``handler(message)`` for every message published on ``topic``.
        Returns a function that unsubscribes."""
        self._subscribers[topic].append(handler)

        def unsubscribe() -> None:
            if handler in self._subscribers.get(topic, []):
                self._subscribers[topic].remove(handler)

        return unsubscribe

    def publish(self, topic: str, message: Any) -> None:
        """Deliver ``message`` to the topic's subscribers without blocking the
        publisher; async handlers run as tasks, errors are logged."""
        for handler in list(self._subscribers.get(topic, ())):
            try:
                result = handler(message)
            except Exception:
                log.exception("subscriber of %s failed", topic)
                continue
            if result is not None:
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("subscriber task failed", exc_info=task.exception())

    def wake(self, name: str, *, relay: bool = True) -> None:
        """Wake everything waiting on ``name`` — on this node, and on the others
        when a broker relays (``relay=False`` for wake-ups that came from one)."""
        for event in self._waiters.pop(name, ()):
            event.set()
        if relay and self.relay is not None:
            self.relay(name)

    async def wait(self, name: str, timeout: float) -> bool:
        """Wait until ``name`` is woken or ``timeout`` seconds pass; True if woken."""
        event = asyncio.Event()
        self._waiters[name].add(event)
        try:
            await asyncio.wait_for(event.wait(), timeout)
            woken = True
        except TimeoutError:
            woken = False
        finally:
            waiters = self._waiters.get(name)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    self._waiters.pop(name, None)
        # Python 3.11's wait_for can swallow a cancellation that races the
        # wake-up: honour it, or app.stop() would wait for the next timeout
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError
        return woken

    async def drain(self) -> None:
        """Wait for running subscriber tasks (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
