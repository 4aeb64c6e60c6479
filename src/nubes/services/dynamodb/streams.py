"""The DynamoDB Streams API over store logs: one log per table stream, one
shard per stream, sequence numbers derived from log positions."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import Any

import orjson

from nubes.aws.errors import AwsError
from nubes.services.dynamodb.tables import (
    RETIRED_STREAMS,
    STREAM_RETENTION_SECONDS,
    TABLES,
    Table,
    disable_stream,
    load_table,
    stream_expired,
)
from nubes.services.dynamodb.types import load_record, validation
from nubes.storage.base import Txn
from nubes.storage.keys import pack

RETENTION_SECONDS = STREAM_RETENTION_SECONDS
ITERATOR_SECONDS = 15 * 60
_SEQUENCE_BASE = 10**20
MAX_RECORDS = 1000
_PAGE_BYTES = 1024 * 1024


def sequence_number(position: int) -> str:
    """The SequenceNumber of the record at a log position (21 digits, ascending)."""
    return str(_SEQUENCE_BASE + position)


def position_of(sequence: str) -> int:
    """The log position of a SequenceNumber."""
    if not sequence.isdigit() or int(sequence) <= _SEQUENCE_BASE:
        raise validation(f"Invalid SequenceNumber: {sequence}")
    return int(sequence) - _SEQUENCE_BASE


def _stream_not_found(arn: str) -> AwsError:
    return AwsError("ResourceNotFoundException", f"Requested resource not found: Stream: {arn} not found", 400)


def _retired_key(region: str, name: str, label: str) -> bytes:
    return pack(region, name, label)


def retire_streams(txn: Txn, region: str, table: Table, now: float) -> None:
    """Keep a deleted table's streams readable: each moves, disabled, to
    ``RETIRED_STREAMS`` with what DescribeStream needs of the table, its
    records stay in their log (deleting the table writes none) until it expires."""
    for stream in table.get("streams") or []:
        if stream_expired(stream, now):
            txn.drop_log(stream["log"])
            continue
        if stream["enabled"]:
            stream = disable_stream(stream, txn.log_bounds(stream["log"])[1], now)
        doc = {"TableName": table["TableName"], "KeySchema": table["KeySchema"], "stream": stream}
        txn.put(RETIRED_STREAMS, _retired_key(region, table["TableName"], stream["label"]), orjson.dumps(doc))


def retired_labels(txn: Txn, region: str, name: str) -> set[str]:
    """Labels of the streams of deleted tables named ``name`` (expired or not:
    a new stream's ARN must not repeat one a consumer may still hold)."""
    return {orjson.loads(raw)["stream"]["label"] for _, raw in txn.scan(RETIRED_STREAMS, prefix=pack(region, name))}


def _retired(txn: Txn, region: str, name: str, label: str, now: float) -> tuple[Table, dict[str, Any]] | None:
    raw = txn.get(RETIRED_STREAMS, _retired_key(region, name, label))
    if raw is None:
        return None
    doc = orjson.loads(raw)
    if stream_expired(doc["stream"], now):
        return None
    return {"TableName": doc["TableName"], "KeySchema": doc["KeySchema"]}, doc["stream"]


def find_stream(txn: Txn, arn: str, now: float) -> tuple[Table, dict[str, Any]]:
    """The table (or what is kept of a deleted one) and stream record of a
    stream ARN that is still readable at ``now``."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or "/stream/" not in parts[5]:
        raise validation(f"Invalid StreamArn: {arn}")
    region = parts[3]
    resource = parts[5].split("/")
    if len(resource) != 4 or resource[0] != "table" or resource[2] != "stream":
        raise _stream_not_found(arn)
    name, label = resource[1], resource[3]
    table = load_table(txn, region, name)
    if table is not None:
        for stream in table.get("streams") or []:
            if stream["arn"] == arn and not stream_expired(stream, now):
                return table, stream
    found = _retired(txn, region, name, label, now)
    if found is not None and found[1]["arn"] == arn:
        return found
    raise _stream_not_found(arn)


def _stream_entries(txn: Txn, region: str, wanted: str | None, now: float) -> list[dict[str, str]]:
    """ListStreams entries of live and deleted tables, by table name and label."""
    if wanted is not None:
        table = load_table(txn, region, wanted)
        live = [] if table is None else [table]
        retired_prefix = pack(region, wanted)
    else:
        live = [orjson.loads(raw) for _, raw in txn.scan(TABLES, prefix=pack(region))]
        retired_prefix = pack(region)
    found = [(t["TableName"], s) for t in live for s in t.get("streams") or []]
    for _, raw in txn.scan(RETIRED_STREAMS, prefix=retired_prefix):
        doc = orjson.loads(raw)
        found.append((doc["TableName"], doc["stream"]))
    entries = [
        {"StreamArn": stream["arn"], "TableName": name, "StreamLabel": stream["label"]}
        for name, stream in found
        if not stream_expired(stream, now)
    ]
    entries.sort(key=lambda e: (e["TableName"], e["StreamLabel"]))
    return entries


def list_streams(txn: Txn, region: str, params: dict[str, Any], now: float) -> dict[str, Any]:
    """ListStreams: every readable stream of the region's tables (or of one
    table name), including those of tables deleted less than 24 hours ago."""
    entries = _stream_entries(txn, region, params.get("TableName"), now)
    start = params.get("ExclusiveStartStreamArn")
    if start is not None:
        resource = start.split(":", 5)[-1].split("/") if start.startswith("arn:") else []
        if len(resource) != 4 or resource[0] != "table" or resource[2] != "stream":
            raise validation(f"Invalid ExclusiveStartStreamArn: {start} is not a stream ARN")
        # entries are in (table name, label) order, so a page resumes after
        # its last stream even when that stream has expired since
        after = (resource[1], resource[3])
        entries = [e for e in entries if (e["TableName"], e["StreamLabel"]) > after]
    limit = params.get("Limit") or 100
    if limit > 100:  # the model has no maximum; DynamoDB Streams enforces one
        raise validation(f"1 validation error detected: Value '{limit}' at 'limit' failed to satisfy constraint: "
                         "Member must have value less than or equal to 100")  # fmt: skip
    out: dict[str, Any] = {"Streams": entries[:limit]}
    if len(entries) > limit:
        out["LastEvaluatedStreamArn"] = entries[limit - 1]["StreamArn"]
    return out


def _shard(txn: Txn, stream: dict[str, Any]) -> dict[str, Any]:
    first, last = txn.log_bounds(stream["log"])
    seq_range: dict[str, str] = {"StartingSequenceNumber": sequence_number(max(first, 1))}
    if not stream["enabled"]:
        # the shard closed where the log ended then (its records may be trimmed since)
        seq_range["EndingSequenceNumber"] = sequence_number(max(stream.get("ending") or last, 1))
    return {"ShardId": stream["shard"], "SequenceNumberRange": seq_range}


def _shards(txn: Txn, stream: dict[str, Any], params: dict[str, Any]) -> list[dict[str, Any]]:
    shard_filter = params.get("ShardFilter")
    if shard_filter is not None:
        if shard_filter.get("Type") != "CHILD_SHARDS":
            raise validation("1 validation error detected: Value at 'shardFilter.type' failed to satisfy constraint: Member must satisfy enum value set: [CHILD_SHARDS]")
        if shard_filter.get("ShardId") != stream["shard"]:
            raise validation(f"Invalid ShardFilter.ShardId: {shard_filter.get('ShardId')} is not a shard of this stream")
        return []  # a nubes shard never splits: it has no children
    # one shard per stream: starting after it (or asking for none) lists nothing
    if params.get("ExclusiveStartShardId") is not None and params["ExclusiveStartShardId"] >= stream["shard"]:
        return []
    if params.get("Limit") == 0:
        return []
    return [_shard(txn, stream)]


def describe_stream(txn: Txn, params: dict[str, Any], now: float) -> dict[str, Any]:
    """DescribeStream (a deleted table's stream is DISABLED for its last 24 hours)."""
    table, stream = find_stream(txn, params["StreamArn"], now)
    return {
        "StreamDescription": {
            "StreamArn": stream["arn"],
            "StreamLabel": stream["label"],
            "StreamStatus": "ENABLED" if stream["enabled"] else "DISABLED",
            "StreamViewType": stream["view"],
            "CreationRequestDateTime": dt.datetime.fromtimestamp(stream["created"], dt.UTC),
            "TableName": table["TableName"],
            "KeySchema": table["KeySchema"],
            "Shards": _shards(txn, stream, params),
        }
    }


def _iterator(arn: str, shard: str, after: int, now: float) -> str:
    doc = orjson.dumps({"a": arn, "s": shard, "p": after, "t": now})
    return base64.urlsafe_b64encode(doc).decode("ascii")


def get_shard_iterator(txn: Txn, params: dict[str, Any], now: float) -> dict[str, Any]:
    """GetShardIterator with TRIM_HORIZON, LATEST, AT_ and AFTER_SEQUENCE_NUMBER."""
    arn = params["StreamArn"]
    _, stream = find_stream(txn, arn, now)
    if params["ShardId"] != stream["shard"]:
        raise AwsError("ResourceNotFoundException", "Requested resource not found: Shard does not exist", 400)
    kind = params["ShardIteratorType"]
    first, last = txn.log_bounds(stream["log"])
    sequence = params.get("SequenceNumber")
    if kind in ("TRIM_HORIZON", "LATEST") and sequence is not None:
        raise validation(f"Invalid ShardIteratorType: a SequenceNumber cannot be given with {kind}")
    if kind in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
        if sequence is None:
            raise validation("Must provide SequenceNumber for iterator type " + kind)
        position = position_of(sequence)
        after = position - 1 if kind == "AT_SEQUENCE_NUMBER" else position
    elif kind == "TRIM_HORIZON":
        after = max(first - 1, 0)
    else:
        after = last
    return {"ShardIterator": _iterator(arn, stream["shard"], after, now)}


def _decode_iterator(token: str) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = orjson.loads(base64.urlsafe_b64decode(token.encode("ascii")))
        _ = doc["a"], doc["s"], doc["p"], doc["t"]
        return doc
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeEncodeError):
        raise validation("Invalid ShardIterator") from None


def get_records(txn: Txn, params: dict[str, Any], now: float) -> dict[str, Any]:
    """GetRecords: records after the iterator's position, oldest first."""
    doc = _decode_iterator(params["ShardIterator"])
    if now - doc["t"] > ITERATOR_SECONDS:
        raise AwsError("ExpiredIteratorException", "Iterator expired. The iterator was created at time "
                       f"{dt.datetime.fromtimestamp(doc['t'], dt.UTC).isoformat()} while right now it is "
                       f"{dt.datetime.fromtimestamp(now, dt.UTC).isoformat()} which is further in the future than the tolerated delay of 900000 milliseconds.", 400)
    _, stream = find_stream(txn, doc["a"], now)
    limit = params.get("Limit") or MAX_RECORDS
    if limit > MAX_RECORDS:
        raise validation("1 validation error detected: Value '" + str(limit) + "' at 'limit' failed to satisfy constraint: Member must have value less than or equal to 1000")
    after = int(doc["p"])
    first, last = txn.log_bounds(stream["log"])
    after = max(after, first - 1) if first else after
    records: list[dict[str, Any]] = []
    size = 0
    for position, raw in txn.read_log(stream["log"], after=after, limit=limit):
        record = load_record(raw)
        record["dynamodb"]["SequenceNumber"] = sequence_number(position)
        records.append(record)
        after = position
        size += len(raw)
        if size > _PAGE_BYTES:
            break
    out: dict[str, Any] = {"Records": records}
    if stream["enabled"] or after < last:
        out["NextShardIterator"] = _iterator(doc["a"], doc["s"], after, now)
    return out


#: records one trim transaction drops at most (the sweep runs more until done)
TRIM_BATCH = 10_000


def _created(txn: Txn, log: str, at: int) -> tuple[int, float] | None:
    """(position, creation time) of the first record at or after ``at``."""
    rows = txn.read_log(log, after=at - 1, limit=1)
    if not rows:
        return None
    return rows[0][0], float(orjson.loads(rows[0][1])["dynamodb"]["ApproximateCreationDateTime"])


def trim_stream(txn: Txn, *, stream: dict[str, Any], now: float, limit: int = TRIM_BATCH) -> int:
    """Drop up to ``limit`` records older than 24 hours; returns how many.

    Records are in creation order (to within the second a request may wait
    for its commit), so a binary search over positions finds the first one to
    keep in a few reads, however many records the stream holds."""
    cutoff = now - RETENTION_SECONDS
    log = stream["log"]
    first, last = txn.log_bounds(log)
    if not first:
        return 0
    low, high = first, min(last + 1, first + limit)  # the first to keep lies in [low, high]
    while low < high:
        middle = (low + high) // 2
        found = _created(txn, log, middle)
        if found is None or found[0] >= high:
            high = middle
        elif found[1] >= cutoff:
            high = found[0]
        else:
            low = found[0] + 1
    return txn.trim_log(log, before=low)


def retired_streams(txn: Txn) -> list[tuple[bytes, dict[str, Any]]]:
    """(key, stream record) of every deleted table's stream still kept."""
    return [(key, orjson.loads(raw)["stream"]) for key, raw in txn.scan(RETIRED_STREAMS)]


def drop_retired(txn: Txn, key: bytes, stream: dict[str, Any]) -> None:
    """Forget an expired stream of a deleted table and its remaining records."""
    txn.drop_log(stream["log"])
    txn.delete(RETIRED_STREAMS, key)
