"""Function logs, metrics and usage, collected off the invocation path.

The runtime calls :meth:`Telemetry.on_logs` and :meth:`Telemetry.on_invocation`
synchronously after each invocation; they only append to in-memory buffers and wake
the flusher, which writes:

* log events to CloudWatch Logs (``/aws/lambda/<name>``, one stream per instance),
  within milliseconds;
* ``AWS/Lambda`` metrics (Invocations, Duration, Errors, Throttles,
  ConcurrentExecutions; dimension FunctionName) to CloudWatch, once a second, as
  statistic sets;
* usage (requests, GB-seconds, last invocation) to the ``lambda.usage`` table.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nubes.aws.errors import AwsError
from nubes.services.lambda_ import store as st
from nubes.storage.base import Txn
from nubes.storage.keys import pack

if TYPE_CHECKING:
    from nubes.runtime.spec import FunctionSpec, InvocationResult

log = logging.getLogger(__name__)

WAKE = "lambda:telemetry"
_METRIC_PERIOD_S = 1.0
_COALESCE_S = 0.02
_MAX_KNOWN_STREAMS = 10_000
_MAX_BATCH_EVENTS = 10_000
_MAX_BATCH_BYTES = 1_000_000


@dataclass
class _Stats:
    """One function's numbers since the last flush."""

    region: str
    invocations: int = 0
    errors: int = 0
    throttles: int = 0
    durations: list[float] = field(default_factory=list)
    concurrency: int = 0
    gb_seconds: float = 0.0
    last_invocation: float = 0.0


class Telemetry:
    """Buffers and the task that flushes them."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._logs: dict[tuple[str, str, str], list[tuple[int, str]]] = defaultdict(list)
        self._stats: dict[str, _Stats] = {}
        self._known_streams: set[tuple[str, str, str]] = set()
        self._last_metrics = time.monotonic()
        #: function name → how many invocations are running (ConcurrentExecutions)
        self.running: dict[str, int] = defaultdict(int)

    # -- called by the runtime (synchronously, on the event loop) ------------------------

    def on_logs(self, spec: FunctionSpec, stream: str, events: list[tuple[int, str]]) -> None:
        """Queue an invocation's log lines for ``spec``'s log group."""
        self._logs[(spec.region, spec.group_name, stream)].extend(events)
        # this node's flusher only: with a broker, every invocation would otherwise
        # publish a wake-up to every node
        self.app.bus.wake(WAKE, relay=False)

    def on_invocation(self, spec: FunctionSpec, result: InvocationResult) -> None:
        """Count one finished invocation."""
        stats = self._function(spec)
        stats.invocations += 1
        stats.errors += result.function_error is not None
        stats.durations.append(result.duration_ms)
        stats.gb_seconds += spec.memory_mb / 1024 * result.billed_duration_ms / 1000
        stats.last_invocation = time.time()

    def started(self, spec: FunctionSpec) -> None:
        """An invocation begins (for ConcurrentExecutions)."""
        self.running[spec.name] += 1
        stats = self._function(spec)
        stats.concurrency = max(stats.concurrency, self.running[spec.name])

    def finished(self, spec: FunctionSpec) -> None:
        """An invocation ended, however it ended."""
        self.running[spec.name] = max(0, self.running[spec.name] - 1)

    def throttled(self, spec: FunctionSpec) -> None:
        """An invocation was refused for concurrency."""
        self._function(spec).throttles += 1

    def _function(self, spec: FunctionSpec) -> _Stats:
        stats = self._stats.get(spec.name)
        if stats is None:
            stats = self._stats[spec.name] = _Stats(spec.region)
        return stats

    # -- the flusher ----------------------------------------------------------------------

    async def run(self) -> None:
        """Flush logs as they come and metrics once a second, until cancelled."""
        while True:
            if await self.app.bus.wait(WAKE, _METRIC_PERIOD_S):
                # gather the logs of invocations finishing together into one write
                await asyncio.sleep(_COALESCE_S)
            try:
                await self.flush_logs()
                if time.monotonic() - self._last_metrics >= _METRIC_PERIOD_S:
                    await self.flush_metrics()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("writing function telemetry failed")

    async def flush(self) -> None:
        """Write everything buffered now (shutdown, tests)."""
        await self.flush_logs()
        await self.flush_metrics()

    async def flush_logs(self) -> None:
        """Send buffered log lines to CloudWatch Logs."""
        if not self._logs or "logs" not in self.app.specs:
            self._logs.clear()
            return
        pending, self._logs = self._logs, defaultdict(list)
        for (region, group, stream), events in pending.items():
            # keep the runtime's order (init output, START, ...); PutLogEvents wants
            # non-decreasing timestamps, so a line never goes before the one above it
            last = 0
            for i, (ts, message) in enumerate(events):
                last = max(last, ts)
                events[i] = (last, message)
            for batch in _batches(events):
                await self._put_logs(region, group, stream, batch)

    async def _put_logs(self, region: str, group: str, stream: str, batch: list[dict[str, Any]]) -> None:
        key = (region, group, stream)
        params = {"logGroupName": group, "logStreamName": stream, "logEvents": batch}
        if len(self._known_streams) > _MAX_KNOWN_STREAMS:  # one per instance ever started: forget old ones
            self._known_streams.clear()
        for _ in range(2):
            if key not in self._known_streams:
                await self._ensure(region, "CreateLogGroup", {"logGroupName": group})
                await self._ensure(region, "CreateLogStream", {"logGroupName": group, "logStreamName": stream})
                self._known_streams.add(key)
            try:
                await self.app.call("logs", "PutLogEvents", params, region=region)
                return
            except AwsError as exc:
                if exc.code != "ResourceNotFoundException":
                    raise
                self._known_streams.discard(key)  # the group was deleted meanwhile

    async def _ensure(self, region: str, operation: str, params: dict[str, Any]) -> None:
        try:
            await self.app.call("logs", operation, params, region=region)
        except AwsError as exc:
            if exc.code != "ResourceAlreadyExistsException":
                raise

    async def flush_metrics(self) -> None:
        """Send the last period's numbers to CloudWatch and the usage table."""
        self._last_metrics = time.monotonic()
        if not self._stats:
            return
        stats, self._stats = self._stats, {}
        await self.app.store.write(lambda txn: _add_usage(txn, stats))
        if "cloudwatch" not in self.app.specs:
            return
        now = dt.datetime.now(dt.UTC)
        by_region: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for name, s in stats.items():
            by_region[s.region].extend(_metric_data(name, s, now))
        for region, data in by_region.items():
            for i in range(0, len(data), 1000):
                await self.app.call("cloudwatch", "PutMetricData",
                                    {"Namespace": "AWS/Lambda", "MetricData": data[i : i + 1000]}, region=region)  # fmt: skip


def _batches(events: list[tuple[int, str]]) -> list[list[dict[str, Any]]]:
    """PutLogEvents batches within AWS's limits (count and bytes)."""
    batches: list[list[dict[str, Any]]] = [[]]
    size = 0
    for ts, message in events:
        text = message[:200_000] or " "
        cost = len(text.encode()) + 26
        if len(batches[-1]) >= _MAX_BATCH_EVENTS or size + cost > _MAX_BATCH_BYTES:
            batches.append([])
            size = 0
        batches[-1].append({"timestamp": ts, "message": text})
        size += cost
    return [b for b in batches if b]


def _metric_data(name: str, s: _Stats, when: dt.datetime) -> list[dict[str, Any]]:
    dims = [{"Name": "FunctionName", "Value": name}]

    def count(metric: str, value: float, unit: str = "Count") -> dict[str, Any]:
        return {"MetricName": metric, "Dimensions": dims, "Timestamp": when, "Value": float(value), "Unit": unit}

    data = [count("Invocations", s.invocations), count("Errors", s.errors)]
    if s.throttles:
        data.append(count("Throttles", s.throttles))
    if s.concurrency:
        data.append({**count("ConcurrentExecutions", s.concurrency), "StatisticValues": {
            "SampleCount": 1.0, "Sum": float(s.concurrency), "Minimum": float(s.concurrency),
            "Maximum": float(s.concurrency)}})  # fmt: skip
        data[-1].pop("Value")
    if s.durations:
        data.append({"MetricName": "Duration", "Dimensions": dims, "Timestamp": when, "Unit": "Milliseconds",
                     "StatisticValues": {"SampleCount": float(len(s.durations)), "Sum": float(sum(s.durations)),
                                         "Minimum": float(min(s.durations)), "Maximum": float(max(s.durations))}})  # fmt: skip
    return data


def _add_usage(txn: Txn, stats: dict[str, _Stats]) -> None:
    for name, s in stats.items():
        key = pack(s.region, name)
        doc = st.get(txn, st.USAGE, key) or {"requests": 0, "gb_seconds": 0.0, "errors": 0, "throttles": 0}
        doc["requests"] += s.invocations
        doc["errors"] += s.errors
        doc["throttles"] += s.throttles
        doc["gb_seconds"] += s.gb_seconds
        if s.last_invocation:
            doc["last_invocation"] = s.last_invocation
        st.put(txn, st.USAGE, key, doc)
