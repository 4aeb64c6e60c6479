"""The Lambda events API Gateway sends (payload format 1.0 — also REST proxy — and
2.0) and how it reads the function's answer back into an HTTP response."""

from __future__ import annotations

import base64
import datetime as dt
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl

import orjson

from nubes.aws.protocol.types import WireResponse

#: the largest request body API Gateway accepts (10 MB)
MAX_PAYLOAD = 10 * 1024 * 1024
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript",
               "application/x-www-form-urlencoded", "application/graphql", "+json", "+xml")  # fmt: skip


@dataclass
class Incoming:
    """One request to an API, as the integrations see it."""

    method: str
    path: str  # the path after the stage
    raw_query: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    source_ip: str
    api_id: str
    stage: str
    domain: str
    request_id: str
    account_id: str
    route_key: str = "$default"
    resource_path: str = "/"
    path_parameters: dict[str, str] = field(default_factory=dict)
    stage_variables: dict[str, str] = field(default_factory=dict)
    authorizer: dict[str, Any] | None = None
    identity: dict[str, Any] = field(default_factory=dict)
    resource_id: str = ""
    started: float = field(default_factory=time.time)
    #: how long the integration took (ms), for metrics and access logs
    integration_ms: float | None = None
    #: the API key a Lambda authorizer returned (usageIdentifierKey)
    authorizer_api_key: str | None = None

    @property
    def query_pairs(self) -> list[tuple[str, str]]:
        return parse_qsl(self.raw_query, keep_blank_values=True)

    def body_for_event(self, binary_types: list[str] | None = None) -> tuple[str | None, bool]:
        """(body, isBase64Encoded) as API Gateway puts the body in an event."""
        if not self.body:
            return None, False
        kind = self.headers.get("content-type", "")
        textual = any(t in kind for t in _TEXT_TYPES) or not kind
        if binary_types and any(media_matches(kind, b) for b in binary_types):
            textual = False
        if textual:
            try:
                return self.body.decode(), False
            except UnicodeDecodeError:
                pass
        return base64.b64encode(self.body).decode(), True


def media_matches(kind: str, pattern: str) -> bool:
    """Whether media type ``kind`` matches ``pattern`` (``*/*``, ``image/*``, exact)."""
    kind = kind.split(";")[0].strip().lower()
    pattern = pattern.strip().lower().replace("~1", "/")
    if pattern == "*/*":
        return True
    if pattern.endswith("/*"):
        return kind.startswith(pattern[:-1])
    return kind.split(";")[0].strip() == pattern


def _request_time(when: float) -> str:
    return _request_second(int(when))


@lru_cache(maxsize=8)
def _request_second(second: int) -> str:
    """``requestTime`` has whole seconds: formatted once per second, not per request."""
    return dt.datetime.fromtimestamp(second, dt.UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")


def event_v2(req: Incoming) -> dict[str, Any]:
    """Payload format 2.0 (HTTP APIs)."""
    headers = dict(req.headers)
    cookies = [c.strip() for c in headers.pop("cookie", "").split(";") if c.strip()]
    query: dict[str, str] = {}
    for key, value in req.query_pairs:
        query[key] = f"{query[key]},{value}" if key in query else value
    body, encoded = req.body_for_event()
    context: dict[str, Any] = {
        "accountId": req.account_id, "apiId": req.api_id, "domainName": req.domain,
        "domainPrefix": req.domain.split(".")[0],
        "http": {"method": req.method, "path": req.path if req.stage == "$default" else f"/{req.stage}{req.path}",
                 "protocol": "HTTP/1.1", "sourceIp": req.source_ip, "userAgent": req.headers.get("user-agent", "")},
        "requestId": req.request_id, "routeKey": req.route_key, "stage": req.stage,
        "time": _request_time(req.started), "timeEpoch": int(req.started * 1000),
    }  # fmt: skip
    if req.authorizer is not None:
        context["authorizer"] = req.authorizer
    elif req.identity:  # an AWS_IAM route: who signed
        identity = req.identity
        context["authorizer"] = {"iam": {"accessKey": identity.get("accessKey"), "accountId": identity.get("accountId"),
                                         "callerId": identity.get("caller"), "cognitoIdentity": None, "principalOrgId": None,
                                         "userArn": identity.get("userArn"), "userId": identity.get("user")}}  # fmt: skip
    event: dict[str, Any] = {
        "version": "2.0", "routeKey": req.route_key, "rawPath": context["http"]["path"],
        "rawQueryString": req.raw_query, "headers": headers, "requestContext": context, "isBase64Encoded": encoded,
    }  # fmt: skip
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if req.path_parameters:
        event["pathParameters"] = req.path_parameters
    if req.stage_variables:
        event["stageVariables"] = req.stage_variables
    if body is not None:
        event["body"] = body
    return event


def event_v1(req: Incoming, *, http_api: bool = False, binary_types: list[str] | None = None) -> dict[str, Any]:
    """Payload format 1.0: the REST API proxy event (also HTTP APIs with 1.0)."""
    multi_headers: dict[str, list[str]] = {}
    for key, value in req.headers.items():
        multi_headers[_title(key)] = [v.strip() for v in value.split(",")] if key not in ("user-agent", "cookie", "date") else [value]
    single_headers = {k: v[-1] for k, v in multi_headers.items()}
    multi_query: dict[str, list[str]] = {}
    for key, value in req.query_pairs:
        multi_query.setdefault(key, []).append(value)
    body, encoded = req.body_for_event(binary_types)
    identity = {"cognitoIdentityPoolId": None, "accountId": None, "cognitoIdentityId": None, "caller": None,
                "sourceIp": req.source_ip, "principalOrgId": None, "accessKey": None, "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None, "userArn": None, "userAgent": req.headers.get("user-agent"),
                "user": None, **req.identity}  # fmt: skip
    path = req.path
    context: dict[str, Any] = {
        "accountId": req.account_id, "apiId": req.api_id, "domainName": req.domain,
        "domainPrefix": req.domain.split(".")[0], "extendedRequestId": req.request_id[:16],
        "httpMethod": req.method, "identity": identity, "path": path if http_api or req.stage == "$default" else f"/{req.stage}{path}",
        "protocol": "HTTP/1.1", "requestId": req.request_id, "requestTime": _request_time(req.started),
        "requestTimeEpoch": int(req.started * 1000), "resourceId": req.resource_id or req.route_key,
        "resourcePath": req.resource_path, "stage": req.stage,
    }  # fmt: skip
    if req.authorizer is not None:
        context["authorizer"] = req.authorizer
    if http_api:
        context["routeKey"] = req.route_key
    return {
        "version": "1.0", "resource": req.resource_path, "path": path, "httpMethod": req.method,
        "headers": single_headers or None, "multiValueHeaders": multi_headers or None,
        "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None, "requestContext": context,
        "pathParameters": req.path_parameters or None, "stageVariables": req.stage_variables or None,
        "body": body, "isBase64Encoded": encoded,
    }  # fmt: skip


def _title(name: str) -> str:
    return "-".join(part[:1].upper() + part[1:] for part in name.split("-"))


def json_response(status: int, doc: Any, headers: dict[str, str] | None = None) -> WireResponse:
    return WireResponse(status, {"Content-Type": "application/json", **(headers or {})}, orjson.dumps(doc))


class BadProxyResponse(Exception):
    """The function's answer is not a valid proxy response."""


def read_proxy_result(payload: bytes, format_version: str, *, decode_base64: bool = True) -> WireResponse:
    """The HTTP response a Lambda proxy result describes (``decode_base64=False``: a
    REST API whose binaryMediaTypes do not cover the response answers the base64 text)."""
    try:
        result = orjson.loads(payload) if payload else None
    except orjson.JSONDecodeError:
        if format_version == "2.0":
            return WireResponse(200, {"Content-Type": "application/json"}, payload)
        raise BadProxyResponse("not JSON") from None
    if format_version == "2.0" and not (isinstance(result, dict) and "statusCode" in result):
        # 2.0: a result without statusCode is the body of a 200 JSON response
        body = result if isinstance(result, str) else orjson.dumps(result).decode()
        return WireResponse(200, {"Content-Type": "application/json"}, body.encode())
    if not isinstance(result, dict) or "statusCode" not in result:
        raise BadProxyResponse("no statusCode")
    try:
        status = int(result["statusCode"])
    except (TypeError, ValueError):
        raise BadProxyResponse("statusCode is not a number") from None
    headers: dict[str, str] = {}
    for key, value in (result.get("multiValueHeaders") or {}).items():
        headers[key] = ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)
    for key, value in (result.get("headers") or {}).items():
        headers[key] = str(value)
    content = result.get("body")
    raw = b"" if content is None else (content if isinstance(content, str) else orjson.dumps(content).decode()).encode()
    if result.get("isBase64Encoded") and raw and decode_base64:
        raw = base64.b64decode(raw)
    response = WireResponse(status, headers, raw)
    cookies = result.get("cookies") or []
    if cookies:
        response.headers["Set-Cookie"] = cookies[0]
        response.extra_headers = [("Set-Cookie", c) for c in cookies[1:]]
    if format_version == "2.0" and not any(k.lower() == "content-type" for k in headers):
        response.headers["Content-Type"] = "application/json"
    return response
