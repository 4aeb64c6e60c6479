"""SQS through boto3 against a real server: queues, attributes, messages, bad input."""

from __future__ import annotations

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


def test_create_get_list_delete(sqs: Any, nubes: NubesServer) -> None:
    name = _name()
    url = sqs.create_queue(
        QueueName=name, Attributes={"VisibilityTimeout": "45"}, tags={"team": "a"}
    )["QueueUrl"]
    assert url == f"{nubes.endpoint}/000000000000/{name}"
    assert sqs.get_queue_url(QueueName=name)["QueueUrl"] == url
    # same attributes: idempotent; different: QueueNameExists
    assert (
        sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "45"})["QueueUrl"] == url
    )
    with pytest.raises(ClientError) as err:
        sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "46"})
    assert err.value.response["Error"]["Code"] == "QueueAlreadyExists"
    assert url in sqs.list_queues(QueueNamePrefix=name)["QueueUrls"]
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"team": "a"}
    sqs.delete_queue(QueueUrl=url)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist) as missing:
        sqs.get_queue_url(QueueName=name)
    assert missing.value.response["Error"]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"
    assert "QueueUrls" not in sqs.list_queues(QueueNamePrefix=name)


def test_list_queues_pagination(sqs: Any) -> None:
    prefix = _name("page")
    urls = [sqs.create_queue(QueueName=f"{prefix}-{i}")["QueueUrl"] for i in range(3)]
    first = sqs.list_queues(QueueNamePrefix=prefix, MaxResults=2)
    assert first["QueueUrls"] == urls[:2] and "NextToken" in first
    second = sqs.list_queues(QueueNamePrefix=prefix, MaxResults=2, NextToken=first["NextToken"])
    assert second["QueueUrls"] == urls[2:] and "NextToken" not in second


def test_queue_attributes(sqs: Any) -> None:
    url = sqs.create_queue(QueueName=_name())["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["VisibilityTimeout"] == "30"
    assert attrs["MessageRetentionPeriod"] == "345600"
    assert attrs["QueueArn"].startswith("arn:aws:sqs:us-east-1:000000000000:")
    assert int(attrs["CreatedTimestamp"]) <= time.time() + 1
    sqs.set_queue_attributes(
        QueueUrl=url, Attributes={"DelaySeconds": "5", "ReceiveMessageWaitTimeSeconds": "2"}
    )
    got = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["DelaySeconds", "ApproximateNumberOfMessages"]
    )
    assert got["Attributes"] == {"DelaySeconds": "5", "ApproximateNumberOfMessages": "0"}
    with pytest.raises(ClientError) as err:
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "99999"})
    assert err.value.response["Error"]["Code"] == "InvalidAttributeValue"


def test_send_receive_delete_with_attributes(sqs: Any) -> None:
    url = sqs.create_queue(QueueName=_name())["QueueUrl"]
    sent = sqs.send_message(
        QueueUrl=url,
        MessageBody="hello",
        MessageAttributes={
            "color": {"DataType": "String", "StringValue": "red"},
            "size": {"DataType": "Number", "StringValue": "3"},
            "raw": {"DataType": "Binary", "BinaryValue": b"\x00\xff"},
            "other.x": {"DataType": "String", "StringValue": "y"},
        },
    )
    assert sent["MD5OfMessageBody"] == "5d41402abc4b2a76b9719d911017c592"
    got = sqs.receive_message(
        QueueUrl=url,
        MessageAttributeNames=["color", "other.*"],
        AttributeNames=["All"],
        VisibilityTimeout=5,
    )["Messages"]
    assert len(got) == 1
    message = got[0]
    assert message["Body"] == "hello" and message["MessageId"] == sent["MessageId"]
    assert set(message["MessageAttributes"]) == {"color", "other.x"}
    assert message["Attributes"]["ApproximateReceiveCount"] == "1"
    assert {"SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp"} <= set(
        message["Attributes"]
    )
    everything = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"])
    assert "Messages" not in everything  # still in flight
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )
    assert attrs["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "1"
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    sqs.change_message_visibility  # noqa: B018 - exists
    after = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (
        after["ApproximateNumberOfMessages"] == "0"
        and after["ApproximateNumberOfMessagesNotVisible"] == "0"
    )


def test_visibility_timeout_and_change(sqs: Any) -> None:
    url = sqs.create_queue(QueueName=_name())["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="again")
    first = sqs.receive_message(QueueUrl=url, VisibilityTimeout=1)["Messages"][0]
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    time.sleep(1.1)
    second = sqs.receive_message(QueueUrl=url, AttributeNames=["ApproximateReceiveCount"])[
        "Messages"
    ][0]
    assert second["MessageId"] == first["MessageId"]
    assert second["Attributes"]["ApproximateReceiveCount"] == "2"
    assert second["ReceiptHandle"] != first["ReceiptHandle"]
    sqs.change_message_visibility(
        QueueUrl=url, ReceiptHandle=second["ReceiptHandle"], VisibilityTimeout=0
    )
    third = sqs.receive_message(QueueUrl=url)["Messages"][0]
    assert third["MessageId"] == first["MessageId"]
    with pytest.raises(ClientError):
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle="garbage", VisibilityTimeout=10)


def test_long_poll_wakes_on_send(sqs: Any, nubes: NubesServer) -> None:
    import threading

    url = sqs.create_queue(QueueName=_name())["QueueUrl"]
    other = nubes.client("sqs")

    def later() -> None:
        time.sleep(0.3)
        other.send_message(QueueUrl=url, MessageBody="wake")

    threading.Thread(target=later).start()
    start = time.monotonic()
    got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=10)
    elapsed = time.monotonic() - start
    assert got["Messages"][0]["Body"] == "wake"
    assert 0.25 < elapsed < 2.0
    start = time.monotonic()
    assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)
    assert time.monotonic() - start >= 0.95


def test_delay_seconds(sqs: Any) -> None:
    url = sqs.create_queue(QueueName=_name())["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=1)
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )
    assert attrs["Attributes"]["ApproximateNumberOfMessagesDelayed"] == "1"
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    start = time.monotonic()
    got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5)
    assert got["Messages"][0]["Body"] == "later"
    assert time.monotonic() - start < 2.5


def test_batches(sqs: Any) -> None:
    url = sqs.create_queue(QueueName=_name())["QueueUrl"]
    result = sqs.send_message_batch(
        QueueUrl=url,
        Entries=[{"Id": f"m{i}", "MessageBody": f"body {i}"} for i in range(9)]
        + [{"Id": "bad", "MessageBody": "\x00"}],
    )
    assert len(result["Successful"]) == 9
    assert result["Failed"] == [{"Id": "bad", "SenderFault": True, "Code": "InvalidMessageContents",
                                 "Message": result["Failed"][0]["Message"]}]  # fmt: skip
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert len(messages) == 9
    deleted = sqs.delete_message_batch(
        QueueUrl=url,
        Entries=[
            {"Id": f"d{i}", "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages[:5])
        ],
    )
    assert len(deleted["Successful"]) == 5 and not deleted["Failed"]
    changed = sqs.change_message_visibility_batch(
        QueueUrl=url,
        Entries=[{"Id": f"c{i}", "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                 for i, m in enumerate(messages[5:])],
    )  # fmt: skip
    assert len(changed["Successful"]) == 4
    assert len(sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]) == 4


@pytest.mark.parametrize(
    ("entries", "code"),
    [
        ([], "AWS.SimpleQueueService.EmptyBatchRequest"),
        (
            [{"Id": f"m{i}", "MessageBody": "x"} for i in range(11)],
            "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
        ),
        (
            [{"Id": "a", "MessageBody": "x"}, {"Id": "a", "MessageBody": "y"}],
            "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
        ),
        ([{"Id": "bad id!", "MessageBody": "x"}], "AWS.SimpleQueueService.InvalidBatchEntryId"),
    ],
)
def test_bad_batches(sqs: Any, entries: list[dict[str, str]], code: str) -> None:
    url = sqs.create_queue(QueueName="bad-batches")["QueueUrl"]
    with pytest.raises(ClientError) as err:
        sqs.send_message_batch(QueueUrl=url, Entries=entries)
    assert err.value.response["Error"]["Code"] == code


def test_bad_messages(sqs: Any) -> None:
    url = sqs.create_queue(QueueName=_name())["QueueUrl"]
    with pytest.raises(ClientError) as err:
        sqs.send_message(QueueUrl=url, MessageBody="x" * 262145)
    assert err.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert "262144" in err.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as err:
        sqs.send_message(QueueUrl=url, MessageBody="bad \ufffe char")
    assert err.value.response["Error"]["Code"] == "InvalidMessageContents"
    with pytest.raises(ClientError) as err:
        sqs.send_message(
            QueueUrl=url,
            MessageBody="x",
            MessageAttributes={"n": {"DataType": "Number", "StringValue": "abc"}},
        )
    assert err.value.response["Error"]["Code"] == "InvalidParameterValue"
    with pytest.raises(ClientError) as err:
        sqs.send_message(
            QueueUrl=url,
            MessageBody="x",
            MessageAttributes={"AWS.x": {"DataType": "String", "StringValue": "a"}},
        )
    assert err.value.response["Error"]["Code"] == "InvalidParameterValue"
    with pytest.raises(ClientError) as err:
        sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=11)
    assert err.value.response["Error"]["Code"] == "InvalidParameterValue"
    with pytest.raises(ClientError) as err:
        sqs.create_queue(QueueName="bad name!")
    assert err.value.response["Error"]["Code"] == "InvalidParameterValue"
    with pytest.raises(ClientError) as err:
        sqs.delete_message(QueueUrl=url, ReceiptHandle="not-a-handle")
    assert err.value.response["Error"]["Code"] == "ReceiptHandleIsInvalid"
    # nothing half-stored
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "0"


def test_purge(sqs: Any) -> None:
    url = sqs.create_queue(QueueName=_name())["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="gone")
    sqs.purge_queue(QueueUrl=url)
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    with pytest.raises(ClientError) as err:
        sqs.purge_queue(QueueUrl=url)
    assert err.value.response["Error"]["Code"] == "AWS.SimpleQueueService.PurgeQueueInProgress"


def test_tags_and_permissions(sqs: Any) -> None:
    url = sqs.create_queue(QueueName=_name())["QueueUrl"]
    sqs.tag_queue(QueueUrl=url, Tags={"a": "1", "b": "2"})
    sqs.untag_queue(QueueUrl=url, TagKeys=["a"])
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"b": "2"}
    sqs.add_permission(
        QueueUrl=url, Label="p1", AWSAccountIds=["111122223333"], Actions=["SendMessage"]
    )
    policy = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])["Attributes"][
        "Policy"
    ]
    assert '"Sid":"p1"' in policy and "SQS:SendMessage" in policy
    sqs.remove_permission(QueueUrl=url, Label="p1")
    assert "Policy" not in sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"]).get(
        "Attributes", {}
    )


def test_resource_api(nubes: NubesServer) -> None:
    resource = nubes.resource("sqs")
    queue = resource.create_queue(QueueName=_name())
    queue.send_message(MessageBody="via resource")
    messages = queue.receive_messages(WaitTimeSeconds=1)
    assert [m.body for m in messages] == ["via resource"]
    messages[0].delete()
    assert queue.attributes["ApproximateNumberOfMessages"] == "0"


def test_unknown_attribute_names(sqs: Any) -> None:
    url = sqs.create_queue(QueueName=_name())["QueueUrl"]
    with pytest.raises(ClientError) as err:
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["NoSuchThing"])
    assert err.value.response["Error"]["Code"] == "InvalidAttributeName"
    with pytest.raises(ClientError) as err:
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"QueueArn": "x"})
    assert err.value.response["Error"]["Code"] == "InvalidAttributeName"


def test_create_queue_again_with_default_values(sqs: Any) -> None:
    name = _name()
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    same = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "30", "SqsManagedSseEnabled": "true",
                                                         "DelaySeconds": "0"})  # fmt: skip
    assert same["QueueUrl"] == url
