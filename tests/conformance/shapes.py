"""Generate example values for botocore shapes, and normalize values for comparison."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from botocore.model import ListShape, MapShape, Shape, StructureShape

#: variants: "basic", "unicode" (non-ASCII text), "empty" (empty lists/maps),
#: "large" (a 100 KB blob), "nested" (two items per list/map)
VARIANTS = ("basic", "unicode", "empty", "large", "nested")


class Generator:
    """Builds a value that satisfies the shape's constraints."""

    def __init__(self, variant: str, seed: int = 7) -> None:
        self.variant = variant
        self.rng = random.Random(seed)

    def value(self, shape: Shape, *, ascii_only: bool = False, location: str | None = None, depth: int = 0, required: bool = False) -> Any:
        kind = shape.type_name
        if kind == "structure":
            return self._structure(shape, depth)  # type: ignore[arg-type]
        if kind == "list":
            assert isinstance(shape, ListShape)
            count = self._count(shape, depth, location, required)
            return [self.value(shape.member, ascii_only=ascii_only, location=location, depth=depth + 1) for _ in range(count)]
        if kind == "map":
            assert isinstance(shape, MapShape)
            count = self._count(shape, depth, location, required)
            return {self._string(shape.key, True, i): self.value(shape.value, ascii_only=True, depth=depth + 1) for i in range(count)}
        if kind == "string":
            return self._string(shape, ascii_only or location in ("header", "headers", "uri"), 0)
        if kind == "boolean":
            return True
        if kind in ("integer", "long"):
            low = int(shape.metadata.get("min", 1))
            high = int(shape.metadata.get("max", low + 10))
            return max(low, min(high, low + 3))
        if kind in ("float", "double"):
            low = float(shape.metadata.get("min", 0.5))
            high = float(shape.metadata.get("max", low + 10))
            return min(high, low + 0.5)
        if kind == "blob":
            high = int(shape.metadata.get("max", 1 << 30))
            low = int(shape.metadata.get("min", 1))
            if self.variant == "large":
                return (bytes(range(256)) * 400)[: max(low, min(high, 102400))]
            return (b"\x00\x01binary\xff" * (1 + low // 10))[: max(low, min(high, 10))]
        if kind == "timestamp":
            return dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
        raise ValueError(kind)

    def _count(self, shape: Shape, depth: int, location: str | None, required: bool) -> int:
        low = int(shape.metadata.get("min", 0))
        # an empty required list in the query string or headers is not sent at all,
        # nor is an empty flattened XML list (S3's CORSRules, Delete.Objects)
        if required and (location in ("querystring", "header", "headers") or shape.serialization.get("flattened")):
            low = max(low, 1)
        if self.variant == "empty" and low == 0 and depth > 0:
            return 0
        want = 2 if self.variant == "nested" else 1
        high = int(shape.metadata.get("max", want))
        return max(low, min(high, want))

    def _string(self, shape: Shape, ascii_only: bool, index: int) -> str:
        if shape.enum:
            return str(shape.enum[index % len(shape.enum)])
        low = int(shape.metadata.get("min", 1)) or 1
        high = int(shape.metadata.get("max", 64))
        base = "ex" if ascii_only or self.variant != "unicode" else "é✓ü"
        text = f"{base}{index}abc"
        while len(text) < low:
            text += "x"
        return text[: max(low, min(high, len(text)))]

    def _structure(self, shape: StructureShape, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if shape.is_tagged_union:
            name, member = next(iter(shape.members.items()))
            return {name: self.value(member, depth=depth + 1)}
        if depth > 4:
            return {name: self.value(m, depth=depth + 1) for name, m in shape.members.items() if name in shape.required_members}
        for name, member in shape.members.items():
            if member.serialization.get("eventstream") or member.metadata.get("eventstream"):
                continue
            if member.type_name == "structure" and member.metadata.get("document"):
                out[name] = {"doc": [1, "two", {"three": True}]}
                continue
            if member.serialization.get("location") == "headers":
                out[name] = {"mkey": "mvalue"}
                continue
            if member.serialization.get("hostLabel"):
                continue
            location = member.serialization.get("location")
            out[name] = self.value(member, location=location, depth=depth + 1, required=name in shape.required_members)
        return out


def normalize(value: Any) -> Any:
    """Drop empty containers and None, compare timestamps at ms precision."""
    if isinstance(value, dict):
        out = {k: normalize(v) for k, v in value.items() if k != "ResponseMetadata"}
        return {k: v for k, v in out.items() if v not in (None, [], {})}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    if isinstance(value, dt.datetime):
        when = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return round(when.timestamp(), 3)
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, bytearray):
        return bytes(value)
    return value
