"""SNS through boto3 against a real server: fan-out to SQS, filters, HTTP, email, FIFO, DLQ."""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from nubes.testing.server import NubesServer


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def sns(nubes: NubesServer) -> Any:
    return nubes.client("sns")


@pytest.fixture
def sqs(nubes: NubesServer) -> Any:
    return nubes.client("sqs")


def _queue(sqs: Any, fifo: bool = False) -> tuple[str, str]:
    attrs = {"FifoQueue": "true"} if fifo else {}
    url = sqs.create_queue(QueueName=_name("sub") + (".fifo" if fifo else ""), Attributes=attrs)[
        "QueueUrl"
    ]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return url, arn


def _receive_all(sqs: Any, url: str, expected: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(got) < expected and time.monotonic() < deadline:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                    MessageAttributeNames=["All"]).get("Messages", [])  # fmt: skip
        for m in batch:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        got.extend(batch)
    return got


def _verify_signature(doc: dict[str, Any]) -> None:
    """Check a notification's signature the way SNS clients do: fetch the cert, rebuild the string."""
    with urllib.request.urlopen(doc["SigningCertURL"]) as response:
        cert = x509.load_pem_x509_certificate(response.read())
    names = (["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"] if doc["Type"] == "Notification"
             else ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"])  # fmt: skip
    text = "".join(f"{n}\n{doc[n]}\n" for n in names if n in doc)
    digest = hashes.SHA256() if doc["SignatureVersion"] == "2" else hashes.SHA1()
    key = cert.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(base64.b64decode(doc["Signature"]), text.encode(), padding.PKCS1v15(), digest)


def test_topic_lifecycle(sns: Any) -> None:
    name = _name("t")
    arn = sns.create_topic(Name=name, Tags=[{"Key": "k", "Value": "v"}])["TopicArn"]
    assert arn == f"arn:aws:sns:us-east-1:000000000000:{name}"
    assert sns.create_topic(Name=name)["TopicArn"] == arn
    assert {"TopicArn": arn} in sns.list_topics()["Topics"]
    sns.set_topic_attributes(TopicArn=arn, AttributeName="DisplayName", AttributeValue="Hi")
    attrs = sns.get_topic_attributes(TopicArn=arn)["Attributes"]
    assert attrs["DisplayName"] == "Hi" and attrs["Owner"] == "000000000000"
    assert sns.list_tags_for_resource(ResourceArn=arn)["Tags"] == [{"Key": "k", "Value": "v"}]
    sns.delete_topic(TopicArn=arn)
    with pytest.raises(sns.exceptions.NotFoundException):
        sns.get_topic_attributes(TopicArn=arn)


def test_fan_out_to_sqs_signed(sns: Any, sqs: Any) -> None:
    topic = sns.create_topic(Name=_name("t"))["TopicArn"]
    queues = [_queue(sqs) for _ in range(3)]
    for _, arn in queues:
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    sent = sns.publish(TopicArn=topic, Message="fan out", Subject="hi",
                       MessageAttributes={"kind": {"DataType": "String", "StringValue": "a"}})  # fmt: skip
    for url, _ in queues:
        messages = _receive_all(sqs, url, 1)
        assert len(messages) == 1
        doc = json.loads(messages[0]["Body"])
        assert doc["Type"] == "Notification" and doc["MessageId"] == sent["MessageId"]
        assert doc["Message"] == "fan out" and doc["Subject"] == "hi" and doc["TopicArn"] == topic
        assert doc["MessageAttributes"] == {"kind": {"Type": "String", "Value": "a"}}
        _verify_signature(doc)


def test_raw_delivery_and_signature_v2(sns: Any, sqs: Any) -> None:
    topic = sns.create_topic(Name=_name("t"))["TopicArn"]
    sns.set_topic_attributes(TopicArn=topic, AttributeName="SignatureVersion", AttributeValue="2")
    raw_url, raw_arn = _queue(sqs)
    env_url, env_arn = _queue(sqs)
    sns.subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=raw_arn, Attributes={"RawMessageDelivery": "true"}
    )
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=env_arn)
    sns.publish(
        TopicArn=topic,
        Message="raw body",
        MessageAttributes={"n": {"DataType": "Number", "StringValue": "5"}},
    )
    raw = _receive_all(sqs, raw_url, 1)[0]
    assert raw["Body"] == "raw body"
    assert raw["MessageAttributes"]["n"] == {"StringValue": "5", "DataType": "Number"}
    envelope = json.loads(_receive_all(sqs, env_url, 1)[0]["Body"])
    assert envelope["SignatureVersion"] == "2"
    _verify_signature(envelope)


def test_filter_policies(sns: Any, sqs: Any) -> None:
    topic = sns.create_topic(Name=_name("t"))["TopicArn"]
    attr_url, attr_arn = _queue(sqs)
    body_url, body_arn = _queue(sqs)
    sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=attr_arn,
        Attributes={
            "FilterPolicy": json.dumps({"color": ["red"], "size": [{"numeric": [">", 3]}]}),
            "RawMessageDelivery": "true",
        },
    )
    sub = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=body_arn, Attributes={
        "FilterPolicy": json.dumps({"order": {"total": [{"numeric": [">=", 100]}]}}),
        "FilterPolicyScope": "MessageBody", "RawMessageDelivery": "true"}, ReturnSubscriptionArn=True)["SubscriptionArn"]  # fmt: skip

    def attrs(color: str, size: str) -> dict[str, Any]:
        return {
            "color": {"DataType": "String", "StringValue": color},
            "size": {"DataType": "Number", "StringValue": size},
        }

    sns.publish(TopicArn=topic, Message="match", MessageAttributes=attrs("red", "5"))
    sns.publish(TopicArn=topic, Message="small", MessageAttributes=attrs("red", "2"))
    sns.publish(TopicArn=topic, Message="blue", MessageAttributes=attrs("blue", "9"))
    sns.publish(TopicArn=topic, Message=json.dumps({"order": {"total": 150}}))
    sns.publish(TopicArn=topic, Message=json.dumps({"order": {"total": 50}}))
    sns.publish(TopicArn=topic, Message="not json")
    assert [m["Body"] for m in _receive_all(sqs, attr_url, 1)] == ["match"]
    assert [json.loads(m["Body"])["order"]["total"] for m in _receive_all(sqs, body_url, 1)] == [
        150
    ]
    time.sleep(0.3)
    assert "Messages" not in sqs.receive_message(QueueUrl=attr_url)
    got = sns.get_subscription_attributes(SubscriptionArn=sub)["Attributes"]
    assert got["FilterPolicyScope"] == "MessageBody"
    with pytest.raises(ClientError) as err:
        sns.set_subscription_attributes(SubscriptionArn=sub, AttributeName="FilterPolicy",
                                        AttributeValue=json.dumps({"a": [{"numeric": [">", "x"]}]}))  # fmt: skip
    assert err.value.response["Error"]["Code"] == "InvalidParameter"
    with pytest.raises(ClientError):
        sns.set_subscription_attributes(
            SubscriptionArn=sub, AttributeName="FilterPolicy", AttributeValue="{not json"
        )


class _Collector(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []
    fail_first = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        if type(self).fail_first > 0:
            type(self).fail_first -= 1
            self.send_response(500)
        else:
            self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_endpoint() -> Iterator[tuple[str, type[_Collector]]]:
    handler = type("Collector", (_Collector,), {"received": [], "fail_first": 0})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler
    server.shutdown()


def _wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_http_confirmation_and_retries(
    sns: Any, http_endpoint: tuple[str, type[_Collector]]
) -> None:
    url, handler = http_endpoint
    topic = sns.create_topic(Name=_name("t"))["TopicArn"]
    assert (
        sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=url)["SubscriptionArn"]
        == "pending confirmation"
    )
    _wait_for(lambda: len(handler.received) == 1)
    headers, body = handler.received[0]
    assert headers["x-amz-sns-message-type"] == "SubscriptionConfirmation"
    doc = json.loads(body)
    _verify_signature(doc)
    listed = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert listed[0]["SubscriptionArn"] == "PendingConfirmation"
    with urllib.request.urlopen(
        doc["SubscribeURL"]
    ) as response:  # what an endpoint does to confirm
        assert b"<SubscriptionArn>" in response.read()
    sub_arn = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"][0]["SubscriptionArn"]
    assert sub_arn.startswith(topic + ":")
    handler.fail_first = 1  # first attempt fails: SNS retries
    sns.publish(TopicArn=topic, Message="over http")
    _wait_for(lambda: len(handler.received) == 3)
    headers, body = handler.received[2]
    assert headers["x-amz-sns-message-type"] == "Notification"
    assert headers["x-amz-sns-subscription-arn"] == sub_arn
    assert json.loads(body)["Message"] == "over http"
    assert (
        handler.received[1][1] == body
        or json.loads(handler.received[1][1])["MessageId"] == json.loads(body)["MessageId"]
    )


def test_email_mailbox(sns: Any, nubes: NubesServer) -> None:
    topic = sns.create_topic(Name=_name("t"))["TopicArn"]
    address = f"{uuid.uuid4().hex[:8]}@example.com"
    sns.subscribe(TopicArn=topic, Protocol="email", Endpoint=address)

    def mails() -> list[dict[str, Any]]:
        with urllib.request.urlopen(
            f"{nubes.endpoint}/_nubes/sns/mailbox?to={address}"
        ) as response:
            return list(json.loads(response.read())["messages"])

    _wait_for(lambda: len(mails()) == 1)
    link = next(line for line in mails()[0]["body"].splitlines() if line.startswith("http"))
    urllib.request.urlopen(link).read()
    sns.publish(TopicArn=topic, Message="dear user", Subject="News")
    _wait_for(lambda: len(mails()) == 2)
    assert mails()[1]["subject"] == "News" and mails()[1]["body"] == "dear user"


def test_fifo_topic_to_fifo_queue(sns: Any, sqs: Any) -> None:
    topic = sns.create_topic(Name=_name("t") + ".fifo", Attributes={"FifoTopic": "true"})[
        "TopicArn"
    ]
    url, arn = _queue(sqs, fifo=True)
    sns.subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"}
    )
    first = sns.publish(TopicArn=topic, Message="1", MessageGroupId="g", MessageDeduplicationId="a")
    dup = sns.publish(
        TopicArn=topic, Message="1 again", MessageGroupId="g", MessageDeduplicationId="a"
    )
    assert (
        dup["MessageId"] == first["MessageId"] and dup["SequenceNumber"] == first["SequenceNumber"]
    )
    result = sns.publish_batch(TopicArn=topic, PublishBatchRequestEntries=[
        {"Id": f"e{i}", "Message": str(i), "MessageGroupId": "g", "MessageDeduplicationId": f"d{i}"} for i in range(2, 6)])  # fmt: skip
    assert len(result["Successful"]) == 4
    bodies: list[str] = []
    deadline = time.monotonic() + 5
    while len(bodies) < 5 and time.monotonic() < deadline:
        for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        ):
            bodies.append(m["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    assert bodies == ["1", "2", "3", "4", "5"]
    with pytest.raises(ClientError):
        sns.publish(TopicArn=topic, Message="no group")


def test_subscription_dead_letter_queue(sns: Any, sqs: Any) -> None:
    topic = sns.create_topic(Name=_name("t"))["TopicArn"]
    dlq_url, dlq_arn = _queue(sqs)
    missing = f"arn:aws:sqs:us-east-1:000000000000:{_name('gone')}"
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=missing,
                  Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn})})  # fmt: skip
    sent = sns.publish(TopicArn=topic, Message="undeliverable")
    dead = _receive_all(sqs, dlq_url, 1)
    assert json.loads(dead[0]["Body"])["MessageId"] == sent["MessageId"]


def test_bad_input(sns: Any) -> None:
    topic = sns.create_topic(Name=_name("t"))["TopicArn"]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"TopicArn": topic, "Message": ""}, "InvalidParameter"),
        ({"TopicArn": topic, "Message": "x" * 262145}, "InvalidParameter"),
        ({"TopicArn": topic, "Message": "x", "Subject": "a\nb"}, "InvalidParameter"),
        ({"TopicArn": topic, "Message": "{}", "MessageStructure": "json"}, "InvalidParameter"),
        (
            {
                "TopicArn": topic,
                "Message": "x",
                "MessageAttributes": {"n": {"DataType": "Number", "StringValue": "z"}},
            },
            "ParameterValueInvalid",
        ),
        ({"TopicArn": topic, "Message": "x", "MessageGroupId": "g"}, "InvalidParameter"),
    ]
    for params, code in cases:
        with pytest.raises(ClientError) as err:
            sns.publish(**params)
        assert err.value.response["Error"]["Code"] == code, params
    with pytest.raises(ClientError) as err:
        sns.subscribe(TopicArn=topic, Protocol="carrier-pigeon", Endpoint="x")
    assert err.value.response["Error"]["Code"] == "InvalidParameter"
    with pytest.raises(ClientError):
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint="not-an-arn")
    with pytest.raises(ClientError):
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint="arn:aws:sqs:us-east-1:000000000000:q",
                      Attributes={"FilterPolicy": json.dumps({"a": "not-a-list"})})  # fmt: skip
    with pytest.raises(ClientError):
        sns.create_topic(Name="bad name!")
    for entries, code in (([], "EmptyBatchRequest"),
                          ([{"Id": "a", "Message": "x"}] * 2, "BatchEntryIdsNotDistinct"),
                          ([{"Id": f"i{i}", "Message": "x"} for i in range(11)], "TooManyEntriesInBatchRequest")):  # fmt: skip
        with pytest.raises(ClientError) as err:
            sns.publish_batch(TopicArn=topic, PublishBatchRequestEntries=entries)
        assert err.value.response["Error"]["Code"] == code


def test_resource_api(nubes: NubesServer) -> None:
    resource = nubes.resource("sns")
    topic = resource.create_topic(Name=_name("t"))
    assert topic.attributes["TopicArn"] == topic.arn
    assert topic.publish(Message="hello")["MessageId"]


def test_message_structure_and_unsubscribe_url(sns: Any, sqs: Any) -> None:
    topic = sns.create_topic(Name=_name("t"))["TopicArn"]
    url, arn = _queue(sqs)
    sub = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)["SubscriptionArn"]
    sns.publish(TopicArn=topic, MessageStructure="json",
                Message=json.dumps({"default": "for everyone", "sqs": "for queues"}))  # fmt: skip
    doc = json.loads(_receive_all(sqs, url, 1)[0]["Body"])
    assert doc["Message"] == "for queues"
    _verify_signature(doc)
    urllib.request.urlopen(doc["UnsubscribeURL"]).read()
    with pytest.raises(ClientError):
        sns.get_subscription_attributes(SubscriptionArn=sub)
    assert sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"] == []


def test_publish_batch_partial_failure(sns: Any, sqs: Any) -> None:
    topic = sns.create_topic(Name=_name("t"))["TopicArn"]
    url, arn = _queue(sqs)
    sns.subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"}
    )
    result = sns.publish_batch(TopicArn=topic, PublishBatchRequestEntries=[
        {"Id": "ok1", "Message": "one"}, {"Id": "bad", "Message": ""}, {"Id": "ok2", "Message": "two"}])  # fmt: skip
    assert [e["Id"] for e in result["Successful"]] == ["ok1", "ok2"]
    assert result["Failed"][0]["Id"] == "bad" and result["Failed"][0]["Code"] == "InvalidParameter"
    assert sorted(m["Body"] for m in _receive_all(sqs, url, 2)) == ["one", "two"]


def test_list_subscriptions_pages(sns: Any) -> None:
    topic = sns.create_topic(Name=_name("t"))["TopicArn"]
    for i in range(105):
        sns.subscribe(
            TopicArn=topic, Protocol="sqs", Endpoint=f"arn:aws:sqs:us-east-1:000000000000:q{i}"
        )
    first = sns.list_subscriptions_by_topic(TopicArn=topic)
    assert len(first["Subscriptions"]) == 100 and "NextToken" in first
    second = sns.list_subscriptions_by_topic(TopicArn=topic, NextToken=first["NextToken"])
    assert len(second["Subscriptions"]) == 5 and "NextToken" not in second
    endpoints = {s["Endpoint"] for s in first["Subscriptions"] + second["Subscriptions"]}
    assert len(endpoints) == 105
    sns.delete_topic(TopicArn=topic)


def test_bad_subscription_attributes(sns: Any) -> None:
    topic = sns.create_topic(Name=_name("t"))["TopicArn"]
    lam = sns.subscribe(TopicArn=topic, Protocol="lambda", ReturnSubscriptionArn=True,
                        Endpoint="arn:aws:lambda:us-east-1:000000000000:function:f")["SubscriptionArn"]  # fmt: skip
    bad = [
        ("RawMessageDelivery", "true"),  # lambda has no raw delivery
        ("RawMessageDelivery", "maybe"),
        ("FilterPolicyScope", "Headers"),
        ("RedrivePolicy", json.dumps({"deadLetterTargetArn": "not-an-arn"})),
        ("NoSuchAttribute", "x"),
    ]
    for name, value in bad:
        with pytest.raises(ClientError) as err:
            sns.set_subscription_attributes(
                SubscriptionArn=lam, AttributeName=name, AttributeValue=value
            )
        assert err.value.response["Error"]["Code"] == "InvalidParameter", name
    with pytest.raises(ClientError) as err:
        sns.set_topic_attributes(TopicArn=topic, AttributeName="FifoTopic", AttributeValue="true")
    assert err.value.response["Error"]["Code"] == "InvalidParameter"
    with pytest.raises(ClientError) as err:
        sns.subscribe(TopicArn=topic, Protocol="http", Endpoint="https://wrong-scheme.example")
    assert err.value.response["Error"]["Code"] == "InvalidParameter"
    with pytest.raises(sns.exceptions.NotFoundException):
        sns.publish(TopicArn=topic + "-missing", Message="x")
