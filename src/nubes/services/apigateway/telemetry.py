"""Access logs and execution metrics of API stages.

The request path only appends to in-memory buffers (a formatted access-log line,
a few running sums); one background task sends them about once a second:
PutLogEvents to the stage's log group and PutMetricData in ``AWS/ApiGateway``
(REST: ApiName + Stage dimensions, metrics Count/4XXError/5XXError/Latency/
IntegrationLatency; HTTP APIs: ApiId + Stage, metrics Count/4xx/5xx/Latency/
IntegrationLatency as AWS names them; WebSocket APIs: ApiId + Stage, metrics
ConnectCount/MessageCount/IntegrationError/ClientError/ExecutionError/
IntegrationLatency, and an access-log line per $connect, message and
$disconnect)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import re
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from nubes.app import App
from nubes.aws.errors import AwsError
from nubes.services.apigateway.payloads import Incoming

log = logging.getLogger(__name__)
_FLUSH_S = 1.0
_MAX_BUFFERED_LINES = 100_000  # beyond this (CloudWatch unreachable) lines are dropped, not memory
_VARIABLE = re.compile(r"\$context\.([A-Za-z0-9_.]+)")
_LOG_GROUP = re.compile(r"^arn:aws[\w-]*:logs:([\w-]+):\d*:log-group:([^:]+)(?::\*)?$")


@dataclass
class Outcome:
    """What happened to one request, for its log line and metrics."""

    status: int
    response_length: int
    latency_ms: float
    integration_ms: float | None
    error_message: str | None = None


@dataclass
class _Sums:
    count: int = 0
    errors_4xx: int = 0
    errors_5xx: int = 0
    latency: tuple[int, float, float, float] = (0, 0.0, float("inf"), 0.0)
    integration: tuple[int, float, float, float] = (0, 0.0, float("inf"), 0.0)


@dataclass
class WsOutcome:
    """What happened to one WebSocket route request ($connect, a message, $disconnect)."""

    #: ``$context.status``: what API Gateway answered (200, 403 no route, 500 failed integration)
    status: int
    #: None when no integration ran, or a MOCK one (AWS suppresses the latency of those)
    integration_ms: float | None = None
    #: the integration's own status (a proxy result's statusCode)
    integration_status: int | None = None
    error_message: str | None = None
    #: refused by API Gateway before the integration ran (no route, authorizer said no)
    client_error: bool = False
    #: calling the integration failed (function error, timeout, bad proxy response)
    execution_error: bool = False


@dataclass
class _WsSums:
    samples: int = 0
    connects: int = 0
    messages: int = 0
    integration_errors: int = 0
    client_errors: int = 0
    execution_errors: int = 0
    integration: tuple[int, float, float, float] = (0, 0.0, float("inf"), 0.0)


def _add(stat: tuple[int, float, float, float], value: float) -> tuple[int, float, float, float]:
    n, total, low, high = stat
    return n + 1, total + value, min(low, value), max(high, value)


def context_values(req: Incoming, outcome: Outcome, v2: bool) -> dict[str, Any]:
    """The ``$context`` variables an access-log format can use."""
    started = dt.datetime.fromtimestamp(req.started, dt.UTC)
    values: dict[str, Any] = {
        "requestId": req.request_id, "extendedRequestId": req.request_id, "apiId": req.api_id, "stage": req.stage,
        "httpMethod": req.method, "path": req.path if req.stage == "$default" else f"/{req.stage}{req.path}",
        "resourcePath": req.resource_path, "resourceId": req.resource_id, "routeKey": req.route_key,
        "protocol": "HTTP/1.1", "status": outcome.status, "responseLength": outcome.response_length,
        "requestTime": started.strftime("%d/%b/%Y:%H:%M:%S +0000"), "requestTimeEpoch": int(req.started * 1000),
        "responseLatency": int(outcome.latency_ms), "integrationLatency": _ms(outcome.integration_ms),
        "integration.latency": _ms(outcome.integration_ms), "domainName": req.domain, "accountId": req.account_id,
        "identity.sourceIp": req.source_ip, "identity.userAgent": req.headers.get("user-agent"),
        "error.message": outcome.error_message, "error.messageString": orjson.dumps(outcome.error_message).decode()
        if outcome.error_message else None,
    }  # fmt: skip
    if v2:
        values["http.method"], values["http.path"] = values["httpMethod"], values["path"]
    for key, value in (req.authorizer or {}).items():
        if isinstance(value, dict):
            for sub, inner in value.items():
                values[f"authorizer.{key}.{sub}"] = inner
        values[f"authorizer.{key}"] = value
    for key, value in req.identity.items():
        values[f"identity.{key}"] = value
    return values


def ws_context_values(context: dict[str, Any], outcome: WsOutcome) -> dict[str, Any]:
    """The ``$context`` variables of a WebSocket API's access log, from the
    ``requestContext`` the integration was sent."""
    identity = context.get("identity") or {}
    values: dict[str, Any] = {
        key: context.get(key) for key in ("apiId", "connectionId", "connectedAt", "domainName", "eventType", "extendedRequestId",
                                           "messageId", "messageDirection", "requestId", "requestTime", "requestTimeEpoch",
                                           "routeKey", "stage")
    }  # fmt: skip
    integration_ms = _ms(outcome.integration_ms)
    values.update({
        "awsEndpointRequestId": context.get("requestId"), "status": outcome.status,
        "identity.sourceIp": identity.get("sourceIp"), "identity.userAgent": identity.get("userAgent"),
        "integrationLatency": integration_ms, "integration.latency": integration_ms,
        "integrationStatus": outcome.integration_status, "integration.status": outcome.integration_status,
        "integration.integrationStatus": outcome.integration_status,
        "error.message": outcome.error_message,
        "error.messageString": orjson.dumps(outcome.error_message).decode() if outcome.error_message else None,
    })  # fmt: skip
    for key, value in (context.get("authorizer") or {}).items():
        values[f"authorizer.{key}"] = value
    return values


def _ms(value: float | None) -> int | None:
    return None if value is None else int(value)


def render_access_log(fmt: str, values: dict[str, Any]) -> str:
    """The format with each ``$context.x`` replaced (``-`` when it has no value)."""

    def one(m: re.Match[str]) -> str:
        name = candidate = m.group(1)
        # the longest known variable the text starts with (a trailing "." is text)
        while candidate not in values and "." in candidate:
            candidate = candidate.rsplit(".", 1)[0]
        if candidate not in values:
            return "-"
        value = values[candidate]
        text = "-" if value is None else (value if isinstance(value, str) else orjson.dumps(value).decode())
        return text + name[len(candidate) :]

    return _VARIABLE.sub(one, fmt)


class Telemetry:
    """Buffers access-log lines and metric sums; a background task ships them."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._lines: dict[tuple[str, str, str], list[tuple[int, str]]] = defaultdict(list)
        self._buffered = 0
        self._sums: dict[tuple[str, str, str, bool], _Sums] = {}
        self._ws_sums: dict[tuple[str, str, str], _WsSums] = {}
        self._task: asyncio.Task[Any] | None = None
        self._known: set[tuple[str, str, str]] = set()

    def record(self, api: dict[str, Any], stage: dict[str, Any], req: Incoming, outcome: Outcome) -> None:
        """Note one answered request (cheap: no I/O here)."""
        v2 = api["Version"] == 2
        key = (self.app.settings.default_region, req.api_id if v2 else str(api.get("name")), req.stage, v2)
        sums = self._sums.get(key)
        if sums is None:
            sums = self._sums[key] = _Sums()
        sums.count += 1
        sums.errors_4xx += 400 <= outcome.status < 500
        sums.errors_5xx += outcome.status >= 500
        sums.latency = _add(sums.latency, outcome.latency_ms)
        if outcome.integration_ms is not None:
            sums.integration = _add(sums.integration, outcome.integration_ms)
        settings = stage.get("AccessLogSettings" if v2 else "accessLogSettings") or {}
        arn, fmt = settings.get("DestinationArn" if v2 else "destinationArn"), settings.get("Format" if v2 else "format")
        if arn and fmt:
            self._log_line(str(arn), f"{req.api_id}-{req.stage}", lambda: render_access_log(str(fmt), context_values(req, outcome, v2)))
        self._wake()

    def record_ws(self, stage: dict[str, Any], context: dict[str, Any], outcome: WsOutcome) -> None:
        """Note one WebSocket route request (``context``: the requestContext it was sent)."""
        sums = self._ws(str(context.get("apiId")), str(context.get("stage")))
        sums.samples += 1
        event_type = context.get("eventType")
        sums.connects += event_type == "CONNECT"
        sums.messages += event_type == "MESSAGE"
        sums.client_errors += outcome.client_error
        sums.execution_errors += outcome.execution_error
        sums.integration_errors += outcome.integration_status is not None and outcome.integration_status >= 400
        if outcome.integration_ms is not None:
            sums.integration = _add(sums.integration, outcome.integration_ms)
        settings = stage.get("AccessLogSettings") or {}
        arn, fmt = settings.get("DestinationArn"), settings.get("Format")
        if arn and fmt:
            stream = f"{context.get('apiId')}-{context.get('stage')}"
            self._log_line(str(arn), stream, lambda: render_access_log(str(fmt), ws_context_values(context, outcome)))
        self._wake()

    def count_ws_message(self, api_id: str, stage: str) -> None:
        """Note one message API Gateway sent to a client (MessageCount counts both ways)."""
        sums = self._ws(api_id, stage)
        sums.samples += 1
        sums.messages += 1
        self._wake()

    def _ws(self, api_id: str, stage: str) -> _WsSums:
        key = (self.app.settings.default_region, api_id, stage)
        sums = self._ws_sums.get(key)
        if sums is None:
            sums = self._ws_sums[key] = _WsSums()
        return sums

    def _log_line(self, arn: str, stream: str, line: Callable[[], str]) -> None:
        """Buffer one access-log line for the log group ``arn`` names (rendered only if kept)."""
        if self._buffered >= _MAX_BUFFERED_LINES:
            return
        m = _LOG_GROUP.match(arn)
        if m is not None:
            self._lines[(m.group(1), m.group(2), stream)].append((int(time.time() * 1000), line()))
            self._buffered += 1

    def _wake(self) -> None:
        if self._task is None or self._task.done():
            self._task = self.app.spawn(self._run(), name="apigateway-telemetry")

    async def _run(self) -> None:
        while self._sums or self._lines or self._ws_sums:
            await asyncio.sleep(_FLUSH_S)
            try:
                await self.flush()
            except Exception:  # a failed flush must not kill the task; next round retries new data
                log.exception("apigateway telemetry flush failed")

    async def flush(self) -> None:
        """Send what has been buffered since the last flush."""
        lines, self._lines, self._buffered = self._lines, defaultdict(list), 0
        sums, self._sums = self._sums, {}
        ws_sums, self._ws_sums = self._ws_sums, {}
        for (region, group, stream), events in lines.items():
            for i in range(0, len(events), 5000):
                await self._put_logs(region, group, stream, events[i : i + 5000])
        if (sums or ws_sums) and "cloudwatch" in self.app.specs:
            await self._put_metrics(sums, ws_sums)

    async def _put_logs(self, region: str, group: str, stream: str, events: list[tuple[int, str]]) -> None:
        params = {"logGroupName": group, "logStreamName": stream,
                  "logEvents": [{"timestamp": ts, "message": line or " "} for ts, line in events]}  # fmt: skip
        key = (region, group, stream)
        if key not in self._known:
            try:
                await self.app.call("logs", "CreateLogStream", {"logGroupName": group, "logStreamName": stream}, region=region)
            except AwsError as exc:
                if exc.code != "ResourceAlreadyExistsException":
                    # AWS drops access logs whose group does not exist; so do we (logged here)
                    log.warning("access logs for %s dropped: %s", group, exc.message)
                    return
            self._known.add(key)
        try:
            await self.app.call("logs", "PutLogEvents", params, region=region)
        except AwsError as exc:
            self._known.discard(key)
            log.warning("access logs for %s dropped: %s", group, exc.message)

    async def _put_metrics(self, sums: dict[tuple[str, str, str, bool], _Sums], ws_sums: dict[tuple[str, str, str], _WsSums]) -> None:
        when = dt.datetime.now(dt.UTC)
        by_region: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for (region, api_id, stage), w in ws_sums.items():
            by_region[region].extend(_ws_metric_data(api_id, stage, w, when))
        for (region, name, stage, v2), s in sums.items():
            dims = [{"Name": "ApiId" if v2 else "ApiName", "Value": name}, {"Name": "Stage", "Value": stage}]
            data = by_region[region]
            for metric, value in (("Count", s.count), ("4xx" if v2 else "4XXError", s.errors_4xx),
                                  ("5xx" if v2 else "5XXError", s.errors_5xx)):  # fmt: skip
                data.append(_count_datum(metric, dims, when, value, s.count))
            for metric, stat in (("Latency", s.latency), ("IntegrationLatency", s.integration)):
                if stat[0]:
                    data.append(_latency_datum(metric, dims, when, stat))
        for region, data in by_region.items():
            for i in range(0, len(data), 1000):
                # as the platform itself (no caller key): only AWS services may write AWS/ namespaces
                ctx = dataclasses.replace(self.app.context("cloudwatch", "PutMetricData", region=region), access_key=None)
                await self.app.dispatch(ctx, {"Namespace": "AWS/ApiGateway", "MetricData": data[i : i + 1000]})


def _count_datum(metric: str, dims: list[dict[str, str]], when: dt.datetime, value: int, samples: int) -> dict[str, Any]:
    """Per-request 0/1 samples summarised: Sum is how many, SampleCount how many requests."""
    low = 1.0 if value == samples else 0.0
    return {"MetricName": metric, "Dimensions": dims, "Timestamp": when, "Unit": "Count",
            "StatisticValues": {"SampleCount": float(samples), "Sum": float(value), "Minimum": low, "Maximum": 1.0 if value else 0.0}}  # fmt: skip


def _latency_datum(metric: str, dims: list[dict[str, str]], when: dt.datetime, stat: tuple[int, float, float, float]) -> dict[str, Any]:
    return {"MetricName": metric, "Dimensions": dims, "Timestamp": when, "Unit": "Milliseconds",
            "StatisticValues": {"SampleCount": float(stat[0]), "Sum": stat[1], "Minimum": stat[2], "Maximum": stat[3]}}  # fmt: skip


def _ws_metric_data(api_id: str, stage: str, w: _WsSums, when: dt.datetime) -> list[dict[str, Any]]:
    """A WebSocket stage's metrics (ApiId + Stage dimensions, AWS's names)."""
    dims = [{"Name": "ApiId", "Value": api_id}, {"Name": "Stage", "Value": stage}]
    data = [_count_datum(metric, dims, when, value, w.samples)
            for metric, value in (("ConnectCount", w.connects), ("MessageCount", w.messages),
                                  ("IntegrationError", w.integration_errors), ("ClientError", w.client_errors),
                                  ("ExecutionError", w.execution_errors))]  # fmt: skip
    if w.integration[0]:
        data.append(_latency_datum("IntegrationLatency", dims, when, w.integration))
    return data
