"""FIFO ordering and deduplication, dead-letter queues and redrive, through boto3."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from nubes.testing.server import NubesServer


def _name(prefix: str = "q") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def sqs(nubes: NubesServer) -> Any:
    return nubes.client("sqs")


def _fifo(sqs: Any, **attrs: str) -> str:
    url: str = sqs.create_queue(
        QueueName=_name("f") + ".fifo", Attributes={"FifoQueue": "true", **attrs}
    )["QueueUrl"]
    return url


def test_fifo_attributes_and_rules(sqs: Any) -> None:
    url = _fifo(sqs)
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["FifoQueue"] == "true" and attrs["ContentBasedDeduplication"] == "false"
    with pytest.raises(ClientError) as err:
        sqs.send_message(QueueUrl=url, MessageBody="x", MessageDeduplicationId="d")
    assert err.value.response["Error"]["Code"] == "MissingParameter"
    with pytest.raises(ClientError) as err:
        sqs.send_message(QueueUrl=url, MessageBody="x", MessageGroupId="g")
    assert err.value.response["Error"]["Code"] == "InvalidParameterValue"
    with pytest.raises(ClientError):
        sqs.create_queue(QueueName=_name(), Attributes={"FifoQueue": "true"})  # no .fifo suffix


def test_fifo_dedup_and_sequence(sqs: Any) -> None:
    url = _fifo(sqs)
    first = sqs.send_message(
        QueueUrl=url, MessageBody="a", MessageGroupId="g", MessageDeduplicationId="d1"
    )
    dup = sqs.send_message(
        QueueUrl=url, MessageBody="a again", MessageGroupId="g", MessageDeduplicationId="d1"
    )
    assert (
        dup["MessageId"] == first["MessageId"] and dup["SequenceNumber"] == first["SequenceNumber"]
    )
    second = sqs.send_message(
        QueueUrl=url, MessageBody="b", MessageGroupId="g", MessageDeduplicationId="d2"
    )
    assert int(second["SequenceNumber"]) > int(first["SequenceNumber"])
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])[
        "Messages"
    ]
    assert [m["Body"] for m in messages] == ["a", "b"]
    assert messages[0]["Attributes"]["MessageGroupId"] == "g"
    assert messages[0]["Attributes"]["MessageDeduplicationId"] == "d1"
    assert messages[0]["Attributes"]["SequenceNumber"] == first["SequenceNumber"]


def test_fifo_content_based_dedup(sqs: Any) -> None:
    url = _fifo(sqs, ContentBasedDeduplication="true")
    a = sqs.send_message(QueueUrl=url, MessageBody="same", MessageGroupId="g")
    b = sqs.send_message(QueueUrl=url, MessageBody="same", MessageGroupId="g")
    assert a["MessageId"] == b["MessageId"]
    assert len(sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]) == 1


def test_fifo_one_batch_in_flight_per_group(sqs: Any) -> None:
    url = _fifo(sqs, ContentBasedDeduplication="true")
    for i in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=f"g1-{i}", MessageGroupId="g1")
    sqs.send_message(QueueUrl=url, MessageBody="g2-0", MessageGroupId="g2")
    first = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2, VisibilityTimeout=30)[
        "Messages"
    ]
    assert [m["Body"] for m in first] == ["g1-0", "g1-1"]
    # g1 is in flight: only g2 is available
    second = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in second] == ["g2-0"]
    assert "Messages" not in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    for m in first:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    third = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in third] == ["g1-2"]


def _dlq_pair(sqs: Any, max_receives: int = 2) -> tuple[str, str, str]:
    dlq = sqs.create_queue(QueueName=_name("dlq"))["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receives)})
    src = sqs.create_queue(QueueName=_name("src"), Attributes={"RedrivePolicy": policy})["QueueUrl"]
    return src, dlq, dlq_arn


def test_dead_letter_queue(sqs: Any) -> None:
    src, dlq, dlq_arn = _dlq_pair(sqs)
    stored = json.loads(
        sqs.get_queue_attributes(QueueUrl=src, AttributeNames=["RedrivePolicy"])["Attributes"][
            "RedrivePolicy"
        ]
    )
    assert stored == {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2}
    assert sqs.list_dead_letter_source_queues(QueueUrl=dlq)["queueUrls"] == [src]
    sent = sqs.send_message(QueueUrl=src, MessageBody="poison")
    for _ in range(2):
        assert (
            sqs.receive_message(QueueUrl=src, VisibilityTimeout=0)["Messages"][0]["Body"]
            == "poison"
        )
    assert "Messages" not in sqs.receive_message(QueueUrl=src)  # third receive moves it
    dead = sqs.receive_message(QueueUrl=dlq, AttributeNames=["All"])["Messages"][0]
    assert dead["MessageId"] == sent["MessageId"] and dead["Body"] == "poison"
    assert dead["Attributes"]["DeadLetterQueueSourceArn"].endswith(src.rsplit("/", 1)[1])


def test_redrive_policy_validation(sqs: Any) -> None:
    with pytest.raises(ClientError) as err:
        sqs.create_queue(QueueName=_name(), Attributes={"RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": "arn:aws:sqs:us-east-1:000000000000:missing", "maxReceiveCount": 1})})  # fmt: skip
    assert err.value.response["Error"]["Code"] == "InvalidParameterValue"
    dlq = sqs.create_queue(
        QueueName=_name(),
        Attributes={"RedriveAllowPolicy": json.dumps({"redrivePermission": "denyAll"})},
    )
    arn = sqs.get_queue_attributes(QueueUrl=dlq["QueueUrl"], AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    with pytest.raises(ClientError):
        sqs.create_queue(QueueName=_name(), Attributes={"RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": arn, "maxReceiveCount": 1})})  # fmt: skip
    with pytest.raises(ClientError):
        sqs.create_queue(
            QueueName=_name(), Attributes={"RedrivePolicy": json.dumps({"maxReceiveCount": 1})}
        )


def test_message_move_task(sqs: Any) -> None:
    src, dlq, dlq_arn = _dlq_pair(sqs, max_receives=1)
    for i in range(3):
        sqs.send_message(QueueUrl=src, MessageBody=f"m{i}")
    for _ in range(2):
        sqs.receive_message(QueueUrl=src, MaxNumberOfMessages=10, VisibilityTimeout=0)
    attrs = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])
    assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "3"
    handle = sqs.start_message_move_task(SourceArn=dlq_arn)["TaskHandle"]
    assert handle
    deadline = time.monotonic() + 5
    task: dict[str, Any] = {}
    while time.monotonic() < deadline:
        task = sqs.list_message_move_tasks(SourceArn=dlq_arn)["Results"][0]
        if task["Status"] != "RUNNING":
            break
        time.sleep(0.05)
    assert task["Status"] == "COMPLETED" and task["ApproximateNumberOfMessagesMoved"] == 3
    bodies = sorted(
        m["Body"] for m in sqs.receive_message(QueueUrl=src, MaxNumberOfMessages=10)["Messages"]
    )
    assert bodies == ["m0", "m1", "m2"]
    with pytest.raises(ClientError):
        sqs.start_message_move_task(SourceArn=sqs.get_queue_attributes(
            QueueUrl=src, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])  # fmt: skip


def test_fifo_dead_letter_queue_keeps_group(sqs: Any) -> None:
    dlq = _fifo(sqs)
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    src = _fifo(
        sqs, RedrivePolicy=json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 1})
    )
    sqs.send_message(
        QueueUrl=src, MessageBody="p", MessageGroupId="grp", MessageDeduplicationId="1"
    )
    assert sqs.receive_message(QueueUrl=src, VisibilityTimeout=0)["Messages"][0]["Body"] == "p"
    assert "Messages" not in sqs.receive_message(QueueUrl=src)
    dead = sqs.receive_message(QueueUrl=dlq, AttributeNames=["All"])["Messages"][0]
    assert dead["Body"] == "p" and dead["Attributes"]["MessageGroupId"] == "grp"
    with pytest.raises(ClientError):  # a standard queue cannot be a FIFO queue's DLQ
        std = sqs.create_queue(QueueName=_name())["QueueUrl"]
        std_arn = sqs.get_queue_attributes(QueueUrl=std, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        _fifo(sqs, RedrivePolicy=json.dumps({"deadLetterTargetArn": std_arn, "maxReceiveCount": 1}))


def test_cancel_message_move_task(sqs: Any) -> None:
    src, dlq, dlq_arn = _dlq_pair(sqs, max_receives=1)
    sqs.send_message_batch(
        QueueUrl=src, Entries=[{"Id": str(i), "MessageBody": str(i)} for i in range(10)]
    )
    for _ in range(3):
        sqs.receive_message(QueueUrl=src, MaxNumberOfMessages=10, VisibilityTimeout=0)
    handle = sqs.start_message_move_task(SourceArn=dlq_arn, MaxNumberOfMessagesPerSecond=1)[
        "TaskHandle"
    ]
    with pytest.raises(ClientError):  # one active task per source
        sqs.start_message_move_task(SourceArn=dlq_arn)
    sqs.cancel_message_move_task(TaskHandle=handle)
    deadline = time.monotonic() + 5
    status = ""
    while time.monotonic() < deadline:
        status = sqs.list_message_move_tasks(SourceArn=dlq_arn)["Results"][0]["Status"]
        if status == "CANCELLED":
            break
        time.sleep(0.1)
    assert status == "CANCELLED"
    left = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])[
        "Attributes"
    ]
    assert int(left["ApproximateNumberOfMessages"]) >= 8  # rate 1/s: most were never moved
    with pytest.raises(ClientError):
        sqs.cancel_message_move_task(TaskHandle="bm90LWEtaGFuZGxl")
