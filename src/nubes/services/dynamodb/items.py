"""Single-item reads and writes inside a store transaction.

:func:`store_item` is the one place an item changes: it writes the item, its
index entries, its TTL entry and its stream record in the caller's transaction,
so a failure anywhere leaves nothing behind.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

import orjson

from nubes.aws.errors import AwsError
from nubes.services.dynamodb.expressions.evaluate import evaluate, project
from nubes.services.dynamodb.expressions.update import apply_update
from nubes.services.dynamodb.keys import (
    check_index_keys,
    extract_key,
    index_entry_key,
    item_key,
    key_of,
    key_store_key,
    key_suffix,
    new_item_key,
    projected,
    ttl_expiry,
    ttl_key,
)
from nubes.services.dynamodb.prepare import Prepared
from nubes.services.dynamodb.tables import (
    INDEXES,
    ITEMS,
    TTL,
    Table,
    all_indexes,
    current_stream,
    key_names,
    write_facts,
)
from nubes.services.dynamodb.types import (
    MAX_ITEM_SIZE,
    Item,
    check_item_size,
    dump_item,
    equal,
    invalid_parameter,
    item_size,
    load_item,
    validate_item,
    validation,
)
from nubes.storage.base import Txn

SERVICE_IDENTITY = {"PrincipalId": "dynamodb.amazonaws.com", "Type": "Service"}


class Effects:
    """What a transaction did that matters after commit (a plain class with
    slots: one is made for every request)."""

    __slots__ = ("metered", "now", "region", "streams", "usage")

    def __init__(self, now: float, region: str, metered: bool = True) -> None:
        self.now = now
        self.region = region
        #: stream ARNs that got records (their consumers are woken after commit)
        self.streams: set[str] = set()
        #: capacity units consumed, by table name (ReturnConsumedCapacity)
        self.usage: dict[str, float] = {}
        #: whether the request asked for ConsumedCapacity (single-item
        #: operations skip sizing items when it did not)
        self.metered = metered

    def charge(self, table: Table, units: float) -> None:
        """Count capacity units against a table."""
        name = table["TableName"]
        self.usage[name] = self.usage.get(name, 0.0) + units


def write_units(*items: Item | None) -> float:
    """Write units: 1 per KB of the larger of the old and new item (at least 1)."""
    size = max((item_size(i) for i in items if i is not None), default=0)
    return float(max(1, math.ceil(size / 1024)))


def read_units(item: Item | None, consistent: bool) -> float:
    """Read units: 1 per 4 KB (at least 1), half that for eventually consistent reads."""
    size = item_size(item) if item is not None else 0
    return max(1, math.ceil(size / 4096)) * (1.0 if consistent else 0.5)


def to_wire_safe(value: Any) -> Any:
    """A value with bytes as base64 text, for error members the wire layer
    dumps without the model (CancellationReasons, Item)."""
    import base64

    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {k: to_wire_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_wire_safe(v) for v in value]
    return value


def condition_failed(old: Item | None, return_old: bool) -> AwsError:
    """ConditionalCheckFailedException, with the old item if asked for."""
    fields = {"Item": to_wire_safe(old)} if return_old and old is not None else None
    return AwsError("ConditionalCheckFailedException", "The conditional request failed", 400, fields=fields)


def read_item(txn: Txn, table: Table, key: Item) -> Item | None:
    """The stored item with this primary key."""
    raw = txn.get(ITEMS, item_key(table, key))
    return None if raw is None else load_item(raw)


def stream_record(table: Table, stream: dict[str, Any], old: Item | None, new: Item | None, effects: Effects, service: bool) -> dict[str, Any]:
    """A DynamoDB Streams record for one modification (its SequenceNumber is
    the log position, filled in when read)."""
    keys = extract_key(table, new if new is not None else old)  # type: ignore[arg-type]
    view = stream["view"]
    body: dict[str, Any] = {"ApproximateCreationDateTime": int(effects.now), "Keys": keys, "StreamViewType": view}
    size = item_size(keys)
    if new is not None and view in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES"):
        body["NewImage"] = new
        size += item_size(new)
    if old is not None and view in ("OLD_IMAGE", "NEW_AND_OLD_IMAGES"):
        body["OldImage"] = old
        size += item_size(old)
    body["SizeBytes"] = size
    record: dict[str, Any] = {
        "eventID": uuid.uuid4().hex,
        "eventName": "INSERT" if old is None else ("REMOVE" if new is None else "MODIFY"),
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": effects.region,
        "dynamodb": body,
    }
    if service:
        record["userIdentity"] = SERVICE_IDENTITY
    return record


def store_item(txn: Txn, table: Table, old: Item | None, new: Item | None, effects: Effects, *, service: bool = False,
               stored: bytes | None = None) -> bool:  # fmt: skip
    """Replace ``old`` by ``new`` (None: absent) with index, TTL and stream
    upkeep; False (and nothing written) when nothing changes. ``stored`` is
    ``dump_item(new)`` if the caller has it already."""
    if old is None and new is None:
        return False
    if old is not None and new is not None and equal({"M": old}, {"M": new}):
        return False
    reference = new if new is not None else old
    assert reference is not None
    key = item_key(table, reference)
    if new is None:
        txn.delete(ITEMS, key)
    else:
        txn.put(ITEMS, key, dump_item(new) if stored is None else stored)
    for index in all_indexes(table):
        old_entry = index_entry_key(table, index, old) if old is not None else None
        new_entry = index_entry_key(table, index, new) if new is not None else None
        if old_entry is not None and old_entry != new_entry:
            txn.delete(INDEXES, old_entry)
        if new_entry is not None and new is not None:
            txn.put(INDEXES, new_entry, dump_item(projected(table, index, new)))
    old_expiry, new_expiry = ttl_expiry(table, old), ttl_expiry(table, new)
    if old_expiry is not None and old_expiry != new_expiry:
        txn.delete(TTL, ttl_key(table, old_expiry, reference))
    if new_expiry is not None and new is not None:
        txn.put(TTL, ttl_key(table, new_expiry, new), key_suffix(table, new))
    stream = current_stream(table)
    if stream is not None:
        record = stream_record(table, stream, old, new, effects, service)
        txn.append(stream["log"], dump_item(record))
        effects.streams.add(stream["arn"])
    return True


def check_new_item(table: Table, item: Item, stored: bytes | None = None) -> bytes:
    """Key, index key and size checks of an item about to be written
    (``stored``: its ``dump_item``, whose length bounds its size); returns
    the item's store key."""
    key = new_item_key(table, item)
    check_index_keys(table, item)
    # The stored JSON is never shorter than DynamoDB's size of the item (names
    # and strings are quoted, numbers have at least as many characters as
    # their size in bytes, binary is base64), so most items skip the walk.
    if stored is None or len(stored) > MAX_ITEM_SIZE:
        check_item_size(item)
    return key


def _return_values(params: dict[str, Any], allowed: tuple[str, ...]) -> str:
    mode = params.get("ReturnValues") or "NONE"
    if mode not in allowed:
        if allowed == ("NONE", "ALL_OLD"):
            raise validation("ReturnValues can only be ALL_OLD or NONE")
        raise validation(f"ReturnValues can only be {', '.join(allowed[:-1])} or {allowed[-1]}")
    return mode


def _check(prepared: Prepared, old: Item | None, params: dict[str, Any]) -> None:
    if prepared.condition is None:
        return
    if not evaluate(prepared.condition, old or {}, prepared.bindings, "ConditionExpression"):
        raise condition_failed(old, params.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD")


def writes_blind(table: Table, effects: Effects) -> bool:
    """Whether unconditional writes to this table can replace items without
    reading them first: no capacity to measure, no index, TTL or stream upkeep
    depends on the old item."""
    return not effects.metered and write_facts(table).plain


def _blind_write(table: Table, prepared: Prepared, mode: str, effects: Effects) -> bool:
    # ... and the request has no condition and wants no old values back
    return mode == "NONE" and prepared.condition is None and writes_blind(table, effects)


def new_item(params: dict[str, Any]) -> tuple[Item, bytes]:
    """A PutItem's validated item and its stored form: pure work, done before
    the write transaction (which holds the store's writer) and only once
    however often the transaction is retried."""
    item = validate_item(params["Item"])
    return item, dump_item(item)


def put_item(txn: Txn, table: Table, params: dict[str, Any], prepared: Prepared, effects: Effects,
             validated: tuple[Item, bytes] | None = None) -> dict[str, Any]:  # fmt: skip
    """PutItem inside ``txn`` (``validated``: :func:`new_item` of the params)."""
    mode = _return_values(params, ("NONE", "ALL_OLD"))
    item, stored = new_item(params) if validated is None else validated
    key = check_new_item(table, item, stored)
    if _blind_write(table, prepared, mode, effects):
        txn.put(ITEMS, key, stored)
        return {}
    raw = txn.get(ITEMS, key)
    old = None if raw is None else load_item(raw)
    _check(prepared, old, params)
    if effects.metered:
        effects.charge(table, write_units(old, item))
    store_item(txn, table, old, item, effects, stored=stored)
    return {"Attributes": old} if mode == "ALL_OLD" and old is not None else {}


def delete_item(txn: Txn, table: Table, params: dict[str, Any], prepared: Prepared, effects: Effects) -> dict[str, Any]:
    """DeleteItem inside ``txn``."""
    mode = _return_values(params, ("NONE", "ALL_OLD"))
    store_key = key_store_key(table, params["Key"])
    if _blind_write(table, prepared, mode, effects):
        txn.delete(ITEMS, store_key)
        return {}
    raw = txn.get(ITEMS, store_key)
    old = None if raw is None else load_item(raw)
    _check(prepared, old, params)
    if effects.metered:
        effects.charge(table, write_units(old))
    store_item(txn, table, old, None, effects)
    return {"Attributes": old} if mode == "ALL_OLD" and old is not None else {}


def check_update_keys(table: Table, prepared: Prepared) -> None:
    """An update may not touch key attributes (checked before anything is read,
    as DynamoDB validates the request before evaluating its condition)."""
    if prepared.update is None:
        return
    hash_key, range_key = key_names(table["KeySchema"])
    for path in prepared.update.action_paths():
        name = prepared.bindings.resolve(path)[0]
        if name in (hash_key, range_key):
            raise invalid_parameter(f"Cannot update attribute {name}. This attribute is part of the key")


def updated_item(table: Table, key: Item, old: Item | None, prepared: Prepared) -> tuple[Item, set[str]]:
    """The item an update produces (with the key attributes kept) and the
    top-level attributes it touched."""
    base = dict(old) if old is not None else dict(key)
    if prepared.update is None:
        return base, set()
    check_update_keys(table, prepared)
    return apply_update(prepared.update, base, prepared.bindings, exists=old is not None)


def only_removes(prepared: Prepared) -> bool:
    """An update that only removes things: on a missing item it creates nothing."""
    update = prepared.update
    return update is not None and not update.set and not update.add


def update_item(txn: Txn, table: Table, params: dict[str, Any], prepared: Prepared, effects: Effects) -> dict[str, Any]:
    """UpdateItem inside ``txn``."""
    mode = _return_values(params, ("NONE", "ALL_OLD", "UPDATED_OLD", "ALL_NEW", "UPDATED_NEW"))
    key = key_of(table, params["Key"])
    check_update_keys(table, prepared)
    old = read_item(txn, table, key)
    _check(prepared, old, params)
    new, _ = updated_item(table, key, old, prepared)
    if old is None and only_removes(prepared):
        effects.charge(table, 1.0)
        return {}
    check_index_keys(table, new)
    check_item_size(new, update=True)
    if effects.metered:
        effects.charge(table, write_units(old, new))
    store_item(txn, table, old, new, effects)
    if mode == "ALL_OLD":
        return {"Attributes": old} if old else {}
    if mode == "ALL_NEW":
        return {"Attributes": new}
    if mode in ("UPDATED_OLD", "UPDATED_NEW"):
        # only what the actions addressed, down to nested paths, before or after
        if prepared.update is None:
            return {}
        paths = [prepared.bindings.resolve(path) for path in prepared.update.action_paths()]
        picked = project((old or {}) if mode == "UPDATED_OLD" else new, paths)
        return {"Attributes": picked} if picked else {}
    return {}


def get_item(txn: Txn, table: Table, params: dict[str, Any], prepared: Prepared, effects: Effects,
             *, as_stored: bool = False) -> dict[str, Any]:  # fmt: skip
    """GetItem inside a read transaction. With ``as_stored`` (and no
    projection) the item is its stored JSON as an ``orjson.Fragment``: the
    stored form of an item is the JSON of its AttributeValue map as DynamoDB
    sends it (binary as base64, numbers canonical), so the response can embed
    it without decoding and re-encoding it."""
    raw = txn.get(ITEMS, key_store_key(table, params["Key"]))
    if as_stored and prepared.projection is None and raw is not None:
        if effects.metered:
            effects.charge(table, read_units(load_item(raw), bool(params.get("ConsistentRead"))))
        return {"Item": orjson.Fragment(raw)}
    item = None if raw is None else load_item(raw)
    if effects.metered:
        effects.charge(table, read_units(item, bool(params.get("ConsistentRead"))))
    if item is None:
        return {}
    if prepared.projection is not None:
        item = project(item, prepared.projection)
    return {"Item": item}
