"""Primary and index keys: validation with DynamoDB's messages, and the
order-preserving store keys of items, index entries and TTL entries."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from nubes.services.dynamodb.tables import Table, key_names, primary_key, uid_bytes, write_facts
from nubes.services.dynamodb.types import (
    AttributeValue,
    Item,
    canonical_number,
    encode_key_value,
    encode_number,
    encode_number_text,
    invalid_parameter,
    validate_value,
    validation,
)

MAX_HASH_BYTES = 2048
MAX_RANGE_BYTES = 1024


def attribute_types(table: Table) -> dict[str, str]:
    """AttributeDefinitions as a name → type map."""
    return {d["AttributeName"]: d["AttributeType"] for d in table["AttributeDefinitions"]}


def _raw_length(value: AttributeValue) -> int:
    kind, inner = next(iter(value.items()))
    if kind == "S":
        return len(inner.encode("utf-8"))
    if kind == "B":
        return len(inner)
    return len(inner)


def _check_key_value(name: str, value: AttributeValue, expected: str, is_range: bool) -> None:
    actual = next(iter(value))
    if actual != expected:
        raise invalid_parameter(f"Type mismatch for key {name} expected: {expected} actual: {actual}")
    if actual in ("S", "B") and not value[actual]:
        raise validation(
            "One or more parameter values are not valid. The AttributeValue for a key attribute "
            f"cannot contain an empty {'string' if actual == 'S' else 'binary'} value. Key: {name}"
        )
    limit = MAX_RANGE_BYTES if is_range else MAX_HASH_BYTES
    if _raw_length(value) > limit:
        if is_range:
            raise invalid_parameter("Aggregated size of all range keys has exceeded the size limit of 1024 bytes")
        raise invalid_parameter("Size of hashkey has exceeded the maximum size limit of2048 bytes")


def check_item_keys(table: Table, item: Item) -> None:
    """A full item (PutItem) has every key attribute with the right type."""
    primary = primary_key(table)
    for name, kind, is_range in ((primary.hash_key, primary.hash_type, False),
                                 (primary.range_key, primary.range_type, True)):  # fmt: skip
        if name is None or kind is None:
            continue
        value = item.get(name)
        if value is None:
            raise invalid_parameter(f"Missing the key {name} in the item")
        _check_key_value(name, value, kind, is_range)


def check_index_keys(table: Table, item: Item) -> None:
    """Index key attributes present in an item have the index's key types."""
    if not write_facts(table).indexed:
        return
    types = attribute_types(table)
    for field in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        for index in table.get(field) or []:
            for element in index["KeySchema"]:
                name = element["AttributeName"]
                value = item.get(name)
                if value is None:
                    continue
                actual = next(iter(value))
                if actual != types[name]:
                    raise invalid_parameter(
                        f"Type mismatch for Index Key {name} Expected: {types[name]} Actual: {actual} "
                        f"IndexName: {index['IndexName']}"
                    )
                if actual in ("S", "B") and not value[actual]:
                    raise validation(
                        "One or more parameter values are not valid. A value specified for a secondary "
                        "index key is not supported. The AttributeValue for a key attribute cannot contain "
                        f"an empty string value. IndexName: {index['IndexName']}, IndexKey: {name}"
                    )


def key_of(table: Table, key: Any) -> Item:
    """Validate a ``Key`` parameter (exactly the key attributes) and return it normalised."""
    if not isinstance(key, dict):
        raise validation("The provided key element does not match the schema")
    primary = primary_key(table)
    if len(key) != len(primary.names) or not primary.names.issuperset(key):
        raise validation("The provided key element does not match the schema")
    out: Item = {}
    for name, kind, is_range in ((primary.hash_key, primary.hash_type, False),
                                 (primary.range_key, primary.range_type, True)):  # fmt: skip
        if name is None or kind is None:
            continue
        value = validate_value(key[name])
        if next(iter(value)) != kind:
            raise validation("The provided key element does not match the schema")
        _check_key_value(name, value, kind, is_range)
        out[name] = value
    return out


def _plain_key_part(value: Any, kind: str | None, limit: int) -> bytes | None:
    """The key encoding of a well-formed key value (right type, not empty,
    within ``limit``, a number already canonical); None for anything else,
    which the full checks then answer with DynamoDB's error."""
    if type(value) is not dict or len(value) != 1:
        return None
    inner = value.get(kind)
    if type(inner) is str:
        if kind == "S":
            raw = inner.encode("utf-8")
            if not raw or len(raw) > limit:
                return None
            return (raw.replace(b"\x00", b"\x00\xff") if b"\x00" in raw else raw) + b"\x00\x01"
        return encode_number_text(inner) if canonical_number(inner) else None
    if type(inner) is bytes and 0 < len(inner) <= limit:
        return (inner.replace(b"\x00", b"\x00\xff") if b"\x00" in inner else inner) + b"\x00\x01"
    return None


def key_store_key(table: Table, key: Any) -> bytes:
    """``item_key(table, key_of(table, key))``: the store key a ``Key``
    parameter names, with :func:`key_of`'s errors; a plain key is encoded in
    one pass (every GetItem, DeleteItem and UpdateItem has one)."""
    primary = primary_key(table)
    if type(key) is dict and len(key) == len(primary.names):
        out = _plain_key_part(key.get(primary.hash_key), primary.hash_type, MAX_HASH_BYTES)
        if out is not None:
            if primary.range_key is None:
                return primary.prefix + out
            part = _plain_key_part(key.get(primary.range_key), primary.range_type, MAX_RANGE_BYTES)
            if part is not None:
                return primary.prefix + out + part
    return item_key(table, key_of(table, key))


def new_item_key(table: Table, item: Item) -> bytes:
    """``check_item_keys`` then ``item_key`` of a validated item: its store
    key, or DynamoDB's error for a missing, mistyped, empty or oversized key
    attribute; a plain item's key is checked and encoded in one pass."""
    primary = primary_key(table)
    out = _plain_key_part(item.get(primary.hash_key), primary.hash_type, MAX_HASH_BYTES)
    if out is not None:
        if primary.range_key is None:
            return primary.prefix + out
        part = _plain_key_part(item.get(primary.range_key), primary.range_type, MAX_RANGE_BYTES)
        if part is not None:
            return primary.prefix + out + part
    check_item_keys(table, item)
    return item_key(table, item)


def extract_key(table: Table, item: Item) -> Item:
    """The primary key attributes of an item."""
    primary = primary_key(table)
    hash_key, range_key = primary.hash_key, primary.range_key
    key = {hash_key: item[hash_key]}
    if range_key is not None:
        key[range_key] = item[range_key]
    return key


def key_suffix(table: Table, item: Item) -> bytes:
    """The encoded primary key of an item (without the table prefix)."""
    primary = primary_key(table)
    out = encode_key_value(item[primary.hash_key])
    if primary.range_key is not None:
        out += encode_key_value(item[primary.range_key])
    return out


def item_key(table: Table, item: Item) -> bytes:
    """The store key of an item in ``dynamodb.items``."""
    primary = primary_key(table)
    out = primary.prefix + encode_key_value(item[primary.hash_key])
    if primary.range_key is not None:
        out += encode_key_value(item[primary.range_key])
    return out


def index_prefix(table: Table, index_name: str) -> bytes:
    """The prefix of all entries of one index in ``dynamodb.index``."""
    return uid_bytes(table) + index_name.encode("utf-8") + b"\x00"


def index_entry_key(table: Table, index: dict[str, Any], item: Item) -> bytes | None:
    """The store key of the item's entry in ``index``, or None if the item lacks
    the index key (a sparse index)."""
    hash_key, range_key = key_names(index["KeySchema"])
    hash_value = item.get(hash_key)
    if hash_value is None:
        return None
    out = index_prefix(table, index["IndexName"]) + encode_key_value(hash_value)
    if range_key is not None:
        range_value = item.get(range_key)
        if range_value is None:
            return None
        out += encode_key_value(range_value)
    return out + key_suffix(table, item)


def projected(table: Table, index: dict[str, Any], item: Item) -> Item:
    """The attributes of ``item`` an index stores (its projection)."""
    projection = index["Projection"]
    kind = projection["ProjectionType"]
    if kind == "ALL":
        return item
    names = {k["AttributeName"] for k in (*table["KeySchema"], *index["KeySchema"])}
    if kind == "INCLUDE":
        names.update(projection.get("NonKeyAttributes") or [])
    return {name: value for name, value in item.items() if name in names}


def ttl_key(table: Table, expiry: Decimal, item: Item) -> bytes:
    """The store key of an item's entry in ``dynamodb.ttl`` (ordered by expiry)."""
    return uid_bytes(table) + encode_number(expiry) + key_suffix(table, item)


def ttl_expiry(table: Table, item: Item | None) -> Decimal | None:
    """The item's expiry time if the table has TTL enabled and the item a number in it."""
    ttl = table.get("TTL")
    if item is None or not ttl or not ttl.get("Enabled"):
        return None
    value = item.get(ttl["AttributeName"])
    if value is None or "N" not in value:
        return None
    return Decimal(value["N"])
