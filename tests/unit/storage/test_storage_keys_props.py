"""Property tests (hypothesis) for ``nubes.storage.keys``."""

from __future__ import annotations

from typing import Any

import pytest

from nubes.storage.keys import pack, prefix_end, unpack

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# the machine is shared and noisy: generation speed is not what is under test
_relaxed = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
# one type per position keeps Python's tuple comparison defined
SCHEMAS = st.lists(st.sampled_from(["i", "s", "b"]), min_size=0, max_size=4)
_STRATEGY = {"i": INT64, "s": st.text(max_size=8), "b": st.binary(max_size=8)}


def _tuples(schema: list[str]) -> Any:
    return st.tuples(*(_STRATEGY[c] for c in schema))


@st.composite
def _pairs(draw: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    schema = draw(SCHEMAS)
    a = draw(_tuples(schema))
    # a shorter tuple of the same schema exercises "prefix sorts first"
    b = draw(_tuples(schema[: draw(st.integers(0, len(schema)))]))
    return a, b


@_relaxed
@given(_pairs())
def test_order_of_packed_keys_is_tuple_order(pair: tuple[tuple[Any, ...], ...]) -> None:
    a, b = pair
    # compare str parts by their UTF-8 bytes: that is code point order, as Python's
    assert (pack(*a) < pack(*b)) == (a < b)
    assert (pack(*a) == pack(*b)) == (a == b)


@_relaxed
@given(SCHEMAS.flatmap(_tuples))
def test_unpack_inverts_pack(parts: tuple[Any, ...]) -> None:
    assert unpack(pack(*parts)) == parts


@_relaxed
@given(SCHEMAS.flatmap(_tuples), SCHEMAS.flatmap(_tuples))
def test_packed_prefix_is_a_byte_prefix(a: tuple[Any, ...], b: tuple[Any, ...]) -> None:
    assert pack(*a, *b).startswith(pack(*a))


@_relaxed
@given(st.binary(max_size=6), st.binary(max_size=6))
def test_prefix_end_bounds_exactly_the_prefixed_keys(prefix: bytes, key: bytes) -> None:
    end = prefix_end(prefix)
    if end is None:
        assert prefix.strip(b"\xff") == b""
        return
    assert end > prefix
    if key.startswith(prefix):
        assert key < end
    elif key > prefix:
        assert key >= end
