"""The provider in-process on a real SQLite store: stream wake-ups, TTL sweep,
stream retention, and no partial writes."""

from __future__ import annotations

import asyncio
import operator
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from nubes.app import App
from nubes.aws.errors import AwsError
from nubes.services.dynamodb import streams
from nubes.services.dynamodb.provider import DynamoDbProvider
from nubes.services.dynamodb.tables import load_table
from nubes.settings import Settings

PG_URL = os.environ.get("NUBES_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _run(tmp_path: Path, body: Callable[[App], Awaitable[None]], backend: str = "sqlite") -> None:
    """Run ``body`` against a started app on its own store (no async test plugin here)."""
    store: Any = None
    schema = f"nubes_ddb_{uuid.uuid4().hex[:10]}"
    if backend == "postgresql":
        try:
            from nubes.storage.postgres import PostgresStore

            store = PostgresStore(PG_URL, schema=schema)
        except Exception as exc:  # no server here: the SQLite runs still cover the logic
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


async def _table(app: App, name: str, **extra: Any) -> dict[str, Any]:
    out = await app.call("dynamodb", "CreateTable", {
        "TableName": name, "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}], "BillingMode": "PAY_PER_REQUEST",
        **extra,
    })  # fmt: skip
    return dict(out["TableDescription"])


def test_write_wakes_stream_consumers(tmp_path: Path) -> None:
    _run(tmp_path, _write_wakes_stream_consumers)


async def _write_wakes_stream_consumers(app: App) -> None:
    desc = await _table(
        app, "woken", StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
    )
    arn = desc["LatestStreamArn"]
    waiter = asyncio.ensure_future(app.bus.wait(f"dynamodb-stream:{arn}", 5.0))
    await asyncio.sleep(0)
    began = time.perf_counter()
    await app.call("dynamodb", "PutItem", {"TableName": "woken", "Item": {"id": {"S": "1"}}})
    assert await waiter is True
    assert time.perf_counter() - began < 1.0
    # a write that changes nothing writes no record and wakes nobody
    quiet = asyncio.ensure_future(app.bus.wait(f"dynamodb-stream:{arn}", 0.3))
    await asyncio.sleep(0)
    await app.call("dynamodb", "PutItem", {"TableName": "woken", "Item": {"id": {"S": "1"}}})
    assert await quiet is False


def test_failed_transaction_leaves_no_stream_record(tmp_path: Path) -> None:
    _run(tmp_path, _failed_transaction_leaves_no_stream_record)


async def _failed_transaction_leaves_no_stream_record(app: App) -> None:
    desc = await _table(
        app, "atomic", StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"}
    )
    with pytest.raises(AwsError) as exc:
        await app.call("dynamodb", "TransactWriteItems", {"TransactItems": [
            {"Put": {"TableName": "atomic", "Item": {"id": {"S": "a"}}}},
            {"Put": {"TableName": "atomic", "Item": {"id": {"S": "b"}}, "ConditionExpression": "attribute_exists(id)"}},
        ]})  # fmt: skip
    assert exc.value.code == "TransactionCanceledException"
    assert [r["Code"] for r in exc.value.fields["CancellationReasons"]] == [
        "None",
        "ConditionalCheckFailed",
    ]
    stream = (await app.store.read(lambda txn: load_table(txn, "us-east-1", "atomic")))["streams"][
        0
    ]  # type: ignore[index]
    assert await app.store.read(lambda txn: txn.log_bounds(stream["log"])) == (0, 0)
    assert desc["TableName"] == "atomic"
    assert (await app.call("dynamodb", "Scan", {"TableName": "atomic"}))["Count"] == 0


def test_ttl_sweep_and_stream_retention(tmp_path: Path) -> None:
    _run(tmp_path, _ttl_sweep_and_stream_retention)


async def _ttl_sweep_and_stream_retention(app: App) -> None:
    await _table(
        app,
        "ttl",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    await app.call(
        "dynamodb",
        "UpdateTimeToLive",
        {"TableName": "ttl", "TimeToLiveSpecification": {"Enabled": True, "AttributeName": "exp"}},
    )
    now = int(time.time())
    for name, expiry in (("gone", now - 5), ("kept", now + 3600), ("text", None), ("ancient", 7)):
        item: dict[str, Any] = {"id": {"S": name}}
        if expiry is not None:
            item["exp"] = {"N": str(expiry)}
        else:
            item["exp"] = {"S": "not a number"}
        await app.call("dynamodb", "PutItem", {"TableName": "ttl", "Item": item})
    provider = app.provider("dynamodb")
    assert isinstance(provider, DynamoDbProvider)
    assert await provider.sweep() in (0, 1)  # the background loop may have got there first
    ids = sorted(
        i["id"]["S"] for i in (await app.call("dynamodb", "Scan", {"TableName": "ttl"}))["Items"]
    )
    assert ids == ["ancient", "kept", "text"]  # a TTL over five years old is not an expiry
    stream = (await app.store.read(lambda txn: load_table(txn, "us-east-1", "ttl")))["streams"][0]  # type: ignore[index]
    records = await app.store.read(lambda txn: txn.read_log(stream["log"]))
    assert len(records) == 5  # four inserts and one service removal
    trimmed = await app.store.write(
        lambda txn: streams.trim_stream(txn, stream=stream, now=time.time() + 25 * 3600)
    )
    assert trimmed == 5
    assert await app.store.read(lambda txn: txn.read_log(stream["log"])) == []
    kept = await app.store.write(
        lambda txn: streams.trim_stream(txn, stream=stream, now=time.time())
    )
    assert kept == 0


def test_key_conditions_match_a_reference_model(tmp_path: Path) -> None:
    _run(tmp_path, _key_conditions_match_a_reference_model)


async def _key_conditions_match_a_reference_model(app: App) -> None:
    import random
    from decimal import Decimal

    rng = random.Random(11)
    for kind in ("N", "S", "B"):
        name = f"model-{kind}"
        await app.call("dynamodb", "CreateTable", {
            "TableName": name, "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": [{"AttributeName": "p", "KeyType": "HASH"}, {"AttributeName": "s", "KeyType": "RANGE"}],
            "AttributeDefinitions": [{"AttributeName": "p", "AttributeType": "S"}, {"AttributeName": "s", "AttributeType": kind}],
        })  # fmt: skip

        def value(kind: str = kind) -> Any:
            if kind == "N":
                return str(Decimal(rng.randint(-(10**6), 10**6)) / Decimal(10 ** rng.randint(0, 4)))
            if kind == "S":
                return "".join(rng.choice("ab\x00é😀") for _ in range(rng.randint(1, 4)))
            return bytes(rng.choice([0, 1, 255]) for _ in range(rng.randint(1, 4)))

        def ordered(v: Any, kind: str = kind) -> Any:
            return Decimal(v) if kind == "N" else (v.encode() if kind == "S" else v)

        stored: dict[Any, Any] = {}
        for _ in range(120):
            v = value()
            stored[ordered(v)] = v
            await app.call(
                "dynamodb",
                "PutItem",
                {"TableName": name, "Item": {"p": {"S": "x"}, "s": {kind: v}}},
            )
        for _ in range(60):
            a, b = sorted((value(), value()), key=ordered)
            op = rng.choice(
                ["=", "<", "<=", ">", ">=", "BETWEEN", "begins_with"]
                if kind != "N"
                else ["=", "<", "<=", ">", ">=", "BETWEEN"]
            )
            if op == "BETWEEN":
                condition = "p = :p AND s BETWEEN :a AND :b"
                values = {":p": {"S": "x"}, ":a": {kind: a}, ":b": {kind: b}}
                expected = [k for k in stored if ordered(a) <= k <= ordered(b)]
            elif op == "begins_with":
                condition = "p = :p AND begins_with(s, :a)"
                values = {":p": {"S": "x"}, ":a": {kind: a[:1]}}
                expected = [k for k in stored if k.startswith(ordered(a[:1]))]
            else:
                condition = f"p = :p AND s {op} :a"
                values = {":p": {"S": "x"}, ":a": {kind: a}}
                compare = {
                    "=": operator.eq,
                    "<": operator.lt,
                    "<=": operator.le,
                    ">": operator.gt,
                    ">=": operator.ge,
                }[op]
                expected = [k for k in stored if compare(k, ordered(a))]
            forward = rng.random() < 0.5
            out = await app.call("dynamodb", "Query", {"TableName": name, "KeyConditionExpression": condition,
                                                       "ExpressionAttributeValues": values, "ScanIndexForward": forward})  # fmt: skip
            got = [ordered(i["s"][kind]) for i in out["Items"]]
            assert got == sorted(expected, reverse=not forward), (kind, condition, values)


def test_concurrent_writes_are_serialisable(tmp_path: Path) -> None:
    _run(tmp_path, _concurrent_writes_are_serialisable)


async def _concurrent_writes_are_serialisable(app: App) -> None:
    await _table(app, "race")

    async def claim(n: int) -> bool:
        try:
            await app.call("dynamodb", "PutItem", {"TableName": "race", "Item": {"id": {"S": "lock"}, "owner": {"N": str(n)}},
                                                   "ConditionExpression": "attribute_not_exists(id)"})  # fmt: skip
            return True
        except AwsError as err:
            assert err.code == "ConditionalCheckFailedException"
            return False

    wins = await asyncio.gather(*(claim(n) for n in range(40)))
    assert sum(wins) == 1

    async def bump() -> None:
        await app.call("dynamodb", "UpdateItem", {"TableName": "race", "Key": {"id": {"S": "counter"}},
                                                  "UpdateExpression": "ADD n :one",
                                                  "ExpressionAttributeValues": {":one": {"N": "1"}}})  # fmt: skip

    await asyncio.gather(*(bump() for _ in range(60)))
    got = await app.call(
        "dynamodb", "GetItem", {"TableName": "race", "Key": {"id": {"S": "counter"}}}
    )
    assert got["Item"]["n"] == {"N": "60"}


@pytest.mark.postgres
def test_postgres_concurrent_writes_are_serialisable(tmp_path: Path) -> None:
    _run(tmp_path, _concurrent_writes_are_serialisable, "postgresql")


@pytest.mark.postgres
def test_postgres_key_conditions_and_atomic_transactions(tmp_path: Path) -> None:
    async def body(app: App) -> None:
        await _key_conditions_match_a_reference_model(app)
        await _failed_transaction_leaves_no_stream_record(app)
        await _write_wakes_stream_consumers(app)

    _run(tmp_path, body, "postgresql")


def test_create_table_without_key_schema_is_a_validation_error() -> None:
    from nubes.services.dynamodb.tables import create_record

    with pytest.raises(AwsError) as exc:
        create_record({"TableName": "nokeys", "BillingMode": "PAY_PER_REQUEST"},
                      "arn:aws:dynamodb:us-east-1:000000000000:table/nokeys", time.time())  # fmt: skip
    assert exc.value.code == "ValidationException"
    assert "Value null at 'keySchema'" in exc.value.message
