"""SNS records, limits and errors.

Topics live in ``sns.topics`` keyed by ARN; subscriptions in ``sns.subscriptions``
keyed by their ARN (``{topic_arn}:{uuid}``), so a topic's subscriptions are one
prefix scan.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from nubes.aws.errors import AwsError

TOPICS_TABLE = "sns.topics"
SUBSCRIPTIONS_TABLE = "sns.subscriptions"
DEDUP_TABLE = "sns.dedup"
SEQUENCE_TABLE = "sns.sequence"
MAILBOX_TABLE = "sns.mailbox"
DELIVERY_QUEUE = "sns/deliveries"
FIFO_DELIVERY_QUEUE = "sns/deliveries-fifo"

MAX_MESSAGE_BYTES = 262144
MAX_BATCH = 10
DEDUP_WINDOW = 300.0

PROTOCOLS = {
    "http",
    "https",
    "email",
    "email-json",
    "sms",
    "sqs",
    "application",
    "lambda",
    "firehose",
}
DELIVERED_PROTOCOLS = {"http", "https", "email", "email-json", "sqs", "lambda"}

TOPIC_ATTRIBUTES = {
    "DisplayName", "Policy", "DeliveryPolicy", "KmsMasterKeyId", "SignatureVersion", "TracingConfig",
    "FifoTopic", "ContentBasedDeduplication", "ArchivePolicy", "FifoThroughputScope", "DataProtectionPolicy",
    "HTTPSuccessFeedbackRoleArn", "HTTPFailureFeedbackRoleArn", "HTTPSuccessFeedbackSampleRate",
    "LambdaSuccessFeedbackRoleArn", "LambdaFailureFeedbackRoleArn", "LambdaSuccessFeedbackSampleRate",
    "SQSSuccessFeedbackRoleArn", "SQSFailureFeedbackRoleArn", "SQSSuccessFeedbackSampleRate",
}  # fmt: skip
SUBSCRIPTION_ATTRIBUTES = {
    "DeliveryPolicy", "FilterPolicy", "FilterPolicyScope", "RawMessageDelivery", "RedrivePolicy",
    "SubscriptionRoleArn", "ReplayPolicy",
}  # fmt: skip

_TOPIC_NAME = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


def invalid(message: str) -> AwsError:
    """SNS's InvalidParameter error (the message starts "Invalid parameter: ")."""
    return AwsError("InvalidParameter", f"Invalid parameter: {message}", 400)


def invalid_value(message: str) -> AwsError:
    """SNS's ParameterValueInvalid error (bad message attributes)."""
    return AwsError("ParameterValueInvalid", message, 400)


def topic_not_found() -> AwsError:
    """NotFound for a topic."""
    return AwsError("NotFound", "Topic does not exist", 404)


def subscription_not_found() -> AwsError:
    """NotFound for a subscription."""
    return AwsError("NotFound", "Subscription does not exist", 404)


def parse_topic_arn(arn: str) -> tuple[str, str, str]:
    """(region, account, name) of a topic ARN, or InvalidParameter."""
    parts = arn.split(":") if isinstance(arn, str) else []
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sns" or not parts[5]:
        raise invalid("TopicArn")
    return parts[3], parts[4], parts[5]


def check_topic_name(name: str, fifo: bool) -> None:
    """AWS's topic naming rules (``.fifo`` suffix for FIFO topics)."""
    base = name[:-5] if fifo and name.endswith(".fifo") else name
    if not _TOPIC_NAME.match(base) or len(name) > 256 or (fifo and not name.endswith(".fifo")):
        raise invalid("Topic Name")


@dataclass
class Topic:
    """One topic's stored state."""

    arn: str
    attributes: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    created: float = field(default_factory=time.time)

    @property
    def name(self) -> str:
        return self.arn.rsplit(":", 1)[1]

    @property
    def account(self) -> str:
        return self.arn.split(":")[4]

    @property
    def fifo(self) -> bool:
        return self.attributes.get("FifoTopic") == "true"

    @property
    def content_based_dedup(self) -> bool:
        return self.attributes.get("ContentBasedDeduplication") == "true"

    @property
    def signature_version(self) -> str:
        return self.attributes.get("SignatureVersion") or "1"

    def dump(self) -> bytes:
        return orjson.dumps(self.__dict__)

    @classmethod
    def load(cls, raw: bytes) -> Topic:
        return cls(**orjson.loads(raw))


@dataclass
class Subscription:
    """One subscription's stored state."""

    arn: str
    topic_arn: str
    protocol: str
    endpoint: str
    owner: str
    attributes: dict[str, str] = field(default_factory=dict)
    confirmed: bool = False
    token: str = ""

    @property
    def raw(self) -> bool:
        return self.attributes.get("RawMessageDelivery") == "true"

    @property
    def listed_arn(self) -> str:
        """What List* operations show: the ARN, or "PendingConfirmation"."""
        return self.arn if self.confirmed else "PendingConfirmation"

    def dump(self) -> bytes:
        return orjson.dumps(self.__dict__)

    @classmethod
    def load(cls, raw: bytes) -> Subscription:
        return cls(**orjson.loads(raw))

    @classmethod
    def new(
        cls, topic: Topic, protocol: str, endpoint: str, attributes: dict[str, str]
    ) -> Subscription:
        return cls(
            arn=f"{topic.arn}:{uuid.uuid4()}",
            topic_arn=topic.arn,
            protocol=protocol,
            endpoint=endpoint,
            owner=topic.account,
            attributes=attributes,
            token=uuid.uuid4().hex + uuid.uuid4().hex,
        )


def default_topic_policy(topic_arn: str, account: str) -> str:
    """The policy AWS attaches to a new topic (owner may do everything)."""
    actions = ["SNS:GetTopicAttributes", "SNS:SetTopicAttributes", "SNS:AddPermission", "SNS:RemovePermission",
               "SNS:DeleteTopic", "SNS:Subscribe", "SNS:ListSubscriptionsByTopic", "SNS:Publish"]  # fmt: skip
    policy: dict[str, Any] = {
        "Version": "2008-10-17",
        "Id": "__default_policy_ID",
        "Statement": [{
            "Sid": "__default_statement_ID", "Effect": "Allow", "Principal": {"AWS": "*"},
            "Action": actions, "Resource": topic_arn,
            "Condition": {"StringEquals": {"AWS:SourceOwner": account}},
        }],
    }  # fmt: skip
    return orjson.dumps(policy).decode()


DEFAULT_DELIVERY_POLICY = orjson.dumps({
    "http": {
        "defaultHealthyRetryPolicy": {
            "minDelayTarget": 20, "maxDelayTarget": 20, "numRetries": 3, "numMaxDelayRetries": 0,
            "numNoDelayRetries": 0, "numMinDelayRetries": 0, "backoffFunction": "linear",
        },
        "disableSubscriptionOverrides": False,
        "defaultRequestPolicy": {"headerContentType": "text/plain; charset=UTF-8"},
    }
}).decode()  # fmt: skip
