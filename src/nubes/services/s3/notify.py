"""Event notifications: bucket configuration, event records in AWS's shape, and a
durable delivery worker (records are queued in the same store write as the change
they describe, then sent to SQS, SNS, Lambda or the EventBridge bus)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any
from urllib.parse import quote_plus

import orjson

from nubes.aws.errors import AwsError
from nubes.services.base import RequestContext
from nubes.services.s3.base import S3Base
from nubes.services.s3.models import NOTIFY_QUEUE, Record, iso_time, load
from nubes.services.s3.versions import enqueue_events
from nubes.storage.base import QueueMessage, Txn

log = logging.getLogger(__name__)

WAKE = "s3:notifications"
LEASE_SECONDS = 30.0
MAX_ATTEMPTS = 12
_KINDS = (
    ("QueueConfigurations", "QueueArn", "sqs"),
    ("TopicConfigurations", "TopicArn", "sns"),
    ("LambdaFunctionConfigurations", "LambdaFunctionArn", "lambda"),
)


def _event_matches(patterns: list[str], event: str) -> bool:
    for pattern in patterns:
        if pattern == event or (pattern.endswith(":*") and event.startswith(pattern[:-1])):
            return True
    return False


def _filter_matches(config: dict[str, Any], key: str) -> bool:
    rules = ((config.get("Filter") or {}).get("Key") or {}).get("FilterRules") or []
    for rule in rules:
        name, value = str(rule.get("Name", "")).lower(), str(rule.get("Value", ""))
        if name == "prefix" and not key.startswith(value):
            return False
        if name == "suffix" and not key.endswith(value):
            return False
    return True


class Change:
    """What happened to an object, for notification records."""

    def __init__(self, ctx: RequestContext | None, event: str, key: str, record: Record | None, reason: str) -> None:
        self.event = event  # e.g. ``s3:ObjectCreated:Put``
        self.key = key
        self.record = record or {}
        self.reason = reason  # the API call: PutObject, CompleteMultipartUpload, ...
        self.region = ctx.region if ctx is not None else ""
        self.request_id = ctx.request_id if ctx is not None else uuid.uuid4().hex[:16].upper()
        self.principal = f"AWS:{ctx.access_key}" if ctx is not None and ctx.access_key else "Anonymous"
        self.source_ip = ctx.http.client_ip if ctx is not None and ctx.http is not None else "127.0.0.1"
        self.time = time.time()
        self.sequencer = f"{time.time_ns():018X}"


def event_record(bucket: Record, change: Change, configuration_id: str) -> dict[str, Any]:
    """One entry of ``Records`` exactly as S3 sends it."""
    obj: dict[str, Any] = {"key": quote_plus(change.key, safe="/")}
    rec = change.record
    if change.event.startswith("s3:ObjectCreated"):
        obj["size"] = rec.get("size", 0)
        obj["eTag"] = str(rec.get("etag", "")).strip('"')
    if rec.get("v") and rec["v"] != "null":
        obj["versionId"] = rec["v"]
    obj["sequencer"] = change.sequencer
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": bucket["region"],
        "eventTime": iso_time(change.time),
        "eventName": change.event[3:],
        "userIdentity": {"principalId": change.principal},
        "requestParameters": {"sourceIPAddress": change.source_ip},
        "responseElements": {"x-amz-request-id": change.request_id, "x-amz-id-2": change.request_id},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": configuration_id,
            "bucket": {"name": bucket["name"], "ownerIdentity": {"principalId": "A3NL1KOZZKExample"}, "arn": f"arn:aws:s3:::{bucket['name']}"},
            "object": obj,
        },
    }


def _eventbridge_entry(bucket: Record, change: Change) -> dict[str, Any]:
    rec = change.record
    created = change.event.startswith("s3:ObjectCreated")
    obj: dict[str, Any] = {"key": change.key}
    if created:
        obj.update({"size": rec.get("size", 0), "etag": str(rec.get("etag", "")).strip('"')})
    if rec.get("v") and rec["v"] != "null":
        obj["version-id"] = rec["v"]
    obj["sequencer"] = change.sequencer
    detail: dict[str, Any] = {
        "version": "0", "bucket": {"name": bucket["name"]}, "object": obj,
        "request-id": change.request_id, "requester": "000000000000",
        "source-ip-address": change.source_ip, "reason": change.reason,
    }  # fmt: skip
    if not created:
        detail["deletion-type"] = "Delete Marker Created" if rec.get("dm") else "Permanently Deleted"
    return {
        "Source": "aws.s3", "DetailType": "Object Created" if created else "Object Deleted",
        "Detail": detail, "Resources": [f"arn:aws:s3:::{bucket['name']}"], "EventBusName": "default",
        "region": bucket["region"],
    }  # fmt: skip


def events_for(bucket: Record, change: Change) -> list[bytes]:
    """Queue messages for every destination the bucket's configuration sends ``change`` to."""
    config = bucket.get("notification")
    if not config:
        return []
    out: list[bytes] = []
    for section, arn_field, kind in _KINDS:
        for item in config.get(section) or []:
            if _event_matches(item.get("Events") or [], change.event) and _filter_matches(item, change.key):
                body = orjson.dumps({"Records": [event_record(bucket, change, item.get("Id", ""))]}).decode()
                out.append(orjson.dumps({"kind": kind, "arn": item[arn_field], "body": body}))
    if config.get("EventBridgeConfiguration") is not None and change.event.startswith(("s3:ObjectCreated", "s3:ObjectRemoved")):
        out.append(orjson.dumps({"kind": "events", "entry": _eventbridge_entry(bucket, change)}))
    return out


def _arn_region(arn: str) -> str:
    parts = arn.split(":")
    return parts[3] if len(parts) > 3 else ""


class NotifyOps(S3Base):
    """PutBucketNotificationConfiguration and the delivery worker."""

    async def put_bucket_notification_configuration(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Store the configuration (destinations checked unless skipped); queue an
        ``s3:TestEvent`` to each SQS and SNS destination, as S3 does."""
        config = dict(params.get("NotificationConfiguration") or {})
        for section, _, _ in _KINDS:
            for item in config.get(section) or []:
                item.setdefault("Id", uuid.uuid4().hex)
                for event in item.get("Events") or []:
                    if not event.startswith("s3:"):
                        raise AwsError("InvalidArgument", "The event is not supported for notifications", 400,
                                       fields={"ArgumentName": "Event", "ArgumentValue": event})  # fmt: skip
                for rule in ((item.get("Filter") or {}).get("Key") or {}).get("FilterRules") or []:
                    if str(rule.get("Name", "")).lower() not in ("prefix", "suffix"):
                        raise AwsError("InvalidArgument", "filter rule name must be either prefix or suffix", 400,
                                       fields={"ArgumentName": "FilterRule.Name", "ArgumentValue": str(rule.get("Name"))})  # fmt: skip
        if not params.get("SkipDestinationValidation"):
            await self._validate_destinations(config)
        name = params["Bucket"]
        test = orjson.dumps({
            "Service": "Amazon S3", "Event": "s3:TestEvent", "Time": iso_time(time.time()),
            "Bucket": name, "RequestId": ctx.request_id, "HostId": ctx.request_id,
        }).decode()  # fmt: skip
        tests = [orjson.dumps({"kind": kind, "arn": item[arn_field], "body": test})
                 for section, arn_field, kind in _KINDS[:2] for item in config.get(section) or []]  # fmt: skip

        await self.bucket(ctx, name, "s3:PutBucketNotification")

        def write(txn: Txn) -> None:
            from nubes.services.s3.models import BUCKETS, dump, no_such_bucket

            raw = txn.get(BUCKETS, name.encode())
            if raw is None:
                raise no_such_bucket(name)
            record = load(raw)
            record["notification"] = config if any(config.values()) or "EventBridgeConfiguration" in config else None
            txn.put(BUCKETS, name.encode(), dump(record))
            enqueue_events(txn, tests)

        try:
            await self.app.store.write(write)
        finally:
            self.forget_bucket(name)
        self.app.bus.wake(WAKE)
        return {}

    async def get_bucket_notification_configuration(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        record = await self.bucket(ctx, params["Bucket"], "s3:GetBucketNotification")
        return dict(record.get("notification") or {})

    async def _validate_destinations(self, config: dict[str, Any]) -> None:
        checks = {"sqs": ("sqs", "GetQueueAttributes"), "sns": ("sns", "GetTopicAttributes"), "lambda": ("lambda", "GetFunction")}
        for section, arn_field, kind in _KINDS:
            for item in config.get(section) or []:
                arn = str(item.get(arn_field, ""))
                if kind == "sqs" and arn.endswith(".fifo"):
                    raise AwsError("InvalidArgument", "FIFO SQS queues are not supported as S3 event notification destinations", 400,
                                   fields={"ArgumentName": arn, "ArgumentValue": "The destination queue is a FIFO queue"})  # fmt: skip
                service, op = checks[kind]
                try:
                    await self.app.call(service, op, self._lookup_params(kind, arn), region=_arn_region(arn) or None)
                except (AwsError, KeyError):
                    raise AwsError("InvalidArgument", "Unable to validate the following destination configurations", 400,
                                   fields={"ArgumentName": arn, "ArgumentValue": "The destination does not exist"}) from None  # fmt: skip

    def _lookup_params(self, kind: str, arn: str) -> dict[str, Any]:
        if kind == "sqs":
            return {"QueueUrl": self._queue_url(arn)}
        if kind == "sns":
            return {"TopicArn": arn}
        return {"FunctionName": arn}

    def _queue_url(self, arn: str) -> str:
        parts = arn.split(":")
        if len(parts) != 6:
            raise AwsError("InvalidArgument", "Invalid ARN", 400)
        return f"{self.app.settings.endpoint}/{parts[4]}/{parts[5]}"

    # -- delivery ------------------------------------------------------------------

    def wake_notifications(self) -> None:
        self.app.bus.wake(WAKE)

    async def deliver_forever(self) -> None:
        """The delivery worker: lease queued notifications, send, ack or retry later."""
        while True:
            try:
                if not await self._deliver_batch():
                    nxt = await self.app.store.read(lambda txn: txn.next_visible_at(NOTIFY_QUEUE))
                    wait = 5.0 if nxt is None else min(5.0, max(0.01, nxt - time.time()))
                    await self.app.bus.wait(WAKE, wait)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("S3 notification delivery pass failed")
                await asyncio.sleep(1.0)

    async def _deliver_batch(self) -> bool:
        now = time.time()
        batch: list[QueueMessage] = await self.app.store.write(
            lambda txn: txn.lease(NOTIFY_QUEUE, now=now, visibility=LEASE_SECONDS, limit=25)
        )
        if not batch:
            return False
        results = await asyncio.gather(*(self._deliver_one(m) for m in batch))

        def settle(txn: Txn) -> None:
            later = time.time()
            for message, ok in zip(batch, results, strict=True):
                if ok or message.receive_count >= MAX_ATTEMPTS:
                    txn.ack(NOTIFY_QUEUE, message.id, message.lease_token)
                else:
                    txn.set_visible_at(NOTIFY_QUEUE, message.id, later + min(60.0, 2.0**message.receive_count), message.lease_token)

        await self.app.store.write(settle)
        return True

    async def _deliver_one(self, message: QueueMessage) -> bool:
        doc = orjson.loads(message.value)
        kind = doc["kind"]
        try:
            if kind == "events":
                self.app.bus.publish("events:put", doc["entry"])
                return True
            arn = str(doc["arn"])
            region = _arn_region(arn) or None
            if kind == "sqs":
                await self.app.call("sqs", "SendMessage", {"QueueUrl": self._queue_url(arn), "MessageBody": doc["body"]}, region=region)
            elif kind == "sns":
                await self.app.call("sns", "Publish", {"TopicArn": arn, "Message": doc["body"], "Subject": "Amazon S3 Notification"}, region=region)
            else:
                await self.app.call("lambda", "Invoke", {"FunctionName": arn, "InvocationType": "Event", "Payload": doc["body"].encode()}, region=region)
        except Exception as exc:
            log.warning("S3 notification to %s failed (attempt %d): %s", doc.get("arn"), message.receive_count, exc)
            return False
        return True
