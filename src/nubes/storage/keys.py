"""Order-preserving composite keys.

Table keys are compared bytewise, so services build them with :func:`pack`:
the bytewise order of packed keys equals the order of the tuples they came
from, and ``pack(a, b)`` starts with ``pack(a)`` — a prefix scan on
``pack("orders", customer)`` finds exactly that customer's rows, never those of
a customer whose name merely starts the same way.

Each part is a type tag followed by its encoding:

* ``int`` (signed 64-bit): tag ``0x20`` + 8 bytes big-endian of ``n + 2**63``;
* ``str``: tag ``0x30`` + UTF-8 with ``00`` escaped as ``00 FF``, ended by ``00 01``;
* ``bytes``: tag ``0x40`` + the bytes, escaped and ended the same way.

Parts of different types order by tag (ints < strs < bytes). The escape keeps
a shorter string before every longer one it prefixes, because the terminator
``00 01`` sorts below any continuation (``00 FF`` or a byte ``>= 01``).
"""

from __future__ import annotations

Part = str | int | bytes

_INT = 0x20
_STR = 0x30
_BYTES = 0x40
_INT_BIAS = 1 << 63
_INT_MIN = -(1 << 63)
_INT_MAX = (1 << 63) - 1
_TERMINATOR = b"\x00\x01"


def _encode(part: Part, out: bytearray) -> None:
    # bool is an int subclass; refusing it avoids True silently becoming 1.
    if isinstance(part, bool):
        raise TypeError("key parts are str, int or bytes, not bool")
    if isinstance(part, int):
        if not _INT_MIN <= part <= _INT_MAX:
            raise ValueError(f"integer key part {part} is outside signed 64-bit")
        out.append(_INT)
        out += (part + _INT_BIAS).to_bytes(8, "big")
    elif isinstance(part, str):
        out.append(_STR)
        out += part.encode("utf-8").replace(b"\x00", b"\x00\xff")
        out += _TERMINATOR
    elif isinstance(part, bytes | bytearray | memoryview):
        out.append(_BYTES)
        out += bytes(part).replace(b"\x00", b"\x00\xff")
        out += _TERMINATOR
    else:
        raise TypeError(f"key parts are str, int or bytes, not {type(part).__name__}")


def pack(*parts: Part) -> bytes:
    """Encode ``parts`` so that bytewise order of results equals tuple order."""
    out = bytearray()
    for part in parts:
        _encode(part, out)
    return bytes(out)


def _read_escaped(key: bytes, pos: int) -> tuple[bytes, int]:
    """Decode an escaped, terminated byte string starting at ``pos``."""
    chunks: list[bytes] = []
    while True:
        zero = key.find(b"\x00", pos)
        if zero < 0 or zero + 1 >= len(key):
            raise ValueError("truncated key: missing terminator")
        chunks.append(key[pos:zero])
        marker = key[zero + 1]
        pos = zero + 2
        if marker == 0x01:
            return b"".join(chunks), pos
        if marker != 0xFF:
            raise ValueError(f"bad escape 00 {marker:02x} in key")
        chunks.append(b"\x00")


def unpack(key: bytes) -> tuple[Part, ...]:
    """The parts :func:`pack` encoded into ``key``; ValueError if it is malformed."""
    parts: list[Part] = []
    pos = 0
    while pos < len(key):
        tag = key[pos]
        pos += 1
        if tag == _INT:
            if pos + 8 > len(key):
                raise ValueError("truncated integer key part")
            parts.append(int.from_bytes(key[pos : pos + 8], "big") - _INT_BIAS)
            pos += 8
        elif tag in (_STR, _BYTES):
            raw, pos = _read_escaped(key, pos)
            parts.append(raw.decode("utf-8") if tag == _STR else raw)
        else:
            raise ValueError(f"unknown key part tag {tag:#04x}")
    return tuple(parts)


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with ``prefix``.

    None when no such key exists (``prefix`` is empty or all ``FF`` bytes), which
    means "scan to the end of the table".
    """
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes((stripped[-1] + 1,))
