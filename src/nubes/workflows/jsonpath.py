"""JSONPath as Step Functions uses it.

Paths are parsed once into segments (cached) and evaluated against plain JSON
values. Two kinds matter:

* *reference paths* (``ResultPath``, Choice ``Variable``) name one node: only
  ``.name``, ``['name']`` and ``[index]`` steps;
* general paths (``InputPath``, ``OutputPath``, ``.$`` fields, ``ItemsPath``) may
  also use ``*``, ``..``, slices, unions and filters ``[?(@.x > 1)]``; such an
  *indefinite* path yields a list of every match, as AWS's JSONPath does.

``$$`` reads the context object, ``$name`` a workflow variable.
"""

from __future__ import annotations

import copy
import operator
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from nubes.workflows.errors import (
    RESULT_PATH_MATCH_FAILURE,
    RUNTIME,
    StatesError,
)


class JsonPathSyntaxError(ValueError):
    """The text is not a JSONPath this engine accepts."""


class PathNotFound(LookupError):
    """A definite path selected nothing."""


@dataclass(frozen=True)
class Step:
    """One step of a path.

    kind: ``field`` (arg: name), ``index`` (int), ``slice`` (start, stop, step),
    ``wildcard``, ``descend`` (name or None for ``..*``), ``union`` (tuple of names or
    ints), ``filter`` (a parsed filter expression).
    """

    kind: str
    arg: Any = None


@dataclass(frozen=True)
class Path:
    """A parsed path: which root it starts from and its steps."""

    #: ``$`` (input), ``$$`` (context) or a variable name
    root: str
    steps: tuple[Step, ...]
    text: str

    @property
    def definite(self) -> bool:
        """True when the path names at most one node (no wildcard/filter/...)."""
        return all(s.kind in ("field", "index", "length") for s in self.steps)


_NAME = re.compile(r"[^.\[\]()\s'\"*?@,:=<>!&|]+")
_VAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


@lru_cache(maxsize=4096)
def parse(text: str) -> Path:
    """Parse a JSONPath; raises :class:`JsonPathSyntaxError`."""
    if not isinstance(text, str) or not text.startswith("$"):
        raise JsonPathSyntaxError(f"path must start with '$': {text!r}")
    if text.startswith("$$"):
        root, pos = "$$", 2
    else:
        m = _VAR.match(text)
        if m:
            root, pos = m.group(1), m.end()
        else:
            root, pos = "$", 1
    steps: list[Step] = []
    while pos < len(text):
        pos = _parse_step(text, pos, steps)
    return Path(root, tuple(steps), text)


def _parse_step(text: str, pos: int, steps: list[Step]) -> int:
    ch = text[pos]
    if text.startswith("..", pos):
        pos += 2
        if pos < len(text) and text[pos] == "*":
            steps.append(Step("descend", None))
            return pos + 1
        if pos < len(text) and text[pos] == "[":
            steps.append(Step("descend", None))
            return pos
        m = _NAME.match(text, pos)
        if not m:
            raise JsonPathSyntaxError(f"expected a name after '..' in {text!r}")
        steps.append(Step("descend", m.group(0)))
        return m.end()
    if ch == ".":
        pos += 1
        if pos < len(text) and text[pos] == "*":
            steps.append(Step("wildcard"))
            return pos + 1
        m = _NAME.match(text, pos)
        if not m:
            raise JsonPathSyntaxError(f"expected a name after '.' in {text!r}")
        name = m.group(0)
        if text.startswith("()", m.end()) and name == "length":
            steps.append(Step("length"))
            return m.end() + 2
        steps.append(Step("field", name))
        return m.end()
    if ch == "[":
        return _parse_bracket(text, pos + 1, steps)
    raise JsonPathSyntaxError(f"unexpected {ch!r} at {pos} in {text!r}")


def _parse_bracket(text: str, pos: int, steps: list[Step]) -> int:
    end = _matching_bracket(text, pos)
    inner = text[pos:end].strip()
    if not inner:
        raise JsonPathSyntaxError(f"empty brackets in {text!r}")
    if inner == "*":
        steps.append(Step("wildcard"))
    elif inner.startswith("?"):
        body = inner[1:].strip()
        if not (body.startswith("(") and body.endswith(")")):
            raise JsonPathSyntaxError(f"filter must be ?(...) in {text!r}")
        steps.append(Step("filter", _parse_filter(body[1:-1])))
    elif ":" in inner and not inner.startswith(("'", '"')):
        parts = [p.strip() for p in inner.split(":")]
        if len(parts) > 3:
            raise JsonPathSyntaxError(f"bad slice in {text!r}")
        try:
            nums = tuple(int(p) if p else None for p in parts) + (None,) * (3 - len(parts))
        except ValueError:
            raise JsonPathSyntaxError(f"bad slice in {text!r}") from None
        steps.append(Step("slice", nums))
    else:
        items = [_bracket_item(p.strip(), text) for p in _split_union(inner)]
        if len(items) == 1:
            item = items[0]
            steps.append(Step("index" if isinstance(item, int) else "field", item))
        else:
            steps.append(Step("union", tuple(items)))
    return end + 1


def _matching_bracket(text: str, pos: int) -> int:
    depth, quote = 1, ""
    i = pos
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
        elif c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise JsonPathSyntaxError(f"unclosed '[' in {text!r}")


def _split_union(inner: str) -> list[str]:
    parts, buf, quote = [], "", ""
    for c in inner:
        if quote:
            buf += c
            if c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
            buf += c
        elif c == ",":
            parts.append(buf)
            buf = ""
        else:
            buf += c
    parts.append(buf)
    return parts


def _bracket_item(item: str, text: str) -> str | int:
    if len(item) >= 2 and item[0] == item[-1] and item[0] in "'\"":
        return item[1:-1].replace("\\" + item[0], item[0])
    try:
        return int(item)
    except ValueError:
        raise JsonPathSyntaxError(f"bad bracket item {item!r} in {text!r}") from None


# -- filters ---------------------------------------------------------------

_FILTER_TOKEN = re.compile(
    r"\s*(?:(?P<op>==|!=|<=|>=|<|>|&&|\|\||!|\(|\))|(?P<str>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")"
    r"|(?P<num>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)|(?P<kw>true|false|null)"
    r"|(?P<path>@(?:\.[A-Za-z0-9_$-]+|\[[^\]]*\])*))"
)


def _parse_filter(body: str) -> Any:
    tokens: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(body):
        if body[pos:].strip() == "":
            break
        m = _FILTER_TOKEN.match(body, pos)
        if not m or m.end() == pos:
            raise JsonPathSyntaxError(f"bad filter expression {body!r}")
        pos = m.end()
        kind = m.lastgroup or ""
        value: Any = m.group(kind)
        if kind == "str":
            value = value[1:-1]
        elif kind == "num":
            value = float(value) if any(c in value for c in ".eE") else int(value)
        elif kind == "kw":
            kind, value = "lit", {"true": True, "false": False, "null": None}[value]
        elif kind == "path":
            value = parse("$" + value[1:])
        tokens.append((kind if kind != "str" and kind != "num" else "lit", value))
    expr, rest = _filter_or(tokens)
    if rest:
        raise JsonPathSyntaxError(f"bad filter expression {body!r}")
    return expr


def _filter_or(tokens: list[tuple[str, Any]]) -> tuple[Any, list[tuple[str, Any]]]:
    left, tokens = _filter_and(tokens)
    while tokens and tokens[0] == ("op", "||"):
        right, tokens = _filter_and(tokens[1:])
        left = ("or", left, right)
    return left, tokens


def _filter_and(tokens: list[tuple[str, Any]]) -> tuple[Any, list[tuple[str, Any]]]:
    left, tokens = _filter_cmp(tokens)
    while tokens and tokens[0] == ("op", "&&"):
        right, tokens = _filter_cmp(tokens[1:])
        left = ("and", left, right)
    return left, tokens


def _filter_cmp(tokens: list[tuple[str, Any]]) -> tuple[Any, list[tuple[str, Any]]]:
    if not tokens:
        raise JsonPathSyntaxError("filter expression ends early")
    kind, value = tokens[0]
    if (kind, value) == ("op", "!"):
        inner, rest = _filter_cmp(tokens[1:])
        return ("not", inner), rest
    if (kind, value) == ("op", "("):
        inner, rest = _filter_or(tokens[1:])
        if not rest or rest[0] != ("op", ")"):
            raise JsonPathSyntaxError("unbalanced parentheses in filter")
        return inner, rest[1:]
    if kind not in ("lit", "path"):
        raise JsonPathSyntaxError(f"unexpected {value!r} in filter")
    left = (kind, value)
    rest = tokens[1:]
    if rest and rest[0][0] == "op" and rest[0][1] in ("==", "!=", "<", "<=", ">", ">="):
        if len(rest) < 2 or rest[1][0] not in ("lit", "path"):
            raise JsonPathSyntaxError("comparison needs a right-hand side")
        return ("cmp", rest[0][1], left, rest[1]), rest[2:]
    return ("exists", left), rest


def _filter_operand(node: tuple[str, Any], item: Any) -> tuple[bool, Any]:
    if node[0] == "lit":
        return True, node[1]
    try:
        return True, _walk_definite(node[1].steps, item)
    except PathNotFound:
        return False, None


def _filter_eval(expr: Any, item: Any) -> bool:
    op = expr[0]
    if op == "or":
        return _filter_eval(expr[1], item) or _filter_eval(expr[2], item)
    if op == "and":
        return _filter_eval(expr[1], item) and _filter_eval(expr[2], item)
    if op == "not":
        return not _filter_eval(expr[1], item)
    if op == "exists":
        found, value = _filter_operand(expr[1], item)
        return found and value is not None and value is not False
    _, cmp, left, right = expr
    lf, lv = _filter_operand(left, item)
    rf, rv = _filter_operand(right, item)
    if not (lf and rf):
        return False
    if cmp == "==":
        return json_equal(lv, rv)
    if cmp == "!=":
        return not json_equal(lv, rv)
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lv, rv))
    if not (numeric or (isinstance(lv, str) and isinstance(rv, str))):
        return False
    return bool(_ORDER[cmp](lv, rv))


_ORDER = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: ``true`` is not ``1`` (Python's ``True == 1`` is)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return bool(a == b)


# -- evaluation ------------------------------------------------------------


def _walk_definite(steps: tuple[Step, ...], value: Any) -> Any:
    for step in steps:
        if step.kind == "field":
            if not isinstance(value, dict) or step.arg not in value:
                raise PathNotFound(step.arg)
            value = value[step.arg]
        elif step.kind == "index":
            if not isinstance(value, list):
                raise PathNotFound(step.arg)
            try:
                value = value[step.arg]
            except IndexError:
                raise PathNotFound(step.arg) from None
        elif step.kind == "length":
            if not isinstance(value, (list, str, dict)):
                raise PathNotFound("length()")
            value = len(value)
        else:  # pragma: no cover - callers check definiteness
            raise PathNotFound(step.kind)
    return value


def _children(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, list):
        return list(value)
    return []


def _descendants(value: Any) -> list[Any]:
    out = [value]
    for child in _children(value):
        out.extend(_descendants(child))
    return out


def _apply(step: Step, nodes: list[Any]) -> list[Any]:
    out: list[Any] = []
    for node in nodes:
        kind, arg = step.kind, step.arg
        if kind == "field":
            if isinstance(node, dict) and arg in node:
                out.append(node[arg])
        elif kind == "index":
            if isinstance(node, list) and -len(node) <= arg < len(node):
                out.append(node[arg])
        elif kind == "length":
            if isinstance(node, (list, str, dict)):
                out.append(len(node))
        elif kind == "wildcard":
            out.extend(_children(node))
        elif kind == "slice":
            if isinstance(node, list):
                out.extend(node[slice(*arg)])
        elif kind == "union":
            for item in arg:
                out.extend(_apply(Step("index" if isinstance(item, int) else "field", item), [node]))
        elif kind == "filter":
            out.extend(c for c in _children(node) if _filter_eval(arg, c))
        elif kind == "descend":
            for d in _descendants(node):
                if arg is None:
                    out.extend(_children(d))
                elif isinstance(d, dict) and arg in d:
                    out.append(d[arg])
    return out


def select(path: Path, value: Any) -> Any:
    """Evaluate a parsed path against ``value`` (already the chosen root).

    A definite path returns its node or raises :class:`PathNotFound`; an indefinite
    path returns the list of matches (possibly empty).
    """
    if path.definite:
        return _walk_definite(path.steps, value)
    nodes = [value]
    for step in path.steps:
        nodes = _apply(step, nodes)
    return nodes


@dataclass
class Scope:
    """What a path can read: the state input, the context object, variables."""

    input: Any
    context: Any = None
    variables: dict[str, Any] | None = None


def read(text: str, scope: Scope) -> Any:
    """Resolve a path string in a scope; a missing node is AWS's runtime error."""
    path = parse(text)
    if path.root == "$":
        root = scope.input
    elif path.root == "$$":
        root = scope.context
    else:
        variables = scope.variables or {}
        if path.root not in variables:
            raise StatesError(
                RUNTIME, f"Invalid path '{text}': The variable ${path.root} is not defined"
            )
        root = variables[path.root]
    try:
        return select(path, root)
    except PathNotFound:
        raise StatesError(
            RUNTIME,
            f"Invalid path '{text}' : No results for path: {normalized(path)}",
        ) from None


def normalized(path: Path) -> str:
    """``$.a[0].b`` → ``$['a'][0]['b']`` (how AWS prints a path in errors)."""
    out = path.root if path.root in ("$", "$$") else "$" + path.root
    for step in path.steps:
        if step.kind == "field":
            out += f"['{step.arg}']"
        elif step.kind == "index":
            out += f"[{step.arg}]"
        else:
            return path.text
    return out


def is_reference_path(text: str) -> bool:
    """True for a syntactically valid path that names one node of the input."""
    try:
        path = parse(text)
    except JsonPathSyntaxError:
        return False
    return path.definite and path.root == "$" and all(s.kind != "length" for s in path.steps)


def is_valid_path(text: str) -> bool:
    """True if ``text`` parses as a JSONPath (any root)."""
    try:
        parse(text)
    except JsonPathSyntaxError:
        return False
    return True


def assign_result(input_value: Any, result_path: str | None, result: Any) -> Any:
    """Apply ``ResultPath``: ``None`` discards the result, ``$`` replaces the input,
    anything else writes the result into a copy of the input at that node."""
    if result_path is None:
        return input_value
    path = parse(result_path)
    if not path.steps:
        return result
    output = copy.deepcopy(input_value)
    if not isinstance(output, dict):
        raise StatesError(
            RESULT_PATH_MATCH_FAILURE,
            f"Unable to apply ResultPath \"{result_path}\" to input {_short(input_value)}",
        )
    node: Any = output
    for i, step in enumerate(path.steps):
        last = i == len(path.steps) - 1
        if step.kind == "field" and isinstance(node, dict):
            if last:
                node[step.arg] = result
            else:
                child = node.get(step.arg)
                if child is None:
                    child = node[step.arg] = {}
                node = child
        elif step.kind == "index" and isinstance(node, list) and -len(node) <= step.arg < len(node):
            if last:
                node[step.arg] = result
            else:
                node = node[step.arg]
        else:
            raise StatesError(
                RESULT_PATH_MATCH_FAILURE,
                f"Unable to apply ResultPath \"{result_path}\" to input {_short(input_value)}",
            )
    return output


def _short(value: Any) -> str:
    import orjson

    text = orjson.dumps(value).decode()
    return text if len(text) <= 200 else text[:200] + "..."
