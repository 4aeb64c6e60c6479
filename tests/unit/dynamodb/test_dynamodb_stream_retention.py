"""Streams outlive their table for 24 hours, as on AWS: after DeleteTable the
stream is DISABLED, still listed, described and readable to its last record;
then it expires. Runs the provider in-process on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from nubes.app import App
from nubes.aws.errors import AwsError
from nubes.services.dynamodb import control, streams
from nubes.services.dynamodb.provider import DynamoDbProvider
from nubes.services.dynamodb.tables import (
    RETIRED_STREAMS,
    STREAM_RETENTION_SECONDS,
    load_table,
    new_stream,
)
from nubes.settings import Settings

PG_URL = os.environ.get("NUBES_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
DAY = STREAM_RETENTION_SECONDS


def _run(tmp_path: Path, body: Callable[[App], Awaitable[None]], backend: str) -> None:
    store: Any = None
    schema = f"nubes_ddb_{uuid.uuid4().hex[:10]}"
    if backend == "postgresql":
        try:
            from nubes.storage.postgres import PostgresStore

            store = PostgresStore(PG_URL, schema=schema)
        except Exception as exc:  # no server here: the SQLite run still covers the logic
            pytest.skip(f"PostgreSQL at {PG_URL} is not reachable: {exc}")

    async def main() -> None:
        application = App(Settings(data_dir=tmp_path), store=store)
        await application.start()
        try:
            await body(application)
        finally:
            await application.stop()

    try:
        asyncio.run(main())
    finally:
        if store is not None:
            import psycopg

            with psycopg.connect(PG_URL, autocommit=True) as admin:
                admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


async def _create(app: App, name: str, view: str = "NEW_AND_OLD_IMAGES") -> str:
    out = await app.call("dynamodb", "CreateTable", {
        "TableName": name, "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}], "BillingMode": "PAY_PER_REQUEST",
        "StreamSpecification": {"StreamEnabled": True, "StreamViewType": view},
    })  # fmt: skip
    return str(out["TableDescription"]["LatestStreamArn"])


async def _read_all(app: App, arn: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every record from TRIM_HORIZON, and the last GetRecords answer."""
    shard = (await app.call("dynamodbstreams", "DescribeStream", {"StreamArn": arn}))["StreamDescription"]["Shards"][0]
    iterator = (await app.call("dynamodbstreams", "GetShardIterator", {
        "StreamArn": arn, "ShardId": shard["ShardId"], "ShardIteratorType": "TRIM_HORIZON"}))["ShardIterator"]  # fmt: skip
    records: list[dict[str, Any]] = []
    while True:
        out = await app.call("dynamodbstreams", "GetRecords", {"ShardIterator": iterator})
        records.extend(out["Records"])
        if not out["Records"] or "NextShardIterator" not in out:
            return records, out
        iterator = out["NextShardIterator"]


async def _listed(app: App, **params: Any) -> list[str]:
    return [s["StreamArn"] for s in (await app.call("dynamodbstreams", "ListStreams", params))["Streams"]]


@pytest.mark.parametrize("backend", BACKENDS)
def test_deleted_table_stream_stays_readable(tmp_path: Path, backend: str) -> None:
    _run(tmp_path, _deleted_table_stream_stays_readable, backend)


async def _deleted_table_stream_stays_readable(app: App) -> None:
    arn = await _create(app, "orders")
    await app.call("dynamodb", "PutItem", {"TableName": "orders", "Item": {"id": {"S": "a"}, "v": {"N": "1"}}})
    await app.call("dynamodb", "PutItem", {"TableName": "orders", "Item": {"id": {"S": "b"}}})
    await app.call("dynamodb", "UpdateItem", {"TableName": "orders", "Key": {"id": {"S": "a"}},
                                              "UpdateExpression": "SET v = :v",
                                              "ExpressionAttributeValues": {":v": {"N": "2"}}})  # fmt: skip
    await app.call("dynamodb", "DeleteItem", {"TableName": "orders", "Key": {"id": {"S": "b"}}})
    before, _ = await _read_all(app, arn)
    deleted = await app.call("dynamodb", "DeleteTable", {"TableName": "orders"})
    assert deleted["TableDescription"]["TableStatus"] == "DELETING"
    assert deleted["TableDescription"]["LatestStreamArn"] == arn

    with pytest.raises(AwsError) as gone:
        await app.call("dynamodb", "DescribeTable", {"TableName": "orders"})
    assert gone.value.code == "ResourceNotFoundException"
    # the table is gone; its stream is not
    assert await _listed(app) == [arn]
    assert await _listed(app, TableName="orders") == [arn]
    description = (await app.call("dynamodbstreams", "DescribeStream", {"StreamArn": arn}))["StreamDescription"]
    assert description["StreamStatus"] == "DISABLED"
    assert description["TableName"] == "orders"
    assert description["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert description["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    seq_range = description["Shards"][0]["SequenceNumberRange"]
    # the shard is closed at the last record written before the deletion
    assert seq_range["EndingSequenceNumber"] == before[-1]["dynamodb"]["SequenceNumber"]

    # all records written before the deletion, and none for the items the
    # deletion removed ("a" is still in the table when it is deleted)
    after, last = await _read_all(app, arn)
    assert after == before
    assert [r["eventName"] for r in after] == ["INSERT", "INSERT", "MODIFY", "REMOVE"]
    assert "NextShardIterator" not in last  # a closed shard read to its end
    latest = await app.call("dynamodbstreams", "GetShardIterator", {
        "StreamArn": arn, "ShardId": description["Shards"][0]["ShardId"], "ShardIteratorType": "LATEST"})  # fmt: skip
    out = await app.call("dynamodbstreams", "GetRecords", {"ShardIterator": latest["ShardIterator"]})
    assert out["Records"] == [] and "NextShardIterator" not in out


@pytest.mark.parametrize("backend", BACKENDS)
def test_recreated_table_gets_a_new_stream(tmp_path: Path, backend: str) -> None:
    _run(tmp_path, _recreated_table_gets_a_new_stream, backend)


async def _recreated_table_gets_a_new_stream(app: App) -> None:
    old = await _create(app, "again")
    await app.call("dynamodb", "PutItem", {"TableName": "again", "Item": {"id": {"S": "old"}}})
    await app.call("dynamodb", "DeleteTable", {"TableName": "again"})
    new = await _create(app, "again", "KEYS_ONLY")  # very likely within the same millisecond label
    assert new != old
    await app.call("dynamodb", "PutItem", {"TableName": "again", "Item": {"id": {"S": "new"}}})
    assert await _listed(app, TableName="again") == [old, new]
    old_records, _ = await _read_all(app, old)
    new_records, last = await _read_all(app, new)
    assert [r["dynamodb"]["Keys"]["id"]["S"] for r in old_records] == ["old"]
    assert [r["dynamodb"]["Keys"]["id"]["S"] for r in new_records] == ["new"]
    assert "NextShardIterator" in last  # the new stream is open
    statuses = [
        (await app.call("dynamodbstreams", "DescribeStream", {"StreamArn": arn}))["StreamDescription"]["StreamStatus"]
        for arn in (old, new)
    ]
    assert statuses == ["DISABLED", "ENABLED"]
    table = (await app.call("dynamodb", "DescribeTable", {"TableName": "again"}))["Table"]
    assert table["LatestStreamArn"] == new
    # paging walks both
    first = await app.call("dynamodbstreams", "ListStreams", {"TableName": "again", "Limit": 1})
    assert [s["StreamArn"] for s in first["Streams"]] == [old]
    rest = await app.call("dynamodbstreams", "ListStreams", {
        "TableName": "again", "ExclusiveStartStreamArn": first["LastEvaluatedStreamArn"]})  # fmt: skip
    assert [s["StreamArn"] for s in rest["Streams"]] == [new]


@pytest.mark.parametrize("backend", BACKENDS)
def test_deleted_table_stream_expires_after_24_hours(tmp_path: Path, backend: str) -> None:
    _run(tmp_path, _deleted_table_stream_expires_after_24_hours, backend)


async def _deleted_table_stream_expires_after_24_hours(app: App) -> None:
    arn = await _create(app, "brief")
    await app.call("dynamodb", "PutItem", {"TableName": "brief", "Item": {"id": {"S": "x"}}})
    deleted_at = time.time()
    await app.call("dynamodb", "DeleteTable", {"TableName": "brief"})
    await asyncio.sleep(0.01)
    provider = app.provider("dynamodb")
    assert isinstance(provider, DynamoDbProvider)

    def listed(now: float) -> Any:
        return app.store.read(lambda txn: streams.list_streams(txn, "us-east-1", {}, now))

    # one second before its 24 hours are up it is still there, and the sweep keeps it
    almost = deleted_at + DAY - 1
    assert [s["StreamArn"] for s in (await listed(almost))["Streams"]] == [arn]
    await provider.sweep(trim=True, now=almost)
    assert len(await app.store.read(lambda txn: txn.scan(RETIRED_STREAMS))) == 1
    described = await app.store.read(lambda txn: streams.describe_stream(txn, {"StreamArn": arn}, almost))
    assert described["StreamDescription"]["StreamStatus"] == "DISABLED"

    # at 24 hours it is gone for every operation, before the sweep runs ...
    over = deleted_at + DAY + 1
    assert (await listed(over))["Streams"] == []
    with pytest.raises(AwsError) as missing:
        await app.store.read(lambda txn: streams.describe_stream(txn, {"StreamArn": arn}, over))
    assert missing.value.code == "ResourceNotFoundException"
    log = (await app.store.read(streams.retired_streams))[0][1]["log"]
    assert await app.store.read(lambda txn: txn.log_bounds(log)) != (0, 0)
    # ... and the sweep forgets it with its records
    await provider.sweep(trim=True, now=over)
    assert await app.store.read(lambda txn: txn.scan(RETIRED_STREAMS)) == []
    assert await app.store.read(lambda txn: txn.log_bounds(log)) == (0, 0)
    # dropped for good: not even the current time finds it
    with pytest.raises(AwsError) as dropped:
        await app.call("dynamodbstreams", "DescribeStream", {"StreamArn": arn})
    assert dropped.value.code == "ResourceNotFoundException"


@pytest.mark.parametrize("backend", BACKENDS)
def test_disabled_stream_expires_after_24_hours(tmp_path: Path, backend: str) -> None:
    _run(tmp_path, _disabled_stream_expires_after_24_hours, backend)


async def _disabled_stream_expires_after_24_hours(app: App) -> None:
    first = await _create(app, "toggled")
    await app.call("dynamodb", "PutItem", {"TableName": "toggled", "Item": {"id": {"S": "1"}}})
    disabled_at = time.time()
    await app.call("dynamodb", "UpdateTable", {"TableName": "toggled", "StreamSpecification": {"StreamEnabled": False}})
    records, last = await _read_all(app, first)
    assert len(records) == 1 and "NextShardIterator" not in last
    out = await app.call("dynamodb", "UpdateTable", {"TableName": "toggled", "StreamSpecification": {
        "StreamEnabled": True, "StreamViewType": "KEYS_ONLY"}})  # fmt: skip
    second = out["TableDescription"]["LatestStreamArn"]
    assert second != first
    assert await _listed(app, TableName="toggled") == [first, second]
    later = disabled_at + DAY + 1
    shown = await app.store.read(lambda txn: streams.list_streams(txn, "us-east-1", {"TableName": "toggled"}, later))
    assert [s["StreamArn"] for s in shown["Streams"]] == [second]
    # deleting the table then (a day later) keeps only the stream still readable
    table = await app.store.read(lambda txn: load_table(txn, "us-east-1", "toggled"))
    assert table is not None
    first_log = table["streams"][0]["log"]
    assert await app.store.read(lambda txn: txn.log_bounds(first_log)) != (0, 0)
    await app.store.write(lambda txn: control.delete_table(txn, "us-east-1", "toggled", later))
    kept = await app.store.read(streams.retired_streams)
    assert [stream["arn"] for _, stream in kept] == [second]
    assert await app.store.read(lambda txn: txn.log_bounds(first_log)) == (0, 0)
    assert await _listed(app) == [second]


def test_new_stream_label_avoids_taken_labels() -> None:
    table = {"TableArn": "arn:aws:dynamodb:us-east-1:000000000000:table/t", "uid": uuid.uuid4().hex}
    now = 1_700_000_000.0
    first = new_stream(table, "KEYS_ONLY", now)
    second = new_stream(table, "KEYS_ONLY", now, {first["label"]})
    third = new_stream(table, "KEYS_ONLY", now, {first["label"], second["label"]})
    assert len({first["arn"], second["arn"], third["arn"]}) == 3
    assert first["label"] < second["label"] < third["label"]
    assert len({first["log"], second["log"], third["log"]}) == 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_trim_drops_every_expired_record_in_batches(tmp_path: Path, backend: str) -> None:
    _run(tmp_path, _trim_drops_every_expired_record_in_batches, backend)


async def _trim_drops_every_expired_record_in_batches(app: App) -> None:
    now = time.time()
    log = "dynamodb.stream.test-trim"
    # 2,345 records from more than a day ago, then 200 recent ones, each out of
    # order by a second here and there (as concurrent commits leave them)
    created = [now - DAY - 3600 + i // 7 - i % 2 for i in range(2345)] + [now - 60 + i % 3 for i in range(200)]

    def fill(txn: Any) -> None:
        for when in created:
            txn.append(log, orjson.dumps({"dynamodb": {"ApproximateCreationDateTime": int(when)}}))

    await app.store.write(fill)
    stream = {"log": log}
    batches = []
    while True:
        trimmed = await app.store.write(lambda txn: streams.trim_stream(txn, stream=stream, now=now, limit=1000))
        batches.append(trimmed)
        if not trimmed:
            break
    assert batches == [1000, 1000, 345, 0]
    first, last = await app.store.read(lambda txn: txn.log_bounds(log))
    assert (first, last) == (2346, 2545)
    # nothing old is left, nothing recent went
    assert await app.store.write(lambda txn: streams.trim_stream(txn, stream=stream, now=now)) == 0
    assert await app.store.write(lambda txn: streams.trim_stream(txn, stream=stream, now=now + DAY)) == 200
    assert await app.store.read(lambda txn: txn.log_bounds(log)) == (0, 0)


def test_list_streams_limit_is_at_most_100(tmp_path: Path) -> None:
    async def body(app: App) -> None:
        await _create(app, "limited")
        assert len(await _listed(app, Limit=100)) == 1
        with pytest.raises(AwsError) as exc:
            await app.call("dynamodbstreams", "ListStreams", {"Limit": 101})
        assert exc.value.code == "ValidationException"
        assert "less than or equal to 100" in exc.value.message

    _run(tmp_path, body, "sqlite")


def test_list_streams_pages_past_a_stream_that_expired(tmp_path: Path) -> None:
    async def body(app: App) -> None:
        arns = [await _create(app, name) for name in ("page-a", "page-b", "page-c")]
        first = await app.call("dynamodbstreams", "ListStreams", {"Limit": 1})
        assert [s["StreamArn"] for s in first["Streams"]] == arns[:1]
        assert first["LastEvaluatedStreamArn"] == arns[0]
        # the stream the page ended on goes away (deleted, then a day passes)
        deleted_at = time.time()
        await app.call("dynamodb", "DeleteTable", {"TableName": "page-a"})
        later = deleted_at + DAY + 1
        rest = await app.store.read(lambda txn: streams.list_streams(
            txn, "us-east-1", {"ExclusiveStartStreamArn": first["LastEvaluatedStreamArn"]}, later))  # fmt: skip
        assert [s["StreamArn"] for s in rest["Streams"]] == arns[1:]

    _run(tmp_path, body, "sqlite")


@pytest.mark.parametrize("start", ["kossaapaaasdafsdaasdasdasd", "arn:aws:dynamodb:us-east-1:000000000000:table/t",
                                   "arn:aws:dynamodb:us-east-1:000000000000:table/t/stream"])
def test_list_streams_rejects_a_start_that_is_no_stream_arn(tmp_path: Path, start: str) -> None:
    async def body(app: App) -> None:
        with pytest.raises(AwsError) as exc:
            await app.call("dynamodbstreams", "ListStreams", {"ExclusiveStartStreamArn": start})
        assert exc.value.code == "ValidationException"

    _run(tmp_path, body, "sqlite")
