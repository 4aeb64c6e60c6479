"""Durable timers: "fire item X at time T", once, across restarts and nodes.

Two tables per timer set ``name``: ``<name>.due`` keyed ``(due_ms, item)`` (so
the due items are a range scan) and ``<name>.next`` keyed ``item`` → due_ms.
A firing runs in one transaction with a compare-and-set on ``<name>.next``, so
a tick fires once even if two nodes see it; the fire function sets the item's
next due time in the same transaction. A timer that came due while nubes was
down fires once when it comes back (the fire function decides what is next).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from nubes.storage.base import Txn
from nubes.storage.keys import pack, unpack

if TYPE_CHECKING:
    from nubes.app import App

log = logging.getLogger(__name__)

#: ``fire(txn, item, due, now)`` — deliver the tick and set the next due time
Fire = Callable[[Txn, str, float, float], None]

_MAX_SLEEP = 30.0
_BATCH = 500


def set_due(txn: Txn, name: str, item: str, due: float | None) -> None:
    """Schedule ``item`` at unix time ``due`` (None: cancel)."""
    key = pack(item)
    old = txn.get(f"{name}.next", key)
    if old is not None:
        txn.delete(f"{name}.due", pack(int(old), item))
    if due is None:
        txn.delete(f"{name}.next", key)
        return
    due_ms = int(due * 1000)
    txn.put(f"{name}.next", key, str(due_ms).encode())
    txn.put(f"{name}.due", pack(due_ms, item), b"")


def get_due(txn: Txn, name: str, item: str) -> float | None:
    """When ``item`` is next due, or None."""
    raw = txn.get(f"{name}.next", pack(item))
    return None if raw is None else int(raw) / 1000


def due_items(txn: Txn, name: str, now: float, limit: int = _BATCH) -> list[tuple[float, str]]:
    """Items due at or before ``now``, earliest first."""
    rows = txn.scan(f"{name}.due", end=pack(int(now * 1000) + 1), limit=limit)
    out = []
    for key, _ in rows:
        due_ms, item = unpack(key)
        out.append((int(due_ms) / 1000, str(item)))
    return out


def _due_items(name: str, now: float, txn: Txn) -> list[tuple[float, str]]:
    return due_items(txn, name, now)


def next_due(txn: Txn, name: str) -> float | None:
    """The earliest due time of any item."""
    rows = txn.scan(f"{name}.due", limit=1)
    return None if not rows else int(unpack(rows[0][0])[0]) / 1000


async def run_timers(app: App, name: str, fire: Fire, on_fired: Callable[[], None]) -> None:
    """Fire due items until cancelled; sleeps until the next due time or a wake of ``name``."""
    store = app.store
    while True:
        now = time.time()
        try:
            due = await store.read(partial(_due_items, name, now))
            if due:
                await store.write(partial(_fire_all, name=name, due=due, fire=fire, now=now))
                on_fired()
                continue
            upcoming = await store.read(lambda txn: next_due(txn, name))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("timer set %s failed", name)
            await asyncio.sleep(1.0)
            continue
        timeout = (
            _MAX_SLEEP if upcoming is None else min(max(upcoming - time.time(), 0.0), _MAX_SLEEP)
        )
        if timeout > 0:
            await app.bus.wait(name, timeout)
            raise_if_cancelled()


def raise_if_cancelled() -> None:
    """Re-raise a cancellation that ``asyncio.wait_for`` (inside ``bus.wait``) can
    swallow on Python 3.11 when the wake-up and the cancel arrive together."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _fire_all(txn: Txn, *, name: str, due: list[tuple[float, str]], fire: Fire, now: float) -> int:
    fired = 0
    for when, item in due:
        current = get_due(txn, name, item)
        if current is None or abs(current - when) > 0.0005:
            continue  # changed or fired elsewhere since we looked
        set_due(txn, name, item, None)
        try:
            fire(txn, item, when, now)
        except Exception:
            # one bad item must not block the others: it stays unscheduled
            log.exception("firing %s of %s failed", item, name)
        fired += 1
    return fired
