"""A CloudWatch Logs Insights subset: queries piped from ``fields``, ``filter``,
``parse``, ``stats``, ``sort``, ``limit`` and ``display``.

Records carry ``@timestamp``, ``@message``, ``@logStream``, ``@log``,
``@ingestionTime``, the fields of JSON messages (nested ones as ``a.b``), and for
Lambda's platform lines ``@type``, ``@requestId``, ``@duration``,
``@billedDuration``, ``@initDuration``, ``@memorySize`` and ``@maxMemoryUsed`` (bytes).

Filter expressions: ``= != < <= > >=``, ``like /regex/`` or ``like "text"``,
``not like``, ``in [..]``, ``and``, ``or``, ``not``, parentheses and the functions
``ispresent``, ``isempty``, ``isblank``. ``stats``: ``count``, ``count_distinct``,
``sum``, ``avg``, ``min``, ``max``, ``pct`` — grouped ``by`` fields and ``bin(5m)``.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

Record = dict[str, Any]
Expr = Callable[[Record], Any]


class QueryError(ValueError):
    """The query string is not valid."""


_REPORT = re.compile(
    r"REPORT RequestId: (?P<id>\S+)\s+Duration: (?P<duration>[\d.]+) ms\s+Billed Duration: (?P<billed>\d+) ms"
    r"\s+Memory Size: (?P<size>\d+) MB\s+Max Memory Used: (?P<used>\d+) MB(?:\s+Init Duration: (?P<init>[\d.]+) ms)?"
)
_PLATFORM = re.compile(r"^(START|END) RequestId: (\S+)")
_TOKEN = re.compile(
    r"""\s*(?:(?P<regex>/(?:[^/\\]|\\.)*/)|(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    |(?P<num>-?\d+(?:\.\d+)?)|(?P<op>!=|<=|>=|=|<|>|\(|\)|\[|\]|,|\*)
    |(?P<name>`[^`]+`|[@A-Za-z_][\w.@$-]*))""",
    re.VERBOSE,
)
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def format_time(ms: float) -> str:
    """Insights' timestamp format: ``2024-01-02 03:04:05.678``."""
    when = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return when.strftime("%Y-%m-%d %H:%M:%S.") + f"{when.microsecond // 1000:03d}"


def _flatten(prefix: str, value: Any, out: Record) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _flatten(f"{prefix}.{i}", v, out)
    else:
        out[prefix] = value


def make_record(group_arn: str, stream: str, ts: int, message: str, ingestion: int) -> Record:
    """The fields Insights discovers in one event."""
    rec: Record = {"@timestamp": ts, "@message": message, "@logStream": stream, "@log": group_arn,
                   "@ingestionTime": ingestion}  # fmt: skip
    text = message.strip()
    if text.startswith("{"):
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError:
            doc = None
        if isinstance(doc, dict):
            _flatten("", doc, rec)
    elif text.startswith("REPORT") and (m := _REPORT.match(text)):
        rec.update({"@type": "REPORT", "@requestId": m["id"], "@duration": float(m["duration"]),
                    "@billedDuration": float(m["billed"]), "@memorySize": float(m["size"]) * 1e6,
                    "@maxMemoryUsed": float(m["used"]) * 1e6})  # fmt: skip
        if m["init"]:
            rec["@initDuration"] = float(m["init"])
    elif m2 := _PLATFORM.match(text):
        rec.update({"@type": m2[1], "@requestId": m2[2]})
    return rec


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value))
    except (TypeError, ValueError):
        return None


@dataclass
class _Tok:
    kind: str
    text: str


def _tokens(text: str) -> list[_Tok]:
    out, pos = [], 0
    while pos < len(text):
        if not text[pos:].strip():
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise QueryError(f"unexpected character at {text[pos:pos + 10]!r}")
        kind = m.lastgroup or ""
        out.append(_Tok(kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    """Recursive descent over one command's tokens."""

    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self, word: str | None = None) -> _Tok | None:
        tok = self.toks[self.i] if self.i < len(self.toks) else None
        if word is not None and (tok is None or tok.text.lower() != word):
            return None
        return tok

    def take(self, word: str | None = None) -> _Tok:
        tok = self.peek(word)
        if tok is None:
            raise QueryError(f"expected {word or 'more input'}")
        self.i += 1
        return tok

    def done(self) -> bool:
        return self.i >= len(self.toks)

    def expr(self) -> Expr:
        left = self.conj()
        while self.peek("or"):
            self.take()
            left = _either(left, self.conj())
        return left

    def conj(self) -> Expr:
        left = self.neg()
        while self.peek("and"):
            self.take()
            left = _both(left, self.neg())
        return left

    def neg(self) -> Expr:
        if self.peek("not"):
            self.take()
            inner = self.neg()
            return lambda r: not inner(r)
        return self.comparison()

    def comparison(self) -> Expr:
        left = self.primary()
        tok = self.peek()
        if tok is None:
            return left
        word = tok.text.lower()
        if word == "not" and self.i + 1 < len(self.toks) and self.toks[self.i + 1].text.lower() == "like":
            self.i += 2
            test = self._like()
            return lambda r: not test(left(r))
        if word == "like" or tok.text == "=~":
            self.take()
            test = self._like()
            return lambda r: test(left(r))
        if word == "in":
            self.take()
            values = self._list()
            numbers = {n for v in values if (n := _number(v)) is not None}
            return lambda r: left(r) in values or _number(left(r)) in numbers
        if tok.kind == "op" and tok.text in _COMPARE:
            self.take()
            right, compare = self.primary(), _COMPARE[tok.text]
            return lambda r: _compare(left(r), right(r), compare)
        return left

    def _like(self) -> Callable[[Any], bool]:
        tok = self.take()
        if tok.kind == "regex":
            try:
                regex = re.compile(tok.text[1:-1])
            except re.error as exc:
                raise QueryError(f"invalid regular expression: {exc}") from None
            return lambda v: v is not None and regex.search(str(v)) is not None
        if tok.kind == "str":
            text = _unquote(tok.text)
            return lambda v: v is not None and text in str(v)
        raise QueryError("like needs /regex/ or a quoted string")

    def _list(self) -> list[Any]:
        self.take("[")
        values: list[Any] = []
        while not self.peek("]"):
            tok = self.take()
            if tok.text != ",":
                values.append(_unquote(tok.text) if tok.kind == "str" else _literal(tok))
        self.take("]")
        return values

    def primary(self) -> Expr:
        tok = self.take()
        if tok.text == "(":
            inner = self.expr()
            self.take(")")
            return inner
        if tok.kind == "str":
            value = _unquote(tok.text)
            return lambda r: value
        if tok.kind == "num":
            number = float(tok.text)
            return lambda r: number
        if tok.kind == "name" and self.peek("("):
            return self._function(tok.text.lower())
        if tok.kind == "name":
            name = tok.text.strip("`")
            return lambda r: r.get(name)
        raise QueryError(f"unexpected {tok.text!r}")

    def _function(self, name: str) -> Expr:
        self.take("(")
        arg = self.expr()
        self.take(")")
        if name == "ispresent":
            return lambda r: arg(r) is not None
        if name == "isempty":
            return lambda r: arg(r) in (None, "")
        if name == "isblank":
            return lambda r: arg(r) is None or str(arg(r)).strip() == ""
        if name in ("tolower", "toupper"):
            return lambda r: None if arg(r) is None else (str(arg(r)).lower() if name == "tolower" else str(arg(r)).upper())
        if name == "strlen":
            return lambda r: None if arg(r) is None else len(str(arg(r)))
        raise QueryError(f"nubes does not support the function {name}()")


def _either(a: Expr, b: Expr) -> Expr:
    return lambda r: bool(a(r)) or bool(b(r))


def _both(a: Expr, b: Expr) -> Expr:
    return lambda r: bool(a(r)) and bool(b(r))


def _getter(name: str) -> Expr:
    return lambda r: r.get(name)


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}  # fmt: skip


def _compare(a: Any, b: Any, compare: Callable[[Any, Any], bool]) -> bool:
    if a is None or b is None:
        return compare is _COMPARE["!="] and (a is None) != (b is None)
    na, nb = _number(a), _number(b)
    if na is not None and nb is not None:
        return compare(na, nb)
    return compare(str(a), str(b))


def _unquote(text: str) -> str:
    return text[1:-1].replace('\\"', '"').replace("\\'", "'")


def _literal(tok: _Tok) -> Any:
    return float(tok.text) if tok.kind == "num" else tok.text.strip("`")


# -- commands ------------------------------------------------------------------------------


@dataclass
class _Agg:
    name: str
    func: str
    arg: Expr | None
    percentile: float = 0.0


@dataclass
class Query:
    """A parsed query: a list of steps over records, then how to present them."""

    steps: list[Callable[[list[Record]], list[Record]]] = field(default_factory=list)
    shown: list[tuple[str, Expr]] | None = None
    stats: bool = False


def _split_commands(text: str) -> list[str]:
    parts, current, quote, in_regex = [], "", "", False
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif in_regex:
            in_regex = ch != "/"
        elif ch in "\"'":
            quote = ch
        elif ch == "/" and current.rstrip().lower().endswith(("like", "parse @message", "=~")):
            in_regex = True
        elif ch == "|":
            parts.append(current)
            current = ""
            continue
        current += ch
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def parse_query(text: str) -> Query:
    """Compile a query string (``QueryError`` if it is not valid)."""
    query = Query()
    for command in _split_commands(text):
        word, _, rest = command.partition(" ")
        word = word.lower()
        handler = _COMMANDS.get(word)
        if handler is None:
            raise QueryError(f"unknown command {word!r}")
        handler(query, rest.strip())
    return query


def _fields(query: Query, rest: str) -> None:
    columns: list[tuple[str, Expr]] = []
    for part in _split_top(rest):
        pieces = re.split(r"\s+as\s+", part, maxsplit=1, flags=re.I)
        expr_text = pieces[0].strip()
        alias = pieces[1].strip() if len(pieces) > 1 else expr_text.strip("`")
        parser = _Parser(expr_text)
        expr = parser.expr()
        columns.append((alias, expr))

    def compute(records: list[Record]) -> list[Record]:
        for rec in records:
            for name, expr in columns:
                rec[name] = expr(rec)
        return records

    query.steps.append(compute)
    query.shown = (query.shown or []) + [(n, _getter(n)) for n, _ in columns]


def _display(query: Query, rest: str) -> None:
    names = [p.strip().strip("`") for p in _split_top(rest)]
    query.shown = [(n, _getter(n)) for n in names]


def _filter(query: Query, rest: str) -> None:
    parser = _Parser(rest)
    test = parser.expr()
    if not parser.done():
        raise QueryError(f"unexpected {parser.peek().text!r} in filter")  # type: ignore[union-attr]
    query.steps.append(lambda records: [r for r in records if test(r)])


def _parse(query: Query, rest: str) -> None:
    m = re.match(r"^(\S+)\s+(.+)$", rest)
    if m is None:
        raise QueryError("parse needs a field and a pattern")
    source, pattern = m[1].strip("`"), m[2].strip()
    if pattern.startswith("/"):
        end = pattern.rfind("/")
        regex = re.compile(pattern[1:end].replace("(?<", "(?P<").replace("(?P<=", "(?<=").replace("(?P<!", "(?<!"))
        names = list(regex.groupindex)
    else:
        pm = re.match(r'^("(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')\s+as\s+(.+)$', pattern, re.I)
        if pm is None:
            raise QueryError('parse needs "glob pattern" as a, b, ...')
        glob = _unquote(pm[1])
        names = [n.strip().strip("`") for n in pm[2].split(",")]
        body = "(.*?)".join(re.escape(part) for part in glob.split("*"))
        if glob.endswith("*"):  # the last capture takes the rest of the value
            body = body[: -len("(.*?)")] + "(.*)"
        regex = re.compile(body)
        if regex.groups != len(names):
            raise QueryError("parse: the pattern's * count and the names listed differ")

    def extract(records: list[Record]) -> list[Record]:
        for rec in records:
            found = regex.search(str(rec.get(source) or ""))
            if found is not None:
                for i, name in enumerate(names):
                    rec[name] = found.group(i + 1)
        return records

    query.steps.append(extract)


def _sort(query: Query, rest: str) -> None:
    keys = []
    for part in _split_top(rest):
        bits = part.split()
        desc = len(bits) > 1 and bits[1].lower() == "desc"
        keys.append((bits[0].strip("`"), desc))

    def order(records: list[Record]) -> list[Record]:
        for name, desc in reversed(keys):
            present = [r for r in records if r.get(name) is not None]
            missing = [r for r in records if r.get(name) is None]
            present.sort(key=lambda r, n=name: _sort_key(r[n]), reverse=desc)  # type: ignore[misc]
            records = present + missing
        return records

    query.steps.append(order)


def _sort_key(value: Any) -> tuple[int, Any]:
    number = _number(value)
    return (0, number) if number is not None else (1, str(value))


def _limit(query: Query, rest: str) -> None:
    if not rest.isdigit():
        raise QueryError("limit needs a number")
    n = int(rest)
    query.steps.append(lambda records: records[:n])


def _stats(query: Query, rest: str) -> None:
    m = re.match(r"^(.*?)(?:\s+by\s+(.*))?$", rest, re.I | re.S)
    assert m is not None
    aggs = [_aggregation(part) for part in _split_top(m[1])]
    groups = [_group_key(part) for part in _split_top(m[2] or "")]

    def run(records: list[Record]) -> list[Record]:
        buckets: dict[tuple[Any, ...], list[Record]] = {}
        for rec in records:
            key = tuple(g(rec) for _, g in groups)
            buckets.setdefault(key, []).append(rec)
        out = []
        for key, members in buckets.items():
            row: Record = {name: value for (name, _), value in zip(groups, key, strict=True)}
            for agg in aggs:
                row[agg.name] = _aggregate(agg, members)
            out.append(row)
        return out

    query.steps.append(run)
    query.stats = True
    query.shown = [(n, _getter(n)) for n, _ in groups] + [(a.name, _getter(a.name)) for a in aggs]


def _aggregation(text: str) -> _Agg:
    pieces = re.split(r"\s+as\s+", text.strip(), maxsplit=1, flags=re.I)
    body = pieces[0].strip()
    m = re.match(r"^(\w+)\s*\((.*)\)$", body)
    if m is None:
        raise QueryError(f"stats needs functions like count(*), not {body!r}")
    func, arg_text = m[1].lower(), m[2].strip()
    if func not in ("count", "count_distinct", "sum", "avg", "min", "max", "pct"):
        raise QueryError(f"nubes does not support the stats function {func}()")
    percentile = 0.0
    if func == "pct":
        arg_text, _, p = arg_text.rpartition(",")
        percentile = float(p)
    arg = None if arg_text in ("*", "") else _Parser(arg_text.strip()).expr()
    return _Agg(pieces[1].strip() if len(pieces) > 1 else body, func, arg, percentile)


def _group_key(text: str) -> tuple[str, Expr]:
    pieces = re.split(r"\s+as\s+", text.strip(), maxsplit=1, flags=re.I)
    body = pieces[0].strip()
    name = pieces[1].strip() if len(pieces) > 1 else body
    m = re.match(r"^bin\s*\(\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*\)$", body, re.I)
    if m is not None:
        size_ms = float(m[1]) * _UNITS[(m[2] or "s").lower()] * 1000
        return name, lambda r: format_time(r["@timestamp"] - r["@timestamp"] % size_ms)
    expr = _Parser(body).expr()
    return name, expr


def _aggregate(agg: _Agg, records: list[Record]) -> Any:
    values = [agg.arg(r) for r in records] if agg.arg is not None else [1] * len(records)
    present = [v for v in values if v is not None]
    if agg.func == "count":
        return len(present)
    if agg.func == "count_distinct":
        return len({str(v) for v in present})
    numbers = sorted(n for v in present if (n := _number(v)) is not None)
    if not numbers:
        return None
    if agg.func == "sum":
        return sum(numbers)
    if agg.func == "avg":
        return sum(numbers) / len(numbers)
    if agg.func == "min":
        return numbers[0]
    if agg.func == "max":
        return numbers[-1]
    index = max(0, min(len(numbers) - 1, math.ceil(agg.percentile / 100 * len(numbers)) - 1))
    return numbers[index]


def _split_top(text: str) -> list[str]:
    parts, depth, current, quote = [], 0, "", ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        current += ch
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


_COMMANDS: dict[str, Callable[[Query, str], None]] = {
    "fields": _fields, "display": _display, "filter": _filter, "parse": _parse,
    "sort": _sort, "limit": _limit, "stats": _stats,
}  # fmt: skip

_DEFAULT_FIELDS = ("@timestamp", "@message", "@logStream", "@log")


def run_query(query: Query, records: list[Record], limit: int) -> list[list[dict[str, str]]]:
    """Run the steps and render rows as GetQueryResults returns them."""
    for step in query.steps:
        records = step(records)
    records = records[:limit]
    shown = query.shown or [(n, _getter(n)) for n in _DEFAULT_FIELDS]
    rows = []
    for rec in records:
        row = []
        for name, get in shown:
            value = get(rec)
            if value is None:
                continue
            if name in ("@timestamp", "@ingestionTime") and isinstance(value, int | float):
                text = format_time(value)
            elif isinstance(value, float) and value.is_integer() and not query.stats:
                text = str(int(value))
            else:
                text = value if isinstance(value, str) else orjson.dumps(value).decode()
            row.append({"field": name, "value": text})
        if not query.stats and "@ptr" in rec:
            row.append({"field": "@ptr", "value": rec["@ptr"]})
        rows.append(row)
    return rows


__all__ = ["QueryError", "make_record", "parse_query", "run_query"]
