"""Table-level operations inside store transactions: create, update, delete,
list, TTL settings, tags, and the TTL sweep."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson

from nubes.aws.errors import AwsError
from nubes.services.dynamodb.items import Effects, store_item
from nubes.services.dynamodb.keys import (
    index_entry_key,
    index_prefix,
    key_suffix,
    projected,
    ttl_expiry,
    ttl_key,
)
from nubes.services.dynamodb.streams import retire_streams, retired_labels
from nubes.services.dynamodb.tables import (
    INDEXES,
    ITEMS,
    TABLES,
    TTL,
    Table,
    all_indexes,
    build_index,
    check_name,
    check_tags,
    create_record,
    current_stream,
    describe,
    disable_stream,
    load_table,
    new_stream,
    require_table,
    save_table,
    stream_expired,
    table_key,
    uid_bytes,
)
from nubes.services.dynamodb.types import (
    Item,
    dump_item,
    encode_number,
    invalid_parameter,
    load_item,
    validation,
)
from nubes.storage.base import Txn
from nubes.storage.keys import pack, prefix_end

TTL_HORIZON_SECONDS = 5 * 365 * 24 * 3600
def create_table(txn: Txn, region: str, params: dict[str, Any], arn: str, now: float) -> dict[str, Any]:
    """CreateTable."""
    name = params["TableName"]
    check_name(name, "tableName")
    if load_table(txn, region, name) is not None:
        raise AwsError("ResourceInUseException", f"Table already exists: {name}", 400)
    table = create_record(params, arn, now, retired_labels(txn, region, name))
    save_table(txn, region, table)
    return {"TableDescription": describe(table)}


def table_stats(txn: Txn, table: Table, store_table: str = ITEMS, prefix: bytes | None = None) -> tuple[int, int]:
    """(ItemCount, size in bytes) of a table or index; the size is estimated from
    a sample, as DynamoDB's own figures are approximate (refreshed every few hours)."""
    prefix = uid_bytes(table) if prefix is None else prefix
    count = txn.count(store_table, prefix=prefix)
    sample = txn.scan(store_table, prefix=prefix, limit=100)
    if not sample:
        return count, 0
    average = sum(len(value) for _, value in sample) / len(sample)
    return count, int(average * count)


def describe_table(txn: Txn, region: str, name: str) -> dict[str, Any]:
    """DescribeTable."""
    table = require_table(txn, region, name, describe=True)
    count, size = table_stats(txn, table)
    index_stats = {
        index["IndexName"]: table_stats(txn, table, INDEXES, index_prefix(table, index["IndexName"]))
        for index in all_indexes(table)
    }
    return {"Table": describe(table, count, size, index_stats)}


def list_tables(txn: Txn, region: str, params: dict[str, Any]) -> dict[str, Any]:
    """ListTables, in name order, paged."""
    limit = params.get("Limit") or 100
    start_name = params.get("ExclusiveStartTableName")
    start = table_key(region, start_name) + b"\x00" if start_name else None
    prefix = pack(region)
    rows = txn.scan(TABLES, prefix=prefix, start=start, limit=limit + 1)
    names = [orjson.loads(value)["TableName"] for _, value in rows]
    out: dict[str, Any] = {"TableNames": names[:limit]}
    if len(names) > limit:
        out["LastEvaluatedTableName"] = names[limit - 1]
    return out


def _indexable(table: Table, index: dict[str, Any], item: Item) -> bool:
    """Whether an existing item belongs in a new index: its key attributes have
    the declared types, are not empty and fit the key size limits (others are
    left out, as DynamoDB's backfill does, rather than failing the update)."""
    types = {d["AttributeName"]: d["AttributeType"] for d in table["AttributeDefinitions"]}
    for element in index["KeySchema"]:
        name = element["AttributeName"]
        value = item.get(name)
        if value is None:
            continue
        kind = next(iter(value))
        limit = 1024 if element["KeyType"] == "RANGE" else 2048
        if kind != types.get(name) or (kind in ("S", "B") and not value[kind]):
            return False
        if kind in ("S", "B") and len(value[kind].encode("utf-8") if kind == "S" else value[kind]) > limit:
            return False
    return True


def _backfill_index(txn: Txn, table: Table, index: dict[str, Any]) -> None:
    for _, raw in txn.scan(ITEMS, prefix=uid_bytes(table)):
        item = load_item(raw)
        if not _indexable(table, index, item):
            continue
        entry = index_entry_key(table, index, item)
        if entry is not None:
            txn.put(INDEXES, entry, dump_item(projected(table, index, item)))


def _index_updates(txn: Txn, table: Table, updates: list[dict[str, Any]], params: dict[str, Any]) -> None:
    definitions = {d["AttributeName"]: d["AttributeType"] for d in table["AttributeDefinitions"]}
    for new in params.get("AttributeDefinitions") or []:
        known = definitions.get(new["AttributeName"])
        if known is not None and known != new["AttributeType"]:
            raise invalid_parameter(
                "Attributes cannot be redefined. Please check that your attribute has the same type as "
                f"previously defined. Existing schema: {new['AttributeName']}:{known}, "
                f"new schema: {new['AttributeName']}:{new['AttributeType']}"
            )
        definitions[new["AttributeName"]] = new["AttributeType"]
    table["AttributeDefinitions"] = [{"AttributeName": k, "AttributeType": v} for k, v in definitions.items()]
    gsis: list[dict[str, Any]] = list(table["GlobalSecondaryIndexes"])
    if sum(1 for u in updates if u.get("Create") is not None or u.get("Delete") is not None) > 1:
        raise AwsError(
            "LimitExceededException",
            "Subscriber limit exceeded: Only 1 online index can be created or deleted simultaneously per table",
            400,
        )
    for update in updates:
        if len([k for k in ("Create", "Update", "Delete") if update.get(k) is not None]) != 1:
            raise validation(
                "One or more parameter values were invalid: a GlobalSecondaryIndexUpdate must contain exactly one "
                "of Create, Update or Delete"
            )
        if "Create" in update:
            spec = update["Create"]
            if any(i["IndexName"] == spec["IndexName"] for i in (*gsis, *table["LocalSecondaryIndexes"])):
                raise invalid_parameter(f"Index already exists: {spec['IndexName']}")
            given = {d["AttributeName"] for d in params.get("AttributeDefinitions") or []}
            missing = [k["AttributeName"] for k in spec["KeySchema"] if k["AttributeName"] not in given]
            if missing:
                raise invalid_parameter(
                    "Some index key attributes are not defined in AttributeDefinitions. "
                    f"Keys: [{', '.join(missing)}], AttributeDefinitions: [{', '.join(sorted(given))}]"
                )
            index = build_index(spec, table["TableArn"], table["BillingMode"], definitions, "GSI")
            gsis.append(index)
            table["GlobalSecondaryIndexes"] = gsis
            _backfill_index(txn, table, index)
        elif "Delete" in update:
            name = update["Delete"]["IndexName"]
            if not any(g["IndexName"] == name for g in gsis):
                raise AwsError("ResourceNotFoundException", f"Requested resource not found: Index: {name} not found", 400)
            gsis = [g for g in gsis if g["IndexName"] != name]
            txn.delete_prefix(INDEXES, index_prefix(table, name))
            table["GlobalSecondaryIndexes"] = gsis
        elif "Update" in update:
            name = update["Update"]["IndexName"]
            change = update["Update"].get("ProvisionedThroughput") or {}
            gsis = [
                {**g, "ProvisionedThroughput": {**g.get("ProvisionedThroughput", {}), **change}}
                if g["IndexName"] == name else g
                for g in gsis
            ]  # fmt: skip
    table["GlobalSecondaryIndexes"] = gsis
    # DynamoDB keeps definitions only for attributes some key schema uses
    used = {k["AttributeName"] for i in (table, *gsis, *table["LocalSecondaryIndexes"]) for k in i["KeySchema"]}
    table["AttributeDefinitions"] = [d for d in table["AttributeDefinitions"] if d["AttributeName"] in used]


def update_table(txn: Txn, region: str, params: dict[str, Any], now: float) -> dict[str, Any]:
    """UpdateTable: billing, throughput, GSIs, streams, deletion protection."""
    table = dict(require_table(txn, region, params["TableName"]))
    changes = ("AttributeDefinitions", "BillingMode", "ProvisionedThroughput", "GlobalSecondaryIndexUpdates",
               "StreamSpecification", "SSESpecification", "TableClass", "DeletionProtectionEnabled",
               "ReplicaUpdates", "OnDemandThroughput", "WarmThroughput")  # fmt: skip
    if not any(params.get(name) not in (None, []) for name in changes):
        raise validation(
            "At least one of ProvisionedThroughput, BillingMode, UpdateStreamEnabled, GlobalSecondaryIndexUpdates "
            "or SSESpecification or ReplicaUpdates is required: UpdateTable needs something to change"
        )
    table["streams"] = [dict(s) for s in table.get("streams") or []]
    if params.get("BillingMode"):
        table["BillingMode"] = params["BillingMode"]
    if params.get("ProvisionedThroughput"):
        table["ProvisionedThroughput"] = {**table["ProvisionedThroughput"], **params["ProvisionedThroughput"]}
    if params.get("DeletionProtectionEnabled") is not None:
        table["DeletionProtectionEnabled"] = params["DeletionProtectionEnabled"]
    if params.get("TableClass"):
        table["TableClass"] = params["TableClass"]
    if params.get("GlobalSecondaryIndexUpdates"):
        _index_updates(txn, table, params["GlobalSecondaryIndexUpdates"], params)
    spec = params.get("StreamSpecification")
    if spec is not None:
        stream = current_stream(table)
        if spec.get("StreamEnabled"):
            if stream is not None:
                raise validation(f"Table {table['TableName']} already has an enabled stream: {stream['arn']}")
            taken = {s["label"] for s in table["streams"]} | retired_labels(txn, region, table["TableName"])
            table["streams"] = _unexpired(txn, table["streams"], now)
            table["streams"].append(new_stream(table, spec.get("StreamViewType"), now, taken))
        else:
            if stream is None:
                raise validation(f"Table {table['TableName']} has no enabled stream: the stream is already disabled")
            table["streams"][-1] = disable_stream(stream, txn.log_bounds(stream["log"])[1], now)
    save_table(txn, region, table)
    return {"TableDescription": describe(table)}


def _unexpired(txn: Txn, table_streams: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
    """The streams still readable, dropping the logs of the others."""
    kept = []
    for stream in table_streams:
        if stream_expired(stream, now):
            txn.drop_log(stream["log"])
        else:
            kept.append(stream)
    return kept


def delete_table(txn: Txn, region: str, name: str, now: float) -> dict[str, Any]:
    """DeleteTable: the record, items, index and TTL entries. Its streams are
    disabled, not dropped: as on AWS they stay readable for 24 hours."""
    table = require_table(txn, region, name)
    if table.get("DeletionProtectionEnabled"):
        raise validation(
            "Resource cannot be deleted as it is currently protected against deletion. Disable deletion protection first."
        )
    prefix = uid_bytes(table)
    txn.delete_prefix(ITEMS, prefix)
    txn.delete_prefix(INDEXES, prefix)
    txn.delete_prefix(TTL, prefix)
    retire_streams(txn, region, table, now)
    txn.delete(TABLES, table_key(region, table["TableName"]))
    full = describe(table)
    # DynamoDB's DeleteTable answer leaves out the schema and creation time
    kept = ("TableName", "TableArn", "TableId", "ProvisionedThroughput", "BillingModeSummary", "TableSizeBytes",
            "ItemCount", "StreamSpecification", "LatestStreamLabel", "LatestStreamArn", "DeletionProtectionEnabled")  # fmt: skip
    return {"TableDescription": {**{k: full[k] for k in kept if k in full}, "TableStatus": "DELETING"}}


def continuous_backups(txn: Txn, region: str, name: str, enabled: bool | None = None) -> dict[str, Any]:
    """Describe (or with ``enabled``, set) point-in-time recovery. nubes records
    the setting so templates and SDKs that set it round-trip; restores are not
    offered (RestoreTableToPointInTime answers NotImplemented)."""
    table = require_table(txn, region, name, describe=True)
    if enabled is not None:
        table = {**table, "PointInTimeRecovery": enabled}
        save_table(txn, region, table)
    status = "ENABLED" if table.get("PointInTimeRecovery") else "DISABLED"
    return {
        "ContinuousBackupsDescription": {
            "ContinuousBackupsStatus": "ENABLED",
            "PointInTimeRecoveryDescription": {"PointInTimeRecoveryStatus": status},
        }
    }


# -- TTL ----------------------------------------------------------------------------


def update_ttl(txn: Txn, region: str, params: dict[str, Any]) -> dict[str, Any]:
    """UpdateTimeToLive: record the setting and (re)build the expiry index."""
    table = dict(require_table(txn, region, params["TableName"]))
    spec = params["TimeToLiveSpecification"]
    current = table.get("TTL")
    enabled = bool(spec["Enabled"])
    if enabled and current and current.get("Enabled"):
        if current["AttributeName"] != spec["AttributeName"]:
            raise validation(
                f"TimeToLive is active on a different AttributeName: current AttributeName is {current['AttributeName']}"
            )
        raise validation("TimeToLive is already enabled")
    if not enabled and not (current and current.get("Enabled")):
        raise validation("TimeToLive is already disabled")
    if not enabled and current and current["AttributeName"] != spec["AttributeName"]:
        raise validation(
            f"TimeToLive is active on a different AttributeName: current AttributeName is {current['AttributeName']}"
        )
    table["TTL"] = {"AttributeName": spec["AttributeName"], "Enabled": enabled}
    prefix = uid_bytes(table)
    txn.delete_prefix(TTL, prefix)
    if enabled:
        for _, raw in txn.scan(ITEMS, prefix=prefix):
            item = load_item(raw)
            expiry = ttl_expiry(table, item)
            if expiry is not None:
                txn.put(TTL, ttl_key(table, expiry, item), key_suffix(table, item))
    save_table(txn, region, table)
    return {"TimeToLiveSpecification": {"Enabled": enabled, "AttributeName": spec["AttributeName"]}}


def describe_ttl(txn: Txn, region: str, name: str) -> dict[str, Any]:
    """DescribeTimeToLive."""
    table = require_table(txn, region, name)
    ttl = table.get("TTL")
    if not ttl:
        return {"TimeToLiveDescription": {"TimeToLiveStatus": "DISABLED"}}
    status = "ENABLED" if ttl["Enabled"] else "DISABLED"
    return {"TimeToLiveDescription": {"TimeToLiveStatus": status, "AttributeName": ttl["AttributeName"]}}


def expire_items(txn: Txn, region: str, name: str, effects: Effects, limit: int = 100) -> int:
    """Delete up to ``limit`` items of one table whose TTL time has passed,
    as service deletions in the stream; returns how many."""
    table = load_table(txn, region, name)
    if table is None or not (table.get("TTL") or {}).get("Enabled"):
        return 0
    prefix = uid_bytes(table)
    end = prefix + encode_number(Decimal(int(effects.now)))
    # DynamoDB leaves alone items whose TTL lies more than five years in the past
    # (a counter or a 0 in the TTL attribute is not an expiry date)
    start = prefix + encode_number(Decimal(int(effects.now) - TTL_HORIZON_SECONDS))
    deleted = 0
    for entry_key, suffix in txn.scan(TTL, start=start, end=prefix_end(end) or end, limit=limit):
        raw = txn.get(ITEMS, prefix + suffix)
        item = load_item(raw) if raw is not None else None
        expiry = ttl_expiry(table, item)
        if item is None or expiry is None or expiry > Decimal(effects.now):
            txn.delete(TTL, entry_key)
            continue
        store_item(txn, table, item, None, effects, service=True)
        deleted += 1
    return deleted


def sweep_tables(txn: Txn) -> list[tuple[str, str, bool, list[dict[str, Any]]]]:
    """(region, name, TTL enabled, streams) of every table that needs the
    background sweep (expiring items, trimming stream records)."""
    out: list[tuple[str, str, bool, list[dict[str, Any]]]] = []
    for _, raw in txn.scan(TABLES):
        table: dict[str, Any] = orjson.loads(raw)
        region = table["TableArn"].split(":")[3]
        ttl = bool((table.get("TTL") or {}).get("Enabled"))
        if ttl or table.get("streams"):
            out.append((region, table["TableName"], ttl, table.get("streams") or []))
    return out


def tag_table(txn: Txn, arn: str, add: dict[str, str] | None = None, remove: list[str] | None = None) -> dict[str, str]:
    """Add or remove tags of the table an ARN names; returns its tags."""
    region, name = _arn_table(arn)
    table = load_table(txn, region, name)
    if table is None:
        raise AwsError("ResourceNotFoundException", f"Requested resource not found: ResourceArn: {arn} not found", 400)
    if add is None and remove is None:
        return dict(table.get("Tags") or {})
    table = dict(table)
    tags = dict(table.get("Tags") or {})
    if add is not None and not add:
        raise validation("1 validation error detected: Value '[]' at 'tags' failed to satisfy constraint: Member must have length greater than or equal to 1")
    if remove is not None and not remove:
        raise validation("1 validation error detected: Value '[]' at 'tagKeys' failed to satisfy constraint: Member must have length greater than or equal to 1")
    check_tags(add or {})
    tags.update(add or {})
    for key in remove or []:
        tags.pop(key, None)
    if len(tags) > 50:
        raise validation("One or more parameter values were invalid: Too many tags")
    table["Tags"] = tags
    save_table(txn, region, table)
    return tags


def _arn_table(arn: str) -> tuple[str, str]:
    parts = arn.split(":", 5)
    if not arn.startswith("arn:"):
        raise validation(f"Invalid TableArn: Invalid ResourceArn provided as input {arn}: ARNs must start with 'arn:'")
    if len(parts) != 6 or parts[2] != "dynamodb":
        raise AwsError("AccessDeniedException", f"Invalid ResourceArn provided as input {arn}: only DynamoDB table ARNs can be tagged", 400)
    if not parts[5].startswith("table/") or parts[5].count("/") != 1:
        raise validation(f"Invalid ResourceArn provided as input {arn}: tags belong to tables, not to their indexes or streams")
    return parts[3], parts[5].split("/")[1]
