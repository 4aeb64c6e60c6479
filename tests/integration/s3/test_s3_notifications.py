"""S3 event notifications delivered to SQS, SNS, Lambda and EventBridge, in AWS's
record shape, with prefix/suffix filters and the s3:TestEvent."""

from __future__ import annotations

import io
import json
import time
import uuid
import zipfile
from typing import Any

import pytest
from botocore.exceptions import ClientError

from nubes.testing.server import NubesServer

ACCOUNT = "000000000000"


def _name(prefix: str = "bkt") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def s3(nubes: NubesServer) -> Any:
    return nubes.client("s3")


@pytest.fixture
def sqs(nubes: NubesServer) -> Any:
    return nubes.client("sqs")


def _queue(sqs: Any) -> tuple[str, str]:
    name = _name("q")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    return url, f"arn:aws:sqs:us-east-1:{ACCOUNT}:{name}"


def _receive(sqs: Any, url: str, want: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        out = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in out.get("Messages", []):
            got.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return got


def test_sqs_destination_with_filters(s3: Any, sqs: Any) -> None:
    bucket = _name()
    s3.create_bucket(Bucket=bucket)
    url, arn = _queue(sqs)
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [
        {"Id": "images", "QueueArn": arn, "Events": ["s3:ObjectCreated:*"],
         "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "in/"}, {"Name": "suffix", "Value": ".jpg"}]}}},
        {"Id": "removals", "QueueArn": arn, "Events": ["s3:ObjectRemoved:*"]},
    ]})  # fmt: skip
    test_event = _receive(sqs, url, 1)
    assert test_event[0]["Event"] == "s3:TestEvent" and test_event[0]["Bucket"] == bucket
    config = s3.get_bucket_notification_configuration(Bucket=bucket)
    assert [c["Id"] for c in config["QueueConfigurations"]] == ["images", "removals"]
    etag = s3.put_object(Bucket=bucket, Key="in/cat photo.jpg", Body=b"meow")["ETag"]
    s3.put_object(Bucket=bucket, Key="in/notes.txt", Body=b"no")
    s3.put_object(Bucket=bucket, Key="out/dog.jpg", Body=b"no")
    s3.delete_object(Bucket=bucket, Key="in/notes.txt")
    events = _receive(sqs, url, 2)
    assert len(events) == 2
    created = next(e["Records"][0] for e in events if e["Records"][0]["eventName"] == "ObjectCreated:Put")
    assert created["eventSource"] == "aws:s3" and created["eventVersion"] == "2.1"
    assert created["awsRegion"] == "us-east-1"
    assert created["s3"]["configurationId"] == "images"
    assert created["s3"]["bucket"] == {"name": bucket, "ownerIdentity": created["s3"]["bucket"]["ownerIdentity"], "arn": f"arn:aws:s3:::{bucket}"}
    assert created["s3"]["object"]["key"] == "in/cat+photo.jpg"
    assert created["s3"]["object"]["size"] == 4 and created["s3"]["object"]["eTag"] == etag.strip('"')
    assert created["eventTime"].endswith("Z") and created["s3"]["object"]["sequencer"]
    removed = next(e["Records"][0] for e in events if e["Records"][0]["eventName"] == "ObjectRemoved:Delete")
    assert removed["s3"]["object"]["key"] == "in/notes.txt" and "size" not in removed["s3"]["object"]
    assert _receive(sqs, url, 1, timeout=2) == []


def test_tagging_and_acl_events(s3: Any, sqs: Any) -> None:
    bucket = _name()
    s3.create_bucket(Bucket=bucket)
    url, arn = _queue(sqs)
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [
        {"QueueArn": arn, "Events": ["s3:ObjectTagging:*"]}]})  # fmt: skip
    _receive(sqs, url, 1)  # the test event
    s3.put_object(Bucket=bucket, Key="t", Body=b"x")
    s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={"TagSet": [{"Key": "a", "Value": "1"}]})
    s3.delete_object_tagging(Bucket=bucket, Key="t")
    names = sorted(e["Records"][0]["eventName"] for e in _receive(sqs, url, 2))
    assert names == ["ObjectTagging:Delete", "ObjectTagging:Put"]


def test_multipart_event_and_sns_destination(s3: Any, sqs: Any, nubes: NubesServer) -> None:
    sns = nubes.client("sns")
    topic = sns.create_topic(Name=_name("t"))["TopicArn"]
    url, arn = _queue(sqs)
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    bucket = _name()
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"TopicConfigurations": [
        {"TopicArn": topic, "Events": ["s3:ObjectCreated:CompleteMultipartUpload"]}]})  # fmt: skip
    first = _receive(sqs, url, 1)
    assert first[0]["Subject"] == "Amazon S3 Notification"
    assert json.loads(first[0]["Message"])["Event"] == "s3:TestEvent"
    s3.put_object(Bucket=bucket, Key="plain", Body=b"not multipart")
    uid = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=1, Body=b"part")["ETag"]
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=uid, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    envelopes = _receive(sqs, url, 1)
    record = json.loads(envelopes[0]["Message"])["Records"][0]
    assert record["eventName"] == "ObjectCreated:CompleteMultipartUpload"
    assert record["s3"]["object"]["key"] == "mp"
    assert _receive(sqs, url, 1, timeout=2) == []


def test_destination_must_exist(s3: Any, sqs: Any) -> None:
    bucket = _name()
    s3.create_bucket(Bucket=bucket)
    missing = f"arn:aws:sqs:us-east-1:{ACCOUNT}:{_name('nope')}"
    with pytest.raises(ClientError) as err:
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [
            {"QueueArn": missing, "Events": ["s3:ObjectCreated:*"]}]})  # fmt: skip
    assert err.value.response["Error"]["Code"] == "InvalidArgument"
    fifo = sqs.create_queue(QueueName=_name("f") + ".fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    with pytest.raises(ClientError) as err:
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [
            {"QueueArn": f"arn:aws:sqs:us-east-1:{ACCOUNT}:{fifo.rsplit('/', 1)[1]}", "Events": ["s3:ObjectCreated:*"]}]})  # fmt: skip
    assert err.value.response["Error"]["Code"] == "InvalidArgument"
    s3.put_bucket_notification_configuration(Bucket=bucket, SkipDestinationValidation=True, NotificationConfiguration={"QueueConfigurations": [
        {"QueueArn": missing, "Events": ["s3:ObjectCreated:*"]}]})  # fmt: skip
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")  # a failing destination never fails the write


def test_eventbridge(s3: Any, sqs: Any, nubes: NubesServer) -> None:
    events = nubes.client("events")
    bucket = _name()
    s3.create_bucket(Bucket=bucket)
    url, arn = _queue(sqs)
    rule = _name("r")
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": ["aws.s3"], "detail": {"bucket": {"name": [bucket]}}}))
    events.put_targets(Rule=rule, Targets=[{"Id": "q", "Arn": arn}])
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}})
    assert "EventBridgeConfiguration" in s3.get_bucket_notification_configuration(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="eb.txt", Body=b"12345")
    got = _receive(sqs, url, 1)
    assert got[0]["source"] == "aws.s3" and got[0]["detail-type"] == "Object Created"
    assert got[0]["detail"]["object"]["key"] == "eb.txt" and got[0]["detail"]["object"]["size"] == 5
    assert got[0]["detail"]["reason"] == "PutObject"
    assert got[0]["resources"] == [f"arn:aws:s3:::{bucket}"]


HANDLER = """
import json, os, boto3

def handler(event, context):
    boto3.client("sqs").send_message(QueueUrl=os.environ["OUT"], MessageBody=json.dumps(event))
"""


def test_lambda_destination(s3: Any, sqs: Any, nubes: NubesServer) -> None:
    lam = nubes.client("lambda")
    url, _ = _queue(sqs)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("app.py", HANDLER)
    name = _name("fn")
    fn = lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Role=f"arn:aws:iam::{ACCOUNT}:role/x",
                             Code={"ZipFile": buf.getvalue()}, Environment={"Variables": {"OUT": url}})["FunctionArn"]  # fmt: skip
    bucket = _name()
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"LambdaFunctionConfigurations": [
        {"LambdaFunctionArn": fn, "Events": ["s3:ObjectCreated:*"], "Filter": {"Key": {"FilterRules": [{"Name": "suffix", "Value": ".csv"}]}}}]})  # fmt: skip
    s3.put_object(Bucket=bucket, Key="data.csv", Body=b"a,b")
    got = _receive(sqs, url, 1, timeout=30)
    assert got[0]["Records"][0]["s3"]["object"]["key"] == "data.csv"
    assert got[0]["Records"][0]["eventName"] == "ObjectCreated:Put"
