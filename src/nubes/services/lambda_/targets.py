"""What an invocation needs of a function, kept between the writes that change it.

A warm Invoke would otherwise read the function's record (and an alias's and a
version's) from the store, decode it and build a :class:`FunctionSpec` every time.
Entries are dropped whenever this node's Lambda provider writes a function, version,
alias or URL (:meth:`TargetCache.changed`), when another node announces such a write
through the broker, and in any case after :data:`TTL_S` seconds: a change made by a
node sharing the store shows within that time even without a broker (AWS itself
takes seconds: invocations run the previous code while an update is InProgress).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nubes.runtime.spec import FunctionSpec

#: how long an entry is trusted without a write seen on this node
TTL_S = 1.0
#: entries kept at most (one per function and qualifier invoked)
MAX_ENTRIES = 4096
#: bus wake-up name a Lambda write is announced on (relayed to other nodes by a broker)
CHANGED = "lambda:functions-changed"

#: (region, function name, qualifier as the caller gave it)
TargetKey = tuple[str, str, str | None]


@dataclass(slots=True)
class Target:
    """A resolved qualifier: the function document, the version it names and, for an
    alias, the alias document (its routing weights pick a version per invocation)."""

    doc: dict[str, Any]
    config: dict[str, Any]
    version: str
    alias: dict[str, Any] | None
    expires: float
    #: built specs by the version they run (an alias with weights runs several)
    specs: dict[str, FunctionSpec] = field(default_factory=dict)


class TargetCache:
    """Resolved invocation targets, forgotten on every write (see the module docstring)."""

    def __init__(self, ttl_s: float = TTL_S, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        #: bumped by every write: a read that began before it must not be kept
        self.generation = 0
        self._entries: dict[TargetKey, Target] = {}

    def get(self, key: TargetKey) -> Target | None:
        """The entry for ``key`` if it is still fresh."""
        entry = self._entries.get(key)
        if entry is not None and entry.expires > time.monotonic():
            return entry
        return None

    def expiry(self) -> float:
        """When an entry read now stops being trusted."""
        return time.monotonic() + self.ttl_s

    def put(self, key: TargetKey, entry: Target, generation: int) -> None:
        """Keep ``entry``, read when :attr:`generation` was ``generation``, unless a
        write happened since (then what was read may already be stale)."""
        if generation != self.generation:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = entry

    def changed(self) -> None:
        """Something a target is made of was written: forget everything."""
        self.generation += 1
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
