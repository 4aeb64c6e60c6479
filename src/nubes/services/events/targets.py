"""Calling a target: what EventBridge (and EventBridge Scheduler) does with an ARN.

Every call goes through the internal client ``app.call``; a service that fails
or is not there raises :class:`DeliveryError`, which the delivery queue retries
per the target's RetryPolicy before dead-lettering it.
"""

from __future__ import annotations

import logging
import random
import uuid
from typing import TYPE_CHECKING, Any

import orjson

from nubes.aws.errors import AwsError
from nubes.services.events.transform import extract

if TYPE_CHECKING:
    from nubes.app import App

log = logging.getLogger(__name__)

#: errors that retrying cannot fix: AWS sends these to the DLQ at once
_PERMANENT = {
    "ResourceNotFoundException", "QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue",
    "NotFound", "NotFoundException", "StateMachineDoesNotExist", "ValidationException",
    "InvalidParameterException", "InvalidParameterValueException", "AccessDenied",
    "AccessDeniedException", "InvalidArn", "KMSAccessDeniedException", "RequestEntityTooLarge",
    "InvalidRequestContentException", "InvalidMessageContents",
}  # fmt: skip
_NOT_FOUND = {
    "ResourceNotFoundException", "QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue",
    "NotFound", "NotFoundException", "StateMachineDoesNotExist",
}  # fmt: skip


def fast_id() -> str:
    """A random (version 4) UUID without a system call: event and execution ids
    need uniqueness, not secrecy, and ``uuid4`` costs tens of microseconds here."""
    return str(uuid.UUID(int=random.getrandbits(128), version=4))


class DeliveryError(Exception):
    """A failed invocation of a target."""

    def __init__(self, code: str, message: str, *, retriable: bool = True) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retriable = retriable

    @classmethod
    def from_aws(cls, error: AwsError) -> DeliveryError:
        return cls(error.code, error.message, retriable=error.code not in _PERMANENT)

    @property
    def dlq_code(self) -> str:
        """The ``ERROR_CODE`` attribute of a dead-lettered message."""
        if self.code in _NOT_FOUND:
            return "RESOURCE_NOT_FOUND"
        if "AccessDenied" in self.code:
            return "NO_PERMISSIONS"
        if "Throttl" in self.code or self.code == "TooManyRequestsException":
            return "THROTTLING"
        return "SDK_CLIENT_ERROR"


def arn_parts(arn: str) -> tuple[str, str, str, str]:
    """``(service, region, account, resource)`` of an ARN (DeliveryError if malformed)."""
    parts = arn.split(":", 5)
    if len(parts) < 6 or parts[0] != "arn":
        raise DeliveryError("InvalidArn", f"Invalid ARN: {arn}", retriable=False)
    return parts[2], parts[3], parts[4], parts[5]


async def call(
    app: App, service: str, operation: str, params: dict[str, Any], region: str
) -> dict[str, Any]:
    """``app.call`` with failures as DeliveryError."""
    try:
        return await app.call(service, operation, params, region=region)
    except AwsError as exc:
        raise DeliveryError.from_aws(exc) from None
    except Exception as exc:  # a broken service must not stop deliveries to others
        log.exception("delivery to %s.%s failed", service, operation)
        raise DeliveryError("InternalException", str(exc)) from None


async def queue_url(app: App, arn: str, urls: dict[str, str] | None = None) -> str:
    """The URL of the SQS queue with this ARN (remembered in ``urls`` if given)."""
    if urls is not None and arn in urls:
        return urls[arn]
    _, region, account, name = arn_parts(arn)
    found = await call(
        app, "sqs", "GetQueueUrl", {"QueueName": name, "QueueOwnerAWSAccountId": account}, region
    )
    url = str(found["QueueUrl"])
    if urls is not None:
        if len(urls) > 10_000:
            urls.clear()
        urls[arn] = url
    return url


async def send_to_queue(
    app: App,
    arn: str,
    body: str,
    *,
    group_id: str | None = None,
    dedup_id: str | None = None,
    attributes: dict[str, str] | None = None,
    urls: dict[str, str] | None = None,
) -> None:
    """SendMessage to the queue ``arn``; FIFO queues get a group (and dedup) id."""
    _, region, _, name = arn_parts(arn)
    params: dict[str, Any] = {"QueueUrl": await queue_url(app, arn, urls), "MessageBody": body}
    if name.endswith(".fifo"):
        params["MessageGroupId"] = group_id or "default"
        if dedup_id:
            params["MessageDeduplicationId"] = dedup_id
    elif group_id:
        params["MessageGroupId"] = group_id
    if attributes:
        params["MessageAttributes"] = {
            k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()
        }
    try:
        await call(app, "sqs", "SendMessage", params, region)
    except DeliveryError:
        if urls is not None:
            urls.pop(arn, None)  # the queue may be gone (or recreated elsewhere)
        raise


async def invoke(
    app: App,
    target: dict[str, Any],
    payload: str,
    *,
    event: dict[str, Any] | None = None,
    event_id: str = "",
    urls: dict[str, str] | None = None,
) -> None:
    """Deliver ``payload`` to ``target["Arn"]`` the way EventBridge does for its service
    (``urls`` remembers SQS queue URLs between calls)."""
    arn: str = target["Arn"]
    service, region, _, resource = arn_parts(arn)
    if service == "lambda":
        await call(app, "lambda", "Invoke", {
            "FunctionName": arn, "InvocationType": "Event", "Payload": payload.encode()}, region)  # fmt: skip
    elif service == "sqs":
        group = (target.get("SqsParameters") or {}).get("MessageGroupId")
        await send_to_queue(app, arn, payload, group_id=group, dedup_id=event_id or None, urls=urls)
    elif service == "sns":
        params: dict[str, Any] = {"TopicArn": arn, "Message": payload}
        group = (target.get("SqsParameters") or {}).get("MessageGroupId")
        if arn.endswith(".fifo"):
            params["MessageGroupId"] = group or "default"
            if event_id:
                params["MessageDeduplicationId"] = event_id
        await call(app, "sns", "Publish", params, region)
    elif service == "states":
        await call(app, "stepfunctions", "StartExecution", {
            "stateMachineArn": arn, "input": payload}, region)  # fmt: skip
    elif service == "events" and resource.startswith("event-bus/"):
        await _put_to_bus(app, arn, region, target, payload, event)
    elif service == "kinesis" and resource.startswith("stream/"):
        await _put_record(app, arn, region, target, payload, event, event_id)
    elif service == "firehose" and resource.startswith("deliverystream/"):
        await call(app, "firehose", "PutRecord", {
            "DeliveryStreamName": resource.partition("/")[2],
            "Record": {"Data": payload.encode()}}, region)  # fmt: skip
    elif service == "logs" and resource.startswith("log-group:"):
        await _put_log_event(app, region, resource, payload, event_id)
    else:
        raise DeliveryError(
            "NotImplemented", f"nubes cannot deliver events to targets of type {service}: {arn}"
        )


async def _put_to_bus(
    app: App,
    arn: str,
    region: str,
    target: dict[str, Any],
    payload: str,
    event: dict[str, Any] | None,
) -> None:
    if event is not None:
        entry = {
            "Source": event.get("source"), "DetailType": event.get("detail-type"),
            "Detail": orjson.dumps(event.get("detail", {})).decode(),
            "Resources": event.get("resources") or [], "EventBusName": arn,
        }  # fmt: skip
    else:
        params = target.get("EventBridgeParameters") or {}
        entry = {
            "Source": params.get("Source"), "DetailType": params.get("DetailType"),
            "Detail": payload, "EventBusName": arn,
        }  # fmt: skip
    result = await call(app, "events", "PutEvents", {"Entries": [entry]}, region)
    failed = [e for e in result.get("Entries", []) if e.get("ErrorCode")]
    if failed:
        raise DeliveryError(failed[0]["ErrorCode"], failed[0].get("ErrorMessage", ""))


async def _put_record(
    app: App,
    arn: str,
    region: str,
    target: dict[str, Any],
    payload: str,
    event: dict[str, Any] | None,
    event_id: str,
) -> None:
    """Kinesis: the partition key comes from ``KinesisParameters.PartitionKeyPath``
    (a JSON path into the event), else the event id."""
    path = (target.get("KinesisParameters") or {}).get("PartitionKeyPath")
    key = event_id or "eventbridge"
    if path and event is not None:
        value = extract(event, path)
        if isinstance(value, str | int | float):
            key = str(value)
    await call(app, "kinesis", "PutRecord", {
        "StreamARN": arn, "Data": payload.encode(), "PartitionKey": key}, region)  # fmt: skip


async def _put_log_event(app: App, region: str, resource: str, payload: str, stream: str) -> None:
    group = resource[len("log-group:") :].removesuffix(":*")
    stream = stream or "eventbridge"
    try:
        await app.call(
            "logs",
            "CreateLogStream",
            {"logGroupName": group, "logStreamName": stream},
            region=region,
        )
    except AwsError as exc:
        if exc.code != "ResourceAlreadyExistsException":
            raise DeliveryError.from_aws(exc) from None
    import time

    await call(app, "logs", "PutLogEvents", {
        "logGroupName": group, "logStreamName": stream,
        "logEvents": [{"timestamp": int(time.time() * 1000), "message": payload}]}, region)  # fmt: skip
