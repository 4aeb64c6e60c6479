"""Function URLs: their configuration API and the HTTP endpoint (payload format 2.0).

A URL is served at ``http://{url_id}.lambda-url.{region}.localhost:{port}/...`` and,
for clients that cannot resolve that name, at
``{endpoint}/_nubes/lambda-url/{url_id}/...``. ``AuthType=AWS_IAM`` URLs require a
valid SigV4 signature (header or presigned query), verified by the gateway's own
:class:`~nubes.gateway.auth.Authenticator`: no signature is 403 ``Forbidden``, a bad
one gets AWS's 403 with the signature error (``InvalidSignatureException`` ...).
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import secrets
import string
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl, quote

import orjson

from nubes.aws.errors import AwsError
from nubes.aws.protocol.types import WireRequest, WireResponse
from nubes.aws.sigv4 import scope_of
from nubes.gateway.auth import Authenticator
from nubes.services.base import HttpRequest, RequestContext
from nubes.services.lambda_ import store as st
from nubes.services.lambda_.common import LambdaBase
from nubes.services.lambda_.models import (
    LATEST,
    FunctionRef,
    conflict,
    function_arn,
    invalid,
    not_found,
)
from nubes.storage.base import Txn
from nubes.storage.keys import pack

HOST_PATTERN = r"(?P<url_id>[a-z0-9]{32})\.lambda-url\.(?P<region>[a-z0-9-]+)\.localhost"
PATH_PATTERN = r"^/_nubes/lambda-url/(?P<url_id>[a-z0-9]{32})(?P<path>/.*)?$"
_ALPHABET = string.ascii_lowercase + string.digits
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript",
               "application/x-www-form-urlencoded")  # fmt: skip


def _iso_now() -> str:
    now = dt.datetime.now(dt.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond:06d}Z"


def _json(status: int, doc: Any, headers: dict[str, str] | None = None) -> WireResponse:
    return WireResponse(status, {"Content-Type": "application/json", **(headers or {})}, orjson.dumps(doc))


class UrlsMixin(LambdaBase):
    """Create/Get/Update/Delete/ListFunctionUrlConfigs and the URL endpoint itself."""

    _url_auth: Authenticator | None = None

    def _authenticator(self) -> Authenticator:
        """The gateway's verifier (static keys, then STS credentials), made on first use."""
        if self._url_auth is None:
            self._url_auth = Authenticator.for_app(self.app)
        return self._url_auth

    async def _iam_caller(self, request: HttpRequest) -> str | WireResponse:
        """An ``AWS_IAM`` URL's caller (its access key id), or the 403 AWS answers with."""
        raw_query = request.query_string.decode("latin-1")
        query: dict[str, list[str]] = {}
        for key, value in parse_qsl(raw_query, keep_blank_values=True):
            query.setdefault(key, []).append(value)
        wire = WireRequest(request.method, request.path, query, dict(request.headers), request.body)
        scope = scope_of(request.headers.get("authorization"), raw_query)
        if scope is not None and scope[0] != "lambda":  # signed for another service
            return WireResponse(403, {"Content-Type": "application/json", "x-amzn-ErrorType": "InvalidSignatureException"},
                                orjson.dumps({"message": "Credential should be scoped to correct service: 'lambda'. "}))  # fmt: skip
        # the path as the client signed it; only a request made in-process lacks it
        spellings = [request.raw_path] if request.raw_path else _path_spellings(request.path)
        for i, path in enumerate(spellings):
            try:
                access_key = await self._authenticator().verify(wire, path, raw_query, "rest-json", s3=False)
            except AwsError as err:
                if err.code == "InvalidSignatureException" and i + 1 < len(spellings):
                    continue  # the client may have sent the path escaped another way
                return WireResponse(err.status or 403, {"Content-Type": "application/json", "x-amzn-ErrorType": err.code},
                                    orjson.dumps({"message": err.message}))  # fmt: skip
            if access_key is None:
                break
            return access_key
        return _json(403, {"Message": "Forbidden"})

    def _url(self, url_id: str, region: str) -> str:
        return f"http://{url_id}.lambda-url.{region}.localhost:{self.app.settings.port}/"

    def _url_qualifier(self, ref: FunctionRef) -> str:
        if ref.qualifier is not None and ref.qualifier.isdigit():
            raise invalid("Function URLs are not supported on function versions; use $LATEST or an alias.")
        return ref.qualifier or LATEST

    async def create_function_url_config(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref = self.ref(ctx, params)
        qualifier = self._url_qualifier(ref)
        await self.resolve(ref)
        url_id = "".join(secrets.choice(_ALPHABET) for _ in range(32))
        arn = function_arn(ref.region, self.account, ref.name, ref.qualifier)
        config = {"FunctionUrl": self._url(url_id, ref.region), "FunctionArn": arn,
                  "AuthType": params["AuthType"], "CreationTime": _iso_now(),
                  "LastModifiedTime": _iso_now(), "InvokeMode": params.get("InvokeMode") or "BUFFERED"}  # fmt: skip
        if params.get("Cors"):
            config["Cors"] = params["Cors"]

        def write(txn: Txn) -> bool:
            key = st.function_key(ref.region, ref.name)
            doc = st.get(txn, st.FUNCTIONS, key)
            if doc is None:
                raise not_found(f"Function not found: {arn}")
            if qualifier in doc.setdefault("urls", {}):
                return False
            doc["urls"][qualifier] = url_id
            st.put(txn, st.FUNCTIONS, key, doc)
            st.put(txn, st.URLS, pack(url_id), {"region": ref.region, "name": ref.name,
                                                "qualifier": qualifier, "config": config})  # fmt: skip
            return True

        if not await self.write(write):
            raise conflict(f"Failed to create function url config for [functionArn = {arn}]. "
                           "Error message:  FunctionUrlConfig exists for this Lambda function")  # fmt: skip
        return {k: v for k, v in config.items() if k != "LastModifiedTime"}

    async def _url_record(self, ref: FunctionRef) -> tuple[str, dict[str, Any]]:
        qualifier = self._url_qualifier(ref)
        doc = await self.load(ref)
        url_id = (doc.get("urls") or {}).get(qualifier)
        record = None
        if url_id is not None:
            record = await self.app.store.read(lambda txn: st.get(txn, st.URLS, pack(url_id)))
        if record is None:
            raise not_found("The resource you requested does not exist.")
        return str(url_id), record

    async def get_function_url_config(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        _, record = await self._url_record(self.ref(ctx, params))
        config: dict[str, Any] = record["config"]
        return config

    async def update_function_url_config(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        url_id, record = await self._url_record(self.ref(ctx, params))
        config = record["config"]
        for member in ("AuthType", "Cors", "InvokeMode"):
            if params.get(member) is not None:
                config[member] = params[member]
        config["LastModifiedTime"] = _iso_now()
        await self.write(lambda txn: st.put(txn, st.URLS, pack(url_id), record))
        return dict(config)

    async def delete_function_url_config(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref = self.ref(ctx, params)
        url_id, record = await self._url_record(ref)

        def write(txn: Txn) -> None:
            txn.delete(st.URLS, pack(url_id))
            key = st.function_key(ref.region, ref.name)
            doc = st.get(txn, st.FUNCTIONS, key)
            if doc is not None:
                doc.get("urls", {}).pop(record["qualifier"], None)
                st.put(txn, st.FUNCTIONS, key, doc)

        await self.write(write)
        return {}

    async def list_function_url_configs(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref = self.ref(ctx, params)
        doc = await self.load(ref)
        configs = []
        for url_id in (doc.get("urls") or {}).values():
            record = await self.app.store.read(lambda txn, u=url_id: st.get(txn, st.URLS, pack(u)))  # type: ignore[misc]
            if record is not None:
                configs.append(record["config"])
        return {"FunctionUrlConfigs": configs}

    # -- the endpoint -------------------------------------------------------------------------

    async def serve_function_url(self, request: HttpRequest, match: re.Match[str]) -> WireResponse:
        """An HTTP request to a function URL → a payload 2.0 event → the function's answer."""
        groups = match.groupdict()
        url_id = groups["url_id"]
        path = (groups.get("path") or "/") if "path" in groups else request.path
        record = await self.app.store.read(lambda txn: st.get(txn, st.URLS, pack(url_id)))
        if record is None:
            return _json(404, {"Message": None})
        config = record["config"]
        cors = _cors_headers(config.get("Cors"), request)
        if request.method == "OPTIONS" and config.get("Cors"):
            return WireResponse(200, cors, b"")
        caller: str | None = None
        if config["AuthType"] == "AWS_IAM":
            verified = await self._iam_caller(request)
            if isinstance(verified, WireResponse):
                verified.headers.update(cors)
                return verified
            caller = verified
        request_id = str(uuid.uuid4())
        event = url_event(request, path or "/", url_id, request_id)
        if caller is not None:
            account = self.account
            event["requestContext"]["accountId"] = account
            event["requestContext"]["authorizer"] = {"iam": {
                "accessKey": caller, "accountId": account, "callerId": caller, "cognitoIdentity": None,
                "principalOrgId": None, "userArn": f"arn:aws:iam::{account}:root", "userId": caller}}  # fmt: skip
        try:
            result, _ = await self.invoke_function(
                record["region"], record["name"], None if record["qualifier"] == LATEST else record["qualifier"],
                orjson.dumps(event), request_id,
            )
        except AwsError as exc:
            if exc.status == 429:
                return _json(429, {"Message": "Rate Exceeded."}, cors)
            return _json(502, {"Message": "Internal Server Error"}, cors)
        if result.function_error:
            return _json(502, {"Message": "Internal Server Error"}, {**cors, "x-amzn-RequestId": request_id})
        response = url_response(result.payload)
        response.headers.update(cors)
        response.headers["x-amzn-RequestId"] = request_id
        return response



def _path_spellings(path: str) -> list[str]:
    """The ways a client may have sent a (decoded) path, most common first: what
    ``requests``/``urllib3`` send (sub-delimiters as they are), then as decoded, then
    every reserved character escaped — for a request without its raw path."""
    out: list[str] = []
    for spelling in (quote(path, safe="/~!$&'()*+,;=:@"), path, quote(path, safe="/~")):
        if spelling not in out:
            out.append(spelling)
    return out


def url_event(request: HttpRequest, path: str, url_id: str, request_id: str) -> dict[str, Any]:
    """The payload format 2.0 event a function URL sends."""
    raw_query = request.query_string.decode("latin-1")
    query: dict[str, str] = {}
    for key, value in parse_qsl(raw_query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    headers = {k: v for k, v in request.headers.items() if k != "cookie"}
    cookies = [c.strip() for c in request.headers.get("cookie", "").split(";") if c.strip()]
    content_type = request.headers.get("content-type", "")
    is_text = any(content_type.startswith(t) for t in _TEXT_TYPES)
    body: str | None = None
    if request.body:
        body = request.body.decode() if is_text else base64.b64encode(request.body).decode()
    now = time.time()
    host = request.headers.get("host", "").split(":")[0]
    event: dict[str, Any] = {
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous", "apiId": url_id, "domainName": host, "domainPrefix": url_id,
            "http": {"method": request.method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": request.client_ip, "userAgent": request.headers.get("user-agent", "")},
            "requestId": request_id, "routeKey": "$default", "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)), "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": bool(request.body) and not is_text,
    }  # fmt: skip
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if body is not None:
        event["body"] = body
    return event


def url_response(payload: bytes) -> WireResponse:
    """Interpret a function's answer like function URLs do (a ``statusCode`` object or
    any JSON value, which becomes a 200 ``application/json`` body)."""
    try:
        doc = orjson.loads(payload) if payload else None
    except orjson.JSONDecodeError:
        return WireResponse(200, {"Content-Type": "application/json"}, payload)
    if not isinstance(doc, dict) or "statusCode" not in doc:
        return WireResponse(200, {"Content-Type": "application/json"}, payload)
    headers = {str(k): str(v) for k, v in (doc.get("headers") or {}).items()}
    headers.setdefault("Content-Type", "application/json")
    body = doc.get("body")
    if body is None:
        data = b""
    elif doc.get("isBase64Encoded"):
        data = base64.b64decode(str(body))
    else:
        data = body.encode() if isinstance(body, str) else orjson.dumps(body)
    cookies = doc.get("cookies") or []
    if cookies:
        # the response has one value per header name, so cookies are joined like a folded header
        headers["Set-Cookie"] = ", ".join(str(c) for c in cookies)
    try:
        status = int(doc.get("statusCode") or 200)
    except (TypeError, ValueError):
        return WireResponse(502, {"Content-Type": "application/json"}, b'{"Message":"Internal Server Error"}')
    return WireResponse(status, headers, data)


def _cors_headers(cors: dict[str, Any] | None, request: HttpRequest) -> dict[str, str]:
    if not cors:
        return {}
    origin = request.headers.get("origin", "")
    allowed = cors.get("AllowOrigins") or []
    headers: dict[str, str] = {}
    if "*" in allowed:
        headers["Access-Control-Allow-Origin"] = "*"
    elif origin and origin in allowed:
        headers["Access-Control-Allow-Origin"] = origin
    else:
        return {}
    if cors.get("AllowMethods"):
        headers["Access-Control-Allow-Methods"] = ",".join(cors["AllowMethods"])
    if cors.get("AllowHeaders"):
        headers["Access-Control-Allow-Headers"] = ",".join(cors["AllowHeaders"])
    if cors.get("ExposeHeaders"):
        headers["Access-Control-Expose-Headers"] = ",".join(cors["ExposeHeaders"])
    if cors.get("MaxAge") is not None:
        headers["Access-Control-Max-Age"] = str(cors["MaxAge"])
    if cors.get("AllowCredentials"):
        headers["Access-Control-Allow-Credentials"] = "true"
    return headers

