"""SNS pieces without a server: the string AWS signs, filter documents, message rules."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from nubes.aws.errors import AwsError
from nubes.services.sns.messages import (
    NotificationTexts,
    attributes_event,
    check_attributes,
    check_message,
    message_for,
    notification,
    notification_to_sign,
    signature_key,
)
from nubes.services.sns.models import Subscription
from nubes.services.sns.signing import Signer, SigningJob, string_to_sign


def test_string_to_sign_notification_and_confirmation() -> None:
    doc = {
        "Type": "Notification",
        "MessageId": "1",
        "TopicArn": "t",
        "Message": "m",
        "Timestamp": "ts",
    }
    assert (
        string_to_sign(doc)
        == "Message\nm\nMessageId\n1\nTimestamp\nts\nTopicArn\nt\nType\nNotification\n"
    )
    assert "Subject\ns\n" in string_to_sign({**doc, "Subject": "s"})
    confirm = {"Type": "SubscriptionConfirmation", "MessageId": "1", "Token": "tok", "TopicArn": "t",
               "Message": "m", "SubscribeURL": "u", "Timestamp": "ts"}  # fmt: skip
    assert string_to_sign(confirm) == (
        "Message\nm\nMessageId\n1\nSubscribeURL\nu\nTimestamp\nts\nToken\ntok\nTopicArn\nt\nType\nSubscriptionConfirmation\n"
    )


def test_signer_persists_key_and_signs(tmp_path: Path) -> None:
    doc = {
        "Type": "Notification",
        "MessageId": "1",
        "TopicArn": "t",
        "Message": "m",
        "Timestamp": "ts",
    }
    first = Signer(tmp_path)
    signature = first.sign(doc, "2")
    again = Signer(tmp_path)  # a restart: same key from the data dir
    assert again.certificate_pem() == first.certificate_pem()
    key = x509.load_pem_x509_certificate(again.certificate_pem()).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(
        base64.b64decode(signature),
        string_to_sign(doc).encode(),
        padding.PKCS1v15(),
        hashes.SHA256(),
    )
    assert oct((tmp_path / "signing-key.pem").stat().st_mode)[-3:] == "600"


def test_attributes_event_types() -> None:
    stored = {"s": {"Type": "String", "Value": "x"}, "n": {"Type": "Number", "Value": "2.5"},
              "i": {"Type": "Number", "Value": "3"}, "a": {"Type": "String.Array", "Value": '["p", 1]'},
              "b": {"Type": "Binary", "Value": "AA=="}}  # fmt: skip
    assert attributes_event(stored) == {"s": "x", "n": 2.5, "i": 3, "a": ["p", 1]}


def test_message_structure_json() -> None:
    message = {
        "message": '{"default": "d", "sqs": "for sqs", "lambda": {"k": 1}}',
        "structure": "json",
    }
    assert message_for(message, "sqs") == "for sqs"
    assert message_for(message, "http") == "d"
    assert message_for(message, "lambda") == '{"k":1}'


@pytest.mark.parametrize(
    ("message", "subject", "structure"),
    [
        ("", None, None),
        ("x", "", None),
        ("x", "a" * 101, None),
        ("[]", None, "json"),
        ('{"a":1}', None, "json"),
        ("x", None, "xml"),
    ],
)
def test_bad_messages(message: str, subject: str | None, structure: str | None) -> None:
    with pytest.raises(AwsError) as err:
        check_message(message, subject, structure, 0)
    assert err.value.code == "InvalidParameter"


def test_bad_attributes() -> None:
    for attrs in ({"a": {"DataType": "Text", "StringValue": "x"}}, {"a": {"DataType": "String"}},
                  {"a": {"DataType": "String.Array", "StringValue": "{}"}}, {"AWS.x": {"DataType": "String", "StringValue": "x"}}):  # fmt: skip
        with pytest.raises(AwsError) as err:
            check_attributes(attrs)
        assert err.value.code == "ParameterValueInvalid"


def test_settle_rewrites_pending_subscriptions(tmp_path: Path) -> None:
    import asyncio
    import time

    import orjson

    from nubes.services.sns.delivery import _settle
    from nubes.storage.sqlite import SqliteStore

    async def main() -> None:
        store = SqliteStore(tmp_path / "db.sqlite")
        try:
            doc = {"k": "n", "subs": ["a", "b", "c"], "m": {"id": "1"}}
            await store.write(lambda txn: txn.enqueue("q", orjson.dumps(doc), now=time.time()))
            leased = await store.write(
                lambda txn: txn.lease("q", now=time.time(), visibility=60, limit=10)
            )
            record = leased[0]
            outcomes = {(record.id, "a"): None, (record.id, "b"): 5.0, (record.id, "c"): 2.0}
            await store.write(lambda txn: _settle(txn, "q", leased, [doc], outcomes))
            left = await store.read(lambda txn: txn.peek("q"))
            assert len(left) == 1 and left[0].id != record.id
            again = orjson.loads(left[0].value)
            assert again["subs"] == ["b", "c"] and again["tries"] == {"b": 1, "c": 1}
            assert left[0].visible_at - time.time() > 1.5  # the shorter delay of the two
        finally:
            await store.close()

    asyncio.run(main())


_SIGNED = ("Type", "MessageId", "TopicArn", "Subject", "Message", "Timestamp")


@pytest.mark.parametrize(
    "extra",
    [{}, {"subject": "s"}, {"structure": "json", "message": '{"default": "d", "sqs": "q"}'}],
)
@pytest.mark.parametrize("protocol", ["sqs", "lambda", "http"])
def test_signature_made_ahead_is_the_one_notifications_carry(
    tmp_path: Path, extra: dict[str, str], protocol: str
) -> None:
    """The delivery worker signs a pass's messages in a thread before it builds the
    notifications: what it signs and the cache key it files the signature under must be
    exactly what ``notification`` signs and looks up, for every protocol and variant."""
    signer = Signer(tmp_path)
    message = {"id": "m-1", "topic": "arn:aws:sns:us-east-1:000000000000:t", "message": "hello",
               "ts": "2026-01-01T00:00:00.000Z", "endpoint": "http://127.0.0.1:4566", **extra}  # fmt: skip
    sub = Subscription(arn=f"{message['topic']}:abc", topic_arn=message["topic"], protocol=protocol,
                       endpoint="arn:aws:sqs:us-east-1:000000000000:q", owner="000000000000")  # fmt: skip
    text = notification_to_sign(message, protocol)
    signature = signer.sign_text(text, "2")
    # RSA PKCS#1 v1.5 is deterministic, so a marker proves the cached entry is used
    signer.remember("2", signature_key(message, protocol), "made-ahead")
    for lambda_style in (False, True):
        doc = notification(message, sub, signer, "2", lambda_style=lambda_style)
        assert doc["Signature"] == "made-ahead"
        assert string_to_sign({k: doc[k] for k in _SIGNED if k in doc}) == text
    key = x509.load_pem_x509_certificate(signer.certificate_pem()).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(base64.b64decode(signature), text.encode(), padding.PKCS1v15(), hashes.SHA256())
    # another protocol's variant of a MessageStructure json message is signed on its own
    if "structure" in extra:
        other = "http" if protocol != "http" else "sqs"
        assert signer.cached("2", signature_key(message, other)) is None


@pytest.mark.parametrize("count", [0, 1, 2, 7, 40])
def test_signing_job_from_both_ends_signs_each_item_once(tmp_path: Path, count: int) -> None:
    """The delivery worker's thread signs from the front while the event loop signs
    from the back: every item gets its own signature, in order, whoever made it."""
    import threading

    signer = Signer(tmp_path)
    items = [(f"text {n}", "2" if n % 2 else "1") for n in range(count)]
    job = SigningJob(signer, items)
    made: list[int] = []
    real = signer.sign_text

    def counted(text: str, version: str) -> str:
        made.append(1)
        return real(text, version)

    signer.sign_text = counted  # type: ignore[method-assign]
    helper = threading.Thread(target=job.sign_from_front)
    helper.start()
    while job.sign_one_from_back():
        pass
    helper.join()
    assert len(made) == count
    key = x509.load_pem_x509_certificate(signer.certificate_pem()).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    for (text, version), signature in zip(items, job.signatures, strict=True):
        digest = hashes.SHA256() if version == "2" else hashes.SHA1()
        key.verify(base64.b64decode(signature), text.encode(), padding.PKCS1v15(), digest)


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"subject": 's "quoted" \u00e9'},
        {"seq": "10000000000000000001", "group": "g"},
        {"attrs": {"a": {"Type": "String", "Value": "v"}, "n": {"Type": "Number", "Value": "1"}}},
        {"structure": "json", "message": '{"default": "d", "sqs": "for sqs", "http": "h"}'},
    ],
)
def test_notification_texts_are_byte_for_byte_the_notification(
    tmp_path: Path, extra: dict[str, Any]
) -> None:
    """The delivery worker serializes a message's notification once and splices each
    subscriber's UnsubscribeURL in: the result must equal serializing the whole
    notification for that subscriber, for every subscriber sharing the cache."""
    signer = Signer(tmp_path)
    message = {"id": "m-1", "topic": "arn:aws:sns:us-east-1:000000000000:t", "message": "hello\n",
               "ts": "2026-01-01T00:00:00.000Z", "endpoint": "http://127.0.0.1:4566", **extra}  # fmt: skip
    texts = NotificationTexts(signer)
    for n, protocol in enumerate(["sqs", "sqs", "http", "sqs"]):
        sub = Subscription(arn=f"{message['topic']}:sub-{n}&x", topic_arn=message["topic"],
                           protocol=protocol, endpoint=f"arn:aws:sqs:us-east-1:000000000000:q{n}",
                           owner="000000000000")  # fmt: skip
        for version in ("1", "2"):
            expected = orjson.dumps(notification(message, sub, signer, version)).decode()
            assert texts.json(message, sub, version) == expected
            assert json.loads(expected)["UnsubscribeURL"].endswith("sub-" + str(n) + "%26x")
