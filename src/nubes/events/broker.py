"""Cross-node wake-ups over NATS, for several nubes nodes sharing one store.

The store is the source of truth; the broker only carries *wake-ups*: when a
node commits work another node may be waiting for (an SQS message for a
long-poller, an async invocation for a worker), the waiters on every node are
woken within a millisecond instead of finding it on their next pass. Nodes
sharing a store form a cluster; its subject is derived from the store URL so
two clusters on one NATS server do not wake each other.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from typing import Any

from nubes.events.bus import EventBus

log = logging.getLogger(__name__)


def cluster_subject(store: str) -> str:
    """The NATS subject nodes sharing ``store`` exchange wake-ups on."""
    digest = hashlib.sha256(store.encode()).hexdigest()[:16]
    return f"nubes.{digest}.wake"


class NatsRelay:
    """Relays ``EventBus.wake`` between nodes through a NATS server."""

    def __init__(self, url: str, bus: EventBus, subject: str) -> None:
        self.url = url
        self.bus = bus
        self.subject = subject
        self.node_id = uuid.uuid4().hex.encode()
        self._nc: Any = None
        self._pending: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Connect, subscribe, and hook into the bus."""
        import nats

        self._nc = await nats.connect(self.url, name="nubes", max_reconnect_attempts=-1, connect_timeout=5)
        await self._nc.subscribe(self.subject, cb=self._on_message)
        self.bus.relay = self.send

    async def _on_message(self, msg: Any) -> None:
        node, _, name = bytes(msg.data).partition(b"\n")
        if node != self.node_id:
            self.bus.wake(name.decode(), relay=False)

    def send(self, name: str) -> None:
        """Tell the other nodes (fire and forget; the store remains the truth)."""
        if self._nc is None or self._nc.is_closed:
            return
        task = asyncio.ensure_future(self._nc.publish(self.subject, self.node_id + b"\n" + name.encode()))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def stop(self) -> None:
        self.bus.relay = None
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.drain()
