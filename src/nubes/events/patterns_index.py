"""``PatternIndex``: many rules' patterns, matched without trying every rule.

Each branch of each pattern is filed under one field it requires (a field whose
match expressions are only exact values, ``equals-ignore-case`` values or plain
prefixes — the field must then have one of them): the least crowded such field
when the branch is added, re-balanced when a bucket grows. Matching an event
looks up only the event's own values of the filed fields — exact value, its
lower-case form, and its prefixes of the filed lengths — and fully checks those
few candidates, plus the branches that have no such field. The per-event cost
therefore follows the number of *candidate* rules, not of rules.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

from nubes.events.patterns import (
    MISSING,
    CompiledPattern,
    Leaf,
    Mode,
    Node,
    _leaves,
    compile_pattern,
    match_node,
    value_key,
    values_at,
)

Entry = tuple[Hashable, int]  # (rule id, branch number)
Path = tuple[str, ...]
#: the kinds of keys a branch is filed under
EXACT, LOWER, PREFIX = 0, 1, 2
Filing = tuple[Path, tuple[tuple[int, Hashable], ...]]
#: a bucket reaching this size (and each doubling) is rebalanced
_REBALANCE_AT = 8


def _keys(leaf: Leaf) -> tuple[tuple[int, Hashable], ...]:
    return (
        *((EXACT, k) for k in leaf.exact),
        *((LOWER, k) for k in leaf.ignore_case),
        *((PREFIX, k) for k in leaf.prefixes),
    )


class PatternIndex:
    """Many rules' patterns; ``match(event)`` returns the ids of those that match."""

    def __init__(self, *, mode: Mode = "events") -> None:
        self.mode = mode
        self._rules: dict[Hashable, list[Node]] = {}
        #: per rule, per branch: its (path, leaf) conditions, for the flat fast path
        self._flat: dict[Hashable, list[list[tuple[Path, Leaf]]]] = {}
        #: path → (kind, key) → entries filed under it
        self._buckets: dict[Path, dict[tuple[int, Hashable], set[Entry]]] = {}
        #: path → lengths of the prefixes filed under it (with counts)
        self._prefix_lengths: dict[Path, Counter[int]] = {}
        #: path → how many keys of each kind are filed under it
        self._kinds: dict[Path, Counter[int]] = {}
        self._filed: dict[Entry, Filing | None] = {}
        self._unanchored: set[Entry] = set()

    def __len__(self) -> int:
        return len(self._rules)

    def __contains__(self, rule_id: object) -> bool:
        return rule_id in self._rules

    def add(
        self, rule_id: Hashable, pattern: str | bytes | Mapping[str, Any] | CompiledPattern
    ) -> None:
        """Add (or replace) a rule; ``PatternError`` if the pattern is invalid."""
        if isinstance(pattern, CompiledPattern):
            branches = pattern.branches
        else:
            branches = compile_pattern(pattern, mode=self.mode)
        if rule_id in self._rules:
            self.remove(rule_id)
        self._rules[rule_id] = branches
        self._flat[rule_id] = [list(_leaves(branch, ())) for branch in branches]
        for number, branch in enumerate(branches):
            self._file((rule_id, number), branch)

    def remove(self, rule_id: Hashable) -> bool:
        """Forget a rule; True if it was there."""
        branches = self._rules.pop(rule_id, None)
        if branches is None:
            return False
        del self._flat[rule_id]
        for number in range(len(branches)):
            self._unfile((rule_id, number))
        return True

    # -- filing ------------------------------------------------------------------------

    def _crowd(self, path: Path, keys: tuple[tuple[int, Hashable], ...]) -> int:
        buckets = self._buckets.get(path, {})
        return max(len(buckets.get(k, ())) for k in keys)

    def _best(self, branch: Node, *, skip: Path | None = None) -> tuple[int, Path, Leaf] | None:
        best: tuple[int, int, Path, Leaf] | None = None
        for path, leaf in _leaves(branch, ()):
            if path == skip or not leaf.indexable:
                continue
            keys = _keys(leaf)
            if not keys:
                continue
            # emptiest buckets first; among equals the deeper (more specific) field
            score = (self._crowd(path, keys), -len(path), path, leaf)
            if best is None or score[:2] < best[:2]:
                best = score
        return None if best is None else (best[0], best[2], best[3])

    def _file(self, entry: Entry, branch: Node) -> None:
        best = self._best(branch)
        if best is None:
            self._unanchored.add(entry)
            self._filed[entry] = None
            return
        crowded = self._put(entry, best[1], _keys(best[2]))
        for path, key in crowded:
            self._rebalance(path, key)

    def _put(
        self, entry: Entry, path: Path, keys: tuple[tuple[int, Hashable], ...]
    ) -> list[tuple[Path, tuple[int, Hashable]]]:
        buckets = self._buckets.setdefault(path, {})
        kinds = self._kinds.setdefault(path, Counter())
        crowded = []
        for key in keys:
            bucket = buckets.setdefault(key, set())
            if not bucket:
                kinds[key[0]] += 1
                if key[0] == PREFIX:
                    self._prefix_lengths.setdefault(path, Counter())[len(str(key[1]))] += 1
            bucket.add(entry)
            if len(bucket) >= _REBALANCE_AT and len(bucket) & (len(bucket) - 1) == 0:
                crowded.append((path, key))
        self._filed[entry] = (path, keys)
        return crowded

    def _unfile(self, entry: Entry) -> None:
        filed = self._filed.pop(entry, None)
        if filed is None:
            self._unanchored.discard(entry)
            return
        path, keys = filed
        buckets = self._buckets[path]
        for key in keys:
            bucket = buckets.get(key)
            if bucket is None:
                continue
            bucket.discard(entry)
            if not bucket:
                del buckets[key]
                self._kinds[path][key[0]] -= 1
                if key[0] == PREFIX:
                    self._prefix_lengths[path][len(str(key[1]))] -= 1
                    if self._prefix_lengths[path][len(str(key[1]))] <= 0:
                        del self._prefix_lengths[path][len(str(key[1]))]
        if not buckets:
            del self._buckets[path]
            self._kinds.pop(path, None)
            self._prefix_lengths.pop(path, None)

    def _rebalance(self, path: Path, key: tuple[int, Hashable]) -> None:
        """Refile the branches of a crowded bucket under a less crowded field of
        theirs (the first rules sharing e.g. a ``source`` were filed there before
        the others that share it existed)."""
        bucket = self._buckets.get(path, {}).get(key)
        if not bucket:
            return
        size = len(bucket)
        for entry in list(bucket):
            best = self._best(self._rules[entry[0]][entry[1]], skip=path)
            if best is None or best[0] + 1 >= size:
                continue
            self._unfile(entry)
            self._put(entry, best[1], _keys(best[2]))

    # -- matching ----------------------------------------------------------------------

    def candidates(self, event: Mapping[str, Any]) -> Iterable[Entry]:
        """Branches that may match: filed under a value the event has, or unfiled."""
        found: set[Entry] = set(self._unanchored)
        for path, buckets in self._buckets.items():
            kinds = self._kinds[path]
            lengths = self._prefix_lengths.get(path)
            for value in values_at(event, path):
                if kinds[EXACT]:
                    bucket = buckets.get((EXACT, value_key(value)))
                    if bucket:
                        found |= bucket
                if value.__class__ is not str:
                    continue
                if kinds[LOWER]:
                    bucket = buckets.get((LOWER, value.lower()))
                    if bucket:
                        found |= bucket
                if lengths:
                    for length in lengths:
                        if length <= len(value):
                            bucket = buckets.get((PREFIX, value[:length]))
                            if bucket:
                                found |= bucket
        return found

    def match(self, event: Mapping[str, Any]) -> list[Hashable]:
        """Ids of the rules ``event`` matches (in no particular order)."""
        matched: set[Hashable] = set()
        if event.__class__ is not dict:
            event = dict(event)
        # candidates share fields (source, detail-type): look each path up once
        seen: dict[Path, Any] = {}
        for rule_id, number in self.candidates(event):
            if rule_id in matched:
                continue
            if self._check(rule_id, number, event, seen):
                matched.add(rule_id)
        return list(matched)

    def _check(
        self, rule_id: Hashable, number: int, event: Mapping[str, Any], seen: dict[Path, Any]
    ) -> bool:
        for path, leaf in self._flat[rule_id][number]:
            raw = seen.get(path, _UNSEEN)
            if raw is _UNSEEN:
                raw = seen[path] = _walk(event, path)
            if raw is _THROUGH_ARRAY:
                # arrays of objects on the way: fields must match within one element
                return match_node(self._rules[rule_id][number], event)
            if not leaf.matches(raw):
                return False
        return True


_UNSEEN = object()
_THROUGH_ARRAY = object()


def _walk(event: Mapping[str, Any], path: Path) -> Any:
    """The raw value at ``path`` through objects only: ``MISSING`` if a step is
    absent (or not an object), ``_THROUGH_ARRAY`` if a step is an array."""
    current: Any = event
    last = len(path) - 1
    for depth, name in enumerate(path):
        if current.__class__ is not dict:
            if isinstance(current, list) and depth > 0:
                return _THROUGH_ARRAY
            return MISSING
        current = current.get(name, MISSING)
        if current is MISSING:
            return MISSING
        if depth < last and isinstance(current, list):
            return _THROUGH_ARRAY
    return current
