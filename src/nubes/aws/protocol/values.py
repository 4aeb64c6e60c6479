"""Shape-driven conversion between wire values and provider values.

Providers see ``bytes`` for blobs and timezone-aware ``datetime`` for timestamps;
the wire carries base64 strings, epoch numbers or date strings depending on the
protocol. Input is validated against the model's constraints on the way in
(AWS's "N validation errors detected" message), so providers can trust shapes.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

from botocore.model import ListShape, MapShape, Shape, StructureShape

from nubes.aws.errors import AwsError

UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


# -- timestamps ---------------------------------------------------------------


def parse_timestamp(value: Any) -> dt.datetime:
    """Epoch seconds (number or numeric string), ISO 8601 or RFC 822 → aware datetime."""
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, bool):
        raise ValueError("boolean is not a timestamp")
    if isinstance(value, int | float):
        return _EPOCH + dt.timedelta(seconds=float(value))
    text = str(value).strip()
    try:
        return _EPOCH + dt.timedelta(seconds=float(text))
    except ValueError:
        pass
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except ValueError:
        pass
    return parsedate_to_datetime(text).astimezone(UTC)


def _as_datetime(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return _EPOCH + dt.timedelta(seconds=float(value))
    return parse_timestamp(value)


def format_timestamp(value: Any, fmt: str) -> Any:
    """A provider timestamp (datetime or epoch number) in a wire format:
    ``unixTimestamp`` (number), ``iso8601`` or ``rfc822`` (strings)."""
    if fmt == "unixTimestamp" and isinstance(value, int | float) and not isinstance(value, bool):
        return int(value) if value == int(value) else round(value, 3)
    when = _as_datetime(value)
    if fmt == "unixTimestamp":
        seconds = (when - _EPOCH).total_seconds()
        return int(seconds) if seconds == int(seconds) else round(seconds, 3)
    if fmt == "rfc822":
        return format_datetime(when.astimezone(UTC), usegmt=True)
    text = when.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


# -- validation ---------------------------------------------------------------


class Problems:
    """Collects validation problems in AWS's wording."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, value: Any, path: str, constraint: str) -> None:
        shown = "null" if value is None else f"'{_show(value)}'"
        self.items.append(f"Value {shown} at '{path}' failed to satisfy constraint: {constraint}")

    def raise_if_any(self, code: str = "ValidationException") -> None:
        if not self.items:
            return
        n = len(self.items)
        noun = "error" if n == 1 else "errors"
        raise AwsError(code, f"{n} validation {noun} detected: " + "; ".join(self.items), 400)


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return "java.nio.HeapByteBuffer"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


def _member_path(parent: str, name: str) -> str:
    part = name[:1].lower() + name[1:]
    return f"{parent}.{part}" if parent else part


def check_constraints(shape: Shape, value: Any, path: str, problems: Problems) -> None:
    """Length, range and enum constraints of one value."""
    meta = shape.metadata
    kind = shape.type_name
    if kind in ("string", "blob", "list", "map"):
        size = len(value)
        if "min" in meta and size < meta["min"]:
            problems.add(value, path, f"Member must have length greater than or equal to {meta['min']}")
        if "max" in meta and size > meta["max"]:
            problems.add(value, path, f"Member must have length less than or equal to {meta['max']}")
        if kind == "string" and shape.enum and value not in shape.enum:
            problems.add(
                value, path, f"Member must satisfy enum value set: [{', '.join(shape.enum)}]"
            )
    elif kind in ("integer", "long", "float", "double"):
        if "min" in meta and value < meta["min"]:
            problems.add(value, path, f"Member must have value greater than or equal to {meta['min']}")
        if "max" in meta and value > meta["max"]:
            problems.add(value, path, f"Member must have value less than or equal to {meta['max']}")


def check_required(shape: StructureShape, value: dict[str, Any], path: str, problems: Problems) -> None:
    for name in shape.required_members:
        if value.get(name) is None:
            problems.add(None, _member_path(path, name), "Member must not be null")


def require(value: Mapping[str, Any], *names: str, path: str = "", code: str = "ValidationException") -> None:
    """Members a service needs although its model no longer marks them required
    (botocore relaxes some over time): AWS's "must not be null" for the missing."""
    problems = Problems()
    for name in names:
        if value.get(name) is None:
            problems.add(None, _member_path(path, name), "Member must not be null")
    problems.raise_if_any(code)


def require_each(items: Sequence[Mapping[str, Any]], *names: str, path: str) -> None:
    """``require`` for every item of a list member (paths like ``tags.1.member.key``)."""
    for i, item in enumerate(items):
        require(item, *names, path=f"{path}.{i + 1}.member")


def serialization_error(path: str, expected: str) -> AwsError:
    where = path or "the request"
    return AwsError("SerializationException", f"Unexpected value type for {where}: expected {expected}", 400)


# -- JSON-like input (json, rest-json bodies, cbor) ------------------------------


def from_json(shape: Shape, value: Any, path: str, problems: Problems, *, cbor: bool = False) -> Any:
    """Convert and validate one JSON-decoded (or CBOR-decoded, ``cbor``) input value.

    Input goes through a parser compiled once per shape (:func:`json_parser`),
    which builds no member paths; what it refuses is parsed again by the model walk,
    which records the problems and raises the errors, with their paths, as AWS
    words them — so only bad requests pay for the paths.
    """
    if value is None:
        return None
    try:
        return json_parser(shape)(value)
    except Exception:  # refused (or something odder): the walk answers exactly as before
        return _walk_json(shape, value, path, problems)


def _walk_json(shape: Shape, value: Any, path: str, problems: Problems) -> Any:
    """The model walk behind ``from_json`` for input its compiled parser refuses: it
    words each problem and error with the member's path, as AWS does."""
    if value is None:
        return None
    kind = shape.type_name
    if kind == "structure" and shape.metadata.get("document"):
        return value  # free-form JSON document
    if kind == "structure":
        if not isinstance(value, dict):
            raise serialization_error(path, "structure")
        assert isinstance(shape, StructureShape)
        out: dict[str, Any] = {}
        members = wire_members(shape)
        for key, item in value.items():
            found = members.get(key)
            if found is None or item is None:
                continue
            name, member = found
            out[name] = _walk_json(member, item, _member_path(path, name), problems)
        check_required(shape, out, path, problems)
        return out
    if kind == "list":
        if not isinstance(value, list):
            raise serialization_error(path, "list")
        assert isinstance(shape, ListShape)
        inner = shape.member
        items = [_walk_json(inner, v, f"{path}.{i + 1}.member", problems) for i, v in enumerate(value)]
        check_constraints(shape, items, path, problems)
        return items
    if kind == "map":
        if not isinstance(value, dict):
            raise serialization_error(path, "map")
        assert isinstance(shape, MapShape)
        vshape = shape.value
        result = {str(k): _walk_json(vshape, v, f"{path}.{k}", problems) for k, v in value.items()}
        check_constraints(shape, result, path, problems)
        return result
    return scalar_from_wire(shape, value, path, problems)


def wire_members(shape: StructureShape) -> dict[str, tuple[str, Shape]]:
    """Wire name (``locationName`` or member name) → (member name, shape), cached
    on the shape object (botocore caches the shape tree per operation)."""
    cached: dict[str, tuple[str, Shape]] | None = getattr(shape, "_nubes_wire_members", None)
    if cached is None:
        cached = {
            str(member.serialization.get("name", name)): (name, member)
            for name, member in shape.members.items()
        }
        shape._nubes_wire_members = cached
    return cached


def scalar_from_wire(shape: Shape, value: Any, path: str, problems: Problems) -> Any:
    """Scalars from a JSON/CBOR document."""
    kind = shape.type_name
    if kind == "string":
        if not isinstance(value, str):
            raise serialization_error(path, "string")
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise serialization_error(path, "boolean")
        return value
    elif kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise serialization_error(path, "integer")
    elif kind in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise serialization_error(path, "number")
        value = float(value)
    elif kind == "blob":
        if isinstance(value, bytes | bytearray):
            value = bytes(value)
        elif isinstance(value, str):
            try:
                value = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise serialization_error(path, "base64-encoded blob") from None
        else:
            raise serialization_error(path, "blob")
    elif kind == "timestamp":
        try:
            return parse_timestamp(value)
        except (ValueError, TypeError, OverflowError):
            raise serialization_error(path, "timestamp") from None
    check_constraints(shape, value, path, problems)
    return value


# -- compiled JSON-like input parsers ----------------------------------------------


class _Refused(Exception):
    """Input a compiled parser does not take as is (wrong type, a constraint not met,
    a required member missing): ``from_json`` hands it to the model walk."""


Parser = Callable[[Any], Any]


def json_parser(shape: Shape) -> Parser:
    """The parser of one shape's JSON-like input, compiled on first use and cached on
    the shape object (botocore caches the shape tree per operation).

    It returns what ``_walk_json`` returns for input the walk accepts without a
    problem, and raises for any other input; it never builds a member path.
    """
    parser: Parser | None = getattr(shape, "_nubes_from_json", None)
    if parser is None:
        parser = _compile_parser(shape)
        shape._nubes_from_json = parser
    return parser


def _compile_parser(shape: Shape) -> Parser:
    kind = shape.type_name
    if kind == "structure":
        if shape.metadata.get("document"):
            return _identity
        assert isinstance(shape, StructureShape)
        return _structure_parser(shape)
    if kind == "list":
        assert isinstance(shape, ListShape)
        return _list_parser(shape)
    if kind == "map":
        assert isinstance(shape, MapShape)
        return _map_parser(shape)
    if kind == "string":
        return _string_parser(shape)
    if kind == "boolean":
        return _parse_boolean
    if kind in ("integer", "long"):
        return _bounded(shape, _parse_integer, len_of=False)
    if kind in ("float", "double"):
        return _bounded(shape, _parse_number, len_of=False)
    if kind == "blob":
        return _bounded(shape, _parse_blob, len_of=True)
    if kind == "timestamp":
        return parse_timestamp
    return _scalar_parser(shape)


def _structure_parser(shape: StructureShape) -> Parser:
    wire = wire_members(shape)
    required = tuple(shape.required_members)
    # wire name → (member name, parser, or None for a string without constraints,
    # the commonest member, checked inline rather than called); filled on first
    # use: a recursive shape's members are new shape objects at every depth, so
    # compiling ahead would never end
    members: dict[str, tuple[str, Parser | None]] = {}
    ready = False

    def parse_structure(value: Any) -> Any:
        nonlocal ready
        if not isinstance(value, dict):
            raise _Refused
        if not ready:
            for key, (name, member) in wire.items():
                parser = json_parser(member)
                members[key] = (name, None if parser is _parse_string else parser)
            ready = True
        out: dict[str, Any] = {}
        for key, item in value.items():
            found = members.get(key)
            if found is None or item is None:
                continue
            name, parse = found
            if parse is None:
                if not isinstance(item, str):
                    raise _Refused
                out[name] = item
            else:
                out[name] = parse(item)
        if required:
            for name in required:
                if out.get(name) is None:
                    raise _Refused
        return out

    return parse_structure


def _size_limits(shape: Shape) -> tuple[float, float]:
    meta = shape.metadata
    return meta.get("min", float("-inf")), meta.get("max", float("inf"))


def _list_parser(shape: ListShape) -> Parser:
    item_shape = shape.member
    low, high = _size_limits(shape)
    item: Parser | None = None

    def parse_list(value: Any) -> Any:
        nonlocal item
        if not isinstance(value, list):
            raise _Refused
        if item is None:
            item = json_parser(item_shape)
        parse = item
        items = [None if v is None else parse(v) for v in value]
        if not low <= len(items) <= high:
            raise _Refused
        return items

    return parse_list


def _map_parser(shape: MapShape) -> Parser:
    value_shape = shape.value
    low, high = _size_limits(shape)
    item: Parser | None = None

    def parse_map(value: Any) -> Any:
        nonlocal item
        if not isinstance(value, dict):
            raise _Refused
        if item is None:
            item = json_parser(value_shape)
        parse = item
        result = {str(k): None if v is None else parse(v) for k, v in value.items()}
        if not low <= len(result) <= high:
            raise _Refused
        return result

    return parse_map


def _string_parser(shape: Shape) -> Parser:
    low, high = _size_limits(shape)
    enum = frozenset(shape.enum) if shape.enum else None
    if enum is None and "min" not in shape.metadata and "max" not in shape.metadata:
        return _parse_string

    def parse_string(value: Any) -> Any:
        if not isinstance(value, str) or not low <= len(value) <= high:
            raise _Refused
        if enum is not None and value not in enum:
            raise _Refused
        return value

    return parse_string


def _parse_string(value: Any) -> Any:
    if isinstance(value, str):
        return value
    raise _Refused


def _parse_boolean(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    raise _Refused


def _parse_integer(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise _Refused


def _parse_number(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise _Refused


def _parse_blob(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str):
        return base64.b64decode(value, validate=True)
    raise _Refused


def _bounded(shape: Shape, parse: Parser, *, len_of: bool) -> Parser:
    """``parse``, then the shape's min/max on the value (or on its length)."""
    meta = shape.metadata
    if "min" not in meta and "max" not in meta:
        return parse
    low, high = _size_limits(shape)

    def parse_bounded(value: Any) -> Any:
        result = parse(value)
        if not low <= (len(result) if len_of else result) <= high:
            raise _Refused
        return result

    return parse_bounded


def _scalar_parser(shape: Shape) -> Parser:
    """Kinds without a parser of their own go through ``scalar_from_wire``."""

    def parse_scalar(value: Any) -> Any:
        problems = Problems()
        result = scalar_from_wire(shape, value, "", problems)
        if problems.items:
            raise _Refused
        return result

    return parse_scalar


# -- JSON-like output -----------------------------------------------------------


def needs_conversion(shape: Shape | None, _seen: frozenset[str] = frozenset()) -> bool:
    """Whether output of this shape holds blobs or timestamps (else it goes out as is)."""
    if shape is None:
        return False
    # shape names repeat across services: key by the model's resolver too
    key = f"{id(getattr(shape, '_shape_resolver', None))}:{shape.name}"
    cached = _CONVERSION_CACHE.get(key)
    if cached is not None:
        return cached
    if shape.name in _seen:
        return False
    seen = _seen | {shape.name}
    kind = shape.type_name
    result: bool
    if kind in ("blob", "timestamp"):
        result = True
    elif kind == "structure":
        assert isinstance(shape, StructureShape)
        # members with a wire name of their own (locationName) must be renamed too
        result = any(
            needs_conversion(m, seen) or m.serialization.get("name", n) != n for n, m in shape.members.items()
        )
    elif kind == "list":
        assert isinstance(shape, ListShape)
        result = needs_conversion(shape.member, seen)
    elif kind == "map":
        assert isinstance(shape, MapShape)
        result = needs_conversion(shape.value, seen)
    else:
        result = False
    if not _seen:
        _CONVERSION_CACHE[key] = result
    return result


_CONVERSION_CACHE: dict[str, bool] = {}


def _structure_plan(shape: StructureShape) -> dict[str, tuple[str, Shape | None]]:
    """Member name → (wire name, shape if its values need converting else None);
    cached on the shape object so each response walks only what must change."""
    plan: dict[str, tuple[str, Shape | None]] | None = getattr(shape, "_nubes_out_plan", None)
    if plan is None:
        plan = {
            name: (str(member.serialization.get("name", name)), member if needs_conversion(member) else None)
            for name, member in shape.members.items()
        }
        shape._nubes_out_plan = plan
    return plan


def to_json(shape: Shape, value: Any, timestamp_format: str = "unixTimestamp") -> Any:
    """Convert one provider output value for a JSON document (base64 blobs,
    formatted timestamps); members unknown to the shape are dropped."""
    if value is None:
        return None
    kind = shape.type_name
    if kind == "structure":
        if shape.metadata.get("document"):
            return value
        assert isinstance(shape, StructureShape)
        plan = _structure_plan(shape)
        out: dict[str, Any] = {}
        for key, item in value.items():
            entry = plan.get(key)
            if entry is None or item is None:
                continue
            wire, member = entry
            out[wire] = item if member is None else to_json(member, item, timestamp_format)
        return out
    if kind == "list":
        assert isinstance(shape, ListShape)
        return [to_json(shape.member, v, timestamp_format) for v in value]
    if kind == "map":
        assert isinstance(shape, MapShape)
        return {k: to_json(shape.value, v, timestamp_format) for k, v in value.items()}
    if kind == "blob":
        raw = value.encode() if isinstance(value, str) else bytes(value)
        return base64.b64encode(raw).decode()
    if kind == "timestamp":
        return format_timestamp(value, shape.serialization.get("timestampFormat", timestamp_format))
    return value


def json_output(shape: Shape, value: Any) -> Any:
    """``to_json(shape, value)`` through a converter compiled once per shape object
    (botocore caches the shape tree per operation): the per-node type dispatch and
    format lookups happen at compile time, not per response."""
    convert: Converter | None = getattr(shape, "_nubes_json_output", None)
    if convert is None:
        convert = _json_converter(shape) if needs_conversion(shape) else _identity
        shape._nubes_json_output = convert
    return convert(value)


Converter = Callable[[Any], Any]


def _identity(value: Any) -> Any:
    return value


def _json_converter(shape: Shape) -> Converter:
    converter: Converter | None = getattr(shape, "_nubes_to_json", None)
    if converter is None:
        converter = _compile_json(shape)
        shape._nubes_to_json = converter
    return converter


def _compile_json(shape: Shape) -> Converter:
    kind = shape.type_name
    if kind == "structure":
        if shape.metadata.get("document"):
            return _identity
        assert isinstance(shape, StructureShape)
        return _structure_converter(shape)
    if kind == "list":
        assert isinstance(shape, ListShape)
        item_shape = shape.member

        def convert_list(value: Any) -> Any:
            if value is None:
                return None
            item = _json_converter(item_shape)
            return [item(v) for v in value]

        return convert_list
    if kind == "map":
        assert isinstance(shape, MapShape)
        value_shape = shape.value

        def convert_map(value: Any) -> Any:
            if value is None:
                return None
            item = _json_converter(value_shape)
            return {k: item(v) for k, v in value.items()}

        return convert_map
    if kind == "blob":
        return lambda value: None if value is None else to_json(shape, value)
    if kind == "timestamp":
        fmt = str(shape.serialization.get("timestampFormat", "unixTimestamp"))
        return lambda value: None if value is None else format_timestamp(value, fmt)
    return _identity


def _structure_converter(shape: StructureShape) -> Converter:
    plan = _structure_plan(shape)
    # filled on first use, level by level: a recursive shape's members are new
    # shape objects at every depth, so compiling ahead would never end
    compiled: dict[str, tuple[str, Converter | None]] = {}
    # members that go out as they are, under their own name: a value holding only
    # these (DynamoDB's {"S": ...}) is sent as it is, not copied
    plain = frozenset(name for name, (wire, member) in plan.items() if wire == name and member is None)

    def convert_structure(value: Any) -> Any:
        if value is None:
            return None
        for key, item in value.items():
            if item is None or key not in plain:
                break
        else:
            return value
        if len(compiled) != len(plan):
            for name, (wire, member) in plan.items():
                compiled[name] = (wire, None if member is None else _json_converter(member))
        out: dict[str, Any] = {}
        for key, item in value.items():
            entry = compiled.get(key)
            if entry is None or item is None:
                continue
            wire, convert = entry
            out[wire] = item if convert is None else convert(item)
        return out

    return convert_structure


def to_cbor(shape: Shape, value: Any) -> Any:
    """Output for CBOR: blobs stay bytes, timestamps become datetimes (tag 1)."""
    if value is None:
        return None
    kind = shape.type_name
    if kind == "structure" and shape.metadata.get("document"):
        return value
    if kind == "structure":
        assert isinstance(shape, StructureShape)
        members = shape.members
        return {
            k: to_cbor(members[k], v) for k, v in value.items() if k in members and v is not None
        }
    if kind == "list":
        assert isinstance(shape, ListShape)
        return [to_cbor(shape.member, v) for v in value]
    if kind == "map":
        assert isinstance(shape, MapShape)
        return {k: to_cbor(shape.value, v) for k, v in value.items()}
    if kind == "blob":
        return value.encode() if isinstance(value, str) else bytes(value)
    if kind == "timestamp":
        return _as_datetime(value)
    if kind in ("float", "double") and isinstance(value, int):
        return float(value)
    return value


ScalarParser = Callable[[str], Any]


def scalar_from_text(shape: Shape, text: str, path: str, problems: Problems, ts_format: str) -> Any:
    """Scalars from text (query strings, headers, XML): parse by type, then validate."""
    kind = shape.type_name
    value: Any
    try:
        if kind == "boolean":
            low = text.lower()
            if low not in ("true", "false"):
                raise ValueError(text)
            return low == "true"
        if kind in ("integer", "long"):
            value = int(text)
        elif kind in ("float", "double"):
            value = float(text)
        elif kind == "blob":
            value = base64.b64decode(text)
        elif kind == "timestamp":
            return parse_timestamp(text)
        else:
            value = text
    except (ValueError, TypeError, binascii.Error):
        problems.add(text, path, f"Member must be a valid {kind}")
        return None
    check_constraints(shape, value, path, problems)
    return value
