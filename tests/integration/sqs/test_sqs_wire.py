"""SQS over the old query protocol (form posts, XML), through the aws CLI, and kill -9."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.parse
import urllib.request
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.parsers import QueryParser

from nubes.services.sqs.query import query_operation_model
from nubes.testing.server import NubesServer

NS = "{http://queue.amazonaws.com/doc/2012-11-05/}"


def _post(endpoint: str, params: dict[str, str]) -> tuple[int, bytes]:
    body = urllib.parse.urlencode(params)
    signed = AWSRequest(method="POST", url=endpoint + "/", data=body,
                        headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    SigV4Auth(Credentials("test", "test"), "sqs", "us-east-1").add_auth(signed)
    request = urllib.request.Request(
        endpoint + "/", data=body.encode(), headers=dict(signed.headers.items()), method="POST"
    )
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _parse(operation: str, body: bytes, status: int = 200) -> dict[str, Any]:
    """Parse the XML as an old query-protocol SDK (botocore's query parser) would."""
    op = query_operation_model(operation)
    parsed: dict[str, Any] = QueryParser().parse(
        {"body": body, "headers": {}, "status_code": status}, op.output_shape
    )
    return parsed


def test_query_protocol_round_trip(nubes: NubesServer) -> None:
    name = f"query-{uuid.uuid4().hex[:8]}"
    status, body = _post(nubes.endpoint, {
        "Action": "CreateQueue", "QueueName": name,
        "Attribute.1.Name": "VisibilityTimeout", "Attribute.1.Value": "40",
        "Tag.1.Key": "team", "Tag.1.Value": "a",
    })  # fmt: skip
    assert status == 200, body
    url = _parse("CreateQueue", body)["QueueUrl"]
    assert url.endswith(f"/000000000000/{name}")
    status, body = _post(nubes.endpoint, {
        "Action": "SendMessage", "QueueUrl": url, "MessageBody": "hi",
        "MessageAttribute.1.Name": "color", "MessageAttribute.1.Value.DataType": "String",
        "MessageAttribute.1.Value.StringValue": "red",
    })  # fmt: skip
    sent = _parse("SendMessage", body)
    assert sent["MD5OfMessageBody"] == "49f68a5c8493ec2c0bf489821c21fc3b"
    status, body = _post(nubes.endpoint, {
        "Action": "SendMessageBatch", "QueueUrl": url,
        "SendMessageBatchRequestEntry.1.Id": "e1", "SendMessageBatchRequestEntry.1.MessageBody": "b1",
        "SendMessageBatchRequestEntry.2.Id": "e2", "SendMessageBatchRequestEntry.2.MessageBody": "b2",
    })  # fmt: skip
    assert [e["Id"] for e in _parse("SendMessageBatch", body)["Successful"]] == ["e1", "e2"]
    status, body = _post(nubes.endpoint, {
        "Action": "ReceiveMessage", "QueueUrl": url, "AttributeName.1": "All",
        "MessageAttributeName.1": "All", "MaxNumberOfMessages": "10",
    })  # fmt: skip
    received = _parse("ReceiveMessage", body)["Messages"]
    assert [m["Body"] for m in received] == ["hi", "b1", "b2"]
    assert received[0]["MessageAttributes"]["color"]["StringValue"] == "red"
    assert received[0]["Attributes"]["ApproximateReceiveCount"] == "1"
    status, body = _post(nubes.endpoint, {
        "Action": "DeleteMessageBatch", "QueueUrl": url,
        "DeleteMessageBatchRequestEntry.1.Id": "d1",
        "DeleteMessageBatchRequestEntry.1.ReceiptHandle": received[0]["ReceiptHandle"],
    })  # fmt: skip
    assert _parse("DeleteMessageBatch", body)["Successful"] == [{"Id": "d1"}]
    status, body = _post(
        nubes.endpoint, {"Action": "GetQueueAttributes", "QueueUrl": url, "AttributeName.1": "All"}
    )
    attrs = _parse("GetQueueAttributes", body)["Attributes"]
    assert (
        attrs["VisibilityTimeout"] == "40" and attrs["ApproximateNumberOfMessagesNotVisible"] == "2"
    )
    status, body = _post(nubes.endpoint, {"Action": "ListQueueTags", "QueueUrl": url})
    assert _parse("ListQueueTags", body)["Tags"] == {"team": "a"}


def test_query_protocol_errors(nubes: NubesServer) -> None:
    status, body = _post(nubes.endpoint, {"Action": "GetQueueUrl", "QueueName": "does-not-exist"})
    assert status == 400
    code = ET.fromstring(body).find(f"{NS}Error/{NS}Code")
    assert code is not None and code.text == "AWS.SimpleQueueService.NonExistentQueue"
    status, body = _post(
        nubes.endpoint, {"Action": "SendMessageBatch", "QueueUrl": "x/000000000000/nope"}
    )
    assert status == 400


def test_aws_cli(nubes: NubesServer, tmp_path: Path) -> None:
    env = {**os.environ, **nubes.env_vars(), "AWS_CONFIG_FILE": str(tmp_path / "none"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}  # fmt: skip

    def aws(*args: str) -> Any:
        out = subprocess.run(
            ["aws", "sqs", *args, "--output", "json", "--endpoint-url", nubes.endpoint],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout) if out.stdout.strip() else {}

    name = f"cli-{uuid.uuid4().hex[:8]}"
    url = aws("create-queue", "--queue-name", name)["QueueUrl"]
    aws("send-message", "--queue-url", url, "--message-body", "from the cli")
    got = aws("receive-message", "--queue-url", url, "--wait-time-seconds", "1")
    assert got["Messages"][0]["Body"] == "from the cli"


def test_kill_9_durability(tmp_path: Path) -> None:
    server = NubesServer(tmp_path / "data")
    server.start()
    try:
        sqs = server.client("sqs")
        url = sqs.create_queue(QueueName="durable")["QueueUrl"]
        ids = {sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")["MessageId"] for i in range(5)}
        in_flight = sqs.receive_message(QueueUrl=url, VisibilityTimeout=2)["Messages"][0]
        server.kill()
        server.start()
        sqs = server.client("sqs")
        url = sqs.get_queue_url(QueueName="durable")["QueueUrl"]
        seen: set[str] = set()
        for _ in range(10):
            for m in sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            ).get("Messages", []):
                seen.add(m["MessageId"])
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            if seen == ids:
                break
        assert seen == ids  # the leased one came back after its visibility timeout
        assert in_flight["MessageId"] in seen
    finally:
        server.close()


@pytest.mark.parametrize("url", ["http://localhost:4566/000000000000/nope", "nope"])
def test_missing_queue_json(nubes: NubesServer, url: str) -> None:
    sqs = nubes.client("sqs")
    with pytest.raises(sqs.exceptions.QueueDoesNotExist) as err:
        sqs.send_message(QueueUrl=url, MessageBody="x")
    headers = err.value.response["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amzn-query-error"] == "AWS.SimpleQueueService.NonExistentQueue;Sender"


def test_query_protocol_empty_batch(nubes: NubesServer) -> None:
    name = f"empty-{uuid.uuid4().hex[:8]}"
    status, body = _post(nubes.endpoint, {"Action": "CreateQueue", "QueueName": name})
    url = _parse("CreateQueue", body)["QueueUrl"]
    status, body = _post(nubes.endpoint, {"Action": "SendMessageBatch", "QueueUrl": url})
    assert status == 400
    code = ET.fromstring(body).find(f"{NS}Error/{NS}Code")
    assert code is not None and code.text == "AWS.SimpleQueueService.EmptyBatchRequest"
