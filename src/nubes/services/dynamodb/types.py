"""DynamoDB AttributeValues: validation, normalisation, comparison, size, storage.

Values travel in DynamoDB's own JSON shape (``{"S": "x"}``, ``{"N": "1.5"}``,
``{"B": b"..."}`` with ``bytes`` after the wire layer decoded base64), and stay in
that shape inside nubes, so nothing is converted on the hot path except numbers,
which are normalised once on the way in (DynamoDB returns ``"1.50"`` as ``"1.5"``).
"""

from __future__ import annotations

import base64
import decimal
import re
from decimal import Decimal
from typing import Any

import orjson

from nubes.aws.errors import AwsError

AttributeValue = dict[str, Any]
Item = dict[str, AttributeValue]

TYPES = ("S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS")
SCALAR_KEY_TYPES = ("S", "N", "B")
MAX_ITEM_SIZE = 400 * 1024

# Enough precision that arithmetic on two 38-digit numbers of different
# magnitude is exact; the result is then checked against DynamoDB's limits.
NUMBER_CONTEXT = decimal.Context(prec=300, Emax=999999, Emin=-999999, traps=[decimal.InvalidOperation])
_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
_SET_NAMES = {"SS": "string", "NS": "number", "BS": "binary"}


def validation(message: str) -> AwsError:
    """A DynamoDB ``ValidationException``."""
    return AwsError("ValidationException", message, 400)


def invalid_parameter(message: str) -> AwsError:
    """``One or more parameter values were invalid: ...``."""
    return validation(f"One or more parameter values were invalid: {message}")


# -- numbers -------------------------------------------------------------------


def parse_number(text: Any) -> Decimal:
    """A DynamoDB number string as a Decimal, with DynamoDB's errors for bad ones."""
    if not isinstance(text, str):
        raise AwsError("SerializationException", "NUMBER_VALUE cannot be converted to String", 400)
    if not _NUMBER.match(text):
        raise validation(
            "The parameter cannot be converted to a numeric value"
            + (f": {text}" if text else "")
        )
    value = Decimal(text)
    check_number(value)
    return value


def check_number(value: Decimal) -> None:
    """Raise DynamoDB's error if ``value`` is outside 38 digits / 1e-130..1e126."""
    if value.is_zero():
        return
    digits = value.as_tuple().digits
    significant = len(tuple(digits)) - _trailing_zeros(digits)
    # leading zeros never appear in a Decimal's digit tuple except for zero itself
    if significant > 38:
        raise validation("Attempting to store more than 38 significant digits in a Number")
    exponent = value.adjusted()
    if exponent > 125:
        raise validation(
            "Number overflow. Attempting to store a number with magnitude larger than supported range"
        )
    if exponent < -130:
        raise validation(
            "Number underflow. Attempting to store a number with magnitude smaller than supported range"
        )


def _trailing_zeros(digits: tuple[int, ...]) -> int:
    count = 0
    for digit in reversed(digits):
        if digit:
            break
        count += 1
    return count


def format_number(value: Decimal) -> str:
    """Canonical text of a number, as DynamoDB returns it (no exponent, no
    needless zeros)."""
    if value.is_zero():
        return "0"
    text = format(value.normalize(NUMBER_CONTEXT), "f")
    return text


_CANONICAL = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]*[1-9])?\Z")


def canonical_number(text: str) -> bool:
    """Whether ``text`` is a valid number already in canonical form: short
    enough (at most 38 digits in all) that it can neither exceed the precision
    nor the exponent range, which is how most numbers arrive."""
    if text.isdigit() and text.isascii():  # the common case: a plain integer
        return len(text) <= 38 and (text[0] != "0" or len(text) == 1)
    return (
        len(text) <= 40
        and text != "-0"
        and _CANONICAL.match(text) is not None
        and len(text) - text.startswith("-") - ("." in text) <= 38
    )


def normalize_number(text: Any) -> str:
    """Validate a number string and return its canonical form."""
    if type(text) is str and canonical_number(text):
        return text
    return format_number(parse_number(text))


# -- validation ----------------------------------------------------------------


def _check_set(kind: str, values: Any) -> list[Any]:
    if not isinstance(values, list):
        raise AwsError("SerializationException", f"Unexpected value type for {kind}", 400)
    if not values:
        raise invalid_parameter(f"An {_SET_NAMES[kind]} set  may not be empty")
    if kind == "NS":
        canonical = [normalize_number(v) for v in values]  # equal numbers have equal canonical text
        if len(set(canonical)) != len(canonical):
            raise invalid_parameter(f"Input collection [{', '.join(values)}] contains duplicates.")
        return canonical
    if len(set(values)) != len(values):
        shown = ", ".join(v if isinstance(v, str) else "java.nio.HeapByteBuffer" for v in values)
        raise invalid_parameter(f"Input collection [{shown}] contains duplicates.")
    return values


MAX_DEPTH = 32
MAX_NAME_BYTES = 65535


def validate_value(value: Any, depth: int = 0) -> AttributeValue:
    """Check one AttributeValue and return it normalised (numbers canonical)."""
    if type(value) is not dict or len(value) != 1:
        if isinstance(value, dict) and len(value) > 1:
            raise validation(
                "Supplied AttributeValue has more than one datatypes set, "
                "must contain exactly one of the supported datatypes"
            )
        raise validation(
            "Supplied AttributeValue is empty, must contain exactly one of the supported datatypes"
        )
    ((kind, inner),) = value.items()
    if kind == "S" or kind == "B" or kind == "BOOL":
        return value
    if kind == "N":
        canonical = normalize_number(inner)
        return value if canonical == inner else {"N": canonical}
    if kind == "NULL":
        if inner is not True:
            raise invalid_parameter("Null attribute value types must have the value of true")
        return value
    if kind == "M" or kind == "L":
        if depth >= MAX_DEPTH:
            raise invalid_parameter("Nesting Levels have exceeded supported limits")
        if kind == "M":
            return {"M": {name: validate_value(v, depth + 1) for name, v in inner.items()}}
        return {"L": [validate_value(v, depth + 1) for v in inner]}
    if kind in _SET_NAMES:
        return {kind: _check_set(kind, inner)}
    raise validation(
        "Supplied AttributeValue is empty, must contain exactly one of the supported datatypes"
    )


def check_attribute_name(name: str, prefix: str = "") -> None:
    """Attribute names are 1 to 65535 bytes of UTF-8."""
    if name == "":
        raise invalid_parameter(f"{prefix}Empty attribute name")
    if len(name) > 16383 and len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise invalid_parameter(
            f"{prefix}Attribute name is {len(name.encode('utf-8'))} bytes, over the limit of {MAX_NAME_BYTES} bytes"
        )


def validate_item(item: Any) -> Item:
    """Check every attribute of an item; returns the normalised item (the
    item itself when nothing needed normalising: callers never change it)."""
    if not isinstance(item, dict):
        raise validation("Item must be a map")
    out: Item | None = None
    for name, value in item.items():
        if not name or len(name) > 16383:
            # the attribute-by-attribute walk gives the error of the first bad
            # name or value in the item's order
            return _validate_each(item)
        # the common values pass as they are without a call: strings, binary,
        # booleans, plain integers (canonical_number's first case) and string
        # sets without duplicates; anything else gets the full check
        if type(value) is dict and len(value) == 1:
            if "S" in value or "B" in value or "BOOL" in value:
                continue
            number = value.get("N")
            if number is not None:
                if (
                    type(number) is str and number.isdigit() and number.isascii()
                    and len(number) <= 38 and (number[0] != "0" or len(number) == 1)
                ):  # fmt: skip
                    continue
            else:
                strings = value.get("SS")
                if type(strings) is list and strings and len(set(strings)) == len(strings):
                    continue
        normal = validate_value(value)
        if normal is not value:
            if out is None:
                out = dict(item)  # same order: replacing a value keeps its place
            out[name] = normal
    return item if out is None else out


def _validate_each(item: dict[Any, Any]) -> Item:
    out: Item = {}
    for name, value in item.items():
        check_attribute_name(name)
        out[name] = validate_value(value)
    return out


def type_of(value: AttributeValue) -> str:
    """The type tag (``S``, ``N``, ...) of an AttributeValue."""
    return next(iter(value))


# -- comparison ----------------------------------------------------------------


def number_of(value: AttributeValue) -> Decimal:
    """The Decimal of an ``{"N": ...}`` value (already validated)."""
    return Decimal(value["N"])


def _scalar(value: AttributeValue) -> tuple[str, Any]:
    kind, inner = next(iter(value.items()))
    if kind == "N":
        return kind, Decimal(inner)
    return kind, inner


def compare(a: AttributeValue, b: AttributeValue) -> int | None:
    """-1/0/1 for two S, N or B values of the same type (strings by UTF-8 bytes,
    which is code point order; binary bytewise; numbers numerically); None when
    they cannot be ordered (different or non-scalar types)."""
    ka, va = _scalar(a)
    kb, vb = _scalar(b)
    if ka != kb or ka not in SCALAR_KEY_TYPES:
        return None
    if va < vb:
        return -1
    return 1 if va > vb else 0


def equal(a: AttributeValue | None, b: AttributeValue | None) -> bool:
    """DynamoDB equality: same type and value; sets ignore order; numbers by value."""
    if a is None or b is None:
        return False
    ka, va = next(iter(a.items()))
    kb, vb = next(iter(b.items()))
    if ka != kb:
        return False
    if ka == "N":
        return Decimal(va) == Decimal(vb)
    if ka == "NS":
        return {Decimal(x) for x in va} == {Decimal(x) for x in vb}
    if ka in ("SS", "BS"):
        return set(va) == set(vb)
    if ka == "L":
        return len(va) == len(vb) and all(equal(x, y) for x, y in zip(va, vb, strict=True))
    if ka == "M":
        return va.keys() == vb.keys() and all(equal(va[k], vb[k]) for k in va)
    return bool(va == vb)


# -- size ----------------------------------------------------------------------


def _number_size(text: str) -> int:
    digits = text.lstrip("-").replace(".", "").strip("0")
    return (len(digits) + 1) // 2 + 1


def value_size(value: AttributeValue) -> int:
    """Bytes a value counts for, by DynamoDB's rules (strings as UTF-8, numbers
    about half their significant digits plus one, 3 bytes per list/map plus one
    per element)."""
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(inner) if inner.isascii() else len(inner.encode("utf-8"))
    if kind == "B":
        return len(inner)
    if kind == "N":
        return _number_size(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode("utf-8")) for s in inner)
    if kind == "BS":
        return sum(len(b) for b in inner)
    if kind == "NS":
        return sum(_number_size(n) for n in inner)
    if kind == "L":
        return 3 + sum(1 + value_size(v) for v in inner)
    return 3 + sum(1 + len(k.encode("utf-8")) + value_size(v) for k, v in inner.items())


def item_size(item: Item) -> int:
    """DynamoDB's size of an item: attribute names plus values."""
    total = 0
    for name, value in item.items():
        total += (len(name) if name.isascii() else len(name.encode("utf-8"))) + value_size(value)
    return total


def check_item_size(item: Item, *, update: bool = False) -> None:
    """Raise DynamoDB's error for items over 400 KB (worded differently when an
    update makes the item too large)."""
    if item_size(item) > MAX_ITEM_SIZE:
        if update:
            raise validation("Item size to update has exceeded the maximum allowed size")
        raise validation("Item size has exceeded the maximum allowed size")


# -- order-preserving key encoding --------------------------------------------


def _escape(raw: bytes) -> bytes:
    return raw.replace(b"\x00", b"\x00\xff")


_INVERT = bytes(0xFF - b for b in range(256))


def encode_number(value: Decimal) -> bytes:
    """Bytes whose bytewise order is numeric order: a sign byte, then for
    positives the biased exponent and the digits ended by ``00``; negatives
    invert every byte so larger magnitudes sort first."""
    return encode_number_text(format_number(value))


def encode_number_text(text: str) -> bytes:
    """:func:`encode_number` of a canonical number string (as stored), without
    going through Decimal: this is on every keyed read and write."""
    if text.isdigit() and text[0] != "0":  # a positive integer, the common key
        return b"\x03" + (len(text) + 999).to_bytes(2, "big") + text.rstrip("0").encode("ascii") + b"\x00"
    negative = text.startswith("-")
    body = text[1:] if negative else text
    whole, _, fraction = body.partition(".")
    whole = whole.lstrip("0")
    if whole:
        exponent = len(whole) - 1
        digits = (whole + fraction).rstrip("0")
    else:
        significant = fraction.lstrip("0")
        if not significant:
            return b"\x02"
        exponent = len(significant) - len(fraction) - 1
        digits = significant.rstrip("0")
    encoded = (exponent + 1000).to_bytes(2, "big") + digits.encode("ascii") + b"\x00"
    if negative:
        return b"\x01" + encoded.translate(_INVERT)
    return b"\x03" + encoded


def encode_key_value(value: AttributeValue) -> bytes:
    """A key attribute's value as a self-delimiting, order-preserving byte string
    (strings and binary escaped and terminated, so a value is never a prefix of
    another's encoding)."""
    kind, inner = next(iter(value.items()))
    if kind == "S":
        return _escape(inner.encode("utf-8")) + b"\x00\x01"
    if kind == "N":
        if "e" in inner or "E" in inner or "+" in inner:  # not canonical (never from validated input)
            inner = normalize_number(inner)
        return encode_number_text(inner)
    return _escape(inner) + b"\x00\x01"


def encode_prefix(value: AttributeValue) -> bytes:
    """The encoding of an S/B value without its terminator: every value that
    begins with this one has an encoding that starts with these bytes."""
    kind, inner = next(iter(value.items()))
    raw = inner.encode("utf-8") if kind == "S" else inner
    return _escape(raw)


# -- storage -------------------------------------------------------------------


def _bytes_to_text(obj: Any) -> Any:
    if isinstance(obj, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(obj)).decode("ascii")
    raise TypeError(f"cannot store {type(obj).__name__}")


def dump_item(item: Item) -> bytes:
    """An item as stored bytes (JSON; binary values base64)."""
    return orjson.dumps(item, default=_bytes_to_text)


def dump_document(document: Any) -> bytes:
    """JSON of any document holding AttributeValues, binary as base64: as the
    store and the wire write them."""
    return orjson.dumps(document, default=_bytes_to_text)


def _restore_binary(value: AttributeValue) -> AttributeValue:
    kind, inner = next(iter(value.items()))
    if kind == "B" and isinstance(inner, str):
        return {"B": base64.b64decode(inner)}
    if kind == "BS":
        return {"BS": [base64.b64decode(x) for x in inner]}
    if kind == "M":
        return {"M": {k: _restore_binary(v) for k, v in inner.items()}}
    if kind == "L":
        return {"L": [_restore_binary(v) for v in inner]}
    return value


def load_record(data: bytes) -> dict[str, Any]:
    """A stream record :func:`dump_item` stored (its keys and images hold items)."""
    record: dict[str, Any] = orjson.loads(data)
    if b'"B":' in data or b'"BS":' in data:
        body = record["dynamodb"]
        for part in ("Keys", "NewImage", "OldImage"):
            if part in body:
                body[part] = {name: _restore_binary(v) for name, v in body[part].items()}
    return record


def load_item(data: bytes) -> Item:
    """The item :func:`dump_item` stored."""
    item: Item = orjson.loads(data)
    # Only items that may hold binary need a walk; the JSON text of a binary
    # value always contains this key (a string value's quotes are escaped).
    if b'"B":' in data or b'"BS":' in data:
        return {name: _restore_binary(v) for name, v in item.items()}
    return item
