"""Turning a request's expression parameters (or their legacy equivalents) into
bound trees before any store access, with DynamoDB's validation errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nubes.services.dynamodb.expressions.evaluate import (
    EMPTY,
    Bindings,
    Resolved,
    check_condition,
    check_overlaps,
)
from nubes.services.dynamodb.expressions.legacy import (
    attribute_updates,
    attributes_to_get,
    check_mixed,
    expected_condition,
    filter_condition,
)
from nubes.services.dynamodb.expressions.nodes import Condition, Update
from nubes.services.dynamodb.expressions.parser import (
    parse_condition,
    parse_projection,
    parse_update,
)
from nubes.services.dynamodb.expressions.update import check_values
from nubes.services.dynamodb.types import validation


@dataclass
class Prepared:
    """The parsed, bound expressions of one request."""

    bindings: Bindings
    condition: Condition | None = None
    filter: Condition | None = None
    filter_kind: str = "FilterExpression"
    key_condition: Condition | None = None
    update: Update | None = None
    projection: tuple[Resolved, ...] | None = None


_EXPRESSION_PARAMETERS = frozenset(
    (
        "ConditionExpression", "UpdateExpression", "ProjectionExpression", "FilterExpression",
        "KeyConditionExpression", "ExpressionAttributeNames", "ExpressionAttributeValues", "AttributesToGet",
        "AttributeUpdates", "Expected", "QueryFilter", "ScanFilter", "KeyConditions", "ConditionalOperator",
    )
)  # fmt: skip


#: what a request without expressions prepares to (shared: nothing changes a
#: Prepared after ``prepare`` returns it)
_PLAIN = Prepared(EMPTY)


def prepare(
    params: dict[str, Any],
    *,
    condition: bool = False,
    update: bool = False,
    projection: bool = False,
    filter_legacy: str | None = None,
    key_condition: bool = False,
) -> Prepared:
    """Parse and bind the expressions an operation takes."""
    if params.keys().isdisjoint(_EXPRESSION_PARAMETERS):  # the common plain Get/Put/Delete
        return _PLAIN
    names = params.get("ExpressionAttributeNames")
    values = params.get("ExpressionAttributeValues")
    expressions = [
        name
        for name, wanted in (
            ("ConditionExpression", condition), ("UpdateExpression", update),
            ("ProjectionExpression", projection), ("FilterExpression", filter_legacy is not None),
            ("KeyConditionExpression", key_condition),
        )
        if wanted and params.get(name) is not None
    ]  # fmt: skip
    if not expressions:
        if names is not None:
            raise validation("ExpressionAttributeNames can only be specified when using expressions")
        if values is not None:
            raise validation("ExpressionAttributeValues can only be specified when using expressions")
    legacy = [
        name
        for name, wanted in (
            ("AttributesToGet", projection), ("AttributeUpdates", update), ("Expected", condition),
            (filter_legacy or "", filter_legacy is not None),
            ("ConditionalOperator", condition or filter_legacy is not None),
        )
        if wanted and name and params.get(name) is not None
    ]  # fmt: skip
    # KeyConditions mixes with expressions (a ProjectionExpression, say), but
    # not with a KeyConditionExpression
    check_mixed(params, tuple(legacy), tuple(expressions))
    if key_condition:
        check_mixed(params, ("KeyConditions",), ("KeyConditionExpression",))
    _check_conditional_operator(params, condition, filter_legacy)
    bindings = Bindings(names, values)
    prepared = Prepared(bindings)
    operator = params.get("ConditionalOperator")
    if condition:
        prepared.condition = _condition(params, bindings, "ConditionExpression")
        if prepared.condition is None and params.get("Expected"):
            prepared.condition = expected_condition(params["Expected"], operator)
    if key_condition:
        prepared.key_condition = _condition(params, bindings, "KeyConditionExpression")
        if prepared.key_condition is None and params.get("KeyConditions"):
            prepared.key_condition = filter_condition(params["KeyConditions"], "AND")
    if filter_legacy is not None:
        prepared.filter = _condition(params, bindings, "FilterExpression")
        if prepared.filter is None and params.get(filter_legacy):
            prepared.filter_kind = filter_legacy
            prepared.filter = filter_condition(params[filter_legacy], operator)
    if update:
        prepared.update = _update(params, bindings)
    if projection:
        prepared.projection = _projection(params, bindings)
    bindings.finish()
    return prepared


MAX_EXPRESSION_BYTES = 4096


def _check_size(text: str, kind: str) -> None:
    size = len(text.encode("utf-8"))
    if size > MAX_EXPRESSION_BYTES:
        raise validation(
            f"Invalid {kind}: Expression size has exceeded the maximum allowed size; expression size: {size}"
        )


def _check_conditional_operator(params: dict[str, Any], condition: bool, filter_legacy: str | None) -> None:
    if params.get("ConditionalOperator") is None:
        return
    groups = [params.get("Expected") if condition else None, params.get(filter_legacy) if filter_legacy else None]
    if not any(groups):
        raise validation(
            "One or more parameter values were invalid: ConditionalOperator can only be used when Expected "
            "or a filter (QueryFilter, ScanFilter) is present"
        )


def _condition(params: dict[str, Any], bindings: Bindings, kind: str) -> Condition | None:
    text = params.get(kind)
    if text is None:
        return None
    _check_size(text, kind)
    tree = parse_condition(text, kind)
    bindings.bind(tree, kind)
    check_condition(tree, bindings, kind)
    return tree


def _update(params: dict[str, Any], bindings: Bindings) -> Update | None:
    text = params.get("UpdateExpression")
    if text is not None:
        _check_size(text, "UpdateExpression")
        tree = parse_update(text)
        bindings.bind(tree, "UpdateExpression")
        check_values(tree, bindings)
        return tree
    if params.get("AttributeUpdates"):
        return attribute_updates(params["AttributeUpdates"])
    return None


def _projection(params: dict[str, Any], bindings: Bindings) -> tuple[Resolved, ...] | None:
    text = params.get("ProjectionExpression")
    if text is not None:
        _check_size(text, "ProjectionExpression")
        paths = parse_projection(text)
        bindings.bind(paths, "ProjectionExpression")
        resolved = tuple(bindings.resolve(p) for p in paths)
        check_overlaps(resolved, "ProjectionExpression")
        return resolved
    if params.get("AttributesToGet"):
        return tuple(p.elements for p in attributes_to_get(params["AttributesToGet"]))
    return None
