"""What every part of the SNS provider shares: topic and subscription lookups, the signer."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from nubes.services.base import Provider, RequestContext
from nubes.services.sns.models import (
    SUBSCRIPTIONS_TABLE,
    TOPICS_TABLE,
    Subscription,
    Topic,
    parse_topic_arn,
    topic_not_found,
)
from nubes.services.sns.signing import Signer

#: how long cached topics and subscription lists are trusted (other nodes' changes)
_CACHE_SECONDS = 2.0
_CACHE_LIMIT = 10_000


class SnsBase(Provider):
    """Cached reads of topics and their subscriptions."""

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self._topics: dict[str, tuple[float, Topic | None]] = {}
        self._subscriptions: dict[str, tuple[float, list[Subscription]]] = {}
        #: subscription ARN → subscription, for the topics in ``_subscriptions``
        self._by_arn: dict[str, Subscription] = {}
        self.signer = Signer(Path(app.settings.data_dir) / "sns")

    async def load_topic(self, arn: str) -> Topic | None:
        """A topic record by ARN (cached briefly), or None."""
        hit = self._topics.get(arn)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        raw = await self.app.store.read(lambda txn: txn.get(TOPICS_TABLE, arn.encode()))
        topic = Topic.load(raw) if raw is not None else None
        if len(self._topics) >= _CACHE_LIMIT:  # lookups of made-up ARNs must not grow it forever
            self._topics.clear()
        self._topics[arn] = (now + _CACHE_SECONDS, topic)
        return topic

    async def topic_of(self, ctx: RequestContext, arn: str | None) -> Topic:
        """The topic an ARN names, or NotFound."""
        if not arn:
            raise topic_not_found()
        parse_topic_arn(arn)
        topic = await self.load_topic(arn)
        if topic is None:
            raise topic_not_found()
        return topic

    async def subscriptions_of(self, topic_arn: str) -> list[Subscription]:
        """A topic's subscriptions (confirmed or not), cached briefly."""
        hit = self._subscriptions.get(topic_arn)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        prefix = f"{topic_arn}:".encode()
        rows = await self.app.store.read(lambda txn: txn.scan(SUBSCRIPTIONS_TABLE, prefix=prefix))
        subs = [Subscription.load(raw) for _, raw in rows]
        stale = self._subscriptions.get(topic_arn)
        for old in stale[1] if stale else ():
            self._by_arn.pop(old.arn, None)
        self._subscriptions[topic_arn] = (now + _CACHE_SECONDS, subs)
        self._by_arn.update((sub.arn, sub) for sub in subs)
        return subs

    async def cached_subscription(self, arn: str) -> Subscription | None:
        """A subscription through its topic's cached list (the delivery hot path)."""
        topic_arn = arn.rsplit(":", 1)[0]
        hit = self._subscriptions.get(topic_arn)
        if hit is None or hit[0] <= time.monotonic():
            await self.subscriptions_of(topic_arn)
        return self._by_arn.get(arn)

    async def load_subscription(self, arn: str) -> Subscription | None:
        """A subscription record read from the store, or None."""
        raw = await self.app.store.read(lambda txn: txn.get(SUBSCRIPTIONS_TABLE, arn.encode()))
        return Subscription.load(raw) if raw is not None else None

    def forget(self, topic_arn: str) -> None:
        """Drop cached state of a topic after this node changed it."""
        self._topics.pop(topic_arn, None)
        stale = self._subscriptions.pop(topic_arn, None)
        for sub in stale[1] if stale else ():
            self._by_arn.pop(sub.arn, None)
