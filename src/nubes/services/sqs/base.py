"""What every part of the SQS provider shares: queue lookups and wake-ups."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from nubes.aws.errors import AwsError
from nubes.services.base import Provider, RequestContext
from nubes.services.sqs.models import (
    QUEUES_TABLE,
    Queue,
    as_query_error,
    parse_arn,
    parse_queue_url,
    queue_key,
    queue_not_found,
)

P = TypeVar("P", bound="SqsBase")
Operation = Callable[[P, RequestContext, dict[str, Any]], Awaitable[dict[str, Any]]]

#: how long a cached queue record is trusted; other nodes' changes show up after it
_CACHE_SECONDS = 2.0
_CACHE_LIMIT = 10_000


def sqs_operation(fn: Operation[P]) -> Operation[P]:
    """Report errors with their query-protocol codes when the request came in that way."""

    @functools.wraps(fn)
    async def wrapper(self: P, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        try:
            return await fn(self, ctx, params)
        except AwsError as error:
            if ctx.query_protocol:
                raise as_query_error(error) from None
            raise

    return wrapper


class SqsBase(Provider):
    """Queue records (cached briefly), dead-letter lookups, send notifications."""

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self._cache: dict[bytes, tuple[float, Queue | None]] = {}
        #: per queue ARN, bumped on every local send: closes the gap between a
        #: receive's empty lease and its wait starting
        self._generations: dict[str, int] = {}
        #: wake-up names long polls wait on now, so a shutdown can end them
        self._polling: dict[str, int] = {}
        self.stopping = False

    async def load_queue(self, key: bytes) -> Queue | None:
        """A queue record by key, from the cache when fresh."""
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        raw = await self.app.store.read(lambda txn: txn.get(QUEUES_TABLE, key))
        queue = Queue.load(raw) if raw is not None else None
        if len(self._cache) >= _CACHE_LIMIT:  # lookups of made-up names must not grow it forever
            self._cache.clear()
        self._cache[key] = (now + _CACHE_SECONDS, queue)
        return queue

    def remember(self, key: bytes, queue: Queue | None) -> None:
        """Update the cache after this node changed a queue."""
        self._cache[key] = (time.monotonic() + _CACHE_SECONDS, queue)

    async def queue_of(self, ctx: RequestContext, url: str) -> Queue:
        """The queue a QueueUrl names, or QueueDoesNotExist."""
        account, name = parse_queue_url(url, ctx.account_id)
        queue = await self.load_queue(queue_key(ctx.region, account, name))
        if queue is None:
            raise queue_not_found()
        return queue

    async def queue_by_arn(self, arn: str) -> Queue | None:
        """A queue by ARN, or None."""
        try:
            region, account, name = parse_arn(arn)
        except AwsError:
            return None
        return await self.load_queue(queue_key(region, account, name))

    async def dead_letter_queue(self, queue: Queue) -> Queue | None:
        """The queue's dead-letter queue when its RedrivePolicy names an existing one."""
        redrive = queue.redrive
        return await self.queue_by_arn(redrive[0]) if redrive is not None else None

    def notify(self, queue: Queue) -> None:
        """Wake receivers (long polls, event source mappings) after a committed change."""
        arn = queue.arn
        self._generations[arn] = self._generations.get(arn, 0) + 1
        self.app.bus.wake(queue.signal)

    async def wait_for_messages(self, signal: str, timeout: float) -> None:
        """Sleep until a send wakes ``signal``, ``timeout`` passes, or the server stops."""
        self._polling[signal] = self._polling.get(signal, 0) + 1
        try:
            await self.app.bus.wait(signal, timeout)
        finally:
            left = self._polling[signal] - 1
            if left:
                self._polling[signal] = left
            else:
                del self._polling[signal]

    def end_long_polls(self) -> None:
        """Answer every waiting ReceiveMessage now (empty), so shutdown is not held up."""
        self.stopping = True
        for signal in list(self._polling):
            self.app.bus.wake(signal)

    def generation(self, queue: Queue) -> int:
        """How many local sends this queue has seen (see ``receive``)."""
        return self._generations.get(queue.arn, 0)
