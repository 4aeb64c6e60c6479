"""The item hot paths' shortcuts give the answers of the full paths: the size
bound that skips the 400 KB walk, writes that skip reading the old item, and
the per-table key memo."""

from __future__ import annotations

import asyncio
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from nubes.app import App
from nubes.aws.errors import AwsError
from nubes.services.dynamodb.tables import primary_key
from nubes.services.dynamodb.types import MAX_ITEM_SIZE, dump_item, item_size, validate_item
from nubes.settings import Settings

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_relaxed = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=300)

_numbers = st.decimals(allow_nan=False, allow_infinity=False, min_value=Decimal("-1e30"), max_value=Decimal("1e30"),
                       places=None).map(lambda d: format(d.normalize(), "f"))  # fmt: skip
_scalars = st.one_of(
    st.builds(lambda s: {"S": s}, st.text(max_size=20)),
    st.builds(lambda n: {"N": n}, _numbers),
    st.builds(lambda b: {"B": b}, st.binary(max_size=20)),
    st.builds(lambda b: {"BOOL": b}, st.booleans()),
    st.just({"NULL": True}),
    st.builds(lambda s: {"SS": sorted(s)}, st.sets(st.text(max_size=8), min_size=1, max_size=4)),
    st.builds(lambda s: {"BS": sorted(s)}, st.sets(st.binary(max_size=8), min_size=1, max_size=4)),
    st.builds(lambda s: {"NS": sorted(s)}, st.sets(st.integers(-(10**12), 10**12).map(str), min_size=1, max_size=4)),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.builds(lambda v: {"L": v}, st.lists(inner, max_size=4)),
        st.builds(lambda m: {"M": m}, st.dictionaries(st.text(min_size=1, max_size=6), inner, max_size=4)),
    ),
    max_leaves=12,
)
_items = st.dictionaries(st.text(min_size=1, max_size=10), _values, max_size=6)


@_relaxed
@given(_items)
def test_stored_json_is_never_shorter_than_dynamodb_size(item: dict[str, Any]) -> None:
    normalised = validate_item(item)
    assert len(dump_item(normalised)) >= item_size(normalised)


def _run(body: Any) -> None:
    async def main() -> None:
        app = App(Settings(data_dir=Path(tempfile.mkdtemp(prefix="ddb-fast-"))))
        await app.start()
        try:
            await body(app)
        finally:
            await app.stop()

    asyncio.run(main())


async def _create(app: App, name: str, **extra: Any) -> None:
    await app.call("dynamodb", "CreateTable", {
        "TableName": name, "BillingMode": "PAY_PER_REQUEST",
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "N"}],
        **extra,
    })  # fmt: skip


def test_items_at_the_size_limit() -> None:
    async def body(app: App) -> None:
        await _create(app, "limits")
        # pk + "é"*? : names count their bytes, a non-ASCII string its UTF-8 bytes
        base = {"pk": {"S": "p"}, "sk": {"N": "1"}}
        fixed = item_size({**base, "v": {"S": ""}})
        fits = {**base, "v": {"S": "é" * ((MAX_ITEM_SIZE - fixed) // 2)}}
        assert item_size(fits) == MAX_ITEM_SIZE
        await app.call("dynamodb", "PutItem", {"TableName": "limits", "Item": fits})
        over = {**base, "v": {"S": "é" * ((MAX_ITEM_SIZE - fixed) // 2) + "a"}}
        with pytest.raises(AwsError) as exc:
            await app.call("dynamodb", "PutItem", {"TableName": "limits", "Item": over})
        assert exc.value.message == "Item size has exceeded the maximum allowed size"
        binary = {**base, "v": {"B": b"\x00" * (MAX_ITEM_SIZE - fixed + 1)}}
        with pytest.raises(AwsError):
            await app.call("dynamodb", "PutItem", {"TableName": "limits", "Item": binary})
        got = await app.call("dynamodb", "GetItem", {"TableName": "limits", "Key": base})
        assert got["Item"] == fits

    _run(body)


def test_blind_writes_and_metered_writes_agree() -> None:
    async def body(app: App) -> None:
        await _create(app, "blind")
        key = {"pk": {"S": "a"}, "sk": {"N": "1"}}
        big = {**key, "v": {"S": "x" * 3000}}
        small = {**key, "w": {"N": "2"}}
        await app.call("dynamodb", "PutItem", {"TableName": "blind", "Item": big})
        # the replacement's capacity is that of the larger of old and new: the
        # old item is read when capacity is asked for
        out = await app.call("dynamodb", "PutItem", {"TableName": "blind", "Item": small,
                                                     "ReturnConsumedCapacity": "TOTAL"})  # fmt: skip
        assert out["ConsumedCapacity"] == {"TableName": "blind", "CapacityUnits": 3.0}
        await app.call("dynamodb", "PutItem", {"TableName": "blind", "Item": big})  # blind: no read
        assert (await app.call("dynamodb", "GetItem", {"TableName": "blind", "Key": key}))["Item"] == big
        out = await app.call("dynamodb", "PutItem", {"TableName": "blind", "Item": small, "ReturnValues": "ALL_OLD"})
        assert out["Attributes"] == big
        await app.call("dynamodb", "DeleteItem", {"TableName": "blind", "Key": key})  # blind delete
        assert "Item" not in await app.call("dynamodb", "GetItem", {"TableName": "blind", "Key": key})
        out = await app.call("dynamodb", "DeleteItem", {"TableName": "blind", "Key": key, "ReturnValues": "ALL_OLD"})
        assert "Attributes" not in out
        # a condition still sees the stored item
        await app.call("dynamodb", "PutItem", {"TableName": "blind", "Item": small})
        with pytest.raises(AwsError) as exc:
            await app.call("dynamodb", "PutItem", {"TableName": "blind", "Item": big,
                                                   "ConditionExpression": "attribute_not_exists(pk)"})  # fmt: skip
        assert exc.value.code == "ConditionalCheckFailedException"

    _run(body)


def test_index_ttl_and_stream_upkeep_still_read_the_old_item() -> None:
    async def body(app: App) -> None:
        await _create(
            app, "kept",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "N"},
                                  {"AttributeName": "g", "AttributeType": "S"}],
            GlobalSecondaryIndexes=[{"IndexName": "byg", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                                     "Projection": {"ProjectionType": "ALL"}}],
        )  # fmt: skip
        key = {"pk": {"S": "a"}, "sk": {"N": "1"}}
        await app.call("dynamodb", "PutItem", {"TableName": "kept", "Item": {**key, "g": {"S": "one"}}})
        await app.call("dynamodb", "PutItem", {"TableName": "kept", "Item": {**key, "g": {"S": "two"}}})

        async def by_g(value: str) -> int:
            out = await app.call("dynamodb", "Query", {"TableName": "kept", "IndexName": "byg",
                                                       "KeyConditionExpression": "g = :g",
                                                       "ExpressionAttributeValues": {":g": {"S": value}}})  # fmt: skip
            return int(out["Count"])

        assert (await by_g("one"), await by_g("two")) == (0, 1)  # the old index entry went away
        await app.call("dynamodb", "DeleteItem", {"TableName": "kept", "Key": key})
        assert await by_g("two") == 0

    _run(body)


def test_primary_key_memo_follows_the_table_uid() -> None:
    def table(uid: str, range_type: str) -> dict[str, Any]:
        return {"uid": uid, "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                         {"AttributeName": "sk", "AttributeType": range_type}]}  # fmt: skip

    first = primary_key(table("00" * 16, "N"))
    again = primary_key(table("00" * 16, "N"))
    other = primary_key(table("11" * 16, "B"))
    assert first is again
    assert (first.hash_key, first.hash_type, first.range_key, first.range_type) == ("pk", "S", "sk", "N")
    assert first.prefix == bytes(16) and first.names == {"pk", "sk"}
    assert other.range_type == "B" and other.prefix == b"\x11" * 16


def test_batch_writes_blind_and_metered() -> None:
    async def body(app: App) -> None:
        await _create(app, "batch")
        keys = [{"pk": {"S": f"k{n}"}, "sk": {"N": str(n)}} for n in range(3)]
        big = [{**k, "v": {"S": "x" * 3000}} for k in keys]
        await app.call("dynamodb", "BatchWriteItem", {"RequestItems": {"batch": [{"PutRequest": {"Item": i}} for i in big]}})
        out = await app.call("dynamodb", "BatchWriteItem", {"RequestItems": {"batch": [
            {"PutRequest": {"Item": keys[0]}}, {"DeleteRequest": {"Key": keys[1]}}]},
            "ReturnConsumedCapacity": "TOTAL"})  # fmt: skip
        # capacity of each write is that of the larger of old and new: 3 + 3
        assert out["ConsumedCapacity"] == [{"TableName": "batch", "CapacityUnits": 6.0}]
        await app.call("dynamodb", "BatchWriteItem", {"RequestItems": {"batch": [
            {"DeleteRequest": {"Key": keys[2]}}, {"PutRequest": {"Item": big[1]}}]}})  # fmt: skip
        got = await app.call("dynamodb", "BatchGetItem", {"RequestItems": {"batch": {"Keys": keys}}})
        items = sorted(got["Responses"]["batch"], key=lambda i: str(i["pk"]["S"]))
        assert items == [keys[0], big[1]]
        with pytest.raises(AwsError) as exc:
            await app.call("dynamodb", "BatchWriteItem", {"RequestItems": {"batch": [
                {"PutRequest": {"Item": keys[0]}}, {"DeleteRequest": {"Key": keys[0]}}]}})  # fmt: skip
        assert exc.value.message == "Provided list of item keys contains duplicates"

    _run(body)


def test_a_malformed_item_is_refused_before_the_table_is_looked_up() -> None:
    async def body(app: App) -> None:
        # the item is validated before the write transaction: a malformed
        # value is a request error even for a table that does not exist
        with pytest.raises(AwsError) as exc:
            await app.call("dynamodb", "PutItem", {"TableName": "missing", "Item": {"pk": {"S": "a"}, "bad": {}}})
        assert exc.value.code == "ValidationException"
        assert exc.value.message.startswith("Supplied AttributeValue is empty")
        with pytest.raises(AwsError) as missing:
            await app.call("dynamodb", "PutItem", {"TableName": "missing", "Item": {"pk": {"S": "a"}}})
        assert missing.value.code == "ResourceNotFoundException"

    _run(body)
