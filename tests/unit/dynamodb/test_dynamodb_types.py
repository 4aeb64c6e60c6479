"""AttributeValue validation, ordering, sizes and order-preserving key encoding."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from nubes.aws.errors import AwsError
from nubes.services.dynamodb.types import (
    compare,
    dump_item,
    encode_key_value,
    encode_prefix,
    equal,
    item_size,
    load_item,
    normalize_number,
    validate_item,
    validate_value,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3", "3"), ("-7.1234", "-7.1234"), ("-17e5", "-1700000"), ("+3", "3"), (".123", "0.123"),
        ("0001.23", "1.23"), ("1e+5", "100000"), ("0e1000", "0"), ("1.50", "1.5"), ("-0", "0"),
        ("1e-130", "0." + "0" * 129 + "1"), ("9.9999999999999999999999999999999999999E+125", "99999999999999999999999999999999999999" + "0" * 88),
        ("3.1415926535897932384626433832795028841", "3.1415926535897932384626433832795028841"),
    ],
)  # fmt: skip
def test_numbers_normalise(text: str, expected: str) -> None:
    assert normalize_number(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dog", "The parameter cannot be converted to a numeric value: dog"),
        ("NaN", "The parameter cannot be converted to a numeric value: NaN"),
        ("Infinity", "The parameter cannot be converted to a numeric value: Infinity"),
        (" 1", "The parameter cannot be converted to a numeric value:  1"),
        ("1 ", "The parameter cannot be converted to a numeric value: 1 "),
        ("", "The parameter cannot be converted to a numeric value"),
        ("1..2", "The parameter cannot be converted to a numeric value: 1..2"),
        ("3.14159265358979323846264338327950288419", "Attempting to store more than 38 significant digits in a Number"),
        ("1e126", "Number overflow. Attempting to store a number with magnitude larger than supported range"),
        ("-11e125", "Number overflow. Attempting to store a number with magnitude larger than supported range"),
        ("1e-131", "Number underflow. Attempting to store a number with magnitude smaller than supported range"),
        ("0.9e-130", "Number underflow. Attempting to store a number with magnitude smaller than supported range"),
    ],
)  # fmt: skip
def test_bad_numbers(text: str, message: str) -> None:
    with pytest.raises(AwsError) as exc:
        normalize_number(text)
    assert (exc.value.code, exc.value.message) == ("ValidationException", message)


def test_number_must_be_a_string() -> None:
    with pytest.raises(AwsError) as exc:
        validate_value({"N": 5})
    assert exc.value.code == "SerializationException"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({}, "Supplied AttributeValue is empty, must contain exactly one of the supported datatypes"),
        ({"S": "a", "N": "1"}, "Supplied AttributeValue has more than one datatypes set, must contain exactly one of the supported datatypes"),
        ({"SS": []}, "One or more parameter values were invalid: An string set  may not be empty"),
        ({"NS": []}, "One or more parameter values were invalid: An number set  may not be empty"),
        ({"BS": []}, "One or more parameter values were invalid: An binary set  may not be empty"),
        ({"SS": ["a", "a"]}, "One or more parameter values were invalid: Input collection [a, a] contains duplicates."),
        ({"NS": ["1", "1.0"]}, "One or more parameter values were invalid: Input collection [1, 1.0] contains duplicates."),
        ({"NULL": False}, "One or more parameter values were invalid: Null attribute value types must have the value of true"),
        ({"M": {"x": {"L": [{"N": "x"}]}}}, "The parameter cannot be converted to a numeric value: x"),
        ({"X": "1"}, "Supplied AttributeValue is empty, must contain exactly one of the supported datatypes"),
    ],
)  # fmt: skip
def test_bad_values(value: dict[str, object], message: str) -> None:
    with pytest.raises(AwsError) as exc:
        validate_value(value)
    assert exc.value.message == message


def test_nested_numbers_are_normalised() -> None:
    item = validate_item({"a": {"M": {"b": {"L": [{"N": "01.10"}]}}}, "s": {"NS": ["1e2", "2"]}})
    assert item == {"a": {"M": {"b": {"L": [{"N": "1.1"}]}}}, "s": {"NS": ["100", "2"]}}


def test_compare_and_equal() -> None:
    assert compare({"N": "10"}, {"N": "9"}) == 1
    assert compare({"N": "-1.5"}, {"N": "-1.25"}) == -1
    assert compare({"S": "a"}, {"S": "B"}) == 1  # bytes order: 'B' (0x42) < 'a' (0x61)
    assert compare({"S": "\uffff"}, {"S": "\U0001f600"}) == -1  # UTF-8 order, not UTF-16
    assert compare({"B": b"\x00"}, {"B": b"\x00\x00"}) == -1
    assert compare({"S": "1"}, {"N": "1"}) is None
    assert compare({"BOOL": True}, {"BOOL": True}) is None
    assert equal({"N": "1.0"}, {"N": "1"})
    assert equal({"SS": ["a", "b"]}, {"SS": ["b", "a"]})
    assert equal({"NS": ["1", "2"]}, {"NS": ["2.0", "1"]})
    assert not equal({"L": [{"S": "a"}, {"S": "b"}]}, {"L": [{"S": "b"}, {"S": "a"}]})
    assert equal({"M": {"a": {"N": "1"}}}, {"M": {"a": {"N": "1.00"}}})
    assert not equal({"S": "1"}, {"N": "1"})
    assert not equal(None, {"S": "x"})


def test_number_encoding_orders_like_numbers() -> None:
    rng = random.Random(7)
    numbers = {
        Decimal(0),
        Decimal("1e-130"),
        Decimal("-1e-130"),
        Decimal("9.9999999999999999999999999999999999999E+125"),
    }
    for _ in range(2000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 38)))
        numbers.add(Decimal(f"{rng.choice(['', '-'])}{digits}e{rng.randint(-60, 60)}"))
    numbers.update(
        Decimal(n)
        for n in [
            "1",
            "1.2",
            "1.25",
            "12",
            "120",
            "-1",
            "-1.2",
            "-1.25",
            "-12",
            "-120",
            "0.5",
            "-0.5",
        ]
    )
    ordered = sorted(numbers)
    encoded = sorted(numbers, key=lambda d: encode_key_value({"N": normalize_number(str(d))}))
    assert encoded == ordered


def test_equal_numbers_encode_equal() -> None:
    assert encode_key_value({"N": normalize_number("1.20")}) == encode_key_value(
        {"N": normalize_number("12e-1")}
    )


def test_string_and_binary_encoding_order() -> None:
    strings = ["", "a", "a\x00", "a\x00b", "ab", "b", "\u00e9", "\uffff", "\U0001f600", "z" * 5]
    assert sorted(strings, key=lambda s: encode_key_value({"S": s})) == sorted(
        strings, key=lambda s: s.encode()
    )
    blobs = [b"", b"\x00", b"\x00\x00", b"\x00\x01", b"\x01", b"\xff", b"\xff\x00", b"\xff\xff"]
    assert sorted(blobs, key=lambda b: encode_key_value({"B": b})) == sorted(blobs)


def test_prefix_encoding_covers_values_that_begin_with_it() -> None:
    prefix = encode_prefix({"S": "ab"})
    assert encode_key_value({"S": "abc"}).startswith(prefix)
    assert encode_key_value({"S": "ab\x00"}).startswith(prefix)
    assert not encode_key_value({"S": "ac"}).startswith(prefix)


def test_item_size_follows_dynamodb_rules() -> None:
    assert item_size({"a": {"S": "héllo"}}) == 1 + 6
    assert item_size({"n": {"N": "123"}}) == 1 + 3
    assert item_size({"n": {"N": "1234"}}) == 1 + 3
    assert item_size({"b": {"BOOL": True}, "z": {"NULL": True}}) == 1 + 1 + 1 + 1
    assert item_size({"l": {"L": []}}) == 1 + 3
    assert item_size({"m": {"M": {"k": {"S": "v"}}}}) == 1 + 3 + 1 + 1 + 1
    assert item_size({"s": {"SS": ["ab", "c"]}}) == 1 + 3


def test_dump_and_load_keep_binary() -> None:
    item = {"b": {"B": b"\x00\xff"}, "bs": {"BS": [b"1", b"2"]}, "m": {"M": {"B": {"S": "not binary"}}},
            "l": {"L": [{"B": b"x"}]}, "s": {"S": '"B": tricky'}}  # fmt: skip
    assert load_item(dump_item(item)) == item


def test_nesting_is_limited_to_32_levels() -> None:
    value: dict[str, object] = {"S": "leaf"}
    for _ in range(32):
        value = {"L": [value]}
    validate_value(value)
    with pytest.raises(AwsError) as exc:
        validate_value({"M": {"deeper": value}})
    assert (
        exc.value.message
        == "One or more parameter values were invalid: Nesting Levels have exceeded supported limits"
    )
