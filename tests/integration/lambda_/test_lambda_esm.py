"""Event source mappings: SQS queues and DynamoDB streams feeding functions."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from nubes.testing.server import NubesServer

#: appends each batch (as one JSON line) to $OUT; fails items whose body is "bad"
RECORDER = """
import json, os
def handler(event, context):
    with open(os.environ["OUT"], "a") as f:
        f.write(json.dumps(event) + "\\n")
    failures = [{"itemIdentifier": r["messageId"]} for r in event["Records"]
                if r.get("body") == "bad"]
    return {"batchItemFailures": failures}
"""

STREAM_RECORDER = """
import json, os
def handler(event, context):
    with open(os.environ["OUT"], "a") as f:
        f.write(json.dumps(event) + "\\n")
"""


def _services(nubes: NubesServer) -> set[str]:
    return set(json.loads(urllib.request.urlopen(nubes.endpoint + "/_nubes/health").read())["services"])


def _batches(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def _wait(predicate: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def test_sqs_source(nubes: NubesServer, make_function: Callable[..., str], tmp_path: Path) -> None:
    if "sqs" not in _services(nubes):
        pytest.skip("SQS is not in this build")
    lam, sqs = nubes.client("lambda"), nubes.client("sqs")
    out = tmp_path / "batches.jsonl"
    name = make_function({"app.py": RECORDER}, Environment={"Variables": {"OUT": str(out)}})
    url = sqs.create_queue(QueueName=f"src-{uuid.uuid4().hex[:8]}", Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    with pytest.raises(ClientError) as err:
        lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=name, BatchSize=50)
    assert err.value.response["Error"]["Code"] == "InvalidParameterValueException"
    with pytest.raises(ClientError) as err:
        lam.create_event_source_mapping(EventSourceArn=arn + "-missing", FunctionName=name)
    assert err.value.response["Error"]["Code"] == "InvalidParameterValueException"
    mapping = lam.create_event_source_mapping(
        EventSourceArn=arn, FunctionName=name, BatchSize=20, MaximumBatchingWindowInSeconds=1,
        FunctionResponseTypes=["ReportBatchItemFailures"],
        FilterCriteria={"Filters": [{"Pattern": json.dumps({"body": {"kind": ["keep"]}})},
                                    {"Pattern": json.dumps({"body": ["bad"]})}]},
    )  # fmt: skip
    assert mapping["State"] == "Creating" and mapping["BatchSize"] == 20
    _wait(lambda: lam.get_event_source_mapping(UUID=mapping["UUID"])["State"] == "Enabled")
    bodies = [json.dumps({"kind": "keep", "i": i}) for i in range(12)] + [json.dumps({"kind": "drop"}), "bad"]
    for i in range(0, len(bodies), 10):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(n), "MessageBody": b}
                                                       for n, b in enumerate(bodies[i : i + 10])])  # fmt: skip

    def delivered() -> list[str]:
        return [r["body"] for b in _batches(out) for r in b["Records"]]

    _wait(lambda: len(delivered()) >= 13)
    got = delivered()
    assert sorted(got) == sorted([*bodies[:12], "bad"])  # the "drop" message was filtered out
    record = _batches(out)[0]["Records"][0]
    assert record["eventSource"] == "aws:sqs" and record["eventSourceARN"] == arn
    assert {"ApproximateReceiveCount", "SentTimestamp"} <= set(record["attributes"])
    # everything but the reported failure is deleted; "bad" is in flight until its visibility timeout
    _wait(lambda: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
          ["ApproximateNumberOfMessagesNotVisible"] == "1")  # fmt: skip
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0"
    _wait(lambda: lam.get_event_source_mapping(UUID=mapping["UUID"])["LastProcessingResult"] == "OK")
    lam.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)
    _wait(lambda: lam.get_event_source_mapping(UUID=mapping["UUID"])["State"] == "Disabled")
    listed = lam.list_event_source_mappings(FunctionName=name)["EventSourceMappings"]
    assert [m["UUID"] for m in listed] == [mapping["UUID"]]
    lam.delete_event_source_mapping(UUID=mapping["UUID"])
    with pytest.raises(ClientError):
        lam.get_event_source_mapping(UUID=mapping["UUID"])


def test_dynamodb_stream_source(nubes: NubesServer, make_function: Callable[..., str], tmp_path: Path) -> None:
    if not {"dynamodb", "dynamodbstreams"} <= _services(nubes):
        pytest.skip("DynamoDB is not in this build")
    lam, ddb = nubes.client("lambda"), nubes.client("dynamodb")
    out = tmp_path / "stream.jsonl"
    name = make_function({"app.py": STREAM_RECORDER}, Environment={"Variables": {"OUT": str(out)}})
    table = f"t-{uuid.uuid4().hex[:8]}"
    desc = ddb.create_table(TableName=table, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                            BillingMode="PAY_PER_REQUEST",
                            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})  # fmt: skip
    stream_arn = desc["TableDescription"]["LatestStreamArn"]
    with pytest.raises(ClientError):
        lam.create_event_source_mapping(EventSourceArn=stream_arn, FunctionName=name)  # StartingPosition required
    with pytest.raises(ClientError):  # AT_TIMESTAMP is for Kinesis, not DynamoDB streams
        lam.create_event_source_mapping(EventSourceArn=stream_arn, FunctionName=name, StartingPosition="AT_TIMESTAMP",
                                        StartingPositionTimestamp=1_700_000_000)  # fmt: skip
    ddb.put_item(TableName=table, Item={"pk": {"S": "before"}})
    mapping = lam.create_event_source_mapping(EventSourceArn=stream_arn, FunctionName=name,
                                              StartingPosition="TRIM_HORIZON", BatchSize=10)  # fmt: skip
    ddb.put_item(TableName=table, Item={"pk": {"S": "after"}, "n": {"N": "1"}})
    ddb.delete_item(TableName=table, Key={"pk": {"S": "before"}})

    def records() -> list[dict[str, Any]]:
        return [r for b in _batches(out) for r in b["Records"]]

    _wait(lambda: len(records()) >= 3)
    got = records()
    assert [(r["eventName"], r["dynamodb"]["Keys"]["pk"]["S"]) for r in got] == [
        ("INSERT", "before"), ("INSERT", "after"), ("REMOVE", "before")]  # fmt: skip
    assert got[1]["dynamodb"]["NewImage"] == {"pk": {"S": "after"}, "n": {"N": "1"}}
    assert got[0]["eventSourceARN"] == stream_arn and got[0]["eventSource"] == "aws:dynamodb"
    assert isinstance(got[0]["dynamodb"]["ApproximateCreationDateTime"], float | int)
    lam.delete_event_source_mapping(UUID=mapping["UUID"])


def test_deleting_the_table_delivers_what_the_batching_window_held(
    nubes: NubesServer, make_function: Callable[..., str], tmp_path: Path
) -> None:
    """A deleted table's stream is closed: records waiting for a long batching
    window go to the function then, not never (the shard gets nothing more)."""
    if not {"dynamodb", "dynamodbstreams"} <= _services(nubes):
        pytest.skip("DynamoDB is not in this build")
    lam, ddb = nubes.client("lambda"), nubes.client("dynamodb")
    out = tmp_path / "closing.jsonl"
    name = make_function({"app.py": STREAM_RECORDER}, Environment={"Variables": {"OUT": str(out)}})
    table = f"t-{uuid.uuid4().hex[:8]}"
    desc = ddb.create_table(TableName=table, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                            BillingMode="PAY_PER_REQUEST",
                            StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"})  # fmt: skip
    mapping = lam.create_event_source_mapping(
        EventSourceArn=desc["TableDescription"]["LatestStreamArn"], FunctionName=name,
        StartingPosition="TRIM_HORIZON", BatchSize=100, MaximumBatchingWindowInSeconds=300,
    )  # fmt: skip
    _wait(lambda: lam.get_event_source_mapping(UUID=mapping["UUID"])["State"] == "Enabled")
    for key in ("a", "b"):
        ddb.put_item(TableName=table, Item={"pk": {"S": key}})
    time.sleep(1.0)  # read into the window, which would hold them for 300 s
    assert _batches(out) == []
    ddb.delete_table(TableName=table)
    _wait(lambda: len(_batches(out)) == 1, timeout=30)
    assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in _batches(out)[0]["Records"]] == ["a", "b"]
    lam.delete_event_source_mapping(UUID=mapping["UUID"])

POISONED = """
import json, os
def handler(event, context):
    keys = [r["dynamodb"]["Keys"]["pk"]["S"] for r in event["Records"]]
    with open(os.environ["OUT"], "a") as f:
        f.write(json.dumps(keys) + "\\n")
    if "poison" in keys:
        raise ValueError("poison")
"""


def test_dynamodb_stream_bisect_and_on_failure(nubes: NubesServer, make_function: Callable[..., str],
                                               tmp_path: Path) -> None:  # fmt: skip
    if not {"dynamodb", "dynamodbstreams", "sqs"} <= _services(nubes):
        pytest.skip("DynamoDB or SQS is not in this build")
    lam, ddb, sqs = nubes.client("lambda"), nubes.client("dynamodb"), nubes.client("sqs")
    out = tmp_path / "calls.jsonl"
    name = make_function({"app.py": POISONED}, Environment={"Variables": {"OUT": str(out)}})
    url = sqs.create_queue(QueueName=f"ddb-fail-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    table = f"t-{uuid.uuid4().hex[:8]}"
    desc = ddb.create_table(TableName=table, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                            BillingMode="PAY_PER_REQUEST",
                            StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"})  # fmt: skip
    for key in ("a", "poison", "b"):
        ddb.put_item(TableName=table, Item={"pk": {"S": key}})
    stream_arn = desc["TableDescription"]["LatestStreamArn"]
    lam.create_event_source_mapping(EventSourceArn=stream_arn, FunctionName=name, StartingPosition="TRIM_HORIZON",
                                    BatchSize=10, BisectBatchOnFunctionError=True, MaximumRetryAttempts=1,
                                    DestinationConfig={"OnFailure": {"Destination": queue_arn}})  # fmt: skip
    deadline = time.time() + 20
    messages: list[dict[str, Any]] = []
    while time.time() < deadline and not messages:
        messages = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", [])
    assert messages, "no OnFailure record"
    record = json.loads(messages[0]["Body"])
    assert record["requestContext"]["condition"] == "RetryAttemptsExhausted"
    info = record["DDBStreamBatchInfo"]
    assert info["batchSize"] == 1 and info["streamArn"] == stream_arn
    assert record["responseContext"]["functionError"] == "Unhandled"
    assert lam.list_event_source_mappings(FunctionName=name)["EventSourceMappings"][0]["LastProcessingResult"] in (
        "OK", "PROBLEM: Function call failed")  # fmt: skip
    _wait(lambda: ["b"] in [json.loads(line) for line in out.read_text().splitlines()])
    calls = [json.loads(line) for line in out.read_text().splitlines()]
    assert calls[0] == ["a", "poison", "b"] and ["a"] in calls and ["poison"] in calls


def test_sqs_fifo_failure_holds_the_rest_of_its_group(nubes: NubesServer, make_function: Callable[..., str],
                                                     tmp_path: Path) -> None:  # fmt: skip
    if "sqs" not in _services(nubes):
        pytest.skip("SQS is not in this build")
    lam, sqs = nubes.client("lambda"), nubes.client("sqs")
    out = tmp_path / "fifo.jsonl"
    name = make_function({"app.py": RECORDER}, Environment={"Variables": {"OUT": str(out)}})
    url = sqs.create_queue(QueueName=f"src-{uuid.uuid4().hex[:8]}.fifo",
                           Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true",
                                       "VisibilityTimeout": "30"})["QueueUrl"]  # fmt: skip
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    entries = [("g1", "one"), ("g1", "bad"), ("g1", "three"), ("g2", "four")]
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": body, "MessageGroupId": group}
                                                  for i, (group, body) in enumerate(entries)])  # fmt: skip
    lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=name, BatchSize=10,
                                    FunctionResponseTypes=["ReportBatchItemFailures"])  # fmt: skip
    _wait(lambda: sum(len(b["Records"]) for b in _batches(out)) >= 4)

    def counts() -> tuple[str, str]:
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        return attrs["ApproximateNumberOfMessages"], attrs["ApproximateNumberOfMessagesNotVisible"]

    _wait(lambda: counts() == ("0", "2"))  # "bad" and "three" wait; "one" and "four" are done

