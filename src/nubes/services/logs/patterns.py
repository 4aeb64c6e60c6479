"""CloudWatch Logs filter patterns, compiled once into a predicate over a message.

The three syntaxes AWS documents:

* **terms** — ``ERROR``, ``"quoted phrase"``, ``-exclusion``; all terms must be in
  the message (case-sensitive substrings). ``?ERROR ?WARN`` matches either term.
  ``%regex%`` matches a regular expression.
* **JSON** — ``{ $.level = "ERROR" }`` with ``=``/``!=`` (strings, ``*``
  wildcards), ``<``/``<=``/``>``/``>=``/``=``/``!=`` on numbers, ``IS TRUE``,
  ``IS FALSE``, ``IS NULL``, ``NOT EXISTS``, ``&&``/``||``, parentheses, and
  selectors like ``$.a.b[0].c``. A message that is not a JSON object never matches.
* **space-delimited** — ``[ip, user, ..., status=404, size>1000]``: fields split
  on spaces (``"quoted"`` and ``[bracketed]`` fields count as one), ``...``
  absorbs any number of fields.

An empty pattern matches every message. A malformed pattern raises
:class:`PatternError` (the service turns it into InvalidParameterException).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

Predicate = Callable[[str], bool]
JsonTest = Callable[[Any], bool]


class PatternError(ValueError):
    """The filter pattern is not valid."""


def compile_pattern(pattern: str | None) -> Predicate:
    """A predicate that says whether a log message matches ``pattern``."""
    text = (pattern or "").strip()
    if not text:
        return lambda message: True
    if text.startswith("{"):
        if not text.endswith("}"):
            raise PatternError("Invalid character(s) in term: JSON filter pattern must end with '}'")
        test = _JsonParser(text[1:-1]).parse()
        return lambda message: _match_json(test, message)
    if text.startswith("["):
        if not text.endswith("]"):
            raise PatternError("Invalid space-delimited filter pattern: missing ']'")
        return _compile_delimited(text[1:-1])
    return _compile_terms(text)


# -- terms ------------------------------------------------------------------------


def _term_tokens(text: str) -> list[str]:
    tokens: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        prefix = ""
        if ch in "?-" and i + 1 < len(text) and not text[i + 1].isspace():
            prefix, i = ch, i + 1
            ch = text[i]
        if ch == '"':
            end = text.find('"', i + 1)
            if end < 0:
                raise PatternError("Invalid filter pattern: unterminated quoted term")
            tokens.append(prefix + "\0" + text[i + 1 : end])
            i = end + 1
        elif ch == "%":
            end = text.find("%", i + 1)
            if end < 0:
                raise PatternError("Invalid filter pattern: unterminated regular expression")
            tokens.append(prefix + "%" + text[i + 1 : end])
            i = end + 1
        else:
            j = i
            while j < len(text) and not text[j].isspace():
                j += 1
            tokens.append(prefix + "\0" + text[i:j])
            i = j
    return tokens


def _term_test(token: str) -> Predicate:
    kind, value = token[0], token[1:]
    if kind == "%":
        try:
            regex = re.compile(value)
        except re.error as exc:
            raise PatternError(f"Invalid regular expression in filter pattern: {exc}") from None
        return lambda message: regex.search(message) is not None
    return lambda message: value in message


def _compile_terms(text: str) -> Predicate:
    required: list[Predicate] = []
    excluded: list[Predicate] = []
    optional: list[Predicate] = []
    for token in _term_tokens(text):
        if token[0] == "?":
            optional.append(_term_test(token[1:]))
        elif token[0] == "-":
            excluded.append(_term_test(token[1:]))
        else:
            required.append(_term_test(token))

    def match(message: str) -> bool:
        if optional and not any(test(message) for test in optional):
            return False
        if not all(test(message) for test in required):
            return False
        return not any(test(message) for test in excluded)

    return match


# -- JSON ---------------------------------------------------------------------------

_JSON_TOKEN = re.compile(
    r"""\s*(?:
        (?P<op>&&|\|\||!=|<=|>=|=|<|>|\(|\))
      | (?P<sel>\$(?:\.[A-Za-z0-9_@\-$]+|\[\d+\]|\.\*|\[\*\])*)
      | (?P<str>"(?:[^"\\]|\\.)*")
      | (?P<num>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
      | (?P<word>[A-Za-z_*][A-Za-z0-9_*\-.:/@]*)
    )""",
    re.VERBOSE,
)


@dataclass
class _Tok:
    kind: str
    text: str


class _JsonParser:
    """Recursive descent: ``expr := and ('||' and)*``, ``and := atom ('&&' atom)*``."""

    def __init__(self, text: str) -> None:
        self.tokens: list[_Tok] = []
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _JSON_TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                raise PatternError(f"Invalid character(s) in JSON filter pattern near {text[pos:pos + 10]!r}")
            kind = m.lastgroup or ""
            self.tokens.append(_Tok(kind, m.group(kind)))
            pos = m.end()
        self.i = 0

    def _peek(self) -> _Tok | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _next(self) -> _Tok:
        tok = self._peek()
        if tok is None:
            raise PatternError("Invalid JSON filter pattern: unexpected end")
        self.i += 1
        return tok

    def parse(self) -> JsonTest:
        test = self._or()
        if self._peek() is not None:
            raise PatternError(f"Invalid JSON filter pattern near {self._peek().text!r}")  # type: ignore[union-attr]
        return test

    def _or(self) -> JsonTest:
        parts = [self._and()]
        while (tok := self._peek()) is not None and tok.text == "||":
            self.i += 1
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else (lambda doc: any(p(doc) for p in parts))

    def _and(self) -> JsonTest:
        parts = [self._atom()]
        while (tok := self._peek()) is not None and tok.text == "&&":
            self.i += 1
            parts.append(self._atom())
        return parts[0] if len(parts) == 1 else (lambda doc: all(p(doc) for p in parts))

    def _atom(self) -> JsonTest:
        tok = self._next()
        if tok.text == "(":
            inner = self._or()
            if self._next().text != ")":
                raise PatternError("Invalid JSON filter pattern: missing ')'")
            return inner
        if tok.kind != "sel":
            raise PatternError(f"Invalid JSON filter pattern: expected a $ selector, got {tok.text!r}")
        path = _parse_selector(tok.text)
        op = self._next()
        if op.kind == "word":
            return self._keyword(path, op.text.upper())
        if op.kind != "op" or op.text not in ("=", "!=", "<", "<=", ">", ">="):
            raise PatternError(f"Invalid JSON filter pattern: expected an operator after {tok.text}")
        value = self._next()
        return _comparison(path, op.text, value)

    def _keyword(self, path: list[str | int], word: str) -> JsonTest:
        if word == "IS":
            what = self._next().text.upper()
            if what == "TRUE":
                return lambda doc: _select(doc, path) is True
            if what == "FALSE":
                return lambda doc: _select(doc, path) is False
            if what == "NULL":
                return lambda doc: _has(doc, path) and _select(doc, path) is None
            raise PatternError(f"Invalid JSON filter pattern: IS {what}")
        if word == "NOT" and self._next().text.upper() == "EXISTS":
            return lambda doc: not _has(doc, path)
        raise PatternError(f"Invalid JSON filter pattern: unexpected {word}")


_MISSING = object()


def _parse_selector(text: str) -> list[str | int]:
    path: list[str | int] = []
    for m in re.finditer(r"\.([A-Za-z0-9_@\-$]+|\*)|\[(\d+|\*)\]", text[1:]):
        if m.group(1) is not None:
            path.append(m.group(1))
        else:
            path.append("*" if m.group(2) == "*" else int(m.group(2)))
    return path


def _select(doc: Any, path: list[str | int]) -> Any:
    for part in path:
        if isinstance(part, int):
            if not isinstance(doc, list) or part >= len(doc):
                return _MISSING
            doc = doc[part]
        elif isinstance(doc, dict) and part in doc:
            doc = doc[part]
        else:
            return _MISSING
    return doc


def _has(doc: Any, path: list[str | int]) -> bool:
    return _select(doc, path) is not _MISSING


def _comparison(path: list[str | int], op: str, tok: _Tok) -> JsonTest:
    if tok.kind == "num":
        number = float(tok.text)
        compare = _NUMERIC[op]

        def numeric(doc: Any) -> bool:
            value = _select(doc, path)
            if isinstance(value, bool) or not isinstance(value, int | float):
                return False
            return compare(float(value), number)

        return numeric
    if op not in ("=", "!="):
        raise PatternError(f"Invalid JSON filter pattern: {op} needs a number")
    if tok.kind == "str":
        target = orjson.loads(tok.text)
    elif tok.kind == "word":
        target = tok.text
    else:
        raise PatternError(f"Invalid JSON filter pattern: unexpected {tok.text!r}")
    equal = op == "="

    def string(doc: Any) -> bool:
        value = _select(doc, path)
        if value is _MISSING or isinstance(value, dict | list):
            return False
        text = _as_text(value)
        hit = fnmatch.fnmatchcase(text, target) if "*" in target else text == target
        return hit == equal

    return string


def _as_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_NUMERIC: dict[str, Callable[[float, float], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _match_json(test: JsonTest, message: str) -> bool:
    start = message.find("{")
    if start < 0:
        return False
    try:
        doc = orjson.loads(message[start:])
    except orjson.JSONDecodeError:
        return False
    return isinstance(doc, dict) and test(doc)


# -- space-delimited ------------------------------------------------------------------

_FIELD_COND = re.compile(r"^\s*([A-Za-z0-9_\-]+|\.\.\.)\s*(?:(!=|<=|>=|=|<|>)\s*(.+?))?\s*$")


def _split_fields(message: str) -> list[str]:
    fields: list[str] = []
    for m in re.finditer(r'"([^"]*)"|\[([^\]]*)\]|(\S+)', message):
        fields.append(next(g for g in m.groups() if g is not None))
    return fields


def _compile_delimited(body: str) -> Predicate:
    specs: list[tuple[bool, Callable[[str], bool] | None]] = []
    for raw in _split_top_commas(body):
        m = _FIELD_COND.match(raw)
        if m is None:
            raise PatternError(f"Invalid space-delimited filter pattern field {raw!r}")
        name, op, value = m.groups()
        specs.append((name == "...", None if op is None else _field_test(op, value)))

    def match(message: str) -> bool:
        return _match_fields(specs, _split_fields(message))

    return match


def _split_top_commas(body: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in body:
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        depth += ch == "(" or ch == "["
        depth -= ch == ")" or ch == "]"
        current += ch
    parts.append(current)
    return [p for p in parts if p.strip()]


def _field_test(op: str, value: str) -> Callable[[str], bool]:
    value = value.strip()
    if re.fullmatch(r"-?\d+(?:\.\d+)?", value):
        number, compare = float(value), _NUMERIC[op]

        def numeric(field: str) -> bool:
            try:
                return compare(float(field), number)
            except ValueError:
                return False

        return numeric
    if op not in ("=", "!="):
        raise PatternError(f"Invalid space-delimited filter pattern: {op} needs a number")
    target = value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
    equal = op == "="
    return lambda field: (fnmatch.fnmatchcase(field, target) if "*" in target else field == target) == equal


def _match_fields(specs: list[tuple[bool, Callable[[str], bool] | None]], fields: list[str]) -> bool:
    if not specs:
        return not fields
    is_rest, test = specs[0]
    if is_rest:
        return any(_match_fields(specs[1:], fields[skip:]) for skip in range(len(fields) + 1))
    if not fields:
        return False
    if test is not None and not test(fields[0]):
        return False
    return _match_fields(specs[1:], fields[1:])
