"""The provider's shared state: store access and the per-bus pattern index cache."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar

from nubes.events.patterns import CompiledPattern, PatternIndex
from nubes.services.base import Provider
from nubes.services.events import store as st
from nubes.storage.base import Txn

if TYPE_CHECKING:
    from nubes.app import App

T = TypeVar("T")


@lru_cache(maxsize=65_536)
def compiled_pattern(pattern: str) -> CompiledPattern:
    """A stored (already validated) pattern, compiled once: a bus's index is rebuilt
    whenever one of its rules changes, and most of its patterns did not."""
    return CompiledPattern.compile(pattern)


@dataclass
class BusIndex:
    """One bus's event-pattern rules as of ``generation``: the index and, per
    rule name, the rule record and its targets."""

    generation: int
    index: PatternIndex
    rules: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = field(default_factory=dict)


class EventsBase(Provider):
    """State and helpers every part of the EventBridge provider uses."""

    def __init__(self, app: App) -> None:
        super().__init__(app)
        self._indexes: dict[tuple[str, str], BusIndex] = {}
        #: SQS queue ARN → URL, for deliveries
        self.queue_urls: dict[str, str] = {}
        #: the delivery worker's fast path, once it runs (None: leave it to the queue)
        self.deliver_now: Callable[[list[tuple[int, dict[str, Any]]]], None] | None = None

    @property
    def account(self) -> str:
        account: str = self.app.settings.account_id
        return account

    async def read(self, fn: Callable[[Txn], T]) -> T:
        return await self.app.store.read(fn)

    async def write(self, fn: Callable[[Txn], T]) -> T:
        return await self.app.store.write(fn)

    def wake_deliveries(self) -> None:
        """Tell the delivery worker new work was committed."""
        self.app.bus.wake(st.DELIVERIES)

    def bus_index(
        self,
        region: str,
        bus: str,
        generation: int,
        load: Callable[[], list[tuple[dict[str, Any], list[dict[str, Any]]]]] | None,
    ) -> BusIndex | None:
        """The cached index of a bus if it is current, else one built from ``load()``
        (None if it is stale and ``load`` is None)."""
        cached = self._indexes.get((region, bus))
        if cached is not None and cached.generation == generation:
            return cached
        if load is None:
            return None
        built = BusIndex(generation, PatternIndex())
        for rule, targets in load():
            pattern = rule.get("EventPattern")
            if not pattern or rule.get("State", "ENABLED") == "DISABLED":
                continue
            # stored patterns were validated when the rule was put
            built.index.add(rule["Name"], compiled_pattern(pattern))
            built.rules[rule["Name"]] = (rule, targets)
        self._indexes[(region, bus)] = built
        return built
