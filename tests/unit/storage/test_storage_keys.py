"""Order-preserving composite keys: bytewise order of packed keys == tuple order.

Dependency-free examples and a seeded random check; the hypothesis properties are
in ``test_storage_keys_props.py``.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from nubes.storage.keys import pack, prefix_end, unpack


def test_mixed_types_order_by_tag_and_shorter_first() -> None:
    keys = [pack(-1), pack(0), pack(2**40), pack(""), pack("a"), pack("a", 1), pack("a\x00"),
            pack("ab"), pack(b""), pack(b"\x00"), pack(b"\xff")]  # fmt: skip
    assert keys == sorted(keys)
    assert unpack(pack("a\x00b", b"\x00\xff", -5)) == ("a\x00b", b"\x00\xff", -5)


def test_prefix_of_a_part_does_not_match_a_longer_part() -> None:
    assert not pack("user", "x").startswith(pack("use"))
    assert pack("users").startswith(pack("user")[:-2])  # only the raw bytes prefix
    assert not pack("users").startswith(pack("user"))


@pytest.mark.parametrize("bad", [True, 1.5, None, 2**63, -(2**63) - 1, ["x"]], ids=repr)
def test_pack_rejects_unsupported_parts(bad: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        pack(bad)


@pytest.mark.parametrize(
    "key", [b"\x20\x00", b"\x30abc", b"\x30a\x00\x02", b"\x99", b"\x40\x00"], ids=repr
)
def test_unpack_rejects_malformed_keys(key: bytes) -> None:
    with pytest.raises(ValueError):
        unpack(key)


def test_prefix_end_examples() -> None:
    assert prefix_end(b"") is None
    assert prefix_end(b"\xff\xff") is None
    assert prefix_end(b"a") == b"b"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\x00\xfe\xff") == b"\x00\xff"


def test_seeded_random_order_without_hypothesis_shrinking() -> None:
    rng = random.Random(1)
    strs = ["", "a", "ab", "\x00", "é", "a\x00", "\U0001f600"]
    parts = [
        lambda: rng.randint(-(2**63), 2**63 - 1),
        lambda: rng.choice(strs),
        lambda: bytes(rng.choice([0, 1, 0x7F, 0x80, 0xFF]) for _ in range(rng.randint(0, 3))),
    ]
    for _ in range(2000):
        schema = [rng.randrange(3) for _ in range(rng.randint(1, 3))]
        a = tuple(parts[i]() for i in schema)
        b = tuple(parts[i]() for i in schema)
        assert (pack(*a) < pack(*b)) == (a < b)
