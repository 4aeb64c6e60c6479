"""Metric math for GetMetricData: ``+ - * /`` between series and numbers, parentheses,
query ids, and the functions ``SUM``, ``AVG``, ``MIN``, ``MAX`` (over ``METRICS()``,
``METRICS("prefix")`` or ``[m1, m2]``), and ``ABS``.

A series is ``{period start ms: value}``; arithmetic between two series keeps the
timestamps both have, as CloudWatch does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Series = dict[int, float]
Value = Series | float | list[Series]

_TOKEN = re.compile(r'\s*(?:(?P<num>\d+(?:\.\d+)?)|(?P<str>"[^"]*")|(?P<name>[A-Za-z_]\w*)|(?P<op>[-+*/(),\[\]]))')


class MathError(ValueError):
    """The expression cannot be evaluated."""


def _binary(a: Value, b: Value, op: Callable[[float, float], float]) -> Value:
    def apply(x: float, y: float) -> float:
        try:
            return op(x, y)
        except ZeroDivisionError:
            return float("nan")

    if isinstance(a, list) or isinstance(b, list):
        raise MathError("arithmetic needs single series, not arrays")
    if isinstance(a, dict) and isinstance(b, dict):
        return {t: apply(a[t], b[t]) for t in sorted(a.keys() & b.keys())}
    if isinstance(a, dict):
        return {t: apply(v, float(b)) for t, v in a.items()}  # type: ignore[arg-type]
    if isinstance(b, dict):
        return {t: apply(float(a), v) for t, v in b.items()}
    return apply(float(a), float(b))


def _reduce(values: list[Series], fn: Callable[[list[float]], float]) -> Series:
    stamps = sorted(set().union(*(s.keys() for s in values))) if values else []
    return {t: fn([s[t] for s in values if t in s]) for t in stamps}


_REDUCERS: dict[str, Callable[[list[float]], float]] = {
    "SUM": sum, "AVG": lambda xs: sum(xs) / len(xs), "MIN": min, "MAX": max,
}  # fmt: skip
_OPS: dict[str, Callable[[float, float], float]] = {
    "+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y, "/": lambda x, y: x / y,
}  # fmt: skip


class Evaluator:
    """Evaluates one expression given a way to fetch series by query id."""

    def __init__(self, text: str, lookup: Callable[[str], Series], ids: list[str]) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text) and text[pos:].strip():
            m = _TOKEN.match(text, pos)
            if m is None:
                raise MathError(f"Unexpected character in expression at {text[pos:pos + 10]!r}")
            kind = m.lastgroup or ""
            self.tokens.append((kind, m.group(kind)))
            pos = m.end()
        self.i = 0
        self.lookup = lookup
        self.ids = ids

    def evaluate(self) -> Value:
        value = self._sum()
        if self.i != len(self.tokens):
            raise MathError(f"Unexpected {self.tokens[self.i][1]!r} in expression")
        return value

    def _peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def _take(self, text: str | None = None) -> tuple[str, str]:
        if self.i >= len(self.tokens) or (text is not None and self.tokens[self.i][1] != text):
            raise MathError(f"Expected {text or 'more'} in expression")
        self.i += 1
        return self.tokens[self.i - 1]

    def _sum(self) -> Value:
        value = self._product()
        while self._peek() in ("+", "-"):
            op = self._take()[1]
            value = _binary(value, self._product(), _OPS[op])
        return value

    def _product(self) -> Value:
        value = self._unary()
        while self._peek() in ("*", "/"):
            op = self._take()[1]
            value = _binary(value, self._unary(), _OPS[op])
        return value

    def _unary(self) -> Value:
        if self._peek() == "-":
            self._take()
            return _binary(-1.0, self._unary(), _OPS["*"])
        return self._atom()

    def _atom(self) -> Value:
        kind, text = self._take()
        if text == "(":
            value = self._sum()
            self._take(")")
            return value
        if text == "[":
            items: list[Series] = []
            while self._peek() != "]":
                item = self._sum()
                if not isinstance(item, dict):
                    raise MathError("arrays hold series")
                items.append(item)
                if self._peek() == ",":
                    self._take()
            self._take("]")
            return items
        if kind == "num":
            return float(text)
        if kind == "name" and self._peek() == "(":
            return self._call(text.upper())
        if kind == "name":
            return self.lookup(text)
        raise MathError(f"Unexpected {text!r} in expression")

    def _call(self, name: str) -> Value:
        self._take("(")
        args: list[Any] = []
        while self._peek() != ")":
            if self.tokens[self.i][0] == "str":
                args.append(self._take()[1][1:-1])
            else:
                args.append(self._sum())
            if self._peek() == ",":
                self._take()
        self._take(")")
        if name == "METRICS":
            prefix = str(args[0]) if args else ""
            return [self.lookup(i) for i in self.ids if i.startswith(prefix)]
        if name in _REDUCERS and len(args) == 1:
            arg = args[0]
            series = arg if isinstance(arg, list) else [arg]
            return _reduce(series, _REDUCERS[name])
        if name == "ABS" and len(args) == 1 and isinstance(args[0], dict):
            return {t: abs(v) for t, v in args[0].items()}
        raise MathError(f"nubes does not support the metric math function {name}")
