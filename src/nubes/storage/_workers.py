"""Store threads: blocking database work off the event loop, results back on it.

A job travels as ``(job, loop, future)``: ``loop`` is the caller's event loop and
``future`` an ``asyncio.Future`` on it, or ``loop`` is None and ``future`` a
``concurrent.futures.Future`` a blocking caller waits on. Results are handed
back with one ``call_soon_threadsafe`` per loop per batch, which keeps the
per-call cost to a queue put and one wake-up.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from nubes.storage.base import StoreError

log = logging.getLogger(__name__)

C = TypeVar("C")
#: jobs one worker takes from the queue at once
MAX_BATCH = 64
#: job, the caller's loop (None for blocking callers), the caller's future
Item = tuple[Callable[..., Any], asyncio.AbstractEventLoop | None, Any]
#: a future and what to put in it: (future, ok, value-or-exception)
Outcome = tuple[Any, bool, Any]


def settle(outcomes: Iterable[Outcome]) -> None:
    """Resolve futures on the calling thread (their loop's own, or blocking callers')."""
    for fut, ok, value in outcomes:
        if fut.done():  # the awaiting task was cancelled; the work still happened
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)


def deliver(loop: asyncio.AbstractEventLoop | None, outcomes: list[Outcome]) -> None:
    """Resolve futures from a store thread: on their loop, or directly if blocking."""
    if loop is None:
        settle(outcomes)
        return
    try:
        loop.call_soon_threadsafe(settle, outcomes)
    except RuntimeError:  # the caller's loop is closed: nobody is waiting any more
        pass


def deliver_all(items: list[Item], outcomes: list[tuple[bool, Any]]) -> None:
    """Resolve a batch's futures, grouping by loop so each loop wakes once."""
    by_loop: dict[asyncio.AbstractEventLoop | None, list[Outcome]] = {}
    for (_job, loop, fut), (ok, value) in zip(items, outcomes, strict=True):
        by_loop.setdefault(loop, []).append((fut, ok, value))
    for loop, group in by_loop.items():
        deliver(loop, group)


def as_deliverable(exc: BaseException) -> BaseException:
    """Futures refuse StopIteration; everything else is handed over as is."""
    if isinstance(exc, StopIteration):
        return RuntimeError(f"store function raised StopIteration: {exc!r}")
    return exc


class Workers(Generic[C]):
    """A few threads, each owning one connection made by ``connect`` on first use.

    ``max_batch=1`` when jobs wait on a network: a batch runs its jobs one after
    another on one thread, while the others could have run them in parallel.
    """

    def __init__(
        self,
        name: str,
        count: int,
        connect: Callable[[], C],
        disconnect: Callable[[C], None],
        *,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        self._connect = connect
        self._disconnect = disconnect
        self._local = threading.local()
        self._threads = [
            threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True)
            for i in range(count)
        ]
        self._closed = False
        self._gate = threading.Lock()
        for thread in self._threads:
            thread.start()

    def on_worker_thread(self) -> bool:
        """True when called from one of these threads (a blocking call would deadlock)."""
        return getattr(self._local, "worker", False)

    def submit(self, job: Callable[[C], Any]) -> asyncio.Future[Any]:
        """Run ``job(connection)`` on a worker; the result arrives on the running loop."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._put((job, loop, fut))
        return fut

    def _put(self, item: Item) -> None:
        # Under the gate, so nothing is queued behind the stop sentinels.
        with self._gate:
            if self._closed:
                raise StoreError("the store is closed")
            self._queue.put(item)

    def call(self, job: Callable[[C], Any]) -> Any:
        """Run ``job(connection)`` on a worker and block until it is done."""
        if self.on_worker_thread():
            raise StoreError("blocking store call from inside a store function")
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._put((job, None, fut))
        return fut.result()

    def stop(self) -> None:
        """Let queued jobs finish, then end the threads and close their connections."""
        with self._gate:
            if self._closed:
                return
            self._closed = True
            for _ in self._threads:
                self._queue.put(None)
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join()

    def _run(self) -> None:
        self._local.worker = True
        conn: C | None = None
        stop = False
        while not stop:
            item = self._queue.get()
            if item is None:
                break
            # Take everything already queued: under load one wake-up per loop
            # serves a whole batch (a thread hop costs far more than a point read).
            batch = [item]
            while len(batch) < self._max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            outcomes: list[tuple[bool, Any]] = []
            for job, _loop, _fut in batch:
                try:
                    if conn is None:
                        conn = self._connect()
                    outcomes.append((True, job(conn)))
                except BaseException as exc:
                    outcomes.append((False, as_deliverable(exc)))
            deliver_all(batch, outcomes)
        if conn is not None:
            try:
                self._disconnect(conn)
            except Exception:
                log.exception("closing a store connection failed")
