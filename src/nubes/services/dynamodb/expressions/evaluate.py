"""Binding placeholders of one request, evaluating conditions, projecting items."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from nubes.aws.errors import AwsError
from nubes.services.dynamodb.expressions.lexer import expression_error
from nubes.services.dynamodb.expressions.nodes import (
    And,
    Between,
    Compare,
    Condition,
    Function,
    In,
    Literal,
    Not,
    Operand,
    Or,
    Path,
    PathElement,
    Size,
    Value,
    walk,
)
from nubes.services.dynamodb.types import (
    TYPES,
    AttributeValue,
    Item,
    check_attribute_name,
    compare,
    equal,
    validate_value,
    validation,
)

Resolved = tuple[PathElement, ...]


class Bindings:
    """The ExpressionAttributeNames/Values of one request, with DynamoDB's checks
    that each placeholder used is defined and each one defined is used."""

    def __init__(self, names: dict[str, str] | None, values: dict[str, Any] | None) -> None:
        if names is not None and not names:
            raise validation("ExpressionAttributeNames must not be empty")
        if values is not None and not values:
            raise validation("ExpressionAttributeValues must not be empty")
        self.names: dict[str, str] = names or {}
        for key, name in self.names.items():
            if not key.startswith("#") or len(key) < 2:
                raise validation(f'ExpressionAttributeNames contains invalid key: Syntax error; key: "{key}"')
            check_attribute_name(name)
        self.values: dict[str, AttributeValue] = {}
        for key, value in (values or {}).items():
            if not key.startswith(":") or len(key) < 2:
                raise validation(f'ExpressionAttributeValues contains invalid key: Syntax error; key: "{key}"')
            try:
                self.values[key] = validate_value(value)
            except AwsError as err:
                raise validation(
                    f"ExpressionAttributeValues contains invalid value: {err.message} for key {key}"
                ) from None
        self.used_names: set[str] = set()
        self.used_values: set[str] = set()

    def bind(self, tree: Any, kind: str) -> None:
        """Check every placeholder in ``tree`` is defined; remember it as used."""
        for node in walk(tree):
            if isinstance(node, Path) and not node.literal:
                for element in node.elements:
                    if isinstance(element, str) and element.startswith("#"):
                        if element not in self.names:
                            raise expression_error(
                                kind,
                                "An expression attribute name used in the document path is not defined; "
                                f"attribute name: {element}",
                            )
                        self.used_names.add(element)
            elif isinstance(node, Value):
                if node.name not in self.values:
                    raise expression_error(
                        kind,
                        "An expression attribute value used in expression is not defined; "
                        f"attribute value: {node.name}",
                    )
                self.used_values.add(node.name)

    def finish(self) -> None:
        """Raise DynamoDB's error for names or values no expression used."""
        unused_names = sorted(set(self.names) - self.used_names)
        if unused_names:
            raise validation(
                "Value provided in ExpressionAttributeNames unused in expressions: "
                f"keys: {{{', '.join(unused_names)}}}"
            )
        unused_values = sorted(set(self.values) - self.used_values)
        if unused_values:
            raise validation(
                "Value provided in ExpressionAttributeValues unused in expressions: "
                f"keys: {{{', '.join(unused_values)}}}"
            )

    def resolve(self, path: Path) -> Resolved:
        """A path with its name placeholders replaced by the real names."""
        if path.literal:
            return path.elements
        names = self.names
        return tuple(
            names[e] if isinstance(e, str) and e.startswith("#") else e for e in path.elements
        )


EMPTY = Bindings(None, None)


def get_path(item: Item, elements: Resolved) -> AttributeValue | None:
    """The value at a document path, or None if any step is missing."""
    first = elements[0]
    assert isinstance(first, str)
    value = item.get(first)
    for element in elements[1:]:
        if value is None:
            return None
        if isinstance(element, int):
            inner = value.get("L")
            if inner is None or element >= len(inner):
                return None
            value = inner[element]
        else:
            inner = value.get("M")
            if inner is None:
                return None
            value = inner.get(element)
    return value


def size_of(value: AttributeValue | None) -> AttributeValue | None:
    """``size()`` of a value as a number, or None for types without a size."""
    if value is None:
        return None
    kind, inner = next(iter(value.items()))
    if kind in ("S", "B", "SS", "NS", "BS", "L", "M"):
        return {"N": str(len(inner))}
    return None


def operand_value(operand: Operand, item: Item, bindings: Bindings) -> AttributeValue | None:
    """The value an operand stands for against ``item`` (None when absent)."""
    if isinstance(operand, Path):
        return get_path(item, bindings.resolve(operand))
    if isinstance(operand, Value):
        return bindings.values[operand.name]
    if isinstance(operand, Literal):
        return operand.value
    inner = operand.operand
    if isinstance(inner, Value):
        return size_of(bindings.values[inner.name])
    return size_of(get_path(item, bindings.resolve(inner)))


def _type_error(kind: str, function: str, value: AttributeValue) -> AwsError:
    return expression_error(
        kind,
        "Incorrect operand type for operator or function; "
        f"operator or function: {function}, operand type: {next(iter(value))}",
    )


def _compare(op: str, left: AttributeValue | None, right: AttributeValue | None) -> bool:
    if left is None or right is None:
        return op == "<>"
    if op == "=":
        return equal(left, right)
    if op == "<>":
        return not equal(left, right)
    order = compare(left, right)
    if order is None:
        return False
    if op == "<":
        return order < 0
    if op == "<=":
        return order <= 0
    if op == ">":
        return order > 0
    return order >= 0


def _contains(target: AttributeValue, needle: AttributeValue) -> bool:
    kind, inner = next(iter(target.items()))
    nkind, ninner = next(iter(needle.items()))
    if (kind == "S" and nkind == "S") or (kind == "B" and nkind == "B"):
        return bool(ninner in inner)
    if (kind == "SS" and nkind == "S") or (kind == "BS" and nkind == "B"):
        return ninner in inner
    if kind == "NS" and nkind == "N":
        return any(equal({"N": x}, needle) for x in inner)
    if kind == "L":
        return any(equal(element, needle) for element in inner)
    return False


def _function(node: Function, item: Item, bindings: Bindings, kind: str) -> bool:
    name = node.name
    target = operand_value(node.args[0], item, bindings)
    if name == "attribute_exists":
        return target is not None
    if name == "attribute_not_exists":
        return target is None
    argument = operand_value(node.args[1], item, bindings)
    if name == "attribute_type":
        if argument is None or "S" not in argument or argument["S"] not in TYPES:
            shown = argument.get("S") if argument else None
            raise expression_error(
                kind,
                f"Invalid attribute type name found; type: {shown}, "
                "valid types: {B,NULL,SS,BOOL,L,BS,N,NS,S,M}",
            )
        return target is not None and next(iter(target)) == argument["S"]
    if name == "begins_with":
        if target is None or argument is None or next(iter(target)) != next(iter(argument)):
            return False
        return bool(next(iter(target.values())).startswith(next(iter(argument.values()))))
    if target is None or argument is None:
        return False
    return _contains(target, argument)


_ORDERING = ("<", "<=", ">", ">=")


def _static(operand: Operand, bindings: Bindings) -> AttributeValue | None:
    """The value of an operand known from the request alone (a value, or the
    size of one); None for document paths."""
    if isinstance(operand, Value | Literal):
        return operand_value(operand, {}, bindings)
    if isinstance(operand, Size) and isinstance(operand.operand, Value):
        return operand_value(operand, {}, bindings)
    return None


def check_condition(tree: Condition, bindings: Bindings, kind: str) -> None:
    """Type errors in the request's own values, raised whatever the item holds
    (a bad type read from an item only makes the condition false)."""
    for node in walk(tree):
        if isinstance(node, Size) and isinstance(node.operand, Value):
            sized = bindings.values[node.operand.name]
            if size_of(sized) is None:
                raise _type_error(kind, "size", sized)
        elif isinstance(node, Compare) and node.op in _ORDERING:
            for operand in (node.left, node.right):
                value = _static(operand, bindings)
                if value is not None and next(iter(value)) not in ("N", "S", "B"):
                    raise _type_error(kind, node.op, value)
        elif isinstance(node, Between):
            _check_between(node, bindings, kind)
        elif isinstance(node, Function) and node.name == "begins_with":
            for operand in node.args:
                prefix = _static(operand, bindings)
                if prefix is not None and next(iter(prefix)) not in ("S", "B"):
                    raise _type_error(kind, "begins_with", prefix)
        elif isinstance(node, Function) and node.name == "attribute_type":
            type_name = _static(node.args[1], bindings)
            if type_name is None or "S" not in type_name or type_name["S"] not in TYPES:
                shown = type_name.get("S") if type_name else None
                raise expression_error(
                    kind, f"Invalid attribute type name found; type: {shown}, valid types: {{B,NULL,SS,BOOL,L,BS,N,NS,S,M}}"
                )


def _check_between(node: Between, bindings: Bindings, kind: str) -> None:
    values = [_static(operand, bindings) for operand in (node.operand, node.low, node.high)]
    for value in values:
        if value is not None and next(iter(value)) not in ("N", "S", "B"):
            raise _type_error(kind, "BETWEEN", value)
    low, high = values[1], values[2]
    if low is not None and high is not None:
        order = compare(low, high)
        if order is None:
            raise expression_error(
                kind,
                "The BETWEEN operator requires same data type for lower and upper bounds; "
                f"lower bound operand: AttributeValue: {{{_show(low)}}}, upper bound operand: AttributeValue: {{{_show(high)}}}",
            )
        if order > 0:
            raise expression_error(
                kind,
                "The BETWEEN operator requires upper bound to be greater than or equal to lower bound; "
                f"lower bound operand: AttributeValue: {{{_show(low)}}}, "
                f"upper bound operand: AttributeValue: {{{_show(high)}}}",
            )


def evaluate(node: Condition, item: Item, bindings: Bindings, kind: str = "ConditionExpression") -> bool:
    """Whether ``item`` satisfies the condition."""
    if isinstance(node, Compare):
        return _compare(
            node.op, operand_value(node.left, item, bindings), operand_value(node.right, item, bindings)
        )
    if isinstance(node, And):
        return evaluate(node.left, item, bindings, kind) and evaluate(node.right, item, bindings, kind)
    if isinstance(node, Or):
        return evaluate(node.left, item, bindings, kind) or evaluate(node.right, item, bindings, kind)
    if isinstance(node, Not):
        return not evaluate(node.operand, item, bindings, kind)
    if isinstance(node, Function):
        return _function(node, item, bindings, kind)
    if isinstance(node, Between):
        return _between(node, item, bindings, kind)
    assert isinstance(node, In)
    value = operand_value(node.operand, item, bindings)
    return any(equal(value, operand_value(option, item, bindings)) for option in node.options)


def _between(node: Between, item: Item, bindings: Bindings, kind: str) -> bool:
    value = operand_value(node.operand, item, bindings)
    low = operand_value(node.low, item, bindings)
    high = operand_value(node.high, item, bindings)
    if low is None or high is None or value is None:
        return False
    # bounds from the request were checked with the expression; bounds read
    # from the item that are out of order simply match nothing
    lower = compare(value, low)
    upper = compare(value, high)
    return lower is not None and upper is not None and lower >= 0 and upper <= 0


def _show(value: AttributeValue) -> str:
    kind, inner = next(iter(value.items()))
    return f"{kind}:{inner}"


# -- paths: display, overlap, projection ---------------------------------------


def show_path(path: Resolved) -> str:
    """A path as DynamoDB prints it in errors: ``[a, b, [0]]``."""
    return "[" + ", ".join(f"[{e}]" if isinstance(e, int) else e for e in path) + "]"


def check_overlaps(paths: Sequence[Resolved], kind: str) -> None:
    """Raise DynamoDB's error when one path is, or lies inside, another."""
    for i, first in enumerate(paths):
        for second in paths[i + 1 :]:
            shorter = min(len(first), len(second))
            if first[:shorter] == second[:shorter]:
                raise expression_error(
                    kind,
                    "Two document paths overlap with each other; must remove or rewrite one of these "
                    f"paths; path one: {show_path(first)}, path two: {show_path(second)}",
                )
            for a, b in zip(first, second, strict=False):
                if a != b:
                    if isinstance(a, int) != isinstance(b, int):
                        raise expression_error(
                            kind,
                            "Two document paths conflict with each other; must remove or rewrite one "
                            f"of these paths; path one: {show_path(first)}, path two: {show_path(second)}",
                        )
                    break


def _extract(value: AttributeValue, rest: Resolved) -> Any:
    """The part of ``value`` at ``rest``, as a tree whose lists are dicts by index."""
    if not rest:
        return value
    element = rest[0]
    if isinstance(element, int):
        inner = value.get("L")
        if inner is None or element >= len(inner):
            return None
        sub = _extract(inner[element], rest[1:])
        return None if sub is None else {"L": {element: sub}}
    inner_map = value.get("M")
    if inner_map is None or element not in inner_map:
        return None
    sub = _extract(inner_map[element], rest[1:])
    return None if sub is None else {"M": {element: sub}}


def _merge(into: Any, extra: Any) -> Any:
    if "M" in into and "M" in extra and isinstance(into["M"], dict):
        merged = dict(into["M"])
        for key, sub in extra["M"].items():
            merged[key] = _merge(merged[key], sub) if key in merged else sub
        return {"M": merged}
    if "L" in into and "L" in extra and isinstance(into["L"], dict):
        merged_l = dict(into["L"])
        for key, sub in extra["L"].items():
            merged_l[key] = _merge(merged_l[key], sub) if key in merged_l else sub
        return {"L": merged_l}
    return into


def project(item: Item, paths: Iterable[Resolved]) -> Item:
    """Only the attributes (or nested parts) at ``paths``; lists keep the
    projected elements in index order."""
    out: dict[str, Any] = {}
    partial: set[str] = set()
    for path in paths:
        name = path[0]
        assert isinstance(name, str)
        if name not in item:
            continue
        if len(path) == 1:
            out[name] = item[name]
            continue
        sub = _extract(item[name], path[1:])
        if sub is None:
            continue
        partial.add(name)
        out[name] = _merge(out[name], sub) if name in out else sub
    return {name: _finalize(value) if name in partial else value for name, value in out.items()}


def _finalize(tree: Any) -> AttributeValue:
    if "L" in tree and isinstance(tree["L"], dict):
        return {"L": [_finalize(tree["L"][i]) for i in sorted(tree["L"])]}
    if "M" in tree:
        return {"M": {k: _finalize(v) for k, v in tree["M"].items()}}
    return dict(tree)
