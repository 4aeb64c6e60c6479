"""The one-pass key encodings give exactly what the full checks give: the same
store key for a good key and the same DynamoDB error for a bad one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from nubes.aws.errors import AwsError
from nubes.services.dynamodb.keys import (
    check_item_keys,
    item_key,
    key_of,
    key_store_key,
    new_item_key,
)
from nubes.services.dynamodb.types import canonical_number, normalize_number, validate_item

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_relaxed = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=400)


def _table(uid: str, hash_type: str, range_type: str | None) -> dict[str, Any]:
    schema = [{"AttributeName": "pk", "KeyType": "HASH"}]
    defined = [{"AttributeName": "pk", "AttributeType": hash_type}]
    if range_type is not None:
        schema.append({"AttributeName": "sk", "KeyType": "RANGE"})
        defined.append({"AttributeName": "sk", "AttributeType": range_type})
    return {"uid": uid, "KeySchema": schema, "AttributeDefinitions": defined}


TABLES = [
    _table("01" * 16, "S", None),
    _table("02" * 16, "S", "N"),
    _table("03" * 16, "N", "B"),
    _table("04" * 16, "B", "S"),
]

_numbers = st.one_of(
    st.integers(-(10**40), 10**40).map(str),
    st.sampled_from(["0", "-0", "00", "007", "1.50", "+3", "1e2", "1E-3", ".5", "5.", "-.5", "1..2", "x", "",
                     "١٢", "²", "1e126", "1e-131", "9" * 38, "9" * 39, "1" + "0" * 38, "0.0", "-1.25", " 1"]),
    st.decimals(allow_nan=False, allow_infinity=False, places=None).map(str),
)  # fmt: skip
_strings = st.one_of(st.text(max_size=6), st.just("a\x00b"), st.just("é" * 1025), st.just("x" * 2049), st.just("\x00"))
_binaries = st.one_of(st.binary(max_size=6), st.just(b"\x00\x00"), st.just(b"y" * 1025), st.just(b"y" * 2049))
_values = st.one_of(
    st.builds(lambda s: {"S": s}, _strings),
    st.builds(lambda n: {"N": n}, _numbers),
    st.builds(lambda b: {"B": b}, _binaries),
    st.just({"BOOL": True}),
    st.just({"S": "a", "N": "1"}),
    st.just({}),
    st.just("S"),
    st.just({"SS": ["a"]}),
)
_keys = st.dictionaries(st.sampled_from(["pk", "sk", "other"]), _values, max_size=3)


def _outcome(fn: Callable[[], bytes]) -> tuple[str, str] | bytes:
    try:
        return fn()
    except AwsError as exc:
        return (exc.code, exc.message)


@_relaxed
@given(st.sampled_from(TABLES), _keys)
def test_key_parameter_encodes_as_the_full_checks_do(table: dict[str, Any], key: dict[str, Any]) -> None:
    assert _outcome(lambda: key_store_key(table, key)) == _outcome(lambda: item_key(table, key_of(table, key)))


@_relaxed
@given(st.sampled_from(TABLES), _keys, st.dictionaries(st.sampled_from(["a", "b"]), _values, max_size=2))
def test_new_item_key_checks_as_the_full_checks_do(table: dict[str, Any], key: dict[str, Any], rest: dict[str, Any]) -> None:
    # keys are checked on validated items (well-formed values, canonical numbers)
    try:
        item = validate_item({**rest, **key})
    except (AwsError, TypeError, AttributeError):
        assume(False)

    def full() -> bytes:
        check_item_keys(table, item)
        return item_key(table, item)

    assert _outcome(lambda: new_item_key(table, item)) == _outcome(full)


def _valid_canonical(text: str) -> bool:
    try:
        return normalize_number(text) == text
    except AwsError:
        return False


def test_a_key_parameter_that_is_not_a_map() -> None:
    table = TABLES[1]
    for key in (None, [], "pk"):
        assert _outcome(lambda key=key: key_store_key(table, key)) == (
            "ValidationException", "The provided key element does not match the schema")  # fmt: skip


@_relaxed
@given(_numbers)
def test_canonical_number_agrees_with_normalisation(text: str) -> None:
    # a shortcut: what it accepts is canonical; what it declines (a number of
    # more than 38 characters' digits, say) takes the full normalisation
    if canonical_number(text):
        assert _valid_canonical(text)
    elif _valid_canonical(text):
        assert len(text.lstrip("-").replace(".", "")) > 38
