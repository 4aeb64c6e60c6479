"""Event source mapping pollers: SQS queues and DynamoDB streams feeding functions.

The Lambda provider stores the mappings and calls :meth:`EventSourcePollers.refresh`
whenever one changes; each enabled mapping runs as ``app.spawn`` tasks that talk to
the source through its AWS API (``app.call``), so SQS and DynamoDB stay the owners
of their data:

* **SQS** — ``ScalingConfig.MaximumConcurrency`` workers (default 5) long-poll
  ``ReceiveMessage`` (woken in-process the moment a message is sent), gather up to
  ``BatchSize`` messages within ``MaximumBatchingWindowInSeconds``, drop (delete)
  messages that match no ``FilterCriteria`` filter, invoke the function, then delete
  the batch — or, with ``ReportBatchItemFailures``, all but the reported failures. A
  failed batch is left alone so its messages return to the queue after their
  visibility timeout (and reach the queue's redrive DLQ, as on AWS).
* **DynamoDB Streams** — one reader per shard from ``StartingPosition`` or the stored
  checkpoint; failed batches are retried (``MaximumRetryAttempts``, -1 = until the
  records expire), split in halves with ``BisectBatchOnFunctionError``, dropped past
  ``MaximumRecordAgeInSeconds``, and described to the ``OnFailure`` destination
  (SQS/SNS) when given up.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson

from nubes.aws.errors import AwsError
from nubes.events.async_invoke import queue_url
from nubes.storage.keys import pack

if TYPE_CHECKING:
    from nubes.runtime.spec import InvocationResult

log = logging.getLogger(__name__)

CHECKPOINTS = "lambda.esm_checkpoints"
#: (mapping, shard) → the node reading that shard, so several nubes nodes never both do
SHARD_LEASES = "lambda.esm_shard_leases"
_SHARD_LEASE_S = 15.0
_SHARD_RENEW_S = 5.0
#: (region, function name, qualifier, payload, request id) → (result, executed version)
Invoke = Callable[[str, str, str | None, bytes, str], Awaitable[tuple["InvocationResult", str]]]
#: (mapping UUID, LastProcessingResult) — told when a mapping's result changes
Report = Callable[[str, str], Awaitable[None]]
OK = "OK"
FUNCTION_FAILED = "PROBLEM: Function call failed"
FUNCTION_NOT_FOUND = "PROBLEM: Function not found"
_DEFAULT_SQS_WORKERS = 5
_STREAM_POLL_S = 0.25
#: how often a stream whose shards are all closed and read (its table deleted or its
#: stream turned off: it never gets new records) is looked at again
_CLOSED_STREAM_POLL_S = 60.0
_BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


def validate_filters(criteria: dict[str, Any] | None) -> None:
    """Check ``FilterCriteria`` patterns (AWS refuses invalid ones at create time)."""
    for flt in (criteria or {}).get("Filters") or []:
        try:
            from nubes.events import patterns

            patterns.validate_pattern(flt.get("Pattern") or "")
        except ImportError:  # the pattern engine is not in this build
            orjson.loads(flt.get("Pattern") or "{}")
        except ValueError as exc:
            raise AwsError("InvalidParameterValueException", f"Invalid filter pattern definition. {exc}", 400,
                           fields={"Type": "User"}) from None  # fmt: skip


def _matcher(criteria: dict[str, Any] | None) -> Callable[[dict[str, Any]], bool]:
    filters = [f.get("Pattern") or "{}" for f in (criteria or {}).get("Filters") or []]
    if not filters:
        return lambda record: True
    from nubes.events import patterns

    compiled = [patterns.CompiledPattern.compile(p) for p in filters]
    return lambda record: any(c.matches(record) for c in compiled)


def _jsonable(value: Any) -> Any:
    """Service output → what a function's JSON event holds (bytes base64, times epoch)."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return value


def _function_parts(arn: str) -> tuple[str, str, str | None]:
    parts = arn.split(":")
    return parts[3], parts[6], parts[7] if len(parts) > 7 else None


def _failed_items(result: InvocationResult) -> list[str] | None:
    """ReportBatchItemFailures: the failed ids, or None when the whole batch failed."""
    try:
        doc = orjson.loads(result.payload) if result.payload else {}
    except orjson.JSONDecodeError:
        return None
    if doc is None or (isinstance(doc, dict) and not doc.get("batchItemFailures")):
        return []
    if not isinstance(doc, dict) or not isinstance(doc["batchItemFailures"], list):
        return None
    ids = []
    for item in doc["batchItemFailures"]:
        ident = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not ident or not isinstance(ident, str):
            return None
        ids.append(ident)
    return ids


class EventSourcePollers:
    """The running pollers, one group of tasks per enabled mapping."""

    def __init__(self, app: Any, invoke: Invoke, report: Report | None = None) -> None:
        self.app = app
        self.invoke = invoke
        self.report = report
        self.node = uuid.uuid4().hex
        self._tasks: dict[str, list[asyncio.Task[Any]]] = {}

    async def start(self, mappings: list[dict[str, Any]] | None = None) -> None:
        """Start pollers for the stored mappings."""
        for doc in mappings or []:
            await self.refresh(
                doc["UUID"],
                doc if doc.get("State") in ("Enabled", "Creating", "Updating") else None,
            )

    async def stop(self) -> None:
        """Stop every poller and hand this node's shards back at once."""
        for mapping_id in list(self._tasks):
            await self.refresh(mapping_id, None)

        def release(txn: Any) -> None:
            for key, raw in txn.scan(SHARD_LEASES):
                if orjson.loads(raw).get("node") == self.node:
                    txn.delete(SHARD_LEASES, key)

        try:
            await self.app.store.write(release)
        except Exception:
            log.exception("releasing stream shard leases failed")

    async def refresh(self, mapping_id: str, doc: dict[str, Any] | None) -> None:
        """(Re)start the pollers of a mapping, or stop them (``doc`` None or disabled)."""
        tasks = self._tasks.pop(mapping_id, [])
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if doc is None or not doc.get("_enabled", True):
            return
        source = doc["EventSourceArn"]
        if source.split(":")[2] == "sqs":
            workers = int(
                (doc.get("ScalingConfig") or {}).get("MaximumConcurrency") or _DEFAULT_SQS_WORKERS
            )
            self._tasks[mapping_id] = [
                self.app.spawn(SqsPoller(self, doc).run(), name=f"esm-sqs-{mapping_id}-{i}")
                for i in range(workers)
            ]
        else:
            self._tasks[mapping_id] = [
                self.app.spawn(StreamPoller(self, doc).run(), name=f"esm-ddb-{mapping_id}")
            ]


class _Reporting:
    """Tells the provider a mapping's LastProcessingResult when it changes."""

    owner: EventSourcePollers
    doc: dict[str, Any]
    _last: str = ""

    async def _result(self, text: str) -> None:
        if text == self._last or self.owner.report is None:
            return
        self._last = text
        try:
            await self.owner.report(self.doc["UUID"], text)
        except Exception:
            log.exception("could not record the processing result of %s", self.doc["UUID"])

    async def _problem(self, exc: Exception) -> None:
        if isinstance(exc, AwsError) and exc.code == "ResourceNotFoundException" and "Function" in exc.message:
            await self._result(FUNCTION_NOT_FOUND)


class SqsPoller(_Reporting):
    """One worker of an SQS mapping."""

    def __init__(self, owner: EventSourcePollers, doc: dict[str, Any]) -> None:
        self.owner = owner
        self.app = owner.app
        self.invoke = owner.invoke
        self.doc = doc
        self.arn: str = doc["EventSourceArn"]
        self.region = self.arn.split(":")[3]
        self.batch_size = int(doc.get("BatchSize") or 10)
        self.window = float(doc.get("MaximumBatchingWindowInSeconds") or 0)
        self.match = _matcher(doc.get("FilterCriteria"))
        self.report_failures = "ReportBatchItemFailures" in (doc.get("FunctionResponseTypes") or [])
        self.url = ""

    async def run(self) -> None:
        """Receive, invoke, delete — until cancelled."""
        failures = 0
        while True:
            try:
                if not self.url:
                    self.url = await queue_url(self.app, self.arn)
                batch = await self._gather()
                if batch:
                    await self._process(batch)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                log.warning("SQS event source %s: %s", self.arn, exc)
                await self._problem(exc)
                await asyncio.sleep(_BACKOFF[min(failures, len(_BACKOFF) - 1)])

    async def _receive(self, count: int, wait: float) -> list[dict[str, Any]]:
        params = {"QueueUrl": self.url, "MaxNumberOfMessages": max(1, min(10, count)),
                  "WaitTimeSeconds": int(max(0, min(20, wait))), "AttributeNames": ["All"],
                  "MessageSystemAttributeNames": ["All"], "MessageAttributeNames": ["All"]}  # fmt: skip
        out = await self.app.call("sqs", "ReceiveMessage", params, region=self.region)
        messages: list[dict[str, Any]] = out.get("Messages") or []
        return messages

    async def _gather(self) -> list[dict[str, Any]]:
        """Up to BatchSize messages, waiting at most the batching window after the first."""
        batch = await self._receive(self.batch_size, 20)
        if not batch or self.window <= 0:
            return batch
        deadline = time.monotonic() + self.window
        while len(batch) < self.batch_size:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            more = await self._receive(
                self.batch_size - len(batch), min(left, 20) if left >= 1 else 0
            )
            if not more and left < 1:
                await asyncio.sleep(min(left, 0.1))
            batch.extend(more)
        return batch

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        attributes = {}
        for name, attr in (message.get("MessageAttributes") or {}).items():
            value: dict[str, Any] = {
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": attr.get("DataType"),
            }
            if "StringValue" in attr:
                value["stringValue"] = attr["StringValue"]
            if "BinaryValue" in attr:
                value["binaryValue"] = _jsonable(attr["BinaryValue"])
            attributes[name] = value
        record = {
            "messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"],
            "body": message.get("Body", ""), "attributes": dict(message.get("Attributes") or {}),
            "messageAttributes": attributes, "md5OfBody": message.get("MD5OfBody", ""),
            "eventSource": "aws:sqs", "eventSourceARN": self.arn, "awsRegion": self.region,
        }  # fmt: skip
        if message.get("MD5OfMessageAttributes"):
            record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
        return record

    def _matches(self, record: dict[str, Any]) -> bool:
        try:
            body = orjson.loads(record["body"])
        except orjson.JSONDecodeError:
            body = record["body"]
        return self.match({**record, "body": body})

    async def _process(self, messages: list[dict[str, Any]]) -> None:
        records = [self._record(m) for m in messages]
        kept = [r for r in records if self._matches(r)]
        dropped = [r for r in records if r not in kept]
        if dropped:  # AWS deletes messages no filter matches
            await self._delete(dropped)
        if not kept:
            return
        region, name, qualifier = _function_parts(self.doc["FunctionArn"])
        payload = orjson.dumps({"Records": kept})
        result, _ = await self.invoke(region, name, qualifier, payload, str(uuid.uuid4()))
        await self._result(FUNCTION_FAILED if result.function_error else OK)
        if result.function_error:
            return  # the messages come back after their visibility timeout
        if not self.report_failures:
            await self._delete(kept)
            return
        failed = _failed_items(result)
        if failed is None:
            return
        failed_ids = set(failed)
        if self.arn.endswith(".fifo"):
            # FIFO order: after a failed message, the rest of its group must wait too
            stopped: set[str] = set()
            for r in kept:
                group = r["attributes"].get("MessageGroupId", "")
                if group in stopped or r["messageId"] in failed_ids:
                    stopped.add(group)
                    failed_ids.add(r["messageId"])
        await self._delete([r for r in kept if r["messageId"] not in failed_ids])

    async def _delete(self, records: list[dict[str, Any]]) -> None:
        for i in range(0, len(records), 10):
            entries = [
                {"Id": str(n), "ReceiptHandle": r["receiptHandle"]}
                for n, r in enumerate(records[i : i + 10])
            ]
            if entries:
                await self.app.call("sqs", "DeleteMessageBatch", {"QueueUrl": self.url, "Entries": entries},
                                    region=self.region)  # fmt: skip


class StreamPoller(_Reporting):
    """Reads a DynamoDB stream's shards in order and feeds the function."""

    def __init__(self, owner: EventSourcePollers, doc: dict[str, Any]) -> None:
        self.owner = owner
        self.app = owner.app
        self.invoke = owner.invoke
        self.node = owner.node
        self.doc = doc
        self.arn: str = doc["EventSourceArn"]
        self.region = self.arn.split(":")[3]
        self.batch_size = int(doc.get("BatchSize") or 100)
        self.window = float(doc.get("MaximumBatchingWindowInSeconds") or 0)
        self.match = _matcher(doc.get("FilterCriteria"))
        self.report_failures = "ReportBatchItemFailures" in (doc.get("FunctionResponseTypes") or [])
        self.max_retries = int(doc.get("MaximumRetryAttempts", -1))
        self.max_age = int(doc.get("MaximumRecordAgeInSeconds", -1))
        self.bisect = bool(doc.get("BisectBatchOnFunctionError"))

    async def run(self) -> None:
        """Follow every shard of the stream (nubes streams have one shard each)."""
        failures = 0
        while True:
            try:
                described = await self.app.call("dynamodbstreams", "DescribeStream", {"StreamArn": self.arn},
                                                 region=self.region)  # fmt: skip
                shards = described["StreamDescription"].get("Shards") or []
                if not shards:
                    await asyncio.sleep(1.0)
                    continue
                await asyncio.gather(*(self._follow(s["ShardId"]) for s in shards))
                if all((s.get("SequenceNumberRange") or {}).get("EndingSequenceNumber") for s in shards):
                    # every shard is closed and was read to its end: a disabled stream
                    # (deleted table, stream turned off) has nothing more to give
                    await asyncio.sleep(_CLOSED_STREAM_POLL_S)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                log.warning("DynamoDB stream event source %s: %s", self.arn, exc)
                await self._problem(exc)
                await asyncio.sleep(_BACKOFF[min(failures, len(_BACKOFF) - 1)])

    async def _checkpoint(self, shard: str) -> str | None:
        key = pack(self.doc["UUID"], shard)
        raw = await self.app.store.read(lambda txn: txn.get(CHECKPOINTS, key))
        return None if raw is None else raw.decode()

    async def _save(self, shard: str, sequence: str) -> None:
        key = pack(self.doc["UUID"], shard)
        await self.app.store.write(lambda txn: txn.put(CHECKPOINTS, key, sequence.encode()))

    async def _iterator(self, shard: str) -> str:
        params: dict[str, Any] = {"StreamArn": self.arn, "ShardId": shard}
        done = await self._checkpoint(shard)
        if done is not None:
            params.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=done)
        else:
            position = self.doc.get("StartingPosition") or "LATEST"
            params["ShardIteratorType"] = "LATEST" if position == "LATEST" else "TRIM_HORIZON"
        out = await self.app.call("dynamodbstreams", "GetShardIterator", params, region=self.region)
        return str(out["ShardIterator"])

    async def _hold(self, shard: str) -> bool:
        """Take or renew this node's lease on a shard; False if another node holds it."""
        key = pack(self.doc["UUID"], shard)
        now = time.time()

        def write(txn: Any) -> bool:
            raw = txn.get(SHARD_LEASES, key)
            lease = orjson.loads(raw) if raw is not None else None
            if lease is not None and lease["node"] != self.node and lease["until"] > now:
                return False
            txn.put(
                SHARD_LEASES, key, orjson.dumps({"node": self.node, "until": now + _SHARD_LEASE_S})
            )
            return True

        held: bool = await self.app.store.write(write)
        return held

    async def _follow(self, shard: str) -> None:
        """Read a shard while this node holds its lease (renewed in the background, so a
        long retry of a failing batch does not let another node take the shard)."""
        while not await self._hold(shard):
            await asyncio.sleep(_SHARD_RENEW_S)
        reader = asyncio.ensure_future(self._read(shard))
        try:
            while not reader.done():
                await asyncio.wait({reader}, timeout=_SHARD_RENEW_S)
                if not reader.done() and not await self._hold(shard):
                    break  # another node took over; run() waits for the lease again
        finally:
            if not reader.done():
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
        error = None if reader.cancelled() else reader.exception()
        if error is not None:
            raise error

    async def _read(self, shard: str) -> None:
        iterator: str | None = await self._iterator(shard)
        pending: list[dict[str, Any]] = []
        first_at = 0.0
        while iterator:
            out = await self.app.call("dynamodbstreams", "GetRecords",
                                      {"ShardIterator": iterator, "Limit": min(1000, self.batch_size)},
                                      region=self.region)  # fmt: skip
            iterator = out.get("NextShardIterator")
            records = [self._record(r) for r in out.get("Records") or []]
            if records and not pending:
                first_at = time.monotonic()
            pending.extend(records)
            full = len(pending) >= self.batch_size
            due = pending and time.monotonic() - first_at >= self.window
            if full or due:
                batch, pending = pending[: self.batch_size], pending[self.batch_size :]
                await self._deliver(shard, batch)
                if pending:
                    first_at = time.monotonic()
            if not records and iterator:
                wait = _STREAM_POLL_S if not pending else max(0.0, min(_STREAM_POLL_S, self.window))
                await self.app.bus.wait(f"dynamodb-stream:{self.arn}", wait)
        # the shard closed (its stream was disabled): what the batching window still
        # held goes now, since no more records will join it
        while pending:
            batch, pending = pending[: self.batch_size], pending[self.batch_size :]
            await self._deliver(shard, batch)

    def _record(self, raw: dict[str, Any]) -> dict[str, Any]:
        record: dict[str, Any] = _jsonable(raw)
        record["eventSourceARN"] = self.arn
        return record

    async def _deliver(self, shard: str, batch: list[dict[str, Any]]) -> None:
        """Run a batch to completion (success, or given up), then checkpoint past it."""
        last = batch[-1]["dynamodb"]["SequenceNumber"]
        kept = [r for r in batch if self.match(r)]
        if kept:
            await self._run_with_retries(shard, kept)
        await self._save(shard, last)

    async def _run_with_retries(self, shard: str, batch: list[dict[str, Any]]) -> None:
        attempts = 0
        while batch:
            if self.max_age >= 0:
                cutoff = time.time() - self.max_age
                old = [
                    r
                    for r in batch
                    if float(r["dynamodb"].get("ApproximateCreationDateTime") or 0) < cutoff
                ]
                if old:
                    await self._on_failure(shard, old, None, attempts, "RecordAgeExceeded")
                    batch = [r for r in batch if r not in old]
                    continue
            region, name, qualifier = _function_parts(self.doc["FunctionArn"])
            attempts += 1
            try:
                result, version = await self.invoke(region, name, qualifier, orjson.dumps({"Records": batch}),
                                                    str(uuid.uuid4()))  # fmt: skip
            except AwsError as exc:
                if exc.status != 429:
                    raise
                await asyncio.sleep(_BACKOFF[min(attempts, len(_BACKOFF) - 1)])
                attempts -= 1
                continue
            failed_from = self._failure_start(batch, result)
            await self._result(FUNCTION_FAILED if result.function_error else OK)
            if failed_from is None:
                return
            retry = batch[failed_from:]
            if self.max_retries >= 0 and attempts > self.max_retries:
                await self._on_failure(
                    shard, retry, (result, version), attempts, "RetryAttemptsExhausted"
                )
                return
            if self.bisect and len(retry) > 1:
                half = len(retry) // 2
                await self._run_with_retries(shard, retry[:half])
                batch = retry[half:]
                attempts = 0
                continue
            batch = retry
            await asyncio.sleep(_BACKOFF[min(attempts - 1, len(_BACKOFF) - 1)])

    def _failure_start(self, batch: list[dict[str, Any]], result: InvocationResult) -> int | None:
        """Index of the first record to retry, or None when the batch succeeded."""
        if result.function_error:
            return 0
        if not self.report_failures:
            return None
        failed = _failed_items(result)
        if failed is None:
            return 0
        if not failed:
            return None
        sequences = [r["dynamodb"]["SequenceNumber"] for r in batch]
        positions = [sequences.index(f) for f in failed if f in sequences]
        return min(positions) if positions else 0

    async def _on_failure(self, shard: str, batch: list[dict[str, Any]],
                          outcome: tuple[InvocationResult, str] | None, attempts: int, condition: str) -> None:  # fmt: skip
        destination = ((self.doc.get("DestinationConfig") or {}).get("OnFailure") or {}).get(
            "Destination"
        )
        log.warning(
            "DynamoDB stream event source %s gives up %d records (%s)",
            self.arn,
            len(batch),
            condition,
        )
        if not destination:
            return
        now = dt.datetime.now(dt.UTC)
        first, last = batch[0]["dynamodb"], batch[-1]["dynamodb"]
        record: dict[str, Any] = {
            "requestContext": {"requestId": str(uuid.uuid4()), "functionArn": self.doc["FunctionArn"],
                               "condition": condition, "approximateInvokeCount": attempts},
            "version": "1.0", "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
            "DDBStreamBatchInfo": {
                "shardId": shard, "startSequenceNumber": first["SequenceNumber"],
                "endSequenceNumber": last["SequenceNumber"],
                "approximateArrivalOfFirstRecord": _iso(first.get("ApproximateCreationDateTime")),
                "approximateArrivalOfLastRecord": _iso(last.get("ApproximateCreationDateTime")),
                "batchSize": len(batch), "streamArn": self.arn,
            },
        }  # fmt: skip
        if outcome is not None:
            result, version = outcome
            context: dict[str, Any] = {"statusCode": 200, "executedVersion": version}
            if result.function_error:
                context["functionError"] = result.function_error
            record["responseContext"] = context
        from nubes.events.async_invoke import deliver

        try:
            await deliver(self.app, destination, record, "OnFailure", None)
        except Exception:
            log.exception("could not send the failure record of %s to %s", self.arn, destination)


def _iso(epoch: Any) -> str:
    if epoch is None:
        return ""
    when = dt.datetime.fromtimestamp(float(epoch), dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
