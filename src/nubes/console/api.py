"""The console's JSON API (``/_nubes/console/api/<name>``).

Every answer is read through the internal client (``app.call``) — the same provider
code boto3 reaches — or the platform's own endpoints (health, usage, the SES
mailbox); the console never keeps a second copy of any service's data. Resource
names and ARNs travel as query parameters, so an ARN never has to fit a path.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from nubes.app import App
from nubes.console.graph import execution_graph

log = logging.getLogger(__name__)

Query = dict[str, str]


class Client:
    """The app as one console request sees it: internal calls go to the region the
    page chose (``?region=``); the platform endpoints are the same in every region."""

    def __init__(self, app: App, region: str | None = None) -> None:
        self.app = app
        self.region = region or str(app.settings.default_region)
        self.settings = app.settings

    async def call(
        self, service: str, operation: str, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """``app.call`` in the chosen region."""
        return await self.app.call(service, operation, params, region=self.region)

    def provider(self, model: str) -> Any:
        """The provider serving ``model`` (for its raw ``/_nubes/`` routes)."""
        return self.app.provider(model)


Handler = Callable[[Client, Query, bytes], Awaitable[Any]]

PAGE = 50
#: how many log events a function's detail shows
LOG_EVENTS = 100
#: history events an execution's page lists (a big Map has tens of thousands)
HISTORY_ROWS = 1000


class ConsoleError(Exception):
    """Bad console input (a missing parameter, invalid JSON): a 400 with a message."""


def _default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(raw).decode()}
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if hasattr(value, "__aiter__"):
        return None  # a streamed body has no place in a JSON answer
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(doc: Any) -> bytes:
    """JSON for the console: bytes as text (or base64), datetimes as ISO strings."""
    return orjson.dumps(doc, default=_default, option=orjson.OPT_NON_STR_KEYS)


def need(query: Query, name: str) -> str:
    """A required query parameter."""
    value = query.get(name)
    if not value:
        raise ConsoleError(f"missing query parameter {name!r}")
    return value


async def _platform(
    app: Client, model: str, method: str, path: str, http_method: str = "GET"
) -> Any:
    """Answer of another service's raw ``/_nubes/`` route, read in-process."""
    from nubes.services.base import HttpRequest

    provider = app.provider(model)
    request = HttpRequest(method=http_method, path=path, query_string=b"", headers={}, body=b"")
    response = await getattr(provider, method)(request, None)
    body = response.body if isinstance(response.body, bytes) else b""
    return orjson.loads(body) if body else {}


async def _usage(app: Client) -> dict[str, Any]:
    """``/_nubes/usage``; when its flush to CloudWatch fails, the stored numbers
    (the flush writes them to the store before it calls CloudWatch)."""
    try:
        doc: dict[str, Any] = await _platform(app, "lambda", "serve_usage", "/_nubes/usage")
    except Exception as exc:
        log.warning("/_nubes/usage failed (%s); reading stored usage", exc)
        doc = await app.provider("lambda").usage()
        doc["warning"] = f"/_nubes/usage failed: {_error_doc(exc)['message']}"
    return doc


# -- overview ------------------------------------------------------------------------


async def overview(app: Client, query: Query, body: bytes) -> Any:
    """Health (version, store, services), endpoint, region/account and usage totals."""
    from nubes.gateway.platform import PlatformRoutes

    usage = await _usage(app)
    return {"health": PlatformRoutes(app.app).health(), "usage": usage.get("total", {})}


# -- functions -----------------------------------------------------------------------


async def functions(app: Client, query: Query, body: bytes) -> Any:
    """Functions with their configuration and their usage / live instance numbers."""
    listed: list[dict[str, Any]] = []
    marker: str | None = None
    while True:
        page = await app.call("lambda", "ListFunctions", {"Marker": marker} if marker else {})
        listed.extend(page.get("Functions", []))
        marker = page.get("NextMarker")
        if not marker:
            break
    usage = await _usage(app)
    by_name = {
        row["function"]: row
        for row in usage.get("functions", [])
        if row.get("region") == app.region
    }
    # ListFunctions leaves out State and concurrency, as on AWS: GetFunction has them
    got = await asyncio.gather(
        *(app.call("lambda", "GetFunction", {"FunctionName": f["FunctionName"]}) for f in listed),
        return_exceptions=True,
    )
    rows = []
    for f, full in zip(listed, got, strict=True):
        detail = full if isinstance(full, dict) else {}
        rows.append({**f, **detail.get("Configuration", {}), "Concurrency": detail.get("Concurrency"),
                     "Usage": by_name.get(f["FunctionName"])})  # fmt: skip
    return {"functions": rows}


async def function(app: Client, query: Query, body: bytes) -> Any:
    """A function's configuration, concurrency and its most recent log events."""
    name = need(query, "name")
    got = await app.call("lambda", "GetFunction", {"FunctionName": name})
    events: list[dict[str, Any]] = []
    logs_error = None
    try:
        start = int((dt.datetime.now(dt.UTC) - dt.timedelta(hours=24)).timestamp() * 1000)
        page = await app.call(
            "logs", "FilterLogEvents", {"logGroupName": f"/aws/lambda/{name}", "startTime": start}
        )
        events = page.get("events", [])[-LOG_EVENTS:]
    except Exception as exc:  # no log group yet: the function never ran
        logs_error = _error_doc(exc)
    return {"function": got, "events": events, "logs_error": logs_error}


async def invoke(app: Client, query: Query, body: bytes) -> Any:
    """Invoke a function with a JSON payload; the result and the log tail."""
    name = need(query, "name")
    payload = body or b"{}"
    try:
        orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise ConsoleError(f"the payload is not JSON: {exc}") from None
    out = await app.call(
        "lambda", "Invoke", {"FunctionName": name, "Payload": payload, "LogType": "Tail"}
    )
    raw = out.get("Payload") or b""
    if not isinstance(raw, bytes):
        raw = b"".join([chunk async for chunk in raw])
    tail = (
        base64.b64decode(out["LogResult"]).decode("utf-8", "replace")
        if out.get("LogResult")
        else ""
    )
    return {"StatusCode": out.get("StatusCode"), "FunctionError": out.get("FunctionError"),
            "Payload": raw.decode("utf-8", "replace"), "Logs": tail}  # fmt: skip


# -- APIs ------------------------------------------------------------------------------


def _port(app: Client) -> str:
    endpoint = str(app.settings.endpoint)
    return endpoint.rsplit(":", 1)[1].rstrip("/") if endpoint.count(":") >= 2 else "80"


async def apis(app: Client, query: Query, body: bytes) -> Any:
    """REST (v1) and HTTP/WebSocket (v2) APIs with each stage's invoke URL."""
    port = _port(app)
    rows: list[dict[str, Any]] = []
    for api in (await app.call("apigateway", "GetRestApis", {"limit": 500})).get("items", []):
        stages = (await app.call("apigateway", "GetStages", {"restApiId": api["id"]})).get(
            "item", []
        )
        rows.append({"id": api["id"], "name": api.get("name"), "kind": "REST", "created": api.get("createdDate"),
                     "urls": [f"http://{api['id']}.execute-api.localhost:{port}/{s['stageName']}" for s in stages]})  # fmt: skip
    for api in (await app.call("apigatewayv2", "GetApis", {})).get("Items", []):
        stages = (await app.call("apigatewayv2", "GetStages", {"ApiId": api["ApiId"]})).get(
            "Items", []
        )
        scheme = "ws" if api.get("ProtocolType") == "WEBSOCKET" else "http"
        urls = [f"{scheme}://{api['ApiId']}.execute-api.localhost:{port}"
                + ("" if s["StageName"] == "$default" else "/" + s["StageName"]) for s in stages]  # fmt: skip
        rows.append({"id": api["ApiId"], "name": api.get("Name"), "kind": api.get("ProtocolType"),
                     "created": api.get("CreatedDate"), "urls": urls})  # fmt: skip
    return {"apis": rows}


# -- DynamoDB --------------------------------------------------------------------------


async def tables(app: Client, query: Query, body: bytes) -> Any:
    """Tables with item counts, key schema and status."""
    names = (await app.call("dynamodb", "ListTables", {})).get("TableNames", [])
    described = await asyncio.gather(
        *(app.call("dynamodb", "DescribeTable", {"TableName": n}) for n in names)
    )
    return {"tables": [d["Table"] for d in described]}


async def table(app: Client, query: Query, body: bytes) -> Any:
    """One page (50 items) of a Scan; ``start`` is the previous page's LastEvaluatedKey (JSON)."""
    params: dict[str, Any] = {"TableName": need(query, "name"), "Limit": PAGE}
    if query.get("start"):
        start = _json_param(query["start"], "start")
        if not isinstance(start, dict):
            raise ConsoleError("query parameter 'start' must be a JSON object (a LastEvaluatedKey)")
        params["ExclusiveStartKey"] = start
    return await app.call("dynamodb", "Scan", params)


def _json_param(text: str, name: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ConsoleError(f"query parameter {name!r} is not JSON") from None


# -- S3 ----------------------------------------------------------------------------------


async def buckets(app: Client, query: Query, body: bytes) -> Any:
    """Buckets."""
    return {"buckets": (await app.call("s3", "ListBuckets", {})).get("Buckets", [])}


async def objects(app: Client, query: Query, body: bytes) -> Any:
    """Objects and common prefixes ("folders") under ``prefix``, 200 a page."""
    params: dict[str, Any] = {"Bucket": need(query, "bucket"), "Prefix": query.get("prefix", ""),
                              "Delimiter": "/", "MaxKeys": 200}  # fmt: skip
    if query.get("token"):
        params["ContinuationToken"] = query["token"]
    return await app.call("s3", "ListObjectsV2", params)


# -- queues, topics, rules, user pools ------------------------------------------------------


async def queues(app: Client, query: Query, body: bytes) -> Any:
    """Queues with their message counts."""
    urls = (await app.call("sqs", "ListQueues", {"MaxResults": 1000})).get("QueueUrls", [])
    attrs = await asyncio.gather(*(app.call("sqs", "GetQueueAttributes", {"QueueUrl": u, "AttributeNames": ["All"]})
                                   for u in urls))  # fmt: skip
    return {
        "queues": [
            {"QueueUrl": u, "Name": u.rsplit("/", 1)[-1], **a.get("Attributes", {})}
            for u, a in zip(urls, attrs, strict=True)
        ]
    }


async def topics(app: Client, query: Query, body: bytes) -> Any:
    """Topics with their subscriptions."""
    arns = [t["TopicArn"] for t in (await app.call("sns", "ListTopics", {})).get("Topics", [])]
    subs = (await app.call("sns", "ListSubscriptions", {})).get("Subscriptions", [])
    return {"topics": [{"TopicArn": a, "Name": a.rsplit(":", 1)[-1],
                        "Subscriptions": [s for s in subs if s.get("TopicArn") == a]} for a in arns]}  # fmt: skip


async def rules(app: Client, query: Query, body: bytes) -> Any:
    """EventBridge buses and the rules on each."""
    buses = (await app.call("events", "ListEventBuses", {})).get("EventBuses", [])
    out = []
    for bus in buses:
        found = (await app.call("events", "ListRules", {"EventBusName": bus["Name"]})).get(
            "Rules", []
        )
        for rule in found:
            targets = await app.call(
                "events", "ListTargetsByRule", {"Rule": rule["Name"], "EventBusName": bus["Name"]}
            )
            out.append({**rule, "EventBusName": bus["Name"], "Targets": targets.get("Targets", [])})
    return {"buses": buses, "rules": out}


async def userpools(app: Client, query: Query, body: bytes) -> Any:
    """Cognito user pools."""
    return {
        "pools": (await app.call("cognito-idp", "ListUserPools", {"MaxResults": 60})).get(
            "UserPools", []
        )
    }


async def users(app: Client, query: Query, body: bytes) -> Any:
    """Users of one pool (first 60)."""
    return await app.call(
        "cognito-idp", "ListUsers", {"UserPoolId": need(query, "pool"), "Limit": 60}
    )


# -- Step Functions --------------------------------------------------------------------------


async def statemachines(app: Client, query: Query, body: bytes) -> Any:
    """State machines."""
    return {
        "machines": (await app.call("stepfunctions", "ListStateMachines", {})).get(
            "stateMachines", []
        )
    }


async def executions(app: Client, query: Query, body: bytes) -> Any:
    """A machine's executions, newest first, optionally only one ``status``."""
    params: dict[str, Any] = {"stateMachineArn": need(query, "arn"), "maxResults": 100}
    if query.get("status"):
        params["statusFilter"] = query["status"]
    return await app.call("stepfunctions", "ListExecutions", params)


async def _history(app: Client, arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        params: dict[str, Any] = {"executionArn": arn, "maxResults": 1000}
        if token:
            params["nextToken"] = token
        page = await app.call("stepfunctions", "GetExecutionHistory", params)
        events.extend(page.get("events", []))
        token = page.get("nextToken")
        if not token:
            return events


async def execution(app: Client, query: Query, body: bytes) -> Any:
    """An execution, its history and the graph of its definition coloured by that history."""
    arn = need(query, "arn")
    described, machine, events = await asyncio.gather(
        app.call("stepfunctions", "DescribeExecution", {"executionArn": arn}),
        app.call("stepfunctions", "DescribeStateMachineForExecution", {"executionArn": arn}),
        _history(app, arn),
    )
    definition = orjson.loads(machine["definition"])
    graph = execution_graph(definition, events, str(described.get("status")))
    # the graph reads the whole history; the page's table shows its first events only
    shown = events[:HISTORY_ROWS]
    return {
        "execution": described,
        "events": shown,
        "events_total": len(events),
        "graph": graph,
        "definition": machine["definition"],
    }


async def graph(app: Client, query: Query, body: bytes) -> Any:
    """Only the graph of an execution (nodes with statuses, edges)."""
    doc = await execution(app, query, body)
    return doc["graph"]


# -- mailbox, stacks --------------------------------------------------------------------------


async def mail(app: Client, query: Query, body: bytes) -> Any:
    """Messages SES captured, newest first."""
    doc = await _platform(app, "ses", "http_mailbox", "/_nubes/ses")
    return {"messages": list(reversed(doc.get("messages", [])))}


async def clear_mail(app: Client, query: Query, body: bytes) -> Any:
    """Empty the SES mailbox."""
    await _platform(app, "ses", "http_mailbox", "/_nubes/ses", "DELETE")
    return {"cleared": True}


async def stacks(app: Client, query: Query, body: bytes) -> Any:
    """CloudFormation stacks (not deleted ones)."""
    return {"stacks": (await app.call("cloudformation", "DescribeStacks", {})).get("Stacks", [])}


async def stack(app: Client, query: Query, body: bytes) -> Any:
    """A stack with its resources, outputs and events."""
    name = need(query, "name")
    described, resources, events = await asyncio.gather(
        app.call("cloudformation", "DescribeStacks", {"StackName": name}),
        app.call("cloudformation", "ListStackResources", {"StackName": name}),
        app.call("cloudformation", "DescribeStackEvents", {"StackName": name}),
    )
    return {"stack": (described.get("Stacks") or [{}])[0], "resources": resources.get("StackResourceSummaries", []),
            "events": events.get("StackEvents", [])}  # fmt: skip


def _error_doc(exc: BaseException) -> dict[str, Any]:
    code = getattr(exc, "code", None) or type(exc).__name__
    return {"code": code, "message": getattr(exc, "message", None) or str(exc)}


GET: dict[str, Handler] = {
    "overview": overview, "functions": functions, "function": function, "apis": apis,
    "tables": tables, "table": table, "buckets": buckets, "objects": objects,
    "queues": queues, "topics": topics, "rules": rules, "userpools": userpools, "users": users,
    "statemachines": statemachines, "executions": executions, "execution": execution, "graph": graph,
    "mail": mail, "stacks": stacks, "stack": stack,
}  # fmt: skip
POST: dict[str, Handler] = {"invoke": invoke}
DELETE: dict[str, Handler] = {"mail": clear_mail}


def error_doc(exc: BaseException) -> dict[str, Any]:
    """``{"error": {"code", "message"}}`` for a failed call, as the page shows it."""
    return {"error": _error_doc(exc)}
