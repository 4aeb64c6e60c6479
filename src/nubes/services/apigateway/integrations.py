"""Running an integration: Lambda proxy, HTTP proxy, and HTTP API's first-class
AWS service integrations (SQS, EventBridge, Step Functions)."""

from __future__ import annotations

import asyncio
import re
import urllib.error
import urllib.request
from typing import Any

import orjson

from nubes.app import App
from nubes.aws.errors import AwsError
from nubes.aws.protocol.types import WireResponse
from nubes.services.apigateway.payloads import Incoming

_HOP_HEADERS = {"host", "connection", "content-length", "transfer-encoding", "keep-alive", "upgrade"}
_SUBTYPES = {
    "SQS-SendMessage": ("sqs", "SendMessage"), "SQS-ReceiveMessage": ("sqs", "ReceiveMessage"),
    "SQS-DeleteMessage": ("sqs", "DeleteMessage"), "SQS-PurgeQueue": ("sqs", "PurgeQueue"),
    "EventBridge-PutEvents": ("events", "PutEvents"), "StepFunctions-StartExecution": ("stepfunctions", "StartExecution"),
    "StepFunctions-StartSyncExecution": ("stepfunctions", "StartSyncExecution"),
    "StepFunctions-StopExecution": ("stepfunctions", "StopExecution"),
}  # fmt: skip


class IntegrationTimeout(Exception):
    """The integration did not answer within its timeout."""


class FunctionFailed(Exception):
    """The Lambda function raised or crashed (``X-Amz-Function-Error``)."""


def function_of(uri: str) -> str:
    """The function ARN in an integration URI (``.../functions/<arn>/invocations``) or the ARN itself."""
    if "/functions/" in uri:
        return uri.split("/functions/", 1)[1].split("/invocations", 1)[0]
    return uri


async def invoke_lambda(app: App, uri: str, event: dict[str, Any], timeout: float) -> bytes:
    """The function's result payload; raises FunctionFailed / IntegrationTimeout."""
    try:
        # asyncio.timeout, not wait_for: no extra task per request
        async with asyncio.timeout(timeout):
            out = await app.call("lambda", "Invoke", {"FunctionName": function_of(uri), "Payload": orjson.dumps(event)})
    except TimeoutError:
        raise IntegrationTimeout from None
    if out.get("FunctionError"):
        raise FunctionFailed(out.get("Payload"))
    payload = out.get("Payload") or b""
    return payload if isinstance(payload, bytes) else str(payload).encode()


def _select(expression: str, req: Incoming, body: Any) -> Any:
    """``$request.body.a.b``, ``$request.header.x``, ``$request.querystring.x``,
    ``$request.path.x``, ``$context.x``, ``$stageVariables.x`` — or a literal with
    ``${...}`` parts substituted."""
    if not expression.startswith("$"):
        return re.sub(r"\$\{([^}]+)\}", lambda m: str(_select("$" + m.group(1), req, body) or ""), expression)
    if expression.startswith("$request.body"):
        node = body
        for part in expression[len("$request.body") :].strip(".").split("."):
            if not part:
                continue
            node = node.get(part) if isinstance(node, dict) else None
        return node
    kind, _, name = expression[1:].partition(".")
    if kind == "request":
        where, _, key = name.partition(".")
        if where == "header":
            return req.headers.get(key.lower())
        if where == "querystring":
            return next((v for k, v in req.query_pairs if k == key), None)
        if where == "path":
            return req.path_parameters.get(key)
    if kind == "context":
        return {"requestId": req.request_id, "stage": req.stage, "apiId": req.api_id, "routeKey": req.route_key}.get(name)
    if kind == "stageVariables":
        return req.stage_variables.get(name)
    return None


async def aws_service(app: App, integration: dict[str, Any], req: Incoming) -> WireResponse:
    """An HTTP API ``AWS_PROXY`` integration with an ``IntegrationSubtype``."""
    subtype = integration.get("IntegrationSubtype", "")
    target = _SUBTYPES.get(subtype)
    if target is None:
        raise AwsError("BadRequestException", f"Integration subtype {subtype} is not supported by nubes", 400)
    try:
        body = orjson.loads(req.body) if req.body else None
    except orjson.JSONDecodeError:
        body = None
    params = {k: _select(v, req, body) for k, v in (integration.get("RequestParameters") or {}).items()}
    params = {k: v for k, v in params.items() if v is not None}
    if target[1] == "PutEvents":
        entry = {"Detail": params.pop("Detail", "{}"), "DetailType": params.pop("DetailType", ""), "Source": params.pop("Source", "")}
        if "EventBusName" in params:
            entry["EventBusName"] = params.pop("EventBusName")
        if isinstance(entry["Detail"], dict):
            entry["Detail"] = orjson.dumps(entry["Detail"]).decode()
        params = {"Entries": [entry]}
    for key in ("MessageBody", "Input"):
        if isinstance(params.get(key), dict | list):
            params[key] = orjson.dumps(params[key]).decode()
    region = str(integration.get("Region") or app.settings.default_region)
    try:
        result = await app.call(target[0], target[1], params, region=region)
    except AwsError as err:
        return WireResponse(400, {"Content-Type": "application/json"}, orjson.dumps({"message": err.message, "__type": err.code}))
    return WireResponse(200, {"Content-Type": "application/json"}, orjson.dumps(result, default=str))


async def http_proxy(integration_uri: str, method: str, req: Incoming, timeout: float) -> WireResponse:
    """Forward the request to ``integration_uri`` (path parameters substituted)."""
    url = re.sub(r"\{([^}+]+)\+?\}", lambda m: req.path_parameters.get(m.group(1), ""), integration_uri)
    if req.raw_query:
        url += ("&" if "?" in url else "?") + req.raw_query
    headers = {k: v for k, v in req.headers.items() if k not in _HOP_HEADERS}
    request = urllib.request.Request(url, data=req.body or None, method=method if method != "ANY" else req.method, headers=headers)

    def send() -> WireResponse:
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                return WireResponse(resp.status, {k: v for k, v in resp.headers.items() if k.lower() not in _HOP_HEADERS}, resp.read())
        except urllib.error.HTTPError as err:
            return WireResponse(err.code, {k: v for k, v in err.headers.items() if k.lower() not in _HOP_HEADERS}, err.read())

    try:
        return await asyncio.wait_for(asyncio.to_thread(send), timeout + 1)
    except (TimeoutError, OSError):
        raise IntegrationTimeout from None
