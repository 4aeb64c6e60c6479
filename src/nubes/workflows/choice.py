"""Choice rules in JSONPath mode: comparison operators and And/Or/Not."""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from typing import Any

from nubes.workflows import jsonpath
from nubes.workflows.errors import StatesError

_MISSING: Any = object()


def parse_timestamp(value: Any) -> datetime | None:
    """An RFC 3339 timestamp as an aware datetime, or None if it is not one."""
    if not isinstance(value, str) or "T" not in value:
        return None
    text = value[:-1] + "+00:00" if value.endswith("Z") else value
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


@lru_cache(maxsize=1024)
def _glob(pattern: str) -> re.Pattern[str]:
    # AWS: only * is special; \* is a literal star and \\ a literal backslash
    parts: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            parts.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        parts.append(".*" if c == "*" else re.escape(c))
        i += 1
    return re.compile("".join(parts) + r"\Z", re.DOTALL)


def _lookup(path: str, scope: jsonpath.Scope) -> Any:
    try:
        return jsonpath.read(path, scope)
    except StatesError:
        return _MISSING


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _compare(kind: str, op: str, left: Any, right: Any) -> bool:
    if kind == "String":
        if not isinstance(left, str) or not isinstance(right, str):
            return False
    elif kind == "Numeric":
        if not _is_number(left) or not _is_number(right):
            return False
    elif kind == "Timestamp":
        left, right = parse_timestamp(left), parse_timestamp(right)
        if left is None or right is None:
            return False
    elif kind == "Boolean":
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if op == "Equals":
        return bool(left == right)
    if op == "LessThan":
        return bool(left < right)
    if op == "GreaterThan":
        return bool(left > right)
    if op == "LessThanEquals":
        return bool(left <= right)
    return bool(left >= right)


def _type_test(op: str, value: Any) -> bool:
    if op == "IsPresent":
        return value is not _MISSING
    if value is _MISSING:
        return False
    if op == "IsNull":
        return value is None
    if op == "IsNumeric":
        return _is_number(value)
    if op == "IsString":
        return isinstance(value, str)
    if op == "IsBoolean":
        return isinstance(value, bool)
    return parse_timestamp(value) is not None  # IsTimestamp


def matches(rule: dict[str, Any], scope: jsonpath.Scope) -> bool:
    """Whether a (validated) choice rule matches."""
    if "And" in rule:
        return all(matches(r, scope) for r in rule["And"])
    if "Or" in rule:
        return any(matches(r, scope) for r in rule["Or"])
    if "Not" in rule:
        return not matches(rule["Not"], scope)
    value = _lookup(rule["Variable"], scope)
    for op, expected in rule.items():
        if op in ("Variable", "Next", "Comment", "Assign", "Output"):
            continue
        if op.startswith("Is"):
            return _type_test(op, value) == bool(expected)
        if value is _MISSING:
            # a comparison on a missing variable is a runtime error on AWS
            raise StatesError(
                "States.Runtime",
                f"Invalid path '{rule['Variable']}': The choice state's condition path "
                "references an invalid value.",
            )
        if op.endswith("Path"):
            op = op[:-4]
            expected = jsonpath.read(expected, scope)
        if op == "StringMatches":
            return isinstance(value, str) and bool(_glob(str(expected)).match(value))
        for kind in ("String", "Numeric", "Timestamp", "Boolean"):
            if op.startswith(kind):
                return _compare(kind, op[len(kind):], value, expected)
    return False

