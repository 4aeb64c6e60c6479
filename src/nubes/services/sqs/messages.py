"""SQS message validation, the MD5 digests AWS computes, and the stored message form."""

from __future__ import annotations

import base64
import hashlib
import random
import re
import struct
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

from nubes.services.sqs.models import MAX_MESSAGE_ATTRIBUTES, invalid_parameter, sqs_error

_INVALID_CHARS = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ATTRIBUTE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,256}$")
_DATA_TYPE = re.compile(r"^(String|Number|Binary)(\..{1,250})?$", re.DOTALL)

INVALID_CHARS_MESSAGE = (
    "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | #x20 to #xD7FF | "
    "#xE000 to #xFFFD | #x10000 to #x10FFFF"
)


def new_message_id() -> str:
    """A random UUID4 string. Message ids need uniqueness, not secrecy: ``random``
    (seeded from the OS at start) is far cheaper than ``os.urandom`` per message."""
    h = random.randbytes(16).hex()  # hex of bytes: no big-int masking and formatting
    # version nibble 4; variant bits 10 (the digit is 8, 9, a or b)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


#: a random hex digit -> the RFC 4122 variant digit keeping its two low bits
_VARIANT = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}


def md5_hex(data: bytes) -> str:
    """Hex MD5, as SQS reports digests."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _prefixed(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def attribute_value_bytes(value: dict[str, Any]) -> tuple[int, bytes]:
    """(transport type, value bytes) of one attribute: 1 for strings/numbers, 2 for binary."""
    if value.get("StringValue") is not None:
        return 1, str(value["StringValue"]).encode()
    raw = value.get("BinaryValue")
    if isinstance(raw, str):
        raw = base64.b64decode(raw)
    return 2, bytes(raw or b"")


def md5_of_attributes(attributes: dict[str, dict[str, Any]]) -> str:
    """AWS's MD5OfMessageAttributes: names sorted, each name, type and value
    length-prefixed (4 bytes big-endian), the value preceded by its transport byte."""
    buf = bytearray()
    for name in sorted(attributes):
        value = attributes[name]
        buf += _prefixed(name.encode())
        buf += _prefixed(str(value["DataType"]).encode())
        transport, data = attribute_value_bytes(value)
        buf += bytes([transport]) + _prefixed(data)
    return md5_hex(bytes(buf))


#: the bytes a valid body's UTF-8 may hold: every one but the C0 controls other than
#: tab, LF and CR (bytes under 0x20 only ever stand for themselves in UTF-8)
_VALID_BYTES = bytes([9, 10, 13, *range(0x20, 0x100)])


def check_body(body: str, max_size: int, attributes_size: int) -> bytes:
    """Reject empty, too large and invalid-character bodies as AWS does; returns the
    body's UTF-8 bytes. Checked on the bytes (``translate`` runs at memory speed; the
    character-class regex costs several microseconds per kilobyte): lone surrogates do
    not encode, and U+FFFE/U+FFFF are the only other invalid characters."""
    if not body:
        raise sqs_error("MissingParameter", "The request must contain the parameter MessageBody.")
    try:
        data = body.encode()
    except UnicodeEncodeError:
        raise sqs_error("InvalidMessageContents", INVALID_CHARS_MESSAGE) from None
    if data.translate(None, _VALID_BYTES) or (
        len(data) != len(body) and (b"\xef\xbf\xbe" in data or b"\xef\xbf\xbf" in data)
    ):
        raise sqs_error("InvalidMessageContents", INVALID_CHARS_MESSAGE)
    if len(data) + attributes_size > max_size:
        raise invalid_parameter(
            f"One or more parameters are invalid. Reason: Message must be shorter than {max_size} bytes."
        )
    return data


def check_attributes(attributes: dict[str, dict[str, Any]], *, system: bool = False) -> int:
    """Validate message attributes; returns their size as AWS counts it."""
    kind = "system" if system else "user"
    if len(attributes) > MAX_MESSAGE_ATTRIBUTES:
        raise invalid_parameter(
            f"Number of message attributes [{len(attributes)}] exceeds the allowed maximum [{MAX_MESSAGE_ATTRIBUTES}]."
        )
    size = 0
    for name, value in attributes.items():
        _check_attribute_name(name)
        data_type = str(value.get("DataType") or "")
        if not data_type:
            raise invalid_parameter(
                f"The message attribute '{name}' must contain non-empty message attribute type."
            )
        m = _DATA_TYPE.match(data_type)
        if m is None:
            raise invalid_parameter(
                f"The type of message ({kind}) attribute '{name}' is invalid. You must use only the following "
                "supported type prefixes: Binary, Number, String."
            )
        base = m.group(1)
        if value.get("StringListValues") or value.get("BinaryListValues"):
            raise invalid_parameter(
                f"Message ({kind}) attribute '{name}' uses list values, which SQS does not support."
            )
        if base == "Binary":
            if not value.get("BinaryValue"):
                raise invalid_parameter(
                    f"Message ({kind}) attribute '{name}' must contain a non-empty value of type 'Binary'."
                )
        else:
            text = value.get("StringValue")
            if text is None or text == "":
                raise invalid_parameter(
                    f"Message ({kind}) attribute '{name}' must contain a non-empty value of type '{base}'."
                )
            if _INVALID_CHARS.search(str(text)):
                raise sqs_error("InvalidMessageContents", INVALID_CHARS_MESSAGE)
            if base == "Number":
                _check_number(name, str(text), kind)
        size += len(name.encode()) + len(data_type.encode()) + len(attribute_value_bytes(value)[1])
    return size


def _check_attribute_name(name: str) -> None:
    lower = name.lower()
    if (
        not _ATTRIBUTE_NAME.match(name)
        or name.startswith(".")
        or name.endswith(".")
        or ".." in name
        or lower.startswith("aws.")
        or lower.startswith("amazon.")
    ):
        raise invalid_parameter(f"Message (user) attribute name '{name}' is invalid.")


def _check_number(name: str, text: str, kind: str) -> None:
    try:
        number = Decimal(text)
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite():
        raise invalid_parameter(
            f"Can't cast the value of message ({kind}) attribute '{name}' to a number."
        )


def stored_attributes(attributes: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Message attributes in a JSON-safe form (binary values base64)."""
    out: dict[str, dict[str, Any]] = {}
    for name, value in attributes.items():
        item: dict[str, Any] = {"DataType": value["DataType"]}
        if value.get("StringValue") is not None:
            item["StringValue"] = str(value["StringValue"])
        elif value.get("BinaryValue") is not None:
            raw = value["BinaryValue"]
            item["BinaryValue"] = (
                raw if isinstance(raw, str) else base64.b64encode(bytes(raw)).decode()
            )
        out[name] = item
    return out


def wire_attributes(stored: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Stored attributes back to provider values (binary values as bytes)."""
    out: dict[str, dict[str, Any]] = {}
    for name, value in stored.items():
        item = dict(value)
        if "BinaryValue" in item:
            item["BinaryValue"] = base64.b64decode(item["BinaryValue"])
        out[name] = item
    return out


def select_attributes(
    stored: dict[str, dict[str, Any]], wanted: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """The attributes a receiver asked for: ``All``/``.*``, ``prefix.*`` or exact names."""
    names = list(wanted)
    if not names or not stored:
        return {}
    if "All" in names or ".*" in names:
        return dict(stored)
    out: dict[str, dict[str, Any]] = {}
    for name, value in stored.items():
        for pattern in names:
            if name == pattern or (pattern.endswith(".*") and name.startswith(pattern[:-1])):
                out[name] = value
                break
    return out


def dedup_id_of(body: str) -> str:
    """Content-based deduplication id: SHA-256 of the body."""
    return hashlib.sha256(body.encode()).hexdigest()
