"""Condition, projection and update expressions: parsing, binding, evaluation."""

from __future__ import annotations

from typing import Any

import pytest

from nubes.aws.errors import AwsError
from nubes.services.dynamodb.expressions.evaluate import (
    Bindings,
    check_condition,
    evaluate,
    project,
)
from nubes.services.dynamodb.expressions.parser import (
    parse_condition,
    parse_projection,
    parse_update,
)
from nubes.services.dynamodb.expressions.update import apply_update
from nubes.services.dynamodb.prepare import prepare

ITEM: dict[str, Any] = {
    "id": {"S": "x"},
    "n": {"N": "5"},
    "s": {"S": "hello"},
    "b": {"B": b"\x01\x02"},
    "t": {"BOOL": True},
    "z": {"NULL": True},
    "ss": {"SS": ["a", "b"]},
    "ns": {"NS": ["1", "2"]},
    "l": {"L": [{"N": "1"}, {"S": "two"}, {"M": {"deep": {"S": "yes"}}}]},
    "m": {"M": {"k": {"S": "v"}, "n": {"N": "3"}, "dotted.name": {"S": "d"}}},
}
VALUES: dict[str, Any] = {
    ":five": {"N": "5"}, ":four": {"N": "4"}, ":six": {"N": "6"}, ":he": {"S": "he"}, ":a": {"S": "a"},
    ":S": {"S": "S"}, ":two": {"S": "two"}, ":one": {"N": "1"}, ":x": {"S": "x"}, ":v": {"S": "v"},
    ":bin": {"B": b"\x01"}, ":three": {"N": "3"}, ":d": {"S": "d"},
}  # fmt: skip


def _check(text: str, names: dict[str, str] | None = None) -> bool:
    tree = parse_condition(text)
    used = {k: v for k, v in VALUES.items() if k in text}
    bindings = Bindings(names, used or None)
    bindings.bind(tree, "ConditionExpression")
    bindings.finish()
    check_condition(tree, bindings, "ConditionExpression")
    return evaluate(tree, ITEM, bindings)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("n = :five", True), ("n <> :five", False), ("n < :six", True), ("n <= :four", False),
        ("n > :four", True), ("n >= :five", True), ("s = :five", False), ("absent <> :five", True),
        ("absent = :five", False), ("absent < :five", False), ("s > :he", True),
        ("n BETWEEN :four AND :six", True), ("n between :six and :six", False),
        ("n IN (:one, :five)", True), ("n IN (:one)", False),
        ("attribute_exists(n)", True), ("attribute_not_exists(n)", False), ("attribute_exists(m.k)", True),
        ("attribute_exists(m.nope)", False), ("attribute_exists(l[2].deep)", True), ("attribute_exists(l[3])", False),
        ("attribute_type(s, :S)", True), ("begins_with(s, :he)", True), ("begins_with(n, :he)", False),
        ("begins_with(b, :bin)", True), ("contains(s, :he)", True), ("contains(ss, :a)", True),
        ("contains(ns, :one)", True), ("contains(l, :two)", True), ("contains(l, :x)", False),
        ("size(s) = :five", True), ("size(l) = :three", True), ("size(m) > :four", False), ("size(n) = :one", False),
        ("NOT n = :five", False), ("n = :four OR n = :five AND s = :x", False), ("(n = :four OR n = :five) AND id = :x", True),
        ("n = :four OR NOT n = :four AND id = :x", True), ("l[1] = :two", True), ("m.k = :v", True),
        ("#dn = :d", False), ("m.#dn = :d", True),
    ],
)  # fmt: skip
def test_conditions(text: str, expected: bool) -> None:
    names = {"#dn": "dotted.name"} if "#dn" in text else None
    assert _check(text, names) is expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a = ", 'Syntax error; token: "<EOF>", near: "="'),
        ("a = = :v", 'Syntax error; token: "=", near: "= = :v"'),
        ("a = :v :w", 'Syntax error; token: ":w", near: ":v :w"'),
        ("a ! b", 'Syntax error; token: "!", near: "a ! b"'),
        ("(a = :v", 'Syntax error; token: "<EOF>", near: ":v"'),
        ("a BETWEEN :x", 'Syntax error; token: "<EOF>", near: ":x"'),
        ("foo(a)", "Invalid function name; function: foo"),
        ("begins_with(a)", "Incorrect number of operands for operator or function; operator or function: begins_with, number of operands: 1"),
        ("attribute_exists(:v)", "Operator or function requires a document path; operator or function: attribute_exists"),
        ("name = :v", "Attribute name is a reserved keyword; reserved keyword: name"),
        ("a.Size = :v", "Attribute name is a reserved keyword; reserved keyword: Size"),
        ("", "The expression can not be empty;"),
        ("a[x] = :v", 'Syntax error; token: "x", near: "[x]"'),
        ("a = list_append(:v, :w)", "The function is not allowed in a condition expression; function: list_append"),
        ("a = begins_with(b, :w)", "The function is not allowed to be used this way in an expression; function: begins_with"),
        ("a + :v = :w", 'Syntax error; token: "+", near: "a + :v"'),
    ],
)  # fmt: skip
def test_condition_syntax_errors(text: str, message: str) -> None:
    with pytest.raises(AwsError) as exc:
        parse_condition(text)
    assert exc.value.message == f"Invalid ConditionExpression: {message}"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"ConditionExpression": "#a = :v", "ExpressionAttributeValues": {":v": {"S": "1"}}},
         "Invalid ConditionExpression: An expression attribute name used in the document path is not defined; attribute name: #a"),
        ({"ConditionExpression": "a = :v", "ExpressionAttributeNames": {"#a": "a"}, "ExpressionAttributeValues": {":v": {"S": "1"}}},
         "Value provided in ExpressionAttributeNames unused in expressions: keys: {#a}"),
        ({"ConditionExpression": "a = :v", "ExpressionAttributeValues": {":v": {"S": "1"}, ":w": {"S": "1"}, ":u": {"S": "1"}}},
         "Value provided in ExpressionAttributeValues unused in expressions: keys: {:u, :w}"),
        ({"ConditionExpression": "a = :v", "ExpressionAttributeValues": {}}, "ExpressionAttributeValues must not be empty"),
        ({"ExpressionAttributeValues": {":v": {"S": "1"}}}, "ExpressionAttributeValues can only be specified when using expressions"),
        ({"ExpressionAttributeNames": {"#a": "a"}}, "ExpressionAttributeNames can only be specified when using expressions"),
        ({"ConditionExpression": "a = :v", "ExpressionAttributeValues": {"v": {"S": "1"}}},
         'ExpressionAttributeValues contains invalid key: Syntax error; key: "v"'),
        ({"ConditionExpression": "#a = :v", "ExpressionAttributeNames": {"a": "a"}, "ExpressionAttributeValues": {":v": {"S": "1"}}},
         'ExpressionAttributeNames contains invalid key: Syntax error; key: "a"'),
        ({"ConditionExpression": "a = :v", "ExpressionAttributeValues": {":v": {"SS": []}}},
         "ExpressionAttributeValues contains invalid value: One or more parameter values were invalid: An string set  may not be empty for key :v"),
        ({"ConditionExpression": "a = :v", "Expected": {"a": {"Exists": False}}, "ExpressionAttributeValues": {":v": {"S": "1"}}},
         "Can not use both expression and non-expression parameters in the same request: Non-expression parameters: {Expected} Expression parameters: {ConditionExpression}"),
    ],
)  # fmt: skip
def test_binding_errors(params: dict[str, Any], message: str) -> None:
    with pytest.raises(AwsError) as exc:
        prepare(params, condition=True)
    assert exc.value.message == message


def _update(
    text: str, item: dict[str, Any] | None = None, values: dict[str, Any] | None = None
) -> tuple[dict[str, Any], set[str]]:
    tree = parse_update(text)
    bindings = Bindings(
        {"#n": "n"} if "#n" in text else None,
        values or {k: v for k, v in VALUES.items() if k in text} or None,
    )
    bindings.bind(tree, "UpdateExpression")
    return apply_update(tree, dict(item if item is not None else ITEM), bindings)


def test_update_set_arithmetic_and_functions() -> None:
    new, touched = _update(
        "SET n = n + :one, x = :four - n, y = if_not_exists(y, :five), s = if_not_exists(s, :x)"
    )
    assert (
        new["n"] == {"N": "6"}
        and new["x"] == {"N": "-1"}
        and new["y"] == {"N": "5"}
        and new["s"] == {"S": "hello"}
    )
    assert touched == {"n", "x", "y", "s"}
    values = {":l": {"L": [{"S": "end"}]}, ":e": {"L": []}}
    new, _ = _update(
        "SET l = list_append(l, :l), k = list_append(if_not_exists(k, :e), :l)", values=values
    )
    assert new["l"]["L"][-1] == {"S": "end"} and new["k"] == {"L": [{"S": "end"}]}
    assert ITEM["l"]["L"][-1] != {"S": "end"}  # the original is never mutated


def test_update_right_hand_sides_see_the_old_item() -> None:
    new, _ = _update("SET n = :one, c = n")
    assert new["c"] == {"N": "5"}


def test_update_nested_paths() -> None:
    new, _ = _update("SET m.k = :x, l[1] = :one, l[10] = :two REMOVE l[0], m.n")
    assert new["m"]["M"]["k"] == {"S": "x"} and "n" not in new["m"]["M"]
    assert [v for v in new["l"]["L"]] == [{"N": "1"}, {"M": {"deep": {"S": "yes"}}}, {"S": "two"}]
    assert ITEM["m"]["M"]["k"] == {"S": "v"}


def test_update_add_and_delete() -> None:
    values = {":n": {"N": "2.5"}, ":ss": {"SS": ["b", "c"]}, ":ns": {"NS": ["1", "2"]}}
    new, _ = _update("ADD n :n, ss :ss, fresh :ns DELETE ns :ns", values=values)
    assert (
        new["n"] == {"N": "7.5"}
        and new["ss"] == {"SS": ["a", "b", "c"]}
        and new["fresh"] == {"NS": ["1", "2"]}
    )
    assert "ns" not in new  # a set emptied by DELETE disappears


@pytest.mark.parametrize(
    ("text", "values", "message"),
    [
        ("SET s = s + :one", None, "An operand in the update expression has an incorrect data type"),
        ("SET x = n + :x", None, "Invalid UpdateExpression: Incorrect operand type for operator or function; operator or function: +, operand type: S"),
        ("SET x = list_append(l, s)", None, "An operand in the update expression has an incorrect data type"),
        ("SET x = nope + :one", None, "The provided expression refers to an attribute that does not exist in the item"),
        ("SET x = list_append(:s, :l)", {":l": {"L": []}, ":s": {"S": "x"}}, "Invalid UpdateExpression: Incorrect operand type for operator or function; operator or function: list_append, operand type: S"),
        ("SET nope.x = :one", None, "The document path provided in the update expression is invalid for update"),
        ("SET n = :one REMOVE n", None, "Invalid UpdateExpression: Two document paths overlap with each other; must remove or rewrite one of these paths; path one: [n], path two: [n]"),
        ("SET m = :one, m.k = :one", None, "Invalid UpdateExpression: Two document paths overlap with each other; must remove or rewrite one of these paths; path one: [m], path two: [m, k]"),
        ("ADD s :x", None, "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: ADD, operand type: STRING"),
        ("ADD ss :one", None, "An operand in the update expression has an incorrect data type"),
        ("DELETE ss :x", None, "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: DELETE, operand type: STRING"),
    ],
)  # fmt: skip
def test_update_errors(text: str, values: dict[str, Any] | None, message: str) -> None:
    with pytest.raises(AwsError) as exc:
        _update(text, values=values)
    assert exc.value.message == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("SET a = :v SET b = :v", 'The "SET" section can only be used once in an update expression;'),
        ("PUT a = :v", 'Syntax error; token: "PUT", near: "PUT a"'),
        ("SET a :v", 'Syntax error; token: ":v", near: "a :v"'),
        ("REMOVE", 'Syntax error; token: "<EOF>", near: "REMOVE"'),
        ("SET a = size(b)", "The function is not allowed in an update expression; function: size"),
        ("SET a = if_not_exists(:v, :v)", "Operator or function requires a document path; operator or function: if_not_exists"),
        ("ADD a b", 'Syntax error; token: "b", near: "a b"'),
    ],
)  # fmt: skip
def test_update_syntax_errors(text: str, message: str) -> None:
    with pytest.raises(AwsError) as exc:
        parse_update(text)
    assert exc.value.message == f"Invalid UpdateExpression: {message}"


def test_projection_nested_and_lists() -> None:
    paths = [("m", "k"), ("l", 2, "deep"), ("l", 0), ("n",), ("missing",)]
    assert project(ITEM, paths) == {
        "m": {"M": {"k": {"S": "v"}}},
        "l": {"L": [{"N": "1"}, {"M": {"deep": {"S": "yes"}}}]},
        "n": {"N": "5"},
    }
    assert parse_projection("a, b.c[1], #x")[2].elements == ("#x",)


def test_projection_overlap_error() -> None:
    with pytest.raises(AwsError) as exc:
        prepare({"ProjectionExpression": "a, a.b"}, projection=True)
    assert exc.value.message.startswith(
        "Invalid ProjectionExpression: Two document paths overlap with each other"
    )


def test_legacy_expected_and_attribute_updates() -> None:
    prepared = prepare(
        {"Expected": {"n": {"ComparisonOperator": "BETWEEN", "AttributeValueList": [{"N": "1"}, {"N": "9"}]},
                      "missing": {"Exists": False}, "s": {"Value": {"S": "hello"}}},
         "AttributeUpdates": {"n": {"Action": "ADD", "Value": {"N": "1"}}, "s": {"Action": "DELETE"},
                              "q": {"Value": {"S": "new"}}}},
        condition=True, update=True,
    )  # fmt: skip
    assert prepared.condition is not None and prepared.update is not None
    assert evaluate(prepared.condition, ITEM, prepared.bindings)
    new, _ = apply_update(prepared.update, dict(ITEM), prepared.bindings)
    assert new["n"] == {"N": "6"} and "s" not in new and new["q"] == {"S": "new"}
    with pytest.raises(AwsError) as exc:
        prepare({"Expected": {"a": {"Exists": True}}}, condition=True)
    assert "Value must be provided when Exists is true" in exc.value.message


def test_legacy_filters() -> None:
    prepared = prepare(
        {"ScanFilter": {"s": {"ComparisonOperator": "BEGINS_WITH", "AttributeValueList": [{"S": "he"}]},
                        "ss": {"ComparisonOperator": "NOT_CONTAINS", "AttributeValueList": [{"S": "z"}]}},
         "ConditionalOperator": "AND"},
        filter_legacy="ScanFilter",
    )  # fmt: skip
    assert prepared.filter is not None and evaluate(prepared.filter, ITEM, prepared.bindings)
    with pytest.raises(AwsError) as exc:
        prepare(
            {"ScanFilter": {"s": {"ComparisonOperator": "EQ", "AttributeValueList": []}}},
            filter_legacy="ScanFilter",
        )
    assert "Invalid number of argument(s) for the EQ ComparisonOperator" in exc.value.message


def test_between_bounds_error() -> None:
    with pytest.raises(AwsError) as exc:
        _check("n BETWEEN :six AND :four")
    assert exc.value.message.startswith(
        "Invalid ConditionExpression: The BETWEEN operator requires upper bound to be greater than or equal to lower bound"
    )


def test_attribute_type_validates_type_name() -> None:
    with pytest.raises(AwsError) as exc:
        _check("attribute_type(s, :x)")
    assert "Invalid attribute type name found; type: x" in exc.value.message


@pytest.mark.parametrize(
    ("text", "values", "message"),
    [
        ("SET a = :s + :n", {":s": {"S": "x"}, ":n": {"N": "1"}},
         "Invalid UpdateExpression: Incorrect operand type for operator or function; operator or function: +, operand type: S"),
        ("SET a = list_append(a, :s)", {":s": {"S": "x"}},
         "Invalid UpdateExpression: Incorrect operand type for operator or function; operator or function: list_append, operand type: S"),
        ("ADD a :s", {":s": {"S": "x"}},
         "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: ADD, operand type: STRING"),
        ("DELETE a :n", {":n": {"N": "1"}},
         "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: DELETE, operand type: NUMBER"),
    ],
)  # fmt: skip
def test_update_value_types_are_checked_before_reading(text: str, values: dict[str, Any], message: str) -> None:
    with pytest.raises(AwsError) as exc:
        prepare({"UpdateExpression": text, "ExpressionAttributeValues": values}, update=True)
    assert exc.value.message == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("((n = :five))", "The expression has redundant parentheses;"),
        ("n < :l", "Incorrect operand type for operator or function; operator or function: <, operand type: L"),
        ("begins_with(s, :five)", "Incorrect operand type for operator or function; operator or function: begins_with, operand type: N"),
        ("size(:five) > :four", "Incorrect operand type for operator or function; operator or function: size, operand type: N"),
        ("n BETWEEN :four AND :he", "The BETWEEN operator requires same data type for lower and upper bounds; lower bound operand: AttributeValue: {N:4}, upper bound operand: AttributeValue: {S:he}"),
        ("contains(s, s)", "The first operand must be distinct from the remaining operands for this operator or function; operator: contains, first operand: [s]"),
        ("BEGINS_WITH(s, :he)", "Invalid function name; function: BEGINS_WITH"),
        ("_s = :he", 'Syntax error; token: "_", near: "_s"'),
        ("a" + ".b" * 33 + " = :he", "The document path has too many nesting levels; nesting levels: 33"),
    ],
)  # fmt: skip
def test_request_level_condition_errors(text: str, message: str) -> None:
    values = {k: v for k, v in {**VALUES, ":l": {"L": []}}.items() if k in text}
    with pytest.raises(AwsError) as exc:
        prepare({"ConditionExpression": text, "ExpressionAttributeValues": values or None}, condition=True)
    assert exc.value.message == f"Invalid ConditionExpression: {message}"


def test_functions_take_values_and_parentheses_once() -> None:
    assert _check("(n = :five)")
    assert _check("((n = :five) AND s = :x) OR id = :x")
    assert _check("begins_with(:he, s)") is False  # "he" does not begin with "hello"
    assert _check("attribute_type(:five, :S)") is False
    assert _check("size(:he) > :one")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("(" * 4096, "The expression is nested too deeply; the limit is 200"),
        ("not " * 1000 + "a < b", "The expression is nested too deeply; the limit is 200"),
        ("a<b " + "or (a<b " * 454 + ")" * 454, "The expression contains too many operators; the limit is 300"),
    ],
)
def test_deep_or_long_expressions_are_refused_not_crashing(text: str, message: str) -> None:
    with pytest.raises(AwsError) as exc:
        parse_condition(text)
    assert exc.value.message == f"Invalid ConditionExpression: {message}"


def test_nesting_within_limits_parses() -> None:
    tree = parse_condition("a<b " + "or (a<b " * 149 + ")" * 149)
    assert tree is not None
