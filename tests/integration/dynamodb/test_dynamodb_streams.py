"""DynamoDB Streams and TTL against a real server."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError


def _create(ddb: Any, view: str) -> str:
    name = f"s-{uuid.uuid4().hex[:10]}"
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": view},
    )
    return name


def _records(streams: Any, arn: str, kind: str = "TRIM_HORIZON", **extra: Any) -> tuple[list[dict[str, Any]], str | None]:
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType=kind, **extra)["ShardIterator"]
    out = streams.get_records(ShardIterator=iterator)
    return out["Records"], out.get("NextShardIterator")


def test_one_record_per_modification_with_images(nubes: Any) -> None:
    ddb = nubes.client("dynamodb")
    streams = nubes.client("dynamodbstreams")
    name = _create(ddb, "NEW_AND_OLD_IMAGES")
    arn = ddb.describe_table(TableName=name)["Table"]["LatestStreamArn"]
    assert any(s["StreamArn"] == arn for s in streams.list_streams(TableName=name)["Streams"])
    ddb.put_item(TableName=name, Item={"id": {"S": "a"}, "v": {"N": "1"}})
    ddb.put_item(TableName=name, Item={"id": {"S": "a"}, "v": {"N": "1"}})  # no change: no record
    ddb.update_item(TableName=name, Key={"id": {"S": "a"}}, UpdateExpression="SET v = :v",
                    ExpressionAttributeValues={":v": {"N": "2"}})  # fmt: skip
    ddb.delete_item(TableName=name, Key={"id": {"S": "a"}})
    ddb.delete_item(TableName=name, Key={"id": {"S": "a"}})  # nothing to delete: no record
    records, next_iterator = _records(streams, arn)
    assert [r["eventName"] for r in records] == ["INSERT", "MODIFY", "REMOVE"]
    assert records[0]["dynamodb"]["NewImage"] == {"id": {"S": "a"}, "v": {"N": "1"}}
    assert "OldImage" not in records[0]["dynamodb"]
    assert records[1]["dynamodb"]["OldImage"]["v"] == {"N": "1"}
    assert records[1]["dynamodb"]["NewImage"]["v"] == {"N": "2"}
    assert records[2]["dynamodb"]["Keys"] == {"id": {"S": "a"}}
    sequences = [r["dynamodb"]["SequenceNumber"] for r in records]
    assert sequences == sorted(sequences, key=int)
    assert streams.get_records(ShardIterator=next_iterator)["Records"] == []
    after, _ = _records(streams, arn, "AFTER_SEQUENCE_NUMBER", SequenceNumber=sequences[0])
    assert [r["eventName"] for r in after] == ["MODIFY", "REMOVE"]
    at, _ = _records(streams, arn, "AT_SEQUENCE_NUMBER", SequenceNumber=sequences[1])
    assert [r["eventName"] for r in at] == ["MODIFY", "REMOVE"]
    latest, latest_next = _records(streams, arn, "LATEST")
    assert latest == []
    ddb.put_item(TableName=name, Item={"id": {"S": "b"}})
    assert [r["eventName"] for r in streams.get_records(ShardIterator=latest_next)["Records"]] == ["INSERT"]


def test_keys_only_view_and_disable(nubes: Any) -> None:
    ddb = nubes.client("dynamodb")
    streams = nubes.client("dynamodbstreams")
    name = _create(ddb, "KEYS_ONLY")
    arn = ddb.describe_table(TableName=name)["Table"]["LatestStreamArn"]
    ddb.put_item(TableName=name, Item={"id": {"S": "k"}, "x": {"S": "y"}})
    records, _ = _records(streams, arn)
    assert set(records[0]["dynamodb"]) >= {"Keys", "SequenceNumber", "SizeBytes", "StreamViewType"}
    assert "NewImage" not in records[0]["dynamodb"]
    with pytest.raises(ClientError) as exc:
        ddb.update_table(TableName=name, StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"})
    assert exc.value.response["Error"]["Code"] == "ValidationException"
    ddb.update_table(TableName=name, StreamSpecification={"StreamEnabled": False})
    description = streams.describe_stream(StreamArn=arn)["StreamDescription"]
    assert description["StreamStatus"] == "DISABLED"
    assert "StreamSpecification" not in ddb.describe_table(TableName=name)["Table"]


def test_ttl_deletes_as_service_in_stream(nubes: Any) -> None:
    ddb = nubes.client("dynamodb")
    streams = nubes.client("dynamodbstreams")
    name = _create(ddb, "OLD_IMAGE")
    arn = ddb.describe_table(TableName=name)["Table"]["LatestStreamArn"]
    past = str(int(time.time()) - 10)
    ddb.put_item(TableName=name, Item={"id": {"S": "old"}, "exp": {"N": past}})
    ddb.put_item(TableName=name, Item={"id": {"S": "new"}, "exp": {"N": str(int(time.time()) + 3600)}})
    ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "exp"})
    deadline = time.time() + 10
    while time.time() < deadline and "Item" in ddb.get_item(TableName=name, Key={"id": {"S": "old"}}):
        time.sleep(0.2)
    assert "Item" not in ddb.get_item(TableName=name, Key={"id": {"S": "old"}})
    assert "Item" in ddb.get_item(TableName=name, Key={"id": {"S": "new"}})
    records, _ = _records(streams, arn)
    removal = records[-1]
    assert removal["eventName"] == "REMOVE"
    assert removal["userIdentity"] == {"PrincipalId": "dynamodb.amazonaws.com", "Type": "Service"}
    assert removal["dynamodb"]["OldImage"]["exp"] == {"N": past}


def test_bad_iterator(nubes: Any) -> None:
    streams = nubes.client("dynamodbstreams")
    with pytest.raises(ClientError) as exc:
        streams.get_records(ShardIterator="not-an-iterator")
    assert exc.value.response["Error"]["Code"] == "ValidationException"


def test_binary_keys_and_tags_named_b(nubes: Any) -> None:
    ddb = nubes.client("dynamodb")
    streams = nubes.client("dynamodbstreams")
    name = f"bin-{uuid.uuid4().hex[:8]}"
    ddb.create_table(
        TableName=name, KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "B"}], BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        Tags=[{"Key": "B", "Value": "tag named like a binary"}],
    )  # fmt: skip
    assert name in ddb.list_tables()["TableNames"]
    arn = ddb.describe_table(TableName=name)["Table"]["LatestStreamArn"]
    ddb.put_item(TableName=name, Item={"k": {"B": b"\x00\xff"}, "bs": {"BS": [b"a"]}, "m": {"M": {"B": {"B": b"x"}}}})
    records, _ = _records(streams, arn)
    assert records[0]["dynamodb"]["Keys"] == {"k": {"B": b"\x00\xff"}}
    assert records[0]["dynamodb"]["NewImage"]["m"] == {"M": {"B": {"B": b"x"}}}
    assert ddb.get_item(TableName=name, Key={"k": {"B": b"\x00\xff"}})["Item"]["bs"] == {"BS": [b"a"]}


def test_stream_of_deleted_table_stays_readable(nubes: Any) -> None:
    """ScyllaDB's alternator suite lists streams after deleting their tables:
    AWS keeps them, DISABLED, for 24 hours."""
    ddb = nubes.client("dynamodb")
    streams = nubes.client("dynamodbstreams")
    name = _create(ddb, "NEW_IMAGE")
    arn = ddb.describe_table(TableName=name)["Table"]["LatestStreamArn"]
    ddb.put_item(TableName=name, Item={"id": {"S": "kept"}})
    ddb.put_item(TableName=name, Item={"id": {"S": "removed"}})
    ddb.delete_item(TableName=name, Key={"id": {"S": "removed"}})
    ddb.delete_table(TableName=name)
    assert name not in ddb.list_tables()["TableNames"]
    assert [s["StreamArn"] for s in streams.list_streams(TableName=name)["Streams"]] == [arn]
    assert arn in [s["StreamArn"] for s in streams.list_streams()["Streams"]]
    description = streams.describe_stream(StreamArn=arn)["StreamDescription"]
    assert description["StreamStatus"] == "DISABLED"
    assert "EndingSequenceNumber" in description["Shards"][0]["SequenceNumberRange"]
    records, _ = _records(streams, arn)
    assert [(r["eventName"], r["dynamodb"]["Keys"]["id"]["S"]) for r in records] == [
        ("INSERT", "kept"), ("INSERT", "removed"), ("REMOVE", "removed"),
    ]  # no REMOVE for "kept": deleting the table writes no records
    ddb.create_table(
        TableName=name, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"},
    )  # fmt: skip
    new_arn = ddb.describe_table(TableName=name)["Table"]["LatestStreamArn"]
    assert new_arn != arn
    assert [s["StreamArn"] for s in streams.list_streams(TableName=name)["Streams"]] == [arn, new_arn]
    assert streams.describe_stream(StreamArn=arn)["StreamDescription"]["StreamStatus"] == "DISABLED"
    assert streams.describe_stream(StreamArn=new_arn)["StreamDescription"]["StreamStatus"] == "ENABLED"
