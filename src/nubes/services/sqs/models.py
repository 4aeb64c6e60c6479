"""SQS records, limits and errors: what a queue is, independent of the wire.

A queue record is stored as JSON under ``sqs.queues`` keyed ``region/account/name``.
Its messages live in the store queue ``sqs/<qid>``, where ``qid`` is fresh for
every CreateQueue, so a deleted and re-created queue never sees old messages.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field, fields
from functools import cached_property, lru_cache
from typing import Any
from urllib.parse import urlparse

import orjson

from nubes.aws.errors import AwsError

QUEUES_TABLE = "sqs.queues"
DEDUP_TABLE = "sqs.dedup"
MOVE_TASKS_TABLE = "sqs.move_tasks"

MAX_BATCH = 10
DEDUP_WINDOW = 300.0
PURGE_WINDOW = 60.0
DEFAULT_MAX_MESSAGE_SIZE = 262144
MAX_MESSAGE_SIZE_LIMIT = 1048576
MAX_MESSAGE_ATTRIBUTES = 10

#: queue attribute → (min, max, default) for the integer attributes
INT_ATTRIBUTES: dict[str, tuple[int, int, int]] = {
    "DelaySeconds": (0, 900, 0),
    "MaximumMessageSize": (1024, MAX_MESSAGE_SIZE_LIMIT, DEFAULT_MAX_MESSAGE_SIZE),
    "MessageRetentionPeriod": (60, 1209600, 345600),
    "ReceiveMessageWaitTimeSeconds": (0, 20, 0),
    "VisibilityTimeout": (0, 43200, 30),
    "KmsDataKeyReusePeriodSeconds": (60, 86400, 300),
}
STRING_ATTRIBUTES = {"Policy", "RedrivePolicy", "RedriveAllowPolicy", "KmsMasterKeyId"}
BOOL_ATTRIBUTES = {"SqsManagedSseEnabled", "FifoQueue", "ContentBasedDeduplication"}
FIFO_ONLY_ATTRIBUTES = {"ContentBasedDeduplication", "DeduplicationScope", "FifoThroughputLimit"}
COMPUTED_ATTRIBUTES = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
    "QueueArn",
)
SETTABLE_ATTRIBUTES = (
    set(INT_ATTRIBUTES)
    | STRING_ATTRIBUTES
    | BOOL_ATTRIBUTES
    | {"DeduplicationScope", "FifoThroughputLimit"}
)

#: every name GetQueueAttributes knows
QUEUE_ATTRIBUTE_NAMES = SETTABLE_ATTRIBUTES | set(COMPUTED_ATTRIBUTES) | {"All"}
_ENUM_ATTRIBUTES = {
    "DeduplicationScope": ("queue", "messageGroup"),
    "FifoThroughputLimit": ("perQueue", "perMessageGroupId"),
}
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")

#: AWS's codes for the old query protocol, which the JSON protocol reports in the
#: ``x-amzn-query-error`` header
QUERY_CODES = {
    "QueueDoesNotExist": "AWS.SimpleQueueService.NonExistentQueue",
    "QueueNameExists": "QueueAlreadyExists",
    "QueueDeletedRecently": "AWS.SimpleQueueService.QueueDeletedRecently",
    "PurgeQueueInProgress": "AWS.SimpleQueueService.PurgeQueueInProgress",
    "BatchEntryIdsNotDistinct": "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
    "EmptyBatchRequest": "AWS.SimpleQueueService.EmptyBatchRequest",
    "TooManyEntriesInBatchRequest": "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
    "InvalidBatchEntryId": "AWS.SimpleQueueService.InvalidBatchEntryId",
    "BatchRequestTooLong": "AWS.SimpleQueueService.BatchRequestTooLong",
    "MessageNotInflight": "AWS.SimpleQueueService.MessageNotInflight",
    "UnsupportedOperation": "AWS.SimpleQueueService.UnsupportedOperation",
}


def sqs_error(code: str, message: str, status: int = 400) -> AwsError:
    """An SQS error carrying its query-protocol code for ``x-amzn-query-error``."""
    return AwsError(code, message, status, fields={"QueryErrorCode": QUERY_CODES.get(code, code)})


def invalid_parameter(message: str) -> AwsError:
    """SQS's InvalidParameterValue error."""
    return sqs_error("InvalidParameterValue", message)


def queue_not_found() -> AwsError:
    """QueueDoesNotExist (AWS.SimpleQueueService.NonExistentQueue)."""
    return sqs_error("QueueDoesNotExist", "The specified queue does not exist.")


def as_query_error(error: AwsError) -> AwsError:
    """The same error as the query protocol reports it (its code is the query code)."""
    code = error.fields.pop("QueryErrorCode", None)
    if code is not None:
        error.code = str(code)
    return error


@dataclass
class Queue:
    """One queue's stored state."""

    name: str
    region: str
    account: str
    qid: str
    created: float
    modified: float
    attributes: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    last_purge: float = 0.0

    @cached_property
    def fifo(self) -> bool:
        return self.name.endswith(".fifo")

    @cached_property
    def arn(self) -> str:
        return f"arn:aws:sqs:{self.region}:{self.account}:{self.name}"

    @cached_property
    def signal(self) -> str:
        """The bus wake-up name receivers of this queue wait on."""
        return f"sqs:{self.arn}"

    @cached_property
    def store_queue(self) -> str:
        return f"sqs/{self.qid}"

    @cached_property
    def key(self) -> bytes:
        return queue_key(self.region, self.account, self.name)

    def url(self, endpoint: str) -> str:
        return f"{endpoint}/{self.account}/{self.name}"

    def int_attr(self, name: str) -> int:
        value = self.attributes.get(name)
        return int(value) if value is not None else INT_ATTRIBUTES[name][2]

    @cached_property
    def visibility_timeout(self) -> int:
        return self.int_attr("VisibilityTimeout")

    @property
    def redrive(self) -> tuple[str, int] | None:
        """(dead-letter queue ARN, maxReceiveCount) when a RedrivePolicy is set."""
        raw = self.attributes.get("RedrivePolicy")
        if not raw:
            return None
        policy = orjson.loads(raw)
        return str(policy["deadLetterTargetArn"]), int(policy["maxReceiveCount"])

    @cached_property
    def content_based_dedup(self) -> bool:
        return self.attributes.get("ContentBasedDeduplication", "false") == "true"

    @cached_property
    def max_message_size(self) -> int:
        return self.int_attr("MaximumMessageSize")

    @cached_property
    def delay_seconds(self) -> int:
        return self.int_attr("DelaySeconds")

    def dump(self) -> bytes:
        """The stored form (the fields only: cached properties are derived)."""
        return orjson.dumps({f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def load(cls, raw: bytes) -> Queue:
        return cls(**orjson.loads(raw))

    @classmethod
    def new(
        cls, name: str, region: str, account: str, attributes: dict[str, str], tags: dict[str, str]
    ) -> Queue:
        now = time.time()
        return cls(name, region, account, uuid.uuid4().hex, now, now, attributes, tags)


def queue_key(region: str, account: str, name: str) -> bytes:
    """The ``sqs.queues`` key of a queue."""
    return f"{region}/{account}/{name}".encode()


def parse_arn(arn: str) -> tuple[str, str, str]:
    """(region, account, name) of an SQS queue ARN."""
    parts = arn.split(":")
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sqs" or not parts[5]:
        raise invalid_parameter(
            f"Value {arn} for parameter QueueArn is invalid. Reason: Invalid ARN."
        )
    return parts[3], parts[4], parts[5]


@lru_cache(maxsize=4096)
def parse_queue_url(url: str, default_account: str) -> tuple[str, str]:
    """(account, name) from a queue URL (``.../{account}/{name}``) or a bare name."""
    if "/" not in url:
        return default_account, url
    path = urlparse(url).path.strip("/")
    parts = path.split("/")
    if len(parts) < 2 or not parts[-1]:
        raise invalid_parameter(
            f"Value {url} for parameter QueueUrl is invalid. Reason: Invalid URL."
        )
    return parts[-2], parts[-1]


def check_queue_name(name: str, fifo: bool) -> None:
    """AWS's queue naming rules."""
    base = name[:-5] if name.endswith(".fifo") else name
    if not _QUEUE_NAME.match(base) or len(name) > 80:
        raise invalid_parameter(
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length"
        )
    if fifo and not name.endswith(".fifo"):
        raise invalid_parameter(
            "The name of a FIFO queue can only include alphanumeric characters, "
            "hyphens, or underscores, must end with .fifo suffix and be 1 to 80 in length."
        )
    if not fifo and name.endswith(".fifo"):
        raise invalid_parameter(
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length"
        )


def validate_attributes(attrs: dict[str, str], fifo: bool) -> dict[str, str]:
    """Check settable queue attributes; returns them normalised (booleans lower-case)."""
    out: dict[str, str] = {}
    for name, value in attrs.items():
        if name not in SETTABLE_ATTRIBUTES:
            raise sqs_error("InvalidAttributeName", f"Unknown Attribute {name}.")
        if name in FIFO_ONLY_ATTRIBUTES and not fifo:
            raise sqs_error("InvalidAttributeName", f"Unknown Attribute {name}.")
        value = str(value)
        if name in INT_ATTRIBUTES:
            low, high, _ = INT_ATTRIBUTES[name]
            if not value.lstrip("-").isdigit() or not low <= int(value) <= high:
                raise sqs_error("InvalidAttributeValue", f"Invalid value for the parameter {name}.")
            value = str(int(value))
        elif name in BOOL_ATTRIBUTES:
            if value.lower() not in ("true", "false"):
                raise sqs_error("InvalidAttributeValue", f"Invalid value for the parameter {name}.")
            value = value.lower()
        elif value not in _ENUM_ATTRIBUTES.get(name, (value,)):
            raise sqs_error("InvalidAttributeValue", f"Invalid value for the parameter {name}.")
        elif name == "RedrivePolicy" and value:
            value = _redrive_policy(value)
        elif name in ("RedriveAllowPolicy", "Policy") and value:
            _json_object(name, value)
        out[name] = value
    if out.get("FifoQueue") == "false" and fifo:
        raise sqs_error("InvalidAttributeValue", "Invalid value for the parameter FifoQueue.")
    if out.get("FifoQueue") == "true" and not fifo:
        raise sqs_error("InvalidAttributeValue", "Invalid value for the parameter FifoQueue.")
    return out


def _json_object(name: str, value: str) -> dict[str, Any]:
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict):
        raise sqs_error(
            "InvalidAttributeValue",
            f"Invalid value for the parameter {name}. Reason: Invalid JSON.",
        )
    return doc


def _redrive_policy(value: str) -> str:
    doc = _json_object("RedrivePolicy", value)
    target = doc.get("deadLetterTargetArn")
    count = doc.get("maxReceiveCount")
    if not isinstance(target, str) or count is None:
        raise sqs_error(
            "InvalidParameterValue",
            "Value "
            + value
            + " for parameter RedrivePolicy is invalid. Reason: Redrive policy does not "
            "contain mandatory attribute: "
            + ("deadLetterTargetArn." if not isinstance(target, str) else "maxReceiveCount."),
        )
    try:
        max_count = int(count)
    except (TypeError, ValueError):
        max_count = 0
    if not 1 <= max_count <= 1000:
        raise sqs_error(
            "InvalidParameterValue",
            f"Value {value} for parameter RedrivePolicy is invalid. Reason: Invalid value for maxReceiveCount: "
            f"{count}, valid values are from 1 to 1000 both inclusive.",
        )
    parse_arn(target)
    # AWS hands the policy back in its own normal form
    return orjson.dumps({"deadLetterTargetArn": target, "maxReceiveCount": max_count}).decode()


def allows_source(dlq: Queue, source_arn: str) -> bool:
    """Whether the dead-letter queue's RedriveAllowPolicy lets ``source_arn`` use it."""
    raw = dlq.attributes.get("RedriveAllowPolicy")
    if not raw:
        return True
    doc = orjson.loads(raw)
    permission = doc.get("redrivePermission", "allowAll")
    if permission == "denyAll":
        return False
    if permission == "byQueue":
        return source_arn in (doc.get("sourceQueueArns") or [])
    return True
