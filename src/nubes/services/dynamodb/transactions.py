"""TransactWriteItems, TransactGetItems, BatchGetItem and BatchWriteItem.

A transaction runs in one store transaction: every condition is checked, then
every write applied; if any condition fails the function raises and the store
rolls everything back, so no partial write is ever visible.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from nubes.aws.errors import AwsError
from nubes.services.dynamodb.expressions.evaluate import evaluate, project
from nubes.services.dynamodb.items import (
    Effects,
    check_new_item,
    check_update_keys,
    only_removes,
    read_item,
    read_units,
    store_item,
    to_wire_safe,
    updated_item,
    write_units,
    writes_blind,
)
from nubes.services.dynamodb.keys import (
    check_index_keys,
    extract_key,
    item_key,
    key_of,
    key_store_key,
)
from nubes.services.dynamodb.prepare import Prepared, prepare
from nubes.services.dynamodb.tables import ITEMS, TOKENS, Table, require_table
from nubes.services.dynamodb.types import (
    Item,
    check_item_size,
    dump_item,
    load_item,
    validate_item,
    validation,
)
from nubes.storage.base import Txn
from nubes.storage.keys import pack

TOKEN_SECONDS = 600
MAX_TRANSACT = 100
MAX_BATCH_GET = 100
MAX_BATCH_WRITE = 25


@dataclass
class TransactAction:
    """One element of TransactItems, parsed."""

    kind: str  # ConditionCheck | Put | Delete | Update
    params: dict[str, Any]
    prepared: Prepared


def prepare_transact(items: list[dict[str, Any]]) -> list[TransactAction]:
    """Parse every action's expressions before touching the store."""
    actions: list[TransactAction] = []
    for entry in items:
        kinds = [k for k in ("ConditionCheck", "Put", "Delete", "Update") if entry.get(k) is not None]
        if len(kinds) != 1:
            raise validation("TransactItems can only contain one of Check, Put, Update or Delete")
        kind = kinds[0]
        params = entry[kind]
        if kind == "ConditionCheck" and not params.get("ConditionExpression"):
            raise validation("The ConditionExpression parameter is required for a ConditionCheck")
        prepared = prepare(params, condition=True, update=kind == "Update")
        actions.append(TransactAction(kind, params, prepared))
    return actions


def too_many_items() -> AwsError:
    """More than 100 actions in one transaction."""
    return validation(
        "1 validation error detected: Value at 'transactItems' failed to satisfy constraint: "
        "Member must have length less than or equal to 100"
    )


def _cancelled(reasons: list[dict[str, Any]]) -> AwsError:
    codes = ", ".join(r["Code"] for r in reasons)
    return AwsError(
        "TransactionCanceledException",
        f"Transaction cancelled, please refer cancellation reasons for specific reasons [{codes}]",
        400,
        fields={"CancellationReasons": to_wire_safe(reasons)},
    )


def _action_key(table: Table, action: TransactAction) -> Item:
    if action.kind == "Put":
        item = validate_item(action.params["Item"])
        check_new_item(table, item)
        action.params = {**action.params, "Item": item}
        return extract_key(table, item)
    return key_of(table, action.params["Key"])


def transact_write(txn: Txn, region: str, actions: list[TransactAction], effects: Effects) -> None:
    """Check all conditions, then apply all writes (or raise and write nothing)."""
    resolved: list[tuple[Table, Item, Item | None]] = []
    seen: set[bytes] = set()
    for action in actions:
        table = require_table(txn, region, action.params["TableName"])
        key = _action_key(table, action)
        check_update_keys(table, action.prepared)
        store_key = item_key(table, key)
        if store_key in seen:
            raise validation("Transaction request cannot include multiple operations on one item")
        seen.add(store_key)
        resolved.append((table, key, read_item(txn, table, key)))
    reasons: list[dict[str, Any]] = []
    failed = False
    for action, (_, _, old) in zip(actions, resolved, strict=True):
        condition = action.prepared.condition
        if condition is not None and not evaluate(condition, old or {}, action.prepared.bindings):
            reason: dict[str, Any] = {"Code": "ConditionalCheckFailed", "Message": "The conditional request failed"}
            if action.params.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and old is not None:
                reason["Item"] = old
            reasons.append(reason)
            failed = True
        else:
            reasons.append({"Code": "None"})
    if failed:
        raise _cancelled(reasons)
    for action, (table, key, old) in zip(actions, resolved, strict=True):
        if action.kind == "Put":
            effects.charge(table, 2 * write_units(old, action.params["Item"]))
            store_item(txn, table, old, action.params["Item"], effects)
        elif action.kind == "Delete":
            effects.charge(table, 2 * write_units(old))
            store_item(txn, table, old, None, effects)
        elif action.kind == "Update":
            new, _ = updated_item(table, key, old, action.prepared)
            if old is None and only_removes(action.prepared):
                continue
            check_index_keys(table, new)
            check_item_size(new, update=True)
            effects.charge(table, 2 * write_units(old, new))
            store_item(txn, table, old, new, effects)


def request_digest(params: dict[str, Any]) -> str:
    """A stable digest of a request, to tell a retry from a different request
    that reuses a ClientRequestToken."""
    return hashlib.sha256(orjson.dumps(params, default=repr, option=orjson.OPT_SORT_KEYS)).hexdigest()


def check_token(txn: Txn, region: str, token: str, digest: str, now: float) -> bool:
    """True if this token already committed the same request within 10 minutes
    (the retry succeeds without running again); raises if it was a different one."""
    raw = txn.get(TOKENS, pack(region, token))
    if raw is None:
        return False
    record = orjson.loads(raw)
    if now - record["t"] > TOKEN_SECONDS:
        return False
    if record["d"] != digest:
        raise AwsError(
            "IdempotentParameterMismatchException",
            "The request uses the same client token as a previous, but non-identical request.",
            400,
        )
    return True


def save_token(txn: Txn, region: str, token: str, digest: str, now: float) -> None:
    """Remember a committed transaction's token."""
    txn.put(TOKENS, pack(region, token), orjson.dumps({"d": digest, "t": now}))


def transact_get(txn: Txn, region: str, items: list[dict[str, Any]], effects: Effects) -> dict[str, Any]:
    """TransactGetItems: a consistent snapshot of up to 100 items."""
    responses: list[dict[str, Any]] = []
    for entry in items:
        params = entry["Get"]
        prepared = prepare(params, projection=True)
        table = require_table(txn, region, params["TableName"])
        item = read_item(txn, table, key_of(table, params["Key"]))
        effects.charge(table, 2 * read_units(item, True))
        if item is not None and prepared.projection is not None:
            item = project(item, prepared.projection)
        responses.append({"Item": item} if item is not None else {})
    return {"Responses": responses}


def batch_get(txn: Txn, region: str, request: dict[str, Any], effects: Effects, *,
              as_stored: bool = False) -> dict[str, Any]:  # fmt: skip
    """BatchGetItem: everything at once (nothing is left unprocessed below the
    16 MB response limit). With ``as_stored``, items that go out whole are
    their stored JSON as ``orjson.Fragment`` (see ``items.get_item``)."""
    total = sum(len(spec.get("Keys") or []) for spec in request.values())
    if total > MAX_BATCH_GET:
        raise validation("Too many items requested for the BatchGetItem call")
    responses: dict[str, list[Any]] = {}
    for name, spec in request.items():
        prepared = prepare(spec, projection=True)
        table = require_table(txn, region, name)
        whole = as_stored and prepared.projection is None
        found: list[Any] = []
        seen: set[bytes] = set()
        for raw_key in spec.get("Keys") or []:
            store_key = key_store_key(table, raw_key)
            if store_key in seen:
                raise validation("Provided list of item keys contains duplicates")
            seen.add(store_key)
            raw = txn.get(ITEMS, store_key)
            item = None if raw is None or (whole and not effects.metered) else load_item(raw)
            if effects.metered:
                effects.charge(table, read_units(item, bool(spec.get("ConsistentRead"))))
            if raw is None:
                continue
            if whole:
                found.append(orjson.Fragment(raw))
            else:
                item = load_item(raw) if item is None else item
                found.append(project(item, prepared.projection) if prepared.projection is not None else item)
        responses[name] = found
    return {"Responses": responses, "UnprocessedKeys": {}}


def batch_write(txn: Txn, region: str, request: dict[str, Any], effects: Effects) -> dict[str, Any]:
    """BatchWriteItem: up to 25 puts/deletes, all applied."""
    total = sum(len(entries) for entries in request.values())
    if total > MAX_BATCH_WRITE:
        raise validation(
            "1 validation error detected: Value at 'requestItems' failed to satisfy constraint: "
            "Map value must satisfy constraint: [Member must have length less than or equal to 25, "
            "Member must have length greater than or equal to 1]"
        )
    for name, entries in request.items():
        table = require_table(txn, region, name)
        blind = writes_blind(table, effects)
        seen: set[bytes] = set()
        for entry in entries:
            put = entry.get("PutRequest")
            delete = entry.get("DeleteRequest")
            if (put is None) == (delete is None):
                raise validation("Supplied AttributeValue has more than one datatypes set, must contain exactly one of the supported datatypes")
            stored = None
            if put is not None:
                item = validate_item(put["Item"])
                stored = dump_item(item)
                check_new_item(table, item, stored)
                key = extract_key(table, item)
            else:
                key = key_of(table, delete["Key"])
            store_key = item_key(table, key)
            if store_key in seen:
                raise validation("Provided list of item keys contains duplicates")
            seen.add(store_key)
            if blind:
                if stored is None:
                    txn.delete(ITEMS, store_key)
                else:
                    txn.put(ITEMS, store_key, stored)
                continue
            old = read_item(txn, table, key)
            new = item if put is not None else None
            effects.charge(table, write_units(old, new))
            store_item(txn, table, old, new, effects, stored=stored)
    return {"UnprocessedItems": {}}

