"""Applying update expressions (SET, REMOVE, ADD, DELETE) to an item.

Every right-hand side is computed from the item as it was before the update,
as DynamoDB does; then the actions are applied to a copy (containers along a
modified path are copied, everything else is shared, never mutated).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from nubes.aws.errors import AwsError
from nubes.services.dynamodb.expressions.evaluate import (
    Bindings,
    Resolved,
    check_overlaps,
    get_path,
)
from nubes.services.dynamodb.expressions.lexer import expression_error
from nubes.services.dynamodb.expressions.nodes import (
    Arithmetic,
    IfNotExists,
    ListAppend,
    Literal,
    Path,
    SetValue,
    Update,
    Value,
    walk,
)
from nubes.services.dynamodb.types import (
    NUMBER_CONTEXT,
    AttributeValue,
    Item,
    check_number,
    equal,
    format_number,
    validation,
)

KIND = "UpdateExpression"
_TYPE_WORDS = {
    "S": "STRING", "N": "NUMBER", "B": "BINARY", "BOOL": "BOOLEAN", "NULL": "NULL",
    "M": "MAP", "L": "LIST", "SS": "SET", "NS": "SET", "BS": "SET",
}  # fmt: skip


def _invalid_path() -> AwsError:
    return validation("The document path provided in the update expression is invalid for update")


def _missing_operand() -> AwsError:
    return validation("The provided expression refers to an attribute that does not exist in the item")


def _incorrect_type(legacy: bool = False) -> AwsError:
    if legacy:
        return validation("One or more parameter values were invalid: Type mismatch for attribute to update")
    return validation("An operand in the update expression has an incorrect data type")


def _operand(node: Any, item: Item, bindings: Bindings) -> AttributeValue:
    if isinstance(node, Value):
        return bindings.values[node.name]
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Path):
        value = get_path(item, bindings.resolve(node))
        if value is None:
            raise _missing_operand()
        return value
    if isinstance(node, IfNotExists):
        existing = get_path(item, bindings.resolve(node.path))
        return existing if existing is not None else _operand(node.default, item, bindings)
    assert isinstance(node, ListAppend)
    first = _operand(node.first, item, bindings)
    second = _operand(node.second, item, bindings)
    _require_type("list_append", "L", (node.first, first), (node.second, second))
    return {"L": [*first["L"], *second["L"]]}


def _require_type(function: str, kind: str, *operands: tuple[Any, AttributeValue]) -> None:
    """DynamoDB rejects a wrong type in the request's own values while parsing
    (naming the type), and one read from the item while applying (generically)."""
    for node, value in operands:
        if kind in value:
            continue
        if isinstance(node, Value | Literal):
            raise expression_error(
                KIND,
                "Incorrect operand type for operator or function; "
                f"operator or function: {function}, operand type: {next(iter(value))}",
            )
        raise _incorrect_type()


def _set_value(node: SetValue, item: Item, bindings: Bindings) -> AttributeValue:
    if not isinstance(node, Arithmetic):
        return _operand(node, item, bindings)
    left = _operand(node.left, item, bindings)
    right = _operand(node.right, item, bindings)
    _require_type(node.op, "N", (node.left, left), (node.right, right))
    a, b = Decimal(left["N"]), Decimal(right["N"])
    result = NUMBER_CONTEXT.add(a, b) if node.op == "+" else NUMBER_CONTEXT.subtract(a, b)
    return {"N": _arithmetic_result(result)}


def _arithmetic_result(result: Decimal) -> str:
    """A computed number as text; DynamoDB reports a result that needs more than
    38 digits as an overflow, whatever its magnitude."""
    try:
        check_number(result)
    except AwsError as err:
        if "significant digits" not in err.message:
            raise
        raise validation(
            "Number overflow. Attempting to store a number with magnitude larger than supported range"
        ) from None
    return format_number(result)


# -- structural edits -------------------------------------------------------------


def _with_child(container: AttributeValue, element: str | int, child: AttributeValue | None) -> AttributeValue:
    """A copy of a map/list with ``element`` replaced (None removes it)."""
    if isinstance(element, int):
        items = list(container["L"])
        if child is None:
            if element < len(items):
                del items[element]
        elif element >= len(items):
            items.append(child)
        else:
            items[element] = child
        return {"L": items}
    entries = dict(container["M"])
    if child is None:
        entries.pop(element, None)
    else:
        entries[element] = child
    return {"M": entries}


def _edit(value: AttributeValue | None, rest: Resolved, new: AttributeValue | None, strict: bool) -> AttributeValue | None:
    """``value`` with the thing at ``rest`` set to ``new`` (None: removed)."""
    element = rest[0]
    expected = "L" if isinstance(element, int) else "M"
    if value is None or expected not in value:
        if strict:
            raise _invalid_path()
        return value
    if len(rest) == 1:
        return _with_child(value, element, new)
    container = value[expected]
    if isinstance(element, int):
        child = container[element] if element < len(container) else None
    else:
        child = container.get(element)
    if child is None and not strict:
        return value
    return _with_child(value, element, _edit(child, rest[1:], new, strict))


def set_path(item: Item, path: Resolved, new: AttributeValue | None, *, strict: bool = True) -> None:
    """Set (or with None remove) the value at ``path`` in ``item`` in place at the
    top level, copying the nested containers it changes."""
    name = path[0]
    assert isinstance(name, str)
    if len(path) == 1:
        if new is None:
            item.pop(name, None)
        else:
            item[name] = new
        return
    edited = _edit(item.get(name), path[1:], new, strict)
    if edited is not None:
        item[name] = edited


def _add(existing: AttributeValue | None, value: AttributeValue, legacy: bool = False) -> AttributeValue:
    if legacy and "L" in value:
        if existing is None:
            return value
        if "L" not in existing:
            raise _incorrect_type(legacy)
        return {"L": [*existing["L"], *value["L"]]}
    kind = next(iter(value))
    if kind not in ("N", "SS", "NS", "BS"):
        raise expression_error(
            KIND,
            "Incorrect operand type for operator or function; "
            f"operator: ADD, operand type: {_TYPE_WORDS.get(kind, kind)}",
        )
    if existing is None:
        return value
    if kind not in existing:
        raise _incorrect_type(legacy)
    if kind == "N":
        total = NUMBER_CONTEXT.add(Decimal(existing["N"]), Decimal(value["N"]))
        return {"N": _arithmetic_result(total)}
    merged = list(existing[kind])
    for element in value[kind]:
        if not any(equal({kind[0]: element}, {kind[0]: have}) for have in merged):
            merged.append(element)
    return {kind: merged}


def _delete(existing: AttributeValue | None, value: AttributeValue, legacy: bool = False) -> AttributeValue | None:
    kind = next(iter(value))
    if kind not in ("SS", "NS", "BS"):
        raise expression_error(
            KIND,
            "Incorrect operand type for operator or function; "
            f"operator: DELETE, operand type: {_TYPE_WORDS.get(kind, kind)}",
        )
    if existing is None:
        return None
    if kind not in existing:
        raise _incorrect_type(legacy)
    remaining = [
        have for have in existing[kind] if not any(equal({kind[0]: have}, {kind[0]: x}) for x in value[kind])
    ]
    return {kind: remaining} if remaining else None


def check_values(update: Update, bindings: Bindings) -> None:
    """Type errors in the request's own values, raised before anything is read
    (DynamoDB validates them with the expression, whatever the item holds)."""
    for node in walk(update):
        if isinstance(node, Arithmetic):
            for operand in (node.left, node.right):
                if isinstance(operand, Value | Literal):
                    _require_type(node.op, "N", (operand, _operand(operand, {}, bindings)))
        elif isinstance(node, ListAppend):
            for operand in (node.first, node.second):
                if isinstance(operand, Value | Literal):
                    _require_type("list_append", "L", (operand, _operand(operand, {}, bindings)))
    for add in update.add:
        value = _operand(add.value, {}, bindings)
        if next(iter(value)) not in ("N", "SS", "NS", "BS"):
            _add(None, value)
    for delete in update.delete:
        _delete(None, _operand(delete.value, {}, bindings))


def _path_order(path: Resolved) -> tuple[tuple[int, Any], ...]:
    return tuple((0, e) if isinstance(e, int) else (1, e) for e in path)


def apply_update(update: Update, item: Item, bindings: Bindings, *, exists: bool = True) -> tuple[Item, set[str]]:
    """The item after ``update``, and the top-level attribute names it touched.
    ``exists`` is False when the item is new (REMOVE of a nested path in a
    missing item is ignored; in an existing one its parent must exist)."""
    targets = [bindings.resolve(path) for path in update.action_paths()]
    check_overlaps(targets, KIND)
    values = [_set_value(action.value, item, bindings) for action in update.set]
    new = dict(item)
    touched: set[str] = {str(path[0]) for path in targets}
    count = len(values)
    # several SETs past the end of one list append in index order
    for path, value in sorted(zip(targets[:count], values, strict=True), key=lambda pair: _path_order(pair[0])):
        set_path(new, path, value)
    position = count
    for _ in update.remove:
        set_path(new, targets[position], None, strict=exists)
        position += 1
    for add_action in update.add:
        path = targets[position]
        position += 1
        addend = _operand(add_action.value, item, bindings)
        set_path(new, path, _add(get_path(item, path), addend, update.legacy))
    for delete_action in update.delete:
        path = targets[position]
        position += 1
        subtrahend = _operand(delete_action.value, item, bindings)
        remaining = _delete(get_path(item, path), subtrahend, update.legacy)
        if remaining is not None or get_path(new, path) is not None:
            set_path(new, path, remaining, strict=False)
    return new, touched
