"""JSONPath, ResultPath, payload templates and intrinsic functions."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest

from nubes.workflows import dataflow, intrinsics, jsonpath
from nubes.workflows.errors import StatesError

DATA: dict[str, Any] = {
    "store": {
        "book": [
            {"title": "A", "price": 8, "tags": ["x"]},
            {"title": "B", "price": 12, "isbn": "1"},
            {"title": "C", "price": 20},
        ],
        "owner": {"name": "o"},
    },
    "n": 3,
    "weird key": True,
}


def scope(value: Any = DATA, **variables: Any) -> jsonpath.Scope:
    return jsonpath.Scope(value, {"Execution": {"Id": "arn:x"}}, variables)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$", DATA),
        ("$.n", 3),
        ("$.store.owner.name", "o"),
        ("$['weird key']", True),
        ("$.store.book[1].title", "B"),
        ("$.store.book[-1].title", "C"),
        ("$.store.book[*].title", ["A", "B", "C"]),
        ("$.store.book[0:2].price", [8, 12]),
        ("$..price", [8, 12, 20]),
        ("$.store.book[?(@.price > 10)].title", ["B", "C"]),
        ("$.store.book[?(@.isbn)].title", ["B"]),
        ("$.store.book[?(@.price < 10 || @.title == 'C')].title", ["A", "C"]),
        ("$.store.book[0,2].title", ["A", "C"]),
        ("$.store.book.length()", 3),
    ],
)
def test_select(path: str, expected: Any) -> None:
    assert jsonpath.read(path, scope()) == expected


def test_context_and_variables() -> None:
    assert jsonpath.read("$$.Execution.Id", scope()) == "arn:x"
    assert jsonpath.read("$total.count", scope(total={"count": 4})) == 4
    with pytest.raises(StatesError) as err:
        jsonpath.read("$missing", scope())
    assert err.value.error == "States.Runtime"


def test_missing_path_error_text() -> None:
    with pytest.raises(StatesError) as err:
        jsonpath.read("$.store.nope", scope())
    assert err.value.error == "States.Runtime"
    assert "No results for path: $['store']['nope']" in err.value.cause


@pytest.mark.parametrize("bad", ["store", "$.", "$[", "$.a[?(@.x ==)]", "$[1:2:3:4]", "$..", ""])
def test_bad_paths(bad: str) -> None:
    assert not jsonpath.is_valid_path(bad)


def test_reference_paths() -> None:
    assert jsonpath.is_reference_path("$.a.b[0]")
    assert not jsonpath.is_reference_path("$.a[*]")
    assert not jsonpath.is_reference_path("$..a")
    assert not jsonpath.is_reference_path("$$.Execution")


def test_result_path() -> None:
    src = {"a": 1}
    assert jsonpath.assign_result(src, "$", {"r": 2}) == {"r": 2}
    assert jsonpath.assign_result(src, None, {"r": 2}) == {"a": 1}
    out = jsonpath.assign_result(src, "$.x.y", 5)
    assert out == {"a": 1, "x": {"y": 5}}
    assert src == {"a": 1}  # the input is not modified
    with pytest.raises(StatesError) as err:
        jsonpath.assign_result([1], "$.x", 5)
    assert err.value.error == "States.ResultPathMatchFailure"
    with pytest.raises(StatesError):
        jsonpath.assign_result({"a": 1}, "$.a.b", 5)


def test_payload_template() -> None:
    template = {
        "static": "v",
        "title.$": "$.store.book[0].title",
        "id.$": "$$.Execution.Id",
        "nested": {"n.$": "$.n", "list": [{"x.$": "$.n"}]},
        "msg.$": "States.Format('{} costs {}', $.store.book[0].title, $.store.book[0].price)",
    }
    assert dataflow.apply_template(template, scope()) == {
        "static": "v",
        "title": "A",
        "id": "arn:x",
        "nested": {"n": 3, "list": [{"x": 3}]},
        "msg": "A costs 8",
    }
    with pytest.raises(StatesError) as err:
        dataflow.apply_template({"x.$": "$.nope"}, scope({"other": 1}))
    assert err.value.error == "States.Runtime"
    assert err.value.cause == ("The JSONPath '$.nope' specified for the field 'x.$' could not "
                               "be found in the input '{\"other\":1}'")


def ev(text: str, value: Any = DATA) -> Any:
    return intrinsics.evaluate(text, scope(value))


def test_intrinsics_values() -> None:
    assert ev("States.Format('a\\{\\}{}b', 'x')") == "a{}xb"
    assert ev("States.Format('it\\'s {}', $.n)") == "it's 3"
    assert ev("States.StringToJson('{\"a\": 1}')") == {"a": 1}
    assert ev("States.JsonToString($.store.owner)") == '{"name":"o"}'
    assert ev("States.Array(1, 'two', $.n, States.Array(true, null))") == [1, "two", 3, [True, None]]
    assert ev("States.ArrayPartition(States.ArrayRange(1, 5, 1), 2)") == [[1, 2], [3, 4], [5]]
    assert ev("States.ArrayContains(States.Array(1, 2), 2)") is True
    assert ev("States.ArrayContains(States.Array(1, 2), true)") is False
    assert ev("States.ArrayRange(10, 0, -5)") == [10, 5, 0]
    assert ev("States.ArrayGetItem(States.Array('a', 'b'), 1)") == "b"
    assert ev("States.ArrayLength($.store.book)") == 3
    assert ev("States.ArrayUnique(States.Array(1, 1, 2, 1))") == [1, 2]
    assert ev("States.Base64Encode('hi')") == base64.b64encode(b"hi").decode()
    assert ev("States.Base64Decode('aGk=')") == "hi"
    assert ev("States.Hash('x', 'SHA-256')") == hashlib.sha256(b"x").hexdigest()
    assert ev("States.JsonMerge($.store.owner, States.StringToJson('{\"b\":2}'), false)") == {
        "name": "o",
        "b": 2,
    }
    assert 1 <= ev("States.MathRandom(1, 10)") < 10
    assert ev("States.MathRandom(1, 1000, 7)") == ev("States.MathRandom(1, 1000, 7)")
    assert ev("States.MathAdd($.n, -1)") == 2
    assert ev("States.StringSplit('a,b;c', ',;')") == ["a", "b", "c"]
    assert len(ev("States.UUID()")) == 36


@pytest.mark.parametrize(
    "text",
    [
        "States.Format('{} {}', 1)",
        "States.ArrayGetItem(States.Array(1), 5)",
        "States.ArrayRange(1, 5000, 1)",
        "States.MathAdd('a', 1)",
        "States.Hash('x', 'CRC')",
        "States.JsonMerge($.store, $.store.owner, true)",
        "States.StringToJson('nope')",
        "States.Base64Decode('***')",
        "States.ArrayPartition(States.Array(1), 0)",
        "States.UUID(1)",
    ],
)
def test_intrinsic_failures(text: str) -> None:
    with pytest.raises(StatesError) as err:
        ev(text)
    assert err.value.error == "States.IntrinsicFailure"


@pytest.mark.parametrize(
    "text",
    [
        "States.Nope(1)",
        "States.Format('x'",
        "States.Format('unterminated)",
        "States.Array(1 2)",
        "States.Array(1,)",
        "States.Array(bad)",
        "States.Format('x') trailing",
    ],
)
def test_intrinsic_syntax_errors(text: str) -> None:
    with pytest.raises(intrinsics.IntrinsicSyntaxError):
        intrinsics.parse(text)
