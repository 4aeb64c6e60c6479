"""Asynchronous (``InvocationType=Event``) invocations: a durable queue with retries.

``Invoke`` with ``InvocationType=Event`` writes the event to the store queue
``lambda.async`` (so it survives a restart) and wakes the worker, which leases it
within milliseconds and runs it. What happens next follows AWS:

* the function fails (``FunctionError``): it is retried ``MaximumRetryAttempts``
  times (default 2), the first retry after ~1 minute and the second after ~2;
* the function is throttled: the event goes back to the queue and is tried again
  later (backing off up to 5 minutes) without using up a retry;
* the event is older than ``MaximumEventAgeInSeconds`` (default 6 hours) or its
  retries are used up: it goes to the ``OnFailure`` destination and/or the dead-letter
  queue (``DeadLetterConfig.TargetArn``); a success goes to ``OnSuccess``.

Destinations receive AWS's invocation record (``version``, ``timestamp``,
``requestContext``, ``requestPayload``, ``responseContext``, ``responsePayload``);
SQS, SNS, Lambda and EventBridge destinations are supported. A DLQ receives the
original event with the ``RequestID``, ``ErrorCode`` and ``ErrorMessage`` attributes.

**Retry delays for tests.** AWS's delays are minutes. A function tagged
``nubes:retry-delays`` = ``"0.2,0.5"`` uses those delays (seconds) instead; the
tag is nubes-only and AWS ignores such tags.

The worker is at-least-once like AWS: an event whose lease runs out (the server
died mid-invocation) runs again.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from nubes.aws.errors import AwsError
from nubes.storage.base import QueueMessage, Txn

if TYPE_CHECKING:
    from nubes.runtime.spec import InvocationResult

log = logging.getLogger(__name__)

QUEUE = "lambda.async"
WAKE = "lambda:async"
DEFAULT_RETRY_DELAYS = (60.0, 120.0)
DEFAULT_MAX_RETRIES = 2
DEFAULT_MAX_AGE_S = 21_600
RETRY_DELAYS_TAG = "nubes:retry-delays"
_LEASE_S = 60.0
_LEASE_MARGIN_S = 30.0
_MAX_IN_FLIGHT = 100
_THROTTLE_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


@dataclass
class AsyncTarget:
    """What an event runs on, resolved at each attempt."""

    #: qualified ARN of the version that runs (``...:function:f:$LATEST``)
    function_arn: str
    version: str
    timeout_s: float
    event_invoke_config: dict[str, Any] = field(default_factory=dict)
    dead_letter_arn: str | None = None
    retry_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS


#: the event (as queued) → its target, or None when the function no longer exists
Resolve = Callable[[dict[str, Any]], Awaitable[AsyncTarget | None]]
#: run one attempt; raises ``TooManyRequests`` (an AwsError with status 429) when throttled
Run = Callable[[dict[str, Any], AsyncTarget], Awaitable["InvocationResult"]]


def event_record(
    *, region: str, function_name: str, qualifier: str | None, payload: bytes, request_id: str,
    client_context: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The queued form of one asynchronous invocation."""
    return {
        "region": region, "function": function_name, "qualifier": qualifier,
        "payload": payload.decode(), "request_id": request_id, "enqueued": time.time(),
        "attempt": 0, "throttles": 0, "client_context": client_context,
    }  # fmt: skip


def retry_delays_from_tags(tags: dict[str, str]) -> tuple[float, ...]:
    """The ``nubes:retry-delays`` tag, or AWS's delays."""
    raw = tags.get(RETRY_DELAYS_TAG)
    if not raw:
        return DEFAULT_RETRY_DELAYS
    try:
        delays = tuple(max(0.0, float(part)) for part in raw.split(",") if part.strip())
    except ValueError:
        return DEFAULT_RETRY_DELAYS
    return delays or DEFAULT_RETRY_DELAYS


class AsyncInvoker:
    """The queue of asynchronous invocations and the worker that runs them."""

    def __init__(self, app: Any, resolve: Resolve, run: Run) -> None:
        self.app = app
        self._resolve = resolve
        self._run = run
        self._running = 0

    async def enqueue(self, record: dict[str, Any], delay: float = 0.0) -> None:
        """Store an event durably, then wake the worker."""
        value = orjson.dumps(record)
        await self.app.store.write(
            lambda txn: txn.enqueue(QUEUE, value, now=time.time(), delay=delay)
        )
        self.app.bus.wake(WAKE)

    async def run_forever(self) -> None:
        """Lease due events and run each in its own task, until cancelled."""
        while True:
            free = _MAX_IN_FLIGHT - self._running
            if free <= 0:
                await self.app.bus.wait(WAKE, 0.05)
                continue
            try:
                leased = await self.app.store.write(
                    lambda txn, n=free: txn.lease(
                        QUEUE, now=time.time(), visibility=_LEASE_S, limit=n
                    )
                )
            except Exception:
                log.exception("leasing async invocations failed")
                leased = []
            for message in leased:
                self._running += 1
                self.app.spawn(self._handle(message), name=f"lambda-async-{message.id}")
            if leased:
                continue
            await self.app.bus.wait(WAKE, await self._sleep_for())

    async def _sleep_for(self) -> float:
        due = await self.app.store.read(lambda txn: txn.next_visible_at(QUEUE))
        if due is None:
            return 5.0
        return float(min(5.0, max(0.005, due - time.time())))

    async def _handle(self, message: QueueMessage) -> None:
        try:
            await self._attempt(message)
        except Exception:
            log.exception("async invocation %s failed inside nubes; it will be retried", message.id)
        finally:
            self._running -= 1
            self.app.bus.wake(WAKE)

    async def _attempt(self, message: QueueMessage) -> None:
        item = orjson.loads(message.value)
        target = await self._resolve(item)
        if target is None:
            log.warning(
                "dropping async event %s: function %s no longer exists",
                item["request_id"],
                item["function"],
            )
            await self._ack(message)
            return
        cfg = target.event_invoke_config
        max_age = int(cfg.get("MaximumEventAgeInSeconds") or DEFAULT_MAX_AGE_S)
        if time.time() - item["enqueued"] > max_age:
            await self._failed(message, item, target, None, "EventAgeExceeded")
            return
        if target.timeout_s + _LEASE_MARGIN_S > _LEASE_S:  # a long function outlives the lease
            until = time.time() + target.timeout_s + _LEASE_MARGIN_S
            await self.app.store.write(
                lambda txn: txn.set_visible_at(QUEUE, message.id, until, message.lease_token)
            )
        try:
            result = await self._run(item, target)
        except AwsError as exc:
            if exc.status == 429:
                await self._requeue(message, item, throttled=True, delays=target.retry_delays)
                return
            if exc.sender_fault is False and exc.status != 502:
                raise  # nubes itself failed: the lease runs out and the event is tried again
            result = _error_result(item, exc)  # the function cannot run: an error like any other
        if result.function_error is None:
            await self._send_destination(item, target, result, "Success")
            await self._ack(message)
            return
        retries = cfg.get("MaximumRetryAttempts")
        max_retries = DEFAULT_MAX_RETRIES if retries is None else int(retries)
        if item["attempt"] < max_retries:
            await self._requeue(message, item, throttled=False, delays=target.retry_delays)
            return
        await self._failed(message, item, target, result, "RetriesExhausted")

    async def _ack(self, message: QueueMessage) -> None:
        await self.app.store.write(lambda txn: txn.ack(QUEUE, message.id, message.lease_token))

    async def _requeue(self, message: QueueMessage, item: dict[str, Any], *, throttled: bool,
                       delays: tuple[float, ...]) -> None:  # fmt: skip
        """Replace the leased message by the next attempt, delayed (one transaction)."""
        if throttled:
            delay = _THROTTLE_BACKOFF[min(item["throttles"], len(_THROTTLE_BACKOFF) - 1)]
            item = {**item, "throttles": item["throttles"] + 1}
        else:
            delay = delays[min(item["attempt"], len(delays) - 1)]
            item = {**item, "attempt": item["attempt"] + 1}
        value = orjson.dumps(item)

        def swap(txn: Txn) -> None:
            if txn.ack(QUEUE, message.id, message.lease_token):
                txn.enqueue(QUEUE, value, now=time.time(), delay=delay)

        await self.app.store.write(swap)
        self.app.bus.wake(WAKE)

    async def _failed(self, message: QueueMessage, item: dict[str, Any], target: AsyncTarget,
                      result: InvocationResult | None, condition: str) -> None:  # fmt: skip
        await self._send_destination(item, target, result, condition)
        if target.dead_letter_arn:
            await self._send_dlq(item, target.dead_letter_arn, result, condition)
        await self._ack(message)

    # -- where results go -------------------------------------------------------------------

    async def _send_destination(self, item: dict[str, Any], target: AsyncTarget,
                                result: InvocationResult | None, condition: str) -> None:  # fmt: skip
        kind = "OnSuccess" if condition == "Success" else "OnFailure"
        arn = ((target.event_invoke_config.get("DestinationConfig") or {}).get(kind) or {}).get(
            "Destination"
        )
        if not arn:
            return
        record = destination_record(item, target, result, condition)
        try:
            await deliver(self.app, arn, record, kind, self)
        except Exception:
            log.exception(
                "could not deliver the %s record of %s to %s", kind, item["request_id"], arn
            )

    async def _send_dlq(self, item: dict[str, Any], arn: str, result: InvocationResult | None,
                        condition: str) -> None:  # fmt: skip
        error_code, error_message = "200", condition
        if result is not None and result.function_error:
            try:
                error_message = str(orjson.loads(result.payload).get("errorMessage", condition))
            except (orjson.JSONDecodeError, AttributeError):
                error_message = condition
        attributes = {
            "RequestID": {"DataType": "String", "StringValue": item["request_id"]},
            "ErrorCode": {"DataType": "Number", "StringValue": error_code},
            "ErrorMessage": {
                "DataType": "String",
                "StringValue": error_message[:1000] or condition,
            },
        }
        try:
            service, region = arn.split(":")[2], arn.split(":")[3]
            if service == "sqs":
                url = await queue_url(self.app, arn)
                await self.app.call("sqs", "SendMessage", {"QueueUrl": url, "MessageBody": item["payload"],
                                                           "MessageAttributes": attributes}, region=region)  # fmt: skip
            elif service == "sns":
                await self.app.call("sns", "Publish", {"TopicArn": arn, "Message": item["payload"],
                                                       "MessageAttributes": attributes}, region=region)  # fmt: skip
            else:
                log.warning("dead-letter target %s is neither SQS nor SNS", arn)
        except Exception:
            log.exception("could not send %s to the dead-letter queue %s", item["request_id"], arn)


def destination_record(item: dict[str, Any], target: AsyncTarget, result: InvocationResult | None,
                       condition: str) -> dict[str, Any]:  # fmt: skip
    """AWS's invocation record for OnSuccess/OnFailure destinations."""
    now = dt.datetime.now(dt.UTC)
    record: dict[str, Any] = {
        "version": "1.0",
        "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
        "requestContext": {
            "requestId": item["request_id"], "functionArn": target.function_arn,
            "condition": condition, "approximateInvokeCount": item["attempt"] + (result is not None),
        },
        "requestPayload": _json_or_text(item["payload"]),
    }  # fmt: skip
    if result is not None:
        context: dict[str, Any] = {"statusCode": 200, "executedVersion": target.version}
        if result.function_error:
            context["functionError"] = result.function_error
        record["responseContext"] = context
        record["responsePayload"] = _json_or_text(result.payload.decode(errors="replace"))
    return record


def _json_or_text(text: str) -> Any:
    if not text:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


async def queue_url(app: Any, arn: str) -> str:
    """The QueueUrl of an SQS queue ARN (through the SQS API)."""
    parts = arn.split(":")
    out = await app.call("sqs", "GetQueueUrl", {"QueueName": parts[5], "QueueOwnerAWSAccountId": parts[4]},
                         region=parts[3])  # fmt: skip
    return str(out["QueueUrl"])


async def deliver(
    app: Any, arn: str, record: dict[str, Any], kind: str, invoker: AsyncInvoker | None
) -> None:
    """Send a destination record to an SQS queue, SNS topic, function or event bus."""
    parts = arn.split(":")
    service, region = parts[2], parts[3]
    body = orjson.dumps(record).decode()
    if service == "sqs":
        await app.call("sqs", "SendMessage", {"QueueUrl": await queue_url(app, arn), "MessageBody": body},
                       region=region)  # fmt: skip
    elif service == "sns":
        await app.call("sns", "Publish", {"TopicArn": arn, "Message": body}, region=region)
    elif service == "lambda" and invoker is not None:
        name = parts[6]
        qualifier = parts[7] if len(parts) > 7 else None
        await invoker.enqueue(event_record(region=region, function_name=name, qualifier=qualifier,
                                           payload=body.encode(), request_id=str(uuid.uuid4())))  # fmt: skip
    elif service == "events":
        detail_type = "Lambda Function Invocation Result - " + (
            "Success" if kind == "OnSuccess" else "Failure"
        )
        entry = {"Source": "lambda", "DetailType": detail_type, "Detail": body, "EventBusName": arn,
                 "Resources": [record["requestContext"]["functionArn"]]}  # fmt: skip
        await app.call("events", "PutEvents", {"Entries": [entry]}, region=region)
    else:
        raise ValueError(f"unsupported destination {arn}")


def _error_result(item: dict[str, Any], exc: AwsError) -> InvocationResult:
    """An invocation that could not start (bad runtime, code gone) as a failed result."""
    from nubes.runtime.spec import InvocationResult

    payload = orjson.dumps({"errorType": exc.code, "errorMessage": exc.message})
    return InvocationResult(payload=payload, function_error="Unhandled", log_tail="", request_id=item["request_id"],
                            duration_ms=0.0, billed_duration_ms=0, max_memory_used_mb=0, init_duration_ms=None,
                            log_stream="", error_type=exc.code)  # fmt: skip
