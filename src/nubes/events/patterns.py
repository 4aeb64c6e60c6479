"""The EventBridge event pattern language: validation, matching and an index.

One matcher serves EventBridge rules and archives, SNS filter policies
(``mode="sns"``) and Lambda event source ``FilterCriteria``, so nothing here
knows a service.

A pattern compiles to one or more *branches* (``$or`` multiplies them out, as
AWS's Event Ruler does). A branch is a tree: ``{field: subtree | Leaf}``; a
:class:`Leaf` is the OR of the match expressions listed in the pattern's array.
Matching walks the event alongside the tree, so fields matched inside an array
of objects must come from the same element.

:class:`PatternIndex` holds many rules and finds the ones an event matches
without trying each: every branch is filed under one field it requires an exact
value of (the most selective one when added), and only the branches filed under
the values the event actually has — plus those with no exact-value field — are
checked.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

import orjson

Mode = Literal["events", "sns"]

#: match expression names; a field of that name inside ``$or`` is refused like AWS does
_OPERATORS = frozenset(
    {
        "exact", "prefix", "suffix", "anything-but", "numeric", "exists", "cidr",
        "equals-ignore-case", "wildcard",
    }
)  # fmt: skip
#: a pattern that multiplies out to more branches than this is refused
MAX_BRANCHES = 1000
#: objects nested deeper than this are refused (no real pattern comes close)
MAX_DEPTH = 100
#: SNS filter policy limits (keys and value combinations)
SNS_MAX_KEYS = 5
SNS_MAX_COMBINATIONS = 150


class PatternError(ValueError):
    """An invalid pattern; ``str(error)`` is the reason AWS gives."""

    @property
    def reason(self) -> str:
        return str(self.args[0]) if self.args else ""


class _Missing:
    """Marks a field the event does not have (distinct from JSON null)."""

    __slots__ = ()


MISSING = _Missing()
_NULL: tuple[str] = ("z",)

Predicate = Callable[[Any], bool]


def value_key(value: Any) -> Hashable:
    """The exact-match identity of a JSON scalar: strings by text, numbers by
    numeric value (``5`` equals ``5.0``), booleans and null by themselves."""
    if isinstance(value, str):
        return value
    if value is None:
        return _NULL
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int | float):
        return ("n", float(value))
    return ("?", repr(value))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass
class Leaf:
    """The match expressions of one field: the field matches if any does."""

    #: exact values (keys from :func:`value_key`; a string's key is itself)
    exact: set[Hashable] = field(default_factory=set)
    #: other expressions, each tested against one scalar value of the field
    tests: list[Predicate] = field(default_factory=list)
    #: ``{"exists": true}`` / ``{"exists": false}`` present in the list
    exists_true: bool = False
    exists_false: bool = False
    #: lower-cased ``equals-ignore-case`` values (indexable like exact values)
    ignore_case: set[str] = field(default_factory=set)
    #: plain (case-sensitive) ``prefix`` values (indexable by the value's prefixes)
    prefixes: set[str] = field(default_factory=set)

    @property
    def indexable(self) -> bool:
        """True when the field must have one of ``exact``/``ignore_case``/``prefixes``
        (so the rule can be filed under them)."""
        return not (self.tests or self.exists_true or self.exists_false or "" in self.prefixes)

    def matches(self, raw: Any) -> bool:
        """Does the event's value (``MISSING``, a scalar, an object or an array) match?"""
        if raw.__class__ is str:
            # the common case first: a string field (its exact key is itself)
            return raw in self.exact or self.exists_true or self._scalar(raw)
        if isinstance(raw, list):
            values = list(_scalars(raw))
        elif raw is MISSING or isinstance(raw, dict):
            # exists only sees leaf values: an object is not a value of this field
            values = []
        else:
            values = [raw]
        if not values:
            return self.exists_false
        if self.exists_true:
            return True
        exact = self.exact
        return any((exact and value_key(v) in exact) or self._scalar(v) for v in values)

    def _scalar(self, value: Any) -> bool:
        if isinstance(value, str):
            if self.ignore_case and value.lower() in self.ignore_case:
                return True
            if self.prefixes and any(value.startswith(p) for p in self.prefixes):
                return True
        return any(test(value) for test in self.tests)


def _scalars(values: list[Any]) -> Iterator[Any]:
    """The scalar values of an event array (nested arrays flattened, objects skipped)."""
    for value in values:
        if isinstance(value, list):
            yield from _scalars(value)
        elif not isinstance(value, dict):
            yield value


Node = dict[str, "Node | Leaf"]


# --------------------------------------------------------------------------- compile


def parse_pattern(pattern: str | bytes | Mapping[str, Any]) -> dict[str, Any]:
    """The pattern as a JSON object, or :class:`PatternError`."""
    if isinstance(pattern, str | bytes):
        try:
            obj = orjson.loads(pattern)
        except orjson.JSONDecodeError as exc:
            raise PatternError(f"Unexpected character or malformed JSON: {exc}") from None
    else:
        obj = pattern
    if not isinstance(obj, Mapping):
        raise PatternError("Filter is not an object")
    return dict(obj)


def compile_pattern(
    pattern: str | bytes | Mapping[str, Any], *, mode: Mode = "events"
) -> list[Node]:
    """Validate a pattern and compile it into its branches (``PatternError`` if invalid)."""
    obj = parse_pattern(pattern)
    try:
        branches = _compile_object(obj, mode, inside_or=False)
    except RecursionError:
        raise PatternError("Rule is too complex") from None
    if mode == "sns":
        _check_sns_limits(obj, branches)
    return branches


def validate_pattern(pattern: str | bytes | Mapping[str, Any], *, mode: Mode = "events") -> None:
    """Raise :class:`PatternError` with AWS's reason if ``pattern`` is invalid."""
    compile_pattern(pattern, mode=mode)


def _compile_object(
    obj: Mapping[str, Any], mode: Mode, *, inside_or: bool, depth: int = 0
) -> list[Node]:
    if depth > MAX_DEPTH:
        raise PatternError("Rule is too complex")
    if not obj:
        raise PatternError("Empty objects are not allowed")
    branches: list[Node] = [{}]
    for name, value in obj.items():
        if name == "$or":
            alternatives = _compile_or(value, mode, depth)
            branches = [_merge(b, alt) for b in branches for alt in alternatives]
        elif inside_or and name in _OPERATORS:
            raise PatternError(
                f"{name} is Ruler reserved fieldName which cannot be used inside $or."
            )
        elif isinstance(value, Mapping):
            subs = _compile_object(value, mode, inside_or=inside_or, depth=depth + 1)
            branches = [_merge(b, {name: s}) for b in branches for s in subs]
        elif isinstance(value, list):
            leaf = _compile_leaf(value, mode)
            for b in branches:
                b[name] = leaf
        else:
            raise PatternError(f'"{name}" must be an object or an array')
        if len(branches) > MAX_BRANCHES:
            raise PatternError("Rule is too complex")
    return branches


def _compile_or(value: Any, mode: Mode, depth: int) -> list[Node]:
    if not isinstance(value, list):
        raise PatternError("It must be an Array followed with $or.")
    alternatives: list[Node] = []
    for item in value:
        if not isinstance(item, Mapping):
            raise PatternError("Only JSON object is allowed in array of $or relationship.")
        alternatives.extend(_compile_object(item, mode, inside_or=True, depth=depth + 1))
    if len(value) < 2:
        raise PatternError("There must have at least 2 Objects in $or relationship.")
    return alternatives


def _merge(a: Node, b: Node) -> Node:
    """Both trees' conditions in one tree (a field in both: subtrees merged, leaves
    replaced, as Event Ruler does)."""
    out: Node = dict(a)
    for name, sub in b.items():
        mine = out.get(name)
        if isinstance(mine, dict) and isinstance(sub, dict):
            out[name] = _merge(mine, sub)
        else:
            out[name] = sub
    return out


def _compile_leaf(values: list[Any], mode: Mode) -> Leaf:
    if not values:
        raise PatternError("Empty arrays are not allowed")
    leaf = Leaf()
    for value in values:
        if isinstance(value, Mapping):
            _compile_expression(dict(value), leaf, mode)
        elif isinstance(value, list):
            raise PatternError("Match value must be String, number, true, false, or null")
        else:
            if isinstance(value, float) and not math.isfinite(value):
                raise PatternError("Match value must be String, number, true, false, or null")
            leaf.exact.add(value_key(value))
    return leaf


def _one_key(expr: dict[str, Any]) -> tuple[str, Any]:
    if not expr:
        raise PatternError("Match expression name not found")
    if len(expr) > 1:
        raise PatternError("Only one key allowed in match expression")
    return next(iter(expr.items()))


def _compile_expression(expr: dict[str, Any], leaf: Leaf, mode: Mode) -> None:
    op, arg = _one_key(expr)
    if op == "exact":
        if not isinstance(arg, str):
            raise PatternError("exact match pattern must be a string")
        leaf.exact.add(arg)
    elif op == "prefix" and isinstance(arg, str):
        leaf.prefixes.add(arg)
    elif op in ("prefix", "suffix"):
        leaf.tests.append(_affix_test(op, arg))
    elif op == "equals-ignore-case":
        if not isinstance(arg, str):
            raise PatternError("equals-ignore-case match pattern must be a string")
        leaf.ignore_case.add(arg.lower())
    elif op == "wildcard":
        if mode == "sns":
            raise PatternError(f"Unrecognized match type {op}")
        if not isinstance(arg, str):
            raise PatternError("wildcard match pattern must be a string")
        leaf.tests.append(_wildcard_test(arg))
    elif op == "numeric":
        leaf.tests.append(_numeric_test(arg))
    elif op == "exists":
        if not isinstance(arg, bool):
            raise PatternError("exists match pattern must be either true or false.")
        if arg:
            leaf.exists_true = True
        else:
            leaf.exists_false = True
    elif op == "cidr":
        if not isinstance(arg, str):
            raise PatternError("prefix match pattern must be a string")
        leaf.tests.append(_cidr_test(arg))
    elif op == "anything-but":
        leaf.tests.append(_anything_but_test(arg, mode))
    else:
        raise PatternError(f"Unrecognized match type {op}")


def _affix_test(op: str, arg: Any) -> Predicate:
    """``prefix``/``suffix``, optionally ``{"equals-ignore-case": text}``."""
    ignore_case = False
    if isinstance(arg, Mapping):
        inner, text = _one_key(dict(arg))
        if inner != "equals-ignore-case":
            raise PatternError(f"Unsupported {op} pattern: {inner}")
        if not isinstance(text, str):
            raise PatternError(f"{op} match pattern must be a string")
        arg, ignore_case = text.lower(), True
    elif not isinstance(arg, str):
        raise PatternError(f"{op} match pattern must be a string")
    affix: str = arg
    if op == "prefix":
        if ignore_case:
            return lambda v: isinstance(v, str) and v.lower().startswith(affix)
        return lambda v: isinstance(v, str) and v.startswith(affix)
    if ignore_case:
        return lambda v: isinstance(v, str) and v.lower().endswith(affix)
    return lambda v: isinstance(v, str) and v.endswith(affix)


@lru_cache(maxsize=4096)
def wildcard_regex(pattern: str) -> re.Pattern[str]:
    """The regex of a wildcard pattern: ``*`` is any run of characters, ``\\*``
    a literal star and ``\\\\`` a literal backslash (``PatternError`` otherwise)."""
    parts: list[str] = []
    i = 0
    previous_star = False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            nxt = pattern[i + 1] if i + 1 < len(pattern) else ""
            if nxt not in ("*", "\\"):
                raise PatternError(f"Invalid escape character at pos {i + 1}")
            parts.append(re.escape(nxt))
            previous_star = False
            i += 2
            continue
        if ch == "*":
            if previous_star:
                raise PatternError(f"Consecutive wildcard characters at pos {i}")
            parts.append(".*")
            previous_star = True
        else:
            parts.append(re.escape(ch))
            previous_star = False
        i += 1
    return re.compile("".join(parts), re.DOTALL)


def _wildcard_test(pattern: str) -> Predicate:
    regex = wildcard_regex(pattern)
    return lambda v: isinstance(v, str) and regex.fullmatch(v) is not None


_LOWER_OPS = {">": False, ">=": True}
_UPPER_OPS = {"<": False, "<=": True}


def _numeric_value(op: str, value: Any) -> float:
    if not _is_number(value):
        raise PatternError(f"Value of {op} must be numeric")
    number = float(value)
    if not math.isfinite(number):
        raise PatternError(f"Value of {op} must be numeric")
    _check_range(number)
    return number


#: Event Ruler compares numbers as fixed-point values within this range
NUMERIC_LIMIT = 5.0e9


def _check_range(number: float) -> None:
    if not -NUMERIC_LIMIT <= number <= NUMERIC_LIMIT:
        raise PatternError("Value must be between -5.0E9 and 5.0E9, inclusive")


def _numeric_test(arg: Any) -> Predicate:
    """``{"numeric": [">", 0, "<=", 5]}`` and ``["=", 3.018e2]``."""
    if not isinstance(arg, list):
        raise PatternError("Value of numeric must be an array.")
    if not arg or not isinstance(arg[0], str):
        raise PatternError(f"Invalid member in numeric match: {arg[0] if arg else ']'}")
    op = arg[0]
    if len(arg) < 2:
        raise PatternError(f"Value of {op} must be numeric")
    if op == "=":
        target = _numeric_value(op, arg[1])
        if len(arg) > 2:
            raise PatternError("Too many elements in numeric expression")
        return lambda v: _is_number(v) and float(v) == target
    if op in _UPPER_OPS:
        top = _numeric_value(op, arg[1])
        if len(arg) > 2:
            raise PatternError("Too many elements in numeric expression")
        return _range_test(None, False, top, _UPPER_OPS[op])
    if op not in _LOWER_OPS:
        raise PatternError(f"Unrecognized numeric range operator: {op}")
    bottom = _numeric_value(op, arg[1])
    if len(arg) == 2:
        return _range_test(bottom, _LOWER_OPS[op], None, False)
    upper = arg[2]
    if not isinstance(upper, str):
        raise PatternError(f"Bad value in numeric range: {upper}")
    if upper not in _UPPER_OPS:
        raise PatternError(f"Bad numeric range operator: {upper}")
    if len(arg) < 4:
        raise PatternError(f"Value of {upper} must be numeric")
    top = _numeric_value(upper, arg[3])
    if len(arg) > 4:
        raise PatternError("Too many terms in numeric range expression")
    if bottom >= top:
        raise PatternError("Bottom must be less than top")
    return _range_test(bottom, _LOWER_OPS[op], top, _UPPER_OPS[upper])


def _range_test(
    bottom: float | None, bottom_inclusive: bool, top: float | None, top_inclusive: bool
) -> Predicate:
    def test(v: Any) -> bool:
        if not _is_number(v):
            return False
        x = float(v)
        if bottom is not None and (x < bottom or (x == bottom and not bottom_inclusive)):
            return False
        return not (top is not None and (x > top or (x == top and not top_inclusive)))

    return test


def _cidr_test(text: str) -> Predicate:
    if "/" not in text:
        raise PatternError(f"Malformed CIDR, one '/' required: {text}")
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise PatternError(f"Nonstandard IP address: {text.split('/')[0]}") from None

    def test(v: Any) -> bool:
        if not isinstance(v, str):
            return False
        try:
            return ipaddress.ip_address(v) in network
        except ValueError:
            return False

    return test


def _anything_but_test(arg: Any, mode: Mode) -> Predicate:
    """``anything-but``: values, a list, or ``{prefix|suffix|equals-ignore-case|wildcard}``.
    It needs the field present; non-string values never equal a string exclusion."""
    if isinstance(arg, Mapping):
        return _anything_but_object(dict(arg), mode)
    if isinstance(arg, list):
        has_str = any(isinstance(v, str) for v in arg)
        has_num = any(_is_number(v) for v in arg)
        if any(not (isinstance(v, str) or _is_number(v)) for v in arg):
            raise PatternError("Inside anything but list, start|null|boolean is not supported.")
        if has_str == has_num:
            raise PatternError(
                "Inside anything but list, either all values are number or string, "
                "mixed type is not supported"
            )
        for v in arg:
            if _is_number(v):
                _check_range(float(v))
        excluded = frozenset(value_key(v) for v in arg)
    elif isinstance(arg, str) or _is_number(arg):
        if _is_number(arg):
            _check_range(float(arg))
        excluded = frozenset({value_key(arg)})
    else:
        raise PatternError("Value of anything-but must be an array or single string/number value.")
    return lambda v: value_key(v) not in excluded


def _anything_but_object(expr: dict[str, Any], mode: Mode) -> Predicate:
    if not expr:
        raise PatternError("Anything-But expression name not found")
    op, arg = _one_key(expr)
    if op in ("prefix", "suffix"):
        if not isinstance(arg, str):
            raise PatternError("prefix/suffix match pattern must be a string")
        if not arg:
            raise PatternError("Null prefix/suffix not allowed")
        text: str = arg
        if op == "prefix":
            return lambda v: not (isinstance(v, str) and v.startswith(text))
        return lambda v: not (isinstance(v, str) and v.endswith(text))
    if op == "equals-ignore-case":
        items = arg if isinstance(arg, list) else [arg]
        if not items or any(not isinstance(v, str) for v in items):
            raise PatternError(
                "Inside anything-but/equals-ignore-case list, "
                "number|start|null|boolean is not supported."
            )
        lowered = frozenset(v.lower() for v in items)
        return lambda v: not (isinstance(v, str) and v.lower() in lowered)
    if op == "wildcard" and mode != "sns":
        items = arg if isinstance(arg, list) else [arg]
        if not items or any(not isinstance(v, str) for v in items):
            raise PatternError("wildcard match pattern must be a string")
        regexes = [wildcard_regex(v) for v in items]
        return lambda v: (
            not (isinstance(v, str) and any(r.fullmatch(v) is not None for r in regexes))
        )
    raise PatternError(f"Unsupported anything-but pattern: {op}")


def _check_sns_limits(obj: Mapping[str, Any], branches: list[Node]) -> None:
    keys = {path for branch in branches for path, _ in _leaves(branch, ())}
    if len(keys) > SNS_MAX_KEYS:
        raise PatternError(f"Filter policy can not have more than {SNS_MAX_KEYS} keys")
    combinations = 0
    for branch in branches:
        product = 1
        for _, leaf in _leaves(branch, ()):
            product *= max(
                1, len(leaf.exact) + len(leaf.tests) + len(leaf.ignore_case) + len(leaf.prefixes)
            )
        combinations += product
    if combinations > SNS_MAX_COMBINATIONS:
        raise PatternError("Filter policy is too complex")


def _leaves(node: Node, prefix: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Leaf]]:
    for name, sub in node.items():
        if isinstance(sub, Leaf):
            yield (*prefix, name), sub
        else:
            yield from _leaves(sub, (*prefix, name))


# --------------------------------------------------------------------------- match


def match_node(node: Node, event: Mapping[str, Any]) -> bool:
    """Does ``event`` (a JSON object) satisfy every condition of one branch?"""
    for name, sub in node.items():
        raw = event.get(name, MISSING)
        if isinstance(sub, Leaf):
            if not sub.matches(raw):
                return False
        elif isinstance(raw, dict):
            if not match_node(sub, raw):
                return False
        elif isinstance(raw, list):
            objects = [o for o in _objects(raw)]
            if objects:
                if not any(match_node(sub, o) for o in objects):
                    return False
            elif not match_node(sub, {}):
                return False
        elif not match_node(sub, {}):
            # a scalar or missing parent: only absence conditions can hold below it
            return False
    return True


def _objects(values: list[Any]) -> Iterator[dict[str, Any]]:
    for value in values:
        if isinstance(value, dict):
            yield value
        elif isinstance(value, list):
            yield from _objects(value)


def matches(pattern: str | bytes | Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    """One-off check of one pattern against one event (compiles every call)."""
    return any(match_node(branch, event) for branch in compile_pattern(pattern))


@dataclass
class CompiledPattern:
    """A validated pattern, ready to match events."""

    branches: list[Node]

    @classmethod
    def compile(
        cls, pattern: str | bytes | Mapping[str, Any], *, mode: Mode = "events"
    ) -> CompiledPattern:
        return cls(compile_pattern(pattern, mode=mode))

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Does ``event`` match any branch?"""
        return any(match_node(branch, event) for branch in self.branches)


# --------------------------------------------------------------------------- index


def values_at(event: Mapping[str, Any], path: tuple[str, ...]) -> Iterator[Any]:
    """Every scalar value at ``path`` in ``event``, looking through arrays."""
    current: list[Any] = [event]
    for name in path:
        following: list[Any] = []
        for item in current:
            if isinstance(item, dict):
                if name in item:
                    following.append(item[name])
            elif isinstance(item, list):
                following.extend(o.get(name, MISSING) for o in _objects(item))
        current = [v for v in following if v is not MISSING]
        if not current:
            return
    for value in current:
        if isinstance(value, list):
            yield from _scalars(value)
        elif not isinstance(value, dict):
            yield value


# the index lives in its own module; it is part of this module's interface
from nubes.events.patterns_index import PatternIndex  # noqa: E402

__all__ = [
    "CompiledPattern",
    "Leaf",
    "PatternError",
    "PatternIndex",
    "compile_pattern",
    "match_node",
    "matches",
    "validate_pattern",
    "value_key",
    "values_at",
]  # fmt: skip
