"""Table records: validation of CreateTable/UpdateTable input, the stored
record, and the TableDescription DynamoDB returns.

A table record lives in ``dynamodb.tables`` under ``pack(region, name)``; its
``uid`` (16 random bytes, hex) prefixes every item, index and TTL entry of the
table, so a dropped and re-created table never sees old data.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

from nubes.aws.errors import AwsError
from nubes.aws.protocol.values import require
from nubes.services.dynamodb.types import invalid_parameter, validation
from nubes.storage.base import Txn
from nubes.storage.keys import pack

TABLES = "dynamodb.tables"
ITEMS = "dynamodb.items"
INDEXES = "dynamodb.index"
TTL = "dynamodb.ttl"
TOKENS = "dynamodb.tokens"
#: streams of deleted tables, readable for 24 hours, under ``pack(region, name, label)``
RETIRED_STREAMS = "dynamodb.streams.retired"
#: how long a disabled stream (and its records) stays readable
STREAM_RETENTION_SECONDS = 24 * 3600
MAX_GSI = 20
MAX_LSI = 5

Table = dict[str, Any]


@lru_cache(maxsize=1024)
def table_key(region: str, name: str) -> bytes:
    """Where a table's record is stored (memoised: every item operation asks)."""
    return pack(region, name)


@lru_cache(maxsize=1024)
def _decode(raw: bytes) -> Table:
    table: Table = orjson.loads(raw)
    return table


def load_table(txn: Txn, region: str, name: str) -> Table | None:
    """The table record, or None. Parses are memoised by the stored bytes (a
    pure function of them), so the hot path pays a lookup, not a JSON parse;
    callers treat the record as read-only and copy what they change."""
    raw = txn.get(TABLES, table_key(region, name))
    return None if raw is None else _decode(raw)


def save_table(txn: Txn, region: str, table: Table) -> None:
    """Store a table record."""
    txn.put(TABLES, table_key(region, table["TableName"]), orjson.dumps(table))


def not_found(name: str | None = None) -> AwsError:
    """ResourceNotFoundException as DynamoDB words it."""
    message = "Requested resource not found"
    if name is not None:
        message += f": Table: {name} not found"
    return AwsError("ResourceNotFoundException", message, 400)


_NAME = re.compile(r"[a-zA-Z0-9_.-]+")


@lru_cache(maxsize=1024)
def _name_problem(value: str) -> str | None:
    # memoised: every item operation checks its TableName
    if len(value) < 3:
        return "Member must have length greater than or equal to 3"
    if len(value) > 255:
        return "Member must have length less than or equal to 255"
    if not _NAME.fullmatch(value):
        return "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"
    return None


def check_name(value: str, field: str) -> None:
    """Table and index names: 3-255 characters of ``[a-zA-Z0-9_.-]``."""
    problem = _name_problem(value)
    if problem is not None:
        raise validation(f"1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: {problem}")


_TAG_PUNCTUATION = frozenset("_.:/=+-@")


def _tag_text_ok(text: str) -> bool:
    # AWS's tag pattern: Unicode letters, separators and numbers, and _.:/=+-@
    return all(ch.isalnum() or ch.isspace() or ch in _TAG_PUNCTUATION for ch in text)


def check_tags(tags: dict[str, str]) -> dict[str, str]:
    """Tag keys (1-128) and values (0-256) with AWS's allowed characters."""
    pattern = "Member must satisfy regular expression pattern: ^([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*)$"
    for key, value in tags.items():
        if not key or len(key) > 128 or not _tag_text_ok(key) or key.lower().startswith("aws:"):
            raise validation(f"1 validation error detected: Value '{key}' at 'tags.member.key' failed to satisfy constraint: {pattern}")
        if len(value) > 256 or not _tag_text_ok(value):
            raise validation(f"1 validation error detected: Value '{value}' at 'tags.member.value' failed to satisfy constraint: {pattern}")
    if len(tags) > 50:
        raise validation("One or more parameter values were invalid: Too many tags")
    return tags


def table_location(region: str, name: str) -> tuple[str, str]:
    """(region, table name) of a TableName parameter, which may be a table ARN."""
    if name.startswith("arn:"):
        parts = name.split(":", 5)
        if len(parts) == 6 and parts[2] == "dynamodb" and parts[5].startswith("table/") and parts[5].count("/") == 1:
            return parts[3], parts[5][len("table/") :]
        raise validation(f"Invalid TableArn: Invalid ResourceArn provided as input {name}")
    check_name(name, "tableName")
    return region, name


@lru_cache(maxsize=1024)
def _plain_table_key(region: str, name: str) -> bytes | None:
    # memoised: every item operation names its table; ARNs and bad names
    # (None) take table_location's way
    if name.startswith("arn:") or _name_problem(name) is not None:
        return None
    return table_key(region, name)


def require_table(txn: Txn, region: str, name: str, *, describe: bool = False) -> Table:
    """The table record or ResourceNotFoundException (``name`` may be an ARN)."""
    key = _plain_table_key(region, name)
    if key is None:
        region, name = table_location(region, name)
        key = table_key(region, name)
    raw = txn.get(TABLES, key)
    table = None if raw is None else _decode(raw)
    if table is None or table.get("TableStatus") == "DELETING":
        raise not_found(name if describe else None)
    return table


def uid_bytes(table: Table) -> bytes:
    """The 16-byte prefix of everything stored for this table."""
    return primary_key(table).prefix


@dataclass(frozen=True, slots=True)
class PrimaryKey:
    """What every item operation needs of a table and can never change while
    the table lives: its key attributes, their types and its store prefix."""

    hash_key: str
    hash_type: str
    range_key: str | None
    range_type: str | None
    #: the table's uid as bytes: the prefix of its items, index and TTL entries
    prefix: bytes
    #: the key attribute names
    names: frozenset[str]


#: PrimaryKey by table uid: a memo, not state (a uid's key schema and key
#: attribute types are fixed at CreateTable; UpdateTable cannot redefine them)
_PRIMARY_KEYS: dict[str, PrimaryKey] = {}


def primary_key(table: Table) -> PrimaryKey:
    """The table's :class:`PrimaryKey` (computed once per table uid)."""
    found = _PRIMARY_KEYS.get(table["uid"])
    if found is None:
        hash_key, range_key = key_names(table["KeySchema"])
        types = {d["AttributeName"]: d["AttributeType"] for d in table["AttributeDefinitions"]}
        found = PrimaryKey(hash_key, types[hash_key], range_key, None if range_key is None else types[range_key],
                           bytes.fromhex(table["uid"]), frozenset(n for n in (hash_key, range_key) if n is not None))  # fmt: skip
        if len(_PRIMARY_KEYS) >= 4096:
            _PRIMARY_KEYS.clear()
        _PRIMARY_KEYS[table["uid"]] = found
    return found


@dataclass(frozen=True, slots=True)
class WriteFacts:
    """What a single-item write asks of a table record besides its key: the
    answers of a few lookups, made once per record instead of per request."""

    #: the table has a global or local secondary index
    indexed: bool
    #: no stream, index or enabled TTL: nothing but the item itself changes on
    #: a write, so an unconditional write may replace it without reading it
    plain: bool


#: WriteFacts by record identity (the record is kept with them, so its id is
#: never reused while the entry lives): records are read-only once loaded
#: (:func:`load_table`), and a changed table is a new record
_WRITE_FACTS: dict[int, tuple[Table, WriteFacts]] = {}


def write_facts(table: Table) -> WriteFacts:
    """The table record's :class:`WriteFacts` (computed once per record)."""
    entry = _WRITE_FACTS.get(id(table))
    if entry is not None and entry[0] is table:
        return entry[1]
    indexed = bool(table.get("GlobalSecondaryIndexes") or table.get("LocalSecondaryIndexes"))
    ttl = bool((table.get("TTL") or {}).get("Enabled"))
    facts = WriteFacts(indexed, not indexed and not ttl and current_stream(table) is None)
    if len(_WRITE_FACTS) >= 1024:
        _WRITE_FACTS.clear()
    _WRITE_FACTS[id(table)] = (table, facts)
    return facts


# -- schema helpers ------------------------------------------------------------------


def key_names(key_schema: list[dict[str, str]]) -> tuple[str, str | None]:
    """(partition key name, sort key name or None)."""
    hash_key = next(k["AttributeName"] for k in key_schema if k["KeyType"] == "HASH")
    range_key = next((k["AttributeName"] for k in key_schema if k["KeyType"] == "RANGE"), None)
    return hash_key, range_key


def find_index(table: Table, name: str) -> tuple[str, dict[str, Any]] | None:
    """(``GSI`` or ``LSI``, index record) for an index name."""
    for kind, field in (("GSI", "GlobalSecondaryIndexes"), ("LSI", "LocalSecondaryIndexes")):
        for index in table.get(field) or []:
            if index["IndexName"] == name:
                return kind, index
    return None


def all_indexes(table: Table) -> list[dict[str, Any]]:
    """Every secondary index record of the table."""
    return [*(table.get("GlobalSecondaryIndexes") or []), *(table.get("LocalSecondaryIndexes") or [])]


def _check_key_schema(schema: list[dict[str, str]], defined: dict[str, str], where: str) -> None:
    if not schema or len(schema) > 2:
        raise validation(f"1 validation error detected: Value at '{where}keySchema' failed to satisfy constraint: Member must have length less than or equal to 2")
    kinds = [k["KeyType"] for k in schema]
    if kinds[0] != "HASH" or (len(kinds) == 2 and kinds[1] != "RANGE"):
        raise validation("Invalid KeySchema: The first KeySchemaElement is not a HASH key type" if kinds[0] != "HASH" else "Invalid KeySchema: The second KeySchemaElement is not a RANGE key type")
    if len(schema) == 2 and schema[0]["AttributeName"] == schema[1]["AttributeName"]:
        raise validation("Both the Hash Key and the Range Key element in the KeySchema have the same name")
    missing = [k["AttributeName"] for k in schema if k["AttributeName"] not in defined]
    if missing:
        raise invalid_parameter(
            "Some index key attributes are not defined in AttributeDefinitions. "
            f"Keys: [{', '.join(missing)}], AttributeDefinitions: [{', '.join(defined)}]"
        )


def _check_projection(projection: dict[str, Any] | None, index_name: str) -> dict[str, Any]:
    projection = dict(projection or {})
    kind = projection.get("ProjectionType")
    if kind is None:
        raise invalid_parameter("Unknown ProjectionType: null")
    non_key = projection.get("NonKeyAttributes")
    if kind != "INCLUDE" and non_key:
        raise invalid_parameter(
            "ProjectionType is " + kind + ", but NonKeyAttributes is specified"
        )
    if kind == "INCLUDE" and not non_key:
        raise invalid_parameter("ProjectionType is INCLUDE, but NonKeyAttributes is not specified")
    return projection


def _throughput(spec: dict[str, Any] | None, billing: str) -> dict[str, Any]:
    if billing == "PAY_PER_REQUEST":
        return {"ReadCapacityUnits": 0, "WriteCapacityUnits": 0, "NumberOfDecreasesToday": 0}
    return {
        "ReadCapacityUnits": (spec or {}).get("ReadCapacityUnits", 0),
        "WriteCapacityUnits": (spec or {}).get("WriteCapacityUnits", 0),
        "NumberOfDecreasesToday": 0,
    }


def _billing(params: dict[str, Any]) -> str:
    billing = params.get("BillingMode") or "PROVISIONED"
    throughput = params.get("ProvisionedThroughput")
    if billing == "PROVISIONED" and throughput is None:
        raise invalid_parameter("ReadCapacityUnits and WriteCapacityUnits must both be specified when BillingMode is PROVISIONED")
    if billing == "PAY_PER_REQUEST" and throughput is not None:
        raise invalid_parameter("Neither ReadCapacityUnits nor WriteCapacityUnits can be specified when BillingMode is PAY_PER_REQUEST")
    return billing


def build_index(spec: dict[str, Any], table_arn: str, billing: str, defined: dict[str, str], kind: str) -> dict[str, Any]:
    """A stored index record from a CreateTable/UpdateTable index spec."""
    name = spec["IndexName"]
    check_name(name, "indexName")
    _check_key_schema(spec["KeySchema"], defined, "")
    record: dict[str, Any] = {
        "IndexName": name,
        "KeySchema": spec["KeySchema"],
        "Projection": _check_projection(spec.get("Projection"), name),
        "IndexArn": f"{table_arn}/index/{name}",
    }
    if kind == "GSI":
        if billing == "PROVISIONED" and spec.get("ProvisionedThroughput") is None:
            raise invalid_parameter(f"ProvisionedThroughput should not be null for index: {name}")
        record["ProvisionedThroughput"] = _throughput(spec.get("ProvisionedThroughput"), billing)
    return record


def _check_lsi(table_schema: list[dict[str, str]], index: dict[str, Any]) -> None:
    table_hash, table_range = key_names(table_schema)
    index_hash, index_range = key_names(index["KeySchema"])
    if table_range is None:
        raise invalid_parameter("Table KeySchema does not have a range key, which is required when specifying a LocalSecondaryIndex")
    if index_hash != table_hash or index_range is None:
        raise invalid_parameter(
            f"Index KeySchema does not have the same leading hash key as table KeySchema for index: "
            f"{index['IndexName']}. index hash key: {index_hash}, table hash key: {table_hash}"
        )


def stream_arn(table_arn: str, label: str) -> str:
    """``<table arn>/stream/<label>``."""
    return f"{table_arn}/stream/{label}"


def _label(now: float) -> str:
    return dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


def new_stream(table: Table, view_type: str | None, now: float, taken: Collection[str] = ()) -> dict[str, Any]:
    """A stream record for a table whose stream is being enabled. Its label
    (hence its ARN) differs from every label in ``taken``: the table's earlier
    streams and those of a deleted table of the same name, still readable."""
    if view_type not in ("KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES"):
        raise invalid_parameter("You must specify a StreamViewType when enabling a stream")
    label = _label(now)
    while label in taken:  # labels have millisecond resolution
        now += 0.001
        label = _label(now)
    return {
        "label": label,
        "arn": stream_arn(table["TableArn"], label),
        "view": view_type,
        "created": now,
        "enabled": True,
        "log": f"dynamodb.stream.{table['uid']}.{label}",
        "shard": f"shardId-{int(now * 1000):020d}-{table['uid'][:8]}",
    }


def disable_stream(stream: dict[str, Any], last: int, now: float) -> dict[str, Any]:
    """The record of a stream closed at ``now`` whose log ends at ``last``: its
    shard gets an ending sequence number and it expires 24 hours later."""
    return {**stream, "enabled": False, "disabled_at": now, "ending": last}


def stream_expired(stream: dict[str, Any], now: float) -> bool:
    """Whether a disabled stream's 24 hours of readability are over."""
    disabled_at = stream.get("disabled_at")
    return disabled_at is not None and now >= disabled_at + STREAM_RETENTION_SECONDS


def create_record(params: dict[str, Any], arn: str, now: float, taken_labels: Collection[str] = ()) -> Table:
    """Validate CreateTable input and build the table record (its stream label
    is none of ``taken_labels``)."""
    definitions = params.get("AttributeDefinitions") or []
    defined = {d["AttributeName"]: d["AttributeType"] for d in definitions}
    if len(defined) != len(definitions):
        seen: set[str] = set()
        for d in definitions:
            if d["AttributeName"] in seen:
                raise invalid_parameter(f"Duplicate AttributeName in AttributeDefinitions: {d['AttributeName']}")
            seen.add(d["AttributeName"])
    require(params, "KeySchema")  # botocore's newer models no longer require it
    schema = params["KeySchema"]
    _check_key_schema(schema, defined, "")
    billing = _billing(params)
    gsis = [build_index(g, arn, billing, defined, "GSI") for g in params.get("GlobalSecondaryIndexes") or []]
    lsis = [build_index(i, arn, billing, defined, "LSI") for i in params.get("LocalSecondaryIndexes") or []]
    for lsi in lsis:
        _check_lsi(schema, lsi)
    if len(gsis) > MAX_GSI or len(lsis) > MAX_LSI:
        raise invalid_parameter("GlobalSecondaryIndex count exceeds the per-table limit of 20" if len(gsis) > MAX_GSI else "Too many local secondary indexes")
    names = [i["IndexName"] for i in (*gsis, *lsis)]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise invalid_parameter(f"Duplicate index name: {duplicates[0]}")
    used = {k["AttributeName"] for s in [schema, *(i["KeySchema"] for i in (*gsis, *lsis))] for k in s}
    if set(defined) != used:
        raise invalid_parameter(
            "Number of attributes in KeySchema does not exactly match number of attributes defined in AttributeDefinitions"
        )
    uid = uuid.uuid4()
    table: Table = {
        "uid": uid.hex,
        "TableName": params["TableName"],
        "TableArn": arn,
        "TableId": str(uid),
        "KeySchema": schema,
        "AttributeDefinitions": params["AttributeDefinitions"],
        "TableStatus": "ACTIVE",
        "CreationDateTime": now,
        "BillingMode": billing,
        "ProvisionedThroughput": _throughput(params.get("ProvisionedThroughput"), billing),
        "GlobalSecondaryIndexes": gsis,
        "LocalSecondaryIndexes": lsis,
        "DeletionProtectionEnabled": bool(params.get("DeletionProtectionEnabled")),
        "TableClass": params.get("TableClass") or "STANDARD",
        "Tags": check_tags({t["Key"]: t["Value"] for t in params.get("Tags") or []}),
        "streams": [],
        "TTL": None,
    }
    sse = params.get("SSESpecification") or {}
    if sse.get("Enabled"):
        table["SSE"] = {"Status": "ENABLED", "SSEType": sse.get("SSEType") or "KMS",
                        "KMSMasterKeyArn": sse.get("KMSMasterKeyId") or f"arn:aws:kms:{arn.split(':')[3]}:{arn.split(':')[4]}:alias/aws/dynamodb"}  # fmt: skip
    spec = params.get("StreamSpecification")
    if spec and spec.get("StreamEnabled"):
        table["streams"].append(new_stream(table, spec.get("StreamViewType"), now, taken_labels))
    return table


def current_stream(table: Table) -> dict[str, Any] | None:
    """The enabled stream of a table, if any."""
    streams = table.get("streams") or []
    if streams and streams[-1]["enabled"]:
        stream: dict[str, Any] = streams[-1]
        return stream
    return None


def describe(
    table: Table, item_count: int = 0, size: int = 0, index_stats: dict[str, tuple[int, int]] | None = None
) -> dict[str, Any]:
    """The TableDescription DynamoDB returns (counts and sizes are approximate,
    as DynamoDB's own are)."""
    stats = index_stats or {}
    created = dt.datetime.fromtimestamp(table["CreationDateTime"], dt.UTC)
    out: dict[str, Any] = {
        "AttributeDefinitions": table["AttributeDefinitions"],
        "TableName": table["TableName"],
        "KeySchema": table["KeySchema"],
        "TableStatus": table["TableStatus"],
        "CreationDateTime": created,
        "ProvisionedThroughput": table["ProvisionedThroughput"],
        "TableSizeBytes": size,
        "ItemCount": item_count,
        "TableArn": table["TableArn"],
        "TableId": table["TableId"],
        "DeletionProtectionEnabled": table["DeletionProtectionEnabled"],
        "TableClassSummary": {"TableClass": table["TableClass"]},
    }
    if table["BillingMode"] == "PAY_PER_REQUEST":
        out["BillingModeSummary"] = {"BillingMode": "PAY_PER_REQUEST", "LastUpdateToPayPerRequestDateTime": created}
    if table["GlobalSecondaryIndexes"]:
        out["GlobalSecondaryIndexes"] = [
            {**g, "IndexStatus": "ACTIVE", "IndexSizeBytes": stats.get(g["IndexName"], (0, 0))[1],
             "ItemCount": stats.get(g["IndexName"], (0, 0))[0]}
            for g in table["GlobalSecondaryIndexes"]
        ]
    if table["LocalSecondaryIndexes"]:
        out["LocalSecondaryIndexes"] = [
            {**i, "IndexSizeBytes": stats.get(i["IndexName"], (0, 0))[1], "ItemCount": stats.get(i["IndexName"], (0, 0))[0]}
            for i in table["LocalSecondaryIndexes"]
        ]
    if table.get("SSE"):
        out["SSEDescription"] = table["SSE"]
    stream = current_stream(table)
    if stream is not None:
        out["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["view"]}
    if table.get("streams"):
        latest = table["streams"][-1]
        out["LatestStreamLabel"] = latest["label"]
        out["LatestStreamArn"] = latest["arn"]
    return out
