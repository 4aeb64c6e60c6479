"""SNS messages: validation, filter policies, and the documents each protocol receives."""

from __future__ import annotations

import base64
import hashlib
import random
import re
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any
from urllib.parse import quote

import orjson

from nubes.aws.errors import AwsError
from nubes.events.patterns import CompiledPattern, PatternError
from nubes.services.sns.models import MAX_MESSAGE_BYTES, Subscription, invalid, invalid_value
from nubes.services.sns.signing import CERT_PATH, Signer, string_to_sign

_DATA_TYPE = re.compile(r"^(String\.Array|String|Number|Binary)(\..+)?$", re.DOTALL)
_ATTRIBUTE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,256}$")


def new_message_id() -> str:
    """A random UUID4 string from ``random`` (uniqueness, not secrecy, is what a
    message id needs; ``os.urandom`` per publish costs more than it buys)."""
    bits = (random.getrandbits(128) & ~(0xF000 << 64) & ~(0xC << 60)) | (0x4000 << 64) | (0x8 << 60)
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def check_message(message: Any, subject: Any, structure: Any, attributes_size: int) -> None:
    """AWS's rules for Message, Subject and MessageStructure."""
    if not isinstance(message, str) or message == "":
        raise invalid("Empty message")
    if len(message.encode()) + attributes_size > MAX_MESSAGE_BYTES:
        raise invalid("Message too long")
    if subject is not None and (
        subject == ""
        or len(subject) > 100
        or any(c in subject for c in "\r\n")
        or not subject.isprintable()
    ):
        raise invalid("Subject")
    if structure is not None:
        if structure != "json":
            raise invalid("MessageStructure")
        try:
            doc = orjson.loads(message)
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict):
            raise invalid("Message Structure - JSON message body failed to parse")
        if "default" not in doc:
            raise invalid("Message Structure - No default entry in JSON message body")


def check_attributes(attributes: dict[str, dict[str, Any]]) -> int:
    """Validate message attributes; returns their size."""
    size = 0
    for name, value in attributes.items():
        lower = name.lower()
        if not _ATTRIBUTE_NAME.match(name) or lower.startswith(("aws.", "amazon.")) or ".." in name:
            raise invalid_value(f"The message attribute name '{name}' is invalid.")
        data_type = str(value.get("DataType") or "")
        m = _DATA_TYPE.match(data_type)
        if m is None:
            raise invalid_value(
                f"The message attribute '{name}' has an invalid message attribute type, the set of supported "
                "type prefixes is Binary, Number, and String."
            )
        base = m.group(1)
        if base == "Binary":
            if not value.get("BinaryValue"):
                raise invalid_value(
                    f"The message attribute '{name}' must contain non-empty message attribute value for "
                    "message attribute type 'Binary'."
                )
            size += len(bytes(value["BinaryValue"]))
        else:
            text = value.get("StringValue")
            if text is None or text == "":
                raise invalid_value(
                    f"The message attribute '{name}' must contain non-empty message attribute value for "
                    f"message attribute type '{base.split('.')[0]}'."
                )
            if base == "Number":
                _check_number(name, str(text))
            elif base == "String.Array":
                _check_array(name, str(text))
            size += len(str(text).encode())
        size += len(name.encode()) + len(data_type.encode())
    return size


def _check_number(name: str, text: str) -> None:
    try:
        number = Decimal(text)
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite():
        raise invalid_value(f"Could not cast message attribute '{name}' value to number.")


def _check_array(name: str, text: str) -> None:
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        doc = None
    if not isinstance(doc, list):
        raise invalid_value(
            f"The message attribute '{name}' with type 'String.Array' has an invalid value: a JSON array is expected."
        )


def stored_attributes(attributes: dict[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Attributes as the JSON envelope shows them: ``{"Type": ..., "Value": ...}``."""
    out: dict[str, dict[str, str]] = {}
    for name, value in attributes.items():
        if value.get("StringValue") is not None:
            out[name] = {"Type": value["DataType"], "Value": str(value["StringValue"])}
        else:
            out[name] = {
                "Type": value["DataType"],
                "Value": base64.b64encode(bytes(value["BinaryValue"])).decode(),
            }
    return out


def sqs_attributes(stored: dict[str, dict[str, str]]) -> dict[str, dict[str, Any]]:
    """Stored attributes as SQS message attributes (raw message delivery)."""
    out: dict[str, dict[str, Any]] = {}
    for name, value in stored.items():
        if value["Type"].startswith("Binary"):
            out[name] = {"DataType": value["Type"], "BinaryValue": base64.b64decode(value["Value"])}
        else:
            out[name] = {"DataType": value["Type"], "StringValue": value["Value"]}
    return out


# -- filter policies ------------------------------------------------------------------


@lru_cache(maxsize=4096)
def compile_filter_policy(policy: str) -> CompiledPattern:
    """Validate a FilterPolicy with SNS's rules (InvalidParameter with AWS's reason)."""
    try:
        return CompiledPattern.compile(policy, mode="sns")
    except PatternError as error:
        raise invalid(f"FilterPolicy: {error.reason}") from None


def attributes_event(stored: dict[str, dict[str, str]]) -> dict[str, Any]:
    """The document a MessageAttributes-scoped policy is matched against."""
    event: dict[str, Any] = {}
    for name, value in stored.items():
        kind = value["Type"]
        if kind.startswith("Number"):
            number = Decimal(value["Value"])
            event[name] = int(number) if number == number.to_integral_value() else float(number)
        elif kind.startswith("String.Array"):
            event[name] = orjson.loads(value["Value"])
        elif kind.startswith("String"):
            event[name] = value["Value"]
    return event


def filter_matches(subscription: Subscription, message: dict[str, Any]) -> bool:
    """Whether the subscription's filter policy lets the message through."""
    policy = subscription.attributes.get("FilterPolicy")
    if not policy:
        return True
    compiled = compile_filter_policy(policy)
    if subscription.attributes.get("FilterPolicyScope") == "MessageBody":
        try:
            body = orjson.loads(message["message"])
        except orjson.JSONDecodeError:
            return False
        return isinstance(body, dict) and compiled.matches(body)
    return compiled.matches(attributes_event(message.get("attrs") or {}))


# -- what each protocol receives ------------------------------------------------------


def message_for(message: dict[str, Any], protocol: str) -> str:
    """The text for a protocol: with MessageStructure json, its own entry or ``default``."""
    text: str = message["message"]
    if message.get("structure") == "json":
        doc = orjson.loads(text)
        chosen = doc.get(protocol, doc["default"])
        return chosen if isinstance(chosen, str) else orjson.dumps(chosen).decode()
    return text


@lru_cache(maxsize=4096)
def unsubscribe_url(endpoint: str, subscription_arn: str) -> str:
    """The UnsubscribeURL nubes serves for a subscription."""
    return f"{endpoint}/_nubes/sns/unsubscribe?SubscriptionArn={quote(subscription_arn, safe='')}"


def subscribe_url(endpoint: str, topic_arn: str, token: str) -> str:
    """The SubscribeURL that confirms a subscription by its token."""
    return f"{endpoint}/_nubes/sns/confirm?TopicArn={quote(topic_arn, safe='')}&Token={token}"


def signature_key(message: dict[str, Any], protocol: str) -> tuple[str, str]:
    """What a notification's signature depends on besides its SignatureVersion: the
    message, and the protocol only when MessageStructure json gives it its own text."""
    return message["id"], protocol if message.get("structure") == "json" else ""


def notification_to_sign(message: dict[str, Any], protocol: str) -> str:
    """The string a notification's signature covers (see ``notification``), so the
    signature can be made ahead of it."""
    doc: dict[str, Any] = {"Type": "Notification", "MessageId": message["id"],
                           "TopicArn": message["topic"], "Subject": message.get("subject"),
                           "Message": message_for(message, protocol), "Timestamp": message["ts"]}  # fmt: skip
    return string_to_sign(doc)


def notification(
    message: dict[str, Any],
    subscription: Subscription,
    signer: Signer,
    version: str,
    *,
    lambda_style: bool = False,
) -> dict[str, Any]:
    """The signed JSON notification (``Sns`` record of a Lambda event when ``lambda_style``)."""
    endpoint = message["endpoint"]
    doc: dict[str, Any] = {"Type": "Notification", "MessageId": message["id"]}
    if message.get("seq"):
        doc["SequenceNumber"] = message["seq"]
    doc["TopicArn"] = message["topic"]
    if message.get("subject") is not None or lambda_style:
        doc["Subject"] = message.get("subject")
    doc["Message"] = message_for(message, subscription.protocol)
    doc["Timestamp"] = message["ts"]
    doc["SignatureVersion"] = version
    # the signed fields are the same for every subscriber of this message
    doc["Signature"] = signer.sign(
        doc, version, cache_key=signature_key(message, subscription.protocol)
    )
    cert, unsub = endpoint + CERT_PATH, unsubscribe_url(endpoint, subscription.arn)
    if lambda_style:
        doc["SigningCertUrl"], doc["UnsubscribeUrl"] = cert, unsub
        doc["MessageAttributes"] = message.get("attrs") or {}
    else:
        doc["SigningCertURL"], doc["UnsubscribeURL"] = cert, unsub
        if message.get("attrs"):
            doc["MessageAttributes"] = message["attrs"]
    return doc


@lru_cache(maxsize=4096)
def _unsubscribe_url_json(endpoint: str, subscription_arn: str) -> str:
    return orjson.dumps(unsubscribe_url(endpoint, subscription_arn)).decode()


class NotificationTexts:
    """Serialized JSON notifications (``notification``, not Lambda style) for the many
    subscribers of the same messages: everything but the UnsubscribeURL is the same for
    every subscriber of a message (per SignatureVersion and protocol variant), so it is
    serialized once and each subscriber's URL spliced in. Byte for byte what
    ``orjson.dumps(notification(...))`` gives."""

    def __init__(self, signer: Signer) -> None:
        self._signer = signer
        self._parts: dict[tuple[str, str, str], tuple[str, str]] = {}

    def json(self, message: dict[str, Any], subscription: Subscription, version: str) -> str:
        """The notification of ``message`` for ``subscription`` as JSON text."""
        key = (version, *signature_key(message, subscription.protocol))
        parts = self._parts.get(key)
        if parts is None:
            doc = notification(message, subscription, self._signer, version)
            del doc["UnsubscribeURL"]  # the last key but MessageAttributes
            attributes = doc.pop("MessageAttributes", None)
            head = orjson.dumps(doc).decode()[:-1] + ',"UnsubscribeURL":'
            tail = "}"
            if attributes is not None:
                tail = ',"MessageAttributes":' + orjson.dumps(attributes).decode() + "}"
            parts = self._parts[key] = (head, tail)
        url = _unsubscribe_url_json(message["endpoint"], subscription.arn)
        return parts[0] + url + parts[1]


def confirmation(
    subscription: Subscription,
    message_id: str,
    timestamp: str,
    endpoint: str,
    signer: Signer,
    version: str,
) -> dict[str, Any]:
    """The SubscriptionConfirmation document sent to HTTP(S) and email endpoints."""
    doc: dict[str, Any] = {
        "Type": "SubscriptionConfirmation",
        "MessageId": message_id,
        "Token": subscription.token,
        "TopicArn": subscription.topic_arn,
        "Message": f"You have chosen to subscribe to the topic {subscription.topic_arn}.\n"
        "To confirm the subscription, visit the SubscribeURL included in this message.",
        "SubscribeURL": subscribe_url(endpoint, subscription.topic_arn, subscription.token),
        "Timestamp": timestamp,
        "SignatureVersion": version,
    }
    doc["Signature"] = signer.sign(doc, version)
    doc["SigningCertURL"] = endpoint + CERT_PATH
    return doc


def content_dedup_id(message: str) -> str:
    """Content-based deduplication id of FIFO topics: SHA-256 of the message."""
    return hashlib.sha256(message.encode()).hexdigest()


def batch_error(entry_id: str, error: AwsError) -> dict[str, Any]:
    """A PublishBatch ``Failed`` entry for an error."""
    return {
        "Id": entry_id,
        "Code": error.code,
        "Message": error.message,
        "SenderFault": error.sender_fault,
    }
