"""Which node runs which Standard execution when several nodes share a store.

On the embedded SQLite store there is one node: it resumes every running
execution at start-up. On PostgreSQL several nodes may share the store, so each
running execution has an *owner lease* in ``sfn.owners`` (``(arn,)`` →
``{"node", "until"}``): the node that starts an execution owns it and renews the
lease while it runs; when a node dies its leases run out and another node claims
and resumes those executions from their checkpoints. StopExecution on a node that
does not own the execution leaves a stop request in the execution document and
wakes the owner (``sfn:cluster``) through the bus, which the broker relays.

The lease lasts ``Settings.sfn_lease_seconds`` (``NUBES_SFN_LEASE_SECONDS``,
default :data:`LEASE_SECONDS`, 20 s; tests use a few seconds).
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from typing import TYPE_CHECKING, Any

from nubes.services.stepfunctions import store
from nubes.storage.base import Txn

if TYPE_CHECKING:
    from nubes.app import App

log = logging.getLogger(__name__)

OWNERS = "sfn.owners"
#: seconds an owner lease lasts without renewal (``NUBES_SFN_LEASE_SECONDS`` overrides it)
LEASE_SECONDS = 20.0
#: how often a node renews its leases and looks for orphaned executions (at most)
RENEW_SECONDS = 5.0
#: bus name that makes every node look at stop requests and orphans now
WAKE = "sfn:cluster"


def lease_seconds(value: float) -> float:
    """The owner lease length from ``Settings.sfn_lease_seconds``
    (``NUBES_SFN_LEASE_SECONDS``); :data:`LEASE_SECONDS` for a value below 1 s."""
    if not math.isfinite(value) or value < 1.0:
        log.warning("NUBES_SFN_LEASE_SECONDS=%r is not a number of seconds >= 1; using %s", value, LEASE_SECONDS)
        return LEASE_SECONDS
    return value


class Owners:
    """Owner leases of running Standard executions."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.node = uuid.uuid4().hex
        #: several nodes can only share a PostgreSQL store
        self.enabled = app.settings.store_backend == "postgresql"
        self.lease = lease_seconds(app.settings.sfn_lease_seconds)
        #: renew well before a lease runs out
        self.renew_every = min(RENEW_SECONDS, self.lease / 4)

    def claim(self, txn: Txn, arn: str) -> bool:
        """Take (or keep) the lease of ``arn`` unless another node holds a live one."""
        now = time.time()
        doc = store.get(txn, OWNERS, store.key(arn))
        if doc is not None and doc["node"] != self.node and doc["until"] > now:
            return False
        store.put(txn, OWNERS, store.key(arn), {"node": self.node, "until": now + self.lease})
        return True

    def release(self, txn: Txn, arn: str) -> None:
        """Drop the lease of a finished execution."""
        txn.delete(OWNERS, store.key(arn))

    def held_elsewhere(self, txn: Txn, arn: str) -> bool:
        """Whether another node holds a live lease on ``arn``."""
        doc = store.get(txn, OWNERS, store.key(arn))
        return doc is not None and doc["node"] != self.node and doc["until"] > time.time()

    async def renew(self, arns: list[str]) -> list[str]:
        """Extend our leases; returns the executions another node took over."""

        def renew(txn: Txn) -> list[str]:
            return [arn for arn in arns if not self.claim(txn, arn)]

        return await self.app.store.write(renew) if arns else []

    async def orphans(self, running: set[str]) -> list[tuple[dict[str, Any], bytes | None]]:
        """Claim running executions nobody owns; returns their documents and checkpoints."""

        def claim(txn: Txn) -> list[tuple[dict[str, Any], bytes | None]]:
            out = []
            for key, _ in txn.scan(store.RUNNING):
                doc = store.get(txn, store.EXECUTIONS, key)
                if doc is None or doc["executionArn"] in running:
                    continue
                if self.claim(txn, doc["executionArn"]):
                    out.append((doc, txn.get(store.CHECKPOINTS, key)))
            return out

        return await self.app.store.write(claim)
