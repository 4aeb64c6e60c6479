"""The pre-expression parameters (Expected, KeyConditions, QueryFilter,
ScanFilter, AttributeUpdates, AttributesToGet) as expression trees, so one
evaluator serves both."""

from __future__ import annotations

from typing import Any

from nubes.services.dynamodb.expressions.nodes import (
    AddAction,
    And,
    Between,
    Compare,
    Condition,
    DeleteAction,
    Function,
    In,
    Literal,
    Not,
    Or,
    Path,
    RemoveAction,
    SetAction,
    Update,
)
from nubes.services.dynamodb.types import check_attribute_name, compare, validate_value, validation

_COMPARATORS = {"EQ": "=", "NE": "<>", "LE": "<=", "LT": "<", "GE": ">=", "GT": ">"}
_ARGUMENTS = {
    "EQ": 1, "NE": 1, "LE": 1, "LT": 1, "GE": 1, "GT": 1, "NOT_NULL": 0, "NULL": 0,
    "CONTAINS": 1, "NOT_CONTAINS": 1, "BEGINS_WITH": 1, "BETWEEN": 2,
}  # fmt: skip


def check_mixed(params: dict[str, Any], legacy: tuple[str, ...], modern: tuple[str, ...]) -> None:
    """DynamoDB refuses requests that mix legacy and expression parameters."""
    old = [name for name in legacy if params.get(name) is not None]
    new = [name for name in modern if params.get(name) is not None]
    if old and new:
        raise validation(
            "Can not use both expression and non-expression parameters in the same request: "
            f"Non-expression parameters: {{{', '.join(old)}}} Expression parameters: {{{', '.join(new)}}}"
        )


def _path(name: str) -> Path:
    return Path((name,), literal=True)


_SCALAR_ONLY = {"LT", "LE", "GT", "GE", "BETWEEN", "IN", "CONTAINS", "NOT_CONTAINS"}


def _check_types(operator: str, literals: list[Literal]) -> None:
    """DynamoDB's checks of a legacy condition's own values."""
    kinds = [next(iter(lit.value)) for lit in literals]
    allowed = ("S", "B") if operator == "BEGINS_WITH" else ("N", "S", "B")
    if operator in _SCALAR_ONLY or operator == "BEGINS_WITH":
        for kind in kinds:
            if kind not in allowed:
                raise validation(
                    f"One or more parameter values were invalid: ComparisonOperator {operator} is not valid "
                    f"for {kind} AttributeValue type"
                )
    if operator in ("BETWEEN", "IN") and len(set(kinds)) > 1:
        raise validation(
            "One or more parameter values were invalid: AttributeValues inside AttributeValueList must be of same type"
        )
    if operator == "BETWEEN" and len(literals) == 2:
        order = compare(literals[0].value, literals[1].value)
        if order is not None and order > 0:
            raise validation(
                "One or more parameter values were invalid: The BETWEEN condition was provided a range where "
                "the lower bound is greater than the upper bound"
            )


def _condition(name: str, operator: str, values: list[Any]) -> Condition:
    path = _path(name)
    literals = [Literal(validate_value(v)) for v in values]
    expected = _ARGUMENTS.get(operator)
    _check_types(operator, literals)
    if operator == "IN":
        if not literals:
            raise validation(
                "One or more parameter values were invalid: Invalid number of argument(s) for the IN ComparisonOperator"
            )
        return In(path, tuple(literals))
    if expected is None:
        raise validation(f"1 validation error detected: Value '{operator}' at 'comparisonOperator' failed to satisfy constraint")
    if len(literals) != expected:
        raise validation(
            "One or more parameter values were invalid: Invalid number of argument(s) for the "
            f"{operator} ComparisonOperator"
        )
    if operator in _COMPARATORS:
        return Compare(_COMPARATORS[operator], path, literals[0])
    if operator == "NOT_NULL":
        return Function("attribute_exists", (path,))
    if operator == "NULL":
        return Function("attribute_not_exists", (path,))
    if operator == "CONTAINS":
        return Function("contains", (path, literals[0]))
    if operator == "NOT_CONTAINS":
        return And(Function("attribute_exists", (path,)), Not(Function("contains", (path, literals[0]))))
    if operator == "BEGINS_WITH":
        return Function("begins_with", (path, literals[0]))
    return Between(path, literals[0], literals[1])


def _combine(conditions: list[Condition], operator: str | None) -> Condition | None:
    if not conditions:
        return None
    if operator not in (None, "AND", "OR"):
        raise validation(f"1 validation error detected: Value '{operator}' at 'conditionalOperator' failed to satisfy constraint")
    result = conditions[0]
    for condition in conditions[1:]:
        result = Or(result, condition) if operator == "OR" else And(result, condition)
    return result


def expected_condition(expected: dict[str, Any], operator: str | None) -> Condition | None:
    """The ``Expected`` map (with ``ConditionalOperator``) as one condition."""
    conditions: list[Condition] = []
    for name, spec in expected.items():
        value = spec.get("Value")
        exists = spec.get("Exists")
        comparison = spec.get("ComparisonOperator")
        if comparison is not None:
            if value is not None or exists is not None:
                raise validation(
                    "One or more parameter values were invalid: Value or Exists cannot be used with "
                    f"ComparisonOperator for Attribute: {name}"
                )
            conditions.append(_condition(name, comparison, spec.get("AttributeValueList") or []))
        elif exists is False:
            if value is not None:
                raise validation(
                    "One or more parameter values were invalid: Value cannot be used when Exists is false "
                    f"for Attribute: {name}"
                )
            conditions.append(Function("attribute_not_exists", (_path(name),)))
        elif value is not None:
            conditions.append(Compare("=", _path(name), Literal(validate_value(value))))
        else:
            raise validation(
                "One or more parameter values were invalid: Value must be provided when Exists is true "
                f"for Attribute: {name}"
            )
    return _combine(conditions, operator)


def filter_condition(filters: dict[str, Any], operator: str | None) -> Condition | None:
    """QueryFilter / ScanFilter / KeyConditions as one condition."""
    conditions = [
        _condition(name, spec["ComparisonOperator"], spec.get("AttributeValueList") or [])
        for name, spec in filters.items()
    ]
    return _combine(conditions, operator)


def attribute_updates(updates: dict[str, Any]) -> Update:
    """``AttributeUpdates`` as an update tree."""
    sets: list[SetAction] = []
    removes: list[RemoveAction] = []
    adds: list[AddAction] = []
    deletes: list[DeleteAction] = []
    for name, spec in updates.items():
        check_attribute_name(name)
        action = spec.get("Action") or "PUT"
        value = spec.get("Value")
        literal = Literal(validate_value(value)) if value is not None else None
        if action == "PUT":
            if literal is None:
                raise validation(
                    "One or more parameter values were invalid: Only DELETE action is allowed when no attribute value is specified"
                )
            sets.append(SetAction(_path(name), literal))
        elif action == "DELETE":
            if literal is None:
                removes.append(RemoveAction(_path(name)))
            else:
                kind = next(iter(literal.value))
                if kind not in ("SS", "NS", "BS"):
                    raise validation(
                        f"One or more parameter values were invalid: Action DELETE is not supported for the type {kind}"
                    )
                deletes.append(DeleteAction(_path(name), literal))
        else:
            if literal is None:
                raise validation(
                    "One or more parameter values were invalid: ADD action requires a value"
                )
            kind = next(iter(literal.value))
            if kind not in ("N", "SS", "NS", "BS", "L"):  # lists append (undocumented, as DynamoDB does)
                raise validation(
                    f"One or more parameter values were invalid: Action ADD is not supported for the type {kind}"
                )
            adds.append(AddAction(_path(name), literal))
    return Update(tuple(sets), tuple(removes), tuple(adds), tuple(deletes), legacy=True)


def attributes_to_get(names: list[str]) -> tuple[Path, ...]:
    """``AttributesToGet`` as projection paths."""
    for name in names:
        check_attribute_name(name)
    if len(set(names)) != len(names):
        raise validation(f"One or more parameter values were invalid: Duplicate value in attribute name: {names}")
    return tuple(_path(name) for name in names)
