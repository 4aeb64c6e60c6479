"""validate_item's shortcuts (names checked in bulk, common values passed
without a call, no copy when nothing changes) answer as the attribute-by-attribute
walk does: the same normalised item or the same first error."""

from __future__ import annotations

from typing import Any

import pytest

from nubes.aws.errors import AwsError
from nubes.services.dynamodb.types import (
    _validate_each,
    encode_number,
    encode_number_text,
    validate_item,
)

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_relaxed = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=400)

_numbers = st.one_of(
    st.integers(-(10**40), 10**40).map(str),
    st.sampled_from(["0", "-0", "007", "1.50", "+3", "1e2", ".5", "x", "", "١٢", "9" * 38, "9" * 39, "1" + "0" * 38]),
)
_scalars = st.one_of(
    st.builds(lambda s: {"S": s}, st.text(max_size=4)),
    st.builds(lambda n: {"N": n}, _numbers),
    st.builds(lambda b: {"B": b}, st.binary(max_size=4)),
    st.builds(lambda b: {"BOOL": b}, st.booleans()),
    st.sampled_from([{"NULL": True}, {"NULL": False}, {}, {"S": "a", "N": "1"}, {"X": "1"}, {"N": 5}]),
    st.builds(lambda s: {"SS": s}, st.lists(st.sampled_from(["a", "b", "c"]), max_size=3)),
    st.builds(lambda s: {"NS": s}, st.lists(st.sampled_from(["1", "1.0", "2", "x"]), max_size=3)),
    st.builds(lambda s: {"BS": s}, st.lists(st.sampled_from([b"a", b"b"]), max_size=3)),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.builds(lambda v: {"L": v}, st.lists(inner, max_size=3)),
        st.builds(lambda m: {"M": m}, st.dictionaries(st.text(max_size=3), inner, max_size=3)),
    ),
    max_leaves=6,
)
_names = st.one_of(st.text(max_size=4), st.just(""), st.just("n" * 16384), st.just("é" * 40000))
_items = st.dictionaries(_names, _values, max_size=5)


def _outcome(item: dict[str, Any], fn: Any) -> Any:
    try:
        return fn(item)
    except AwsError as exc:
        return (exc.code, exc.message)


@_relaxed
@given(_items)
def test_validate_item_answers_as_the_full_walk(item: dict[str, Any]) -> None:
    assert _outcome(item, validate_item) == _outcome(item, _validate_each)


@_relaxed
@given(_items)
def test_an_item_with_nothing_to_normalise_comes_back_unchanged(item: dict[str, Any]) -> None:
    try:
        out = validate_item(item)
    except AwsError:
        return
    if out == item:
        assert list(out) == list(item)
    else:  # a copy in the item's order, the request's item untouched
        assert out is not item and list(out) == list(item)


@given(st.integers(0, 10**40))
def test_integer_keys_encode_as_through_decimal(n: int) -> None:
    from decimal import Decimal

    assert encode_number_text(str(n)) == encode_number(Decimal(n))
