"""Intrinsic functions (``States.Format(...)`` and friends) in JSONPath mode.

A call is parsed once into a small tree (literals, paths, nested calls) and then
evaluated against a :class:`~nubes.workflows.jsonpath.Scope`. Parsing failures are
definition errors; evaluation failures are ``States.IntrinsicFailure``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

from nubes.workflows import jsonpath
from nubes.workflows.errors import INTRINSIC_FAILURE, StatesError


class IntrinsicSyntaxError(ValueError):
    """The text is not a well-formed intrinsic call (a definition error)."""


@dataclass(frozen=True)
class Call:
    """``States.<name>(args...)``."""

    name: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class PathArg:
    """A path argument (``$.x``, ``$$.Execution.Id``, ``$var``)."""

    text: str


def is_intrinsic(text: str) -> bool:
    """Whether a ``.$`` value is meant as an intrinsic call rather than a path."""
    return isinstance(text, str) and text.startswith("States.")


@lru_cache(maxsize=2048)
def parse(text: str) -> Call:
    """Parse a whole intrinsic call; raises :class:`IntrinsicSyntaxError`."""
    parser = _Parser(text)
    call = parser.call()
    parser.skip_ws()
    if parser.pos != len(text):
        raise IntrinsicSyntaxError(f"unexpected text after the call: {text[parser.pos:]!r}")
    return call


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t\n":
            self.pos += 1

    def call(self) -> Call:
        self.skip_ws()
        start = self.pos
        while self.pos < len(self.text) and (self.text[self.pos].isalnum() or self.text[self.pos] == "."):
            self.pos += 1
        name = self.text[start : self.pos]
        if not name.startswith("States.") or name[7:] not in FUNCTIONS:
            raise IntrinsicSyntaxError(f"unknown intrinsic function {name!r}")
        self.skip_ws()
        if self.pos >= len(self.text) or self.text[self.pos] != "(":
            raise IntrinsicSyntaxError(f"expected '(' after {name}")
        self.pos += 1
        args: list[Any] = []
        self.skip_ws()
        if self.pos < len(self.text) and self.text[self.pos] == ")":
            self.pos += 1
            return Call(name[7:], tuple(args))
        while True:
            args.append(self.arg())
            self.skip_ws()
            if self.pos >= len(self.text):
                raise IntrinsicSyntaxError("missing ')'")
            c = self.text[self.pos]
            self.pos += 1
            if c == ")":
                return Call(name[7:], tuple(args))
            if c != ",":
                raise IntrinsicSyntaxError(f"expected ',' or ')' but found {c!r}")

    def arg(self) -> Any:
        self.skip_ws()
        if self.pos >= len(self.text):
            raise IntrinsicSyntaxError("missing argument")
        c = self.text[self.pos]
        if c == "'":
            return self.string()
        if c == "$":
            return self.path()
        if self.text.startswith("States.", self.pos):
            return self.call()
        return self.literal()

    def string(self) -> str:
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c == "\\" and self.pos + 1 < len(self.text):
                nxt = self.text[self.pos + 1]
                # \{ and \} stay escaped so States.Format can tell them from placeholders
                out.append("\\" + nxt if nxt in "{}" else nxt)
                self.pos += 2
                continue
            if c == "'":
                self.pos += 1
                return "".join(out)
            out.append(c)
            self.pos += 1
        raise IntrinsicSyntaxError("unterminated string literal")

    def path(self) -> PathArg:
        start, depth, quote = self.pos, 0, ""
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if quote:
                if c == quote:
                    quote = ""
            elif c in "'\"" and depth:
                quote = c
            elif c == "[":
                depth += 1
            elif c == "]":
                depth -= 1
            elif c in ",)" and depth == 0:
                break
            self.pos += 1
        text = self.text[start : self.pos].strip()
        if not jsonpath.is_valid_path(text):
            raise IntrinsicSyntaxError(f"invalid path argument {text!r}")
        return PathArg(text)

    def literal(self) -> Any:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in ",) \t\n":
            self.pos += 1
        word = self.text[start : self.pos]
        if word in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[word]
        try:
            return orjson.loads(word)
        except orjson.JSONDecodeError:
            raise IntrinsicSyntaxError(f"invalid argument {word!r}") from None


def check_arity(call: Call) -> None:
    """Raise :class:`IntrinsicSyntaxError` if a call (or a nested one) has a wrong
    number of arguments — AWS refuses such definitions at create time."""
    lo, hi = FUNCTIONS[call.name][1]
    if not lo <= len(call.args) <= hi:
        raise IntrinsicSyntaxError(f"States.{call.name} takes {lo} to {hi} arguments")
    for arg in call.args:
        if isinstance(arg, Call):
            check_arity(arg)


def evaluate(text_or_call: str | Call, scope: jsonpath.Scope) -> Any:
    """Evaluate an intrinsic call in a scope."""
    call = parse(text_or_call) if isinstance(text_or_call, str) else text_or_call
    # only States.Format's template keeps \\{ escapes, to tell them from placeholders
    args = [
        _value(a, scope, keep_escapes=call.name == "Format" and i == 0)
        for i, a in enumerate(call.args)
    ]
    fn, arity = FUNCTIONS[call.name]
    lo, hi = arity
    if not lo <= len(args) <= hi:
        expected = str(lo) if lo == hi else f"{lo} to {hi}"
        _fail(f"States.{call.name} takes {expected} arguments, {len(args)} given")
    return fn(*args)


def _value(arg: Any, scope: jsonpath.Scope, *, keep_escapes: bool) -> Any:
    if isinstance(arg, Call):
        return evaluate(arg, scope)
    if isinstance(arg, PathArg):
        return jsonpath.read(arg.text, scope)
    if isinstance(arg, str) and not keep_escapes:
        return _unescape(arg)
    return arg


def _fail(message: str) -> None:
    raise StatesError(INTRINSIC_FAILURE, message)


def _is_int(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    return isinstance(v, int) or (isinstance(v, float) and v.is_integer())


def _unescape(s: str) -> str:
    return s.replace("\\{", "{").replace("\\}", "}")


def _format(template: Any, *values: Any) -> str:
    if not isinstance(template, str):
        _fail("The first argument of States.Format must be a string")
    out: list[str] = []
    i, n = 0, 0
    while i < len(template):
        if template.startswith("\\{", i) or template.startswith("\\}", i):
            out.append(template[i + 1])
            i += 2
        elif template.startswith("{}", i):
            if n >= len(values):
                _fail("Number of arguments in States.Format does not match the number of placeholders")
            v = values[n]
            if isinstance(v, (dict, list)):
                _fail("States.Format arguments must be strings, numbers, booleans or null")
            out.append(v if isinstance(v, str) else orjson.dumps(v).decode())
            n += 1
            i += 2
        else:
            out.append(template[i])
            i += 1
    if n != len(values):
        _fail("Number of arguments in States.Format does not match the number of placeholders")
    return "".join(out)


def _string_to_json(s: Any) -> Any:
    if not isinstance(s, str):
        _fail("States.StringToJson needs a string argument")
    try:
        return orjson.loads(s)
    except orjson.JSONDecodeError:
        _fail(f"States.StringToJson could not parse {s!r} as JSON")


def _json_to_string(v: Any) -> str:
    return orjson.dumps(v).decode()


def _array(*values: Any) -> list[Any]:
    return list(values)


def _array_partition(array: Any, size: Any) -> list[Any]:
    if not isinstance(array, list):
        _fail("The first argument of States.ArrayPartition must be an array")
    if not _is_int(size) or size <= 0:
        _fail("The chunk size of States.ArrayPartition must be a positive integer")
    n = int(size)
    return [array[i : i + n] for i in range(0, len(array), n)]


def _array_contains(array: Any, value: Any) -> bool:
    if not isinstance(array, list):
        _fail("The first argument of States.ArrayContains must be an array")
    return any(jsonpath.json_equal(item, value) for item in array)


def _array_range(start: Any, end: Any, step: Any) -> list[int]:
    if not all(_is_int(v) for v in (start, end, step)) or step == 0:
        _fail("States.ArrayRange needs integer start, end and a non-zero step")
    a, b, s = int(start), int(end), int(step)
    values = list(range(a, b + (1 if s > 0 else -1), s))
    if len(values) > 1000:
        _fail("States.ArrayRange can create at most 1000 items")
    return values


def _array_get_item(array: Any, index: Any) -> Any:
    if not isinstance(array, list) or not _is_int(index):
        _fail("States.ArrayGetItem needs an array and an integer index")
    i = int(index)
    if not 0 <= i < len(array):
        _fail(f"The index {i} is out of bounds of the array of length {len(array)}")
    return array[i]


def _array_length(array: Any) -> int:
    if not isinstance(array, list):
        _fail("The argument of States.ArrayLength must be an array")
    return len(array)


def _array_unique(array: Any) -> list[Any]:
    if not isinstance(array, list):
        _fail("The argument of States.ArrayUnique must be an array")
    out: list[Any] = []
    for item in array:
        if not any(jsonpath.json_equal(item, seen) for seen in out):
            out.append(item)
    return out


def _base64_encode(s: Any) -> str:
    if not isinstance(s, str):
        _fail("The argument of States.Base64Encode must be a string")
    if len(s) > 10000:
        _fail("The input of States.Base64Encode is limited to 10,000 characters")
    return base64.b64encode(s.encode()).decode()


def _base64_decode(s: Any) -> str:
    if not isinstance(s, str):
        _fail("The argument of States.Base64Decode must be a string")
    if len(s) > 10000:
        _fail("The input of States.Base64Decode is limited to 10,000 characters")
    try:
        return base64.b64decode(s, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        _fail(f"States.Base64Decode could not decode {s!r}")
    raise AssertionError("unreachable")


_HASHES = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512"}


def _hash(data: Any, algorithm: Any) -> str:
    if algorithm not in _HASHES:
        _fail(f"The hash algorithm {algorithm!r} is not supported; use one of {list(_HASHES)}")
    text = data if isinstance(data, str) else orjson.dumps(data).decode()
    if len(text) > 10000:
        _fail("The input of States.Hash is limited to 10,000 characters")
    return hashlib.new(_HASHES[algorithm], text.encode()).hexdigest()


def _json_merge(a: Any, b: Any, deep: Any) -> dict[str, Any]:
    if not isinstance(a, dict) or not isinstance(b, dict):
        _fail("States.JsonMerge merges two JSON objects")
    if deep is not False:
        _fail("States.JsonMerge supports only shallow merges (the third argument must be false)")
    return {**a, **b}


def _math_random(start: Any, end: Any, seed: Any = None) -> int:
    if not _is_int(start) or not _is_int(end) or (seed is not None and not _is_int(seed)):
        _fail("States.MathRandom needs integer arguments")
    rng = random.Random(int(seed)) if seed is not None else random
    lo, hi = int(start), int(end)
    if hi <= lo:
        _fail("The end of States.MathRandom must be greater than its start")
    return rng.randrange(lo, hi)


def _math_add(a: Any, b: Any) -> int:
    if not _is_int(a) or not _is_int(b):
        _fail("States.MathAdd needs integer arguments")
    return int(a) + int(b)


def _string_split(s: Any, delimiters: Any) -> list[str]:
    if not isinstance(s, str) or not isinstance(delimiters, str) or not delimiters:
        _fail("States.StringSplit needs a string and a non-empty delimiter string")
    parts = [s]
    for d in delimiters:
        parts = [p for part in parts for p in part.split(d)]
    return [p for p in parts if p != ""]


def _uuid() -> str:
    return str(uuid.uuid4())


FUNCTIONS: dict[str, tuple[Callable[..., Any], tuple[int, int]]] = {
    "Format": (_format, (1, 1000)),
    "StringToJson": (_string_to_json, (1, 1)),
    "JsonToString": (_json_to_string, (1, 1)),
    "Array": (_array, (0, 1000)),
    "ArrayPartition": (_array_partition, (2, 2)),
    "ArrayContains": (_array_contains, (2, 2)),
    "ArrayRange": (_array_range, (3, 3)),
    "ArrayGetItem": (_array_get_item, (2, 2)),
    "ArrayLength": (_array_length, (1, 1)),
    "ArrayUnique": (_array_unique, (1, 1)),
    "Base64Encode": (_base64_encode, (1, 1)),
    "Base64Decode": (_base64_decode, (1, 1)),
    "Hash": (_hash, (2, 2)),
    "JsonMerge": (_json_merge, (3, 3)),
    "MathRandom": (_math_random, (2, 3)),
    "MathAdd": (_math_add, (2, 2)),
    "StringSplit": (_string_split, (2, 2)),
    "UUID": (_uuid, (0, 0)),
}
