"""The ASGI application: every AWS service, execute-api and ``/_nubes/`` on one port."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, unquote

from nubes.app import App
from nubes.aws.errors import AwsError, internal_error
from nubes.aws.ids import new_request_id
from nubes.aws.protocol import (
    WireRequest,
    WireResponse,
    parse_request,
    serialize_error,
    serialize_response,
)
from nubes.aws.sigv4 import scope_of
from nubes.aws.spec import Catalog, ServiceIndex, build_catalog
from nubes.gateway.auth import Authenticator
from nubes.gateway.platform import PlatformRoutes, json_response
from nubes.gateway.routing import Route, resolve
from nubes.services.base import HttpRequest, HttpRoute, RequestContext

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_FORM = "application/x-www-form-urlencoded"


class BodyStream:
    """An upload body read chunk by chunk from the ASGI server (S3 PutObject)."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while not self._done:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ConnectionError("client disconnected during upload")
            self._done = not message.get("more_body", False)
            chunk = message.get("body", b"")
            if chunk:
                yield chunk

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self])


class Gateway:
    """Routes each request to its service, verifies it, parses, dispatches, serializes."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.catalog: Catalog = build_catalog(app.specs.keys())
        self.auth = Authenticator.for_app(app)
        self.platform = PlatformRoutes(app)
        self._http_routes: list[_Compiled] = []
        self._ws_routes: list[_Compiled] = []
        for model, spec in [*sorted(app.specs.items()), *sorted(app.hooks.items())]:
            if spec.models and spec.models[0] != model:
                continue
            for r in spec.http_routes:
                self._http_routes.append(_compile(r.host, r.path, model, r.method_name, r))
            for w in spec.websocket_routes:
                self._ws_routes.append(_compile(w.host, w.path, model, w.method_name, None))
        #: the raw routes a path outside ``/_nubes/`` can match, in order (most raw
        #: routes live under ``/_nubes/``: AWS requests need not try them)
        self._aws_path_routes = [r for r in self._http_routes if not _nubes_only(r)]
        #: (host pattern, host) → its match: clients reuse a few hosts
        self._host_matches: dict[tuple[str, str], re.Match[str] | None] = {}
        #: host → the raw routes outside ``/_nubes/`` that can match it (those without a
        #: host pattern, and those whose pattern takes it): most AWS calls try two
        self._routes_by_host: dict[str, list[_Compiled]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if not self.app.started:
                        await self.app.start()
                except Exception as exc:
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.app.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- HTTP ---------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = new_request_id()
        headers = _headers(scope)
        path: str = scope["path"]
        method: str = scope["method"]
        host_header = headers.get("host", "")
        host = host_header.rsplit(":", 1)[0] if host_header.count(":") <= 1 else host_header
        nubes_path = path.startswith("/_nubes/")
        try:
            platform = None
            if nubes_path:
                platform = await self.platform.handle(method, path, _query(scope), headers)
            custom = None
            if platform is None:
                routes = self._http_routes if nubes_path else self._routes_for(host)
                custom = self._match(routes, host, path, method, headers) if routes else None
            if platform is not None:
                response = platform
            elif custom is not None:
                response = await self._custom(scope, receive, headers, custom)
            elif nubes_path:
                await _read_body(receive)
                response = json_response({"message": f"no such nubes endpoint: {path}"}, 404)
            else:
                response = await self._aws(scope, receive, headers, request_id)
        except AwsError as error:
            response = serialize_error(None, error, request_id)
        except Exception:
            log.exception("unhandled error on %s %s", method, path)
            response = serialize_error(None, internal_error(), request_id)
        await _send(send, response, method == "HEAD", request_id)

    def _match(
        self, routes: list[_Compiled], host: str, path: str, http_method: str = "GET", headers: dict[str, str] | None = None
    ) -> tuple[str, str, re.Match[str]] | None:
        for host_re, path_re, model, method, route in routes:
            if route is not None and not _route_applies(route, http_method, headers or {}):
                continue
            m: re.Match[str] | None = None
            if host_re is not None:
                m = self._host_match(host_re, host)
                if m is None:
                    continue
            if path_re is not None:
                pm = path_re.match(path)
                if pm is None:
                    continue
                m = m or pm
            if m is not None:
                return model, method, m
        return None

    def _routes_for(self, host: str) -> list[_Compiled]:
        routes = self._routes_by_host.get(host)
        if routes is None:
            if len(self._routes_by_host) >= 512:  # hosts are the client's to choose: stay bounded
                self._routes_by_host.clear()
            routes = self._routes_by_host[host] = [
                r for r in self._aws_path_routes if r[0] is None or self._host_match(r[0], host) is not None
            ]
        return routes

    def _host_match(self, host_re: re.Pattern[str], host: str) -> re.Match[str] | None:
        key = (host_re.pattern, host)
        try:
            return self._host_matches[key]
        except KeyError:
            pass
        if len(self._host_matches) >= 512:  # hosts are the client's to choose: stay bounded
            self._host_matches.clear()
        m = self._host_matches[key] = host_re.fullmatch(host)
        return m

    async def _custom(
        self, scope: Scope, receive: Receive, headers: dict[str, str], found: tuple[str, str, re.Match[str]]
    ) -> WireResponse:
        model, method_name, match = found
        body = await _read_body(receive)
        client = scope.get("client") or ("127.0.0.1", 0)
        request = HttpRequest(
            method=scope["method"], path=scope["path"], query_string=scope.get("query_string", b""),
            headers=headers, body=body, client_ip=client[0], raw_path=_raw_path(scope),
            scheme=scope.get("scheme", "http"),
        )  # fmt: skip
        provider = await self.app.ready(model)  # a raw route may arrive while its provider starts
        handler = getattr(provider, method_name)
        response: WireResponse = await handler(request, match)
        return response

    async def _aws(self, scope: Scope, receive: Receive, headers: dict[str, str], request_id: str) -> WireResponse:
        method: str = scope["method"]
        query_bytes: bytes = scope.get("query_string", b"")
        raw_query = query_bytes.decode("latin-1") if query_bytes else ""
        raw_path = _raw_path(scope)
        # route on the path as sent: a label holding %2F (an ARN) stays one segment;
        # the REST parser decodes label values
        request = WireRequest(method, raw_path, _query(scope), headers, b"")
        s3_host = _s3_virtual_host(headers.get("host", ""))
        if s3_host is not None:
            request.path = "/" + s3_host + request.path
        scoped = scope_of(headers.get("authorization"), raw_query)
        signing_service = scoped[0] if scoped else None
        route: Route | None = None
        index: ServiceIndex | None = None
        form: dict[str, str] | None = None
        protocol = ""  # the route's; guessed only for a request that cannot be routed
        ctx: RequestContext | None = None
        try:
            # REST operations route without the body, so streaming uploads stay streams
            if "x-amz-target" not in headers and not headers.get("content-type", "").startswith(_FORM):
                if "Action" in request.query:
                    form = {k: v[0] for k, v in request.query.items()}
                else:
                    route = resolve(self.catalog, request, signing_service, None)
            # only S3 checks its payload hash itself while streaming; other services'
            # signatures cover the body, so theirs is read whole
            if route is not None and route.index.name == "s3" and _streaming_input(route):
                request.body_stream = BodyStream(receive)
            else:
                request.body = await _read_body(receive)
                if route is None:
                    if form is None and headers.get("content-type", "").startswith(_FORM):
                        form = dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
                    route = resolve(self.catalog, request, signing_service, form)
            index = route.index
            protocol = route.protocol
            if protocol == "query" and index.protocol != "query":
                route = self._query_view(route)
            is_s3 = index.name == "s3"
            access_key: str | None = None
            if not self.app.settings.no_auth:
                access_key = await self.auth.verify(request, raw_path, raw_query, protocol, s3=is_s3)
                if access_key is None and not is_s3 and route.operation.name not in index.unsigned_operations:
                    raise self.auth.missing(protocol)
            elif scoped is not None:
                access_key = _access_key(headers, request.query)
            try:
                params = parse_request(index, route.operation, request, labels=route.labels, form=route.form, protocol=protocol)
            except RecursionError:
                # a document nested past the interpreter's depth is bad input, not a crash
                raise AwsError("SerializationException", "The request is nested too deeply", 400) from None
            ctx = RequestContext(
                app=self.app, service=index.name, operation=route.operation.name,
                region=scoped[1] if scoped else self.app.settings.default_region,
                account_id=self.app.settings.account_id, request_id=request_id,
                access_key=access_key, endpoint=f"{scope.get('scheme', 'http')}://{headers.get('host', '')}",
                http=HttpRequest(method, scope["path"], query_bytes, headers, request.body,
                                 (scope.get("client") or ("127.0.0.1", 0))[0], raw_path, scope.get("scheme", "http")),
                query_protocol=protocol == "query",
            )  # fmt: skip
            result = await self.app.dispatch(ctx, params)
            response = serialize_response(
                index, route.operation, result, request_id, protocol=protocol, headers=ctx.response_headers
            )
            # a provider may answer with another success status (S3: 206 ranges, 304 not modified)
            status = getattr(ctx, "response_status", None)
            if status is not None:
                response.status = int(status)
            # ... or with a body the model cannot describe (S3 GetBucketLocation's bare
            # <LocationConstraint> root element)
            body = getattr(ctx, "response_body", None)
            if isinstance(body, bytes):
                response.body = body
            return response
        except AwsError as error:
            op = route.operation if route is not None else None
            if route is None:
                protocol = "query" if form is not None else _guess_protocol(headers, request)
            if ctx is not None:
                # CORS headers a provider set (S3) also let a browser read the error
                cors = {k: v for k, v in ctx.response_headers.items() if k.startswith("Access-Control-") or k == "Vary"}
                error.headers = {**cors, **error.headers}
            return serialize_error(index, error, request_id, protocol=protocol, op=op)

    def _query_view(self, route: Route) -> Route:
        """A JSON service that is ``awsQueryCompatible`` may give its provider a
        ``query_operation_model(name)`` with the old query names (SQS's
        ``Attribute.1.Name``, ``<Message>``), used to parse and serialize form posts."""
        hook = getattr(self.app.provider(route.index.name), "query_operation_model", None)
        if hook is None:
            return route
        return Route(route.index, hook(route.operation.name), route.labels, route.form, route.protocol)

    # -- WebSocket ------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _headers(scope)
        host = headers.get("host", "").rsplit(":", 1)[0]
        found = self._match(self._ws_routes, host, scope["path"])
        if found is None:
            await receive()
            await send({"type": "websocket.close", "code": 1008})
            return
        from nubes.gateway.websocket import WebSocket

        model, method_name, match = found
        try:
            provider = await self.app.ready(model)
        except AwsError:  # the service could not start: refuse the upgrade
            await receive()
            await send({"type": "websocket.close", "code": 1011})
            return
        await getattr(provider, method_name)(WebSocket(scope, receive, send, headers), match)


_Compiled = tuple[re.Pattern[str] | None, re.Pattern[str] | None, str, str, HttpRoute | None]


def _compile(host: str | None, path: str | None, model: str, method: str, route: HttpRoute | None) -> _Compiled:
    return (re.compile(host) if host else None, re.compile(path) if path else None, model, method, route)


def _route_applies(route: HttpRoute, method: str, headers: dict[str, str]) -> bool:
    if route.methods and method not in route.methods:
        return False
    if route.content_type is not None and not headers.get("content-type", "").startswith(route.content_type):
        return False
    return not (route.unsigned_only and ("authorization" in headers))


def _nubes_only(compiled: _Compiled) -> bool:
    """Whether a raw route can only match paths under ``/_nubes/`` (its path
    pattern, matched from the start, begins with that literal and it has no host)."""
    host_re, path_re = compiled[0], compiled[1]
    return host_re is None and path_re is not None and path_re.pattern.lstrip("^").startswith("/_nubes/")


def _headers(scope: Scope) -> dict[str, str]:
    raw = scope["headers"]
    fast = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in raw}
    if len(fast) == len(raw):
        return fast
    # a repeated header: its values are joined with commas, as HTTP defines
    headers: dict[str, str] = {}
    for raw_name, raw_value in raw:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    return headers


def _query(scope: Scope) -> dict[str, list[str]]:
    raw = scope.get("query_string", b"")
    if not raw:
        return {}
    query: dict[str, list[str]] = {}
    for key, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
        query.setdefault(key, []).append(value)
    return query


def _raw_path(scope: Scope) -> str:
    raw = scope.get("raw_path")
    if raw:
        return str(raw.decode("latin-1"))
    return str(scope["path"])


def _access_key(headers: dict[str, str], query: dict[str, list[str]]) -> str | None:
    auth = headers.get("authorization", "")
    if "Credential=" in auth:
        return auth.split("Credential=", 1)[1].split("/", 1)[0]
    cred = query.get("X-Amz-Credential")
    return cred[0].split("/", 1)[0] if cred else None


_S3_HOST = re.compile(r"^(?P<bucket>[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])\.s3(?:[.-][a-z0-9-]+)?\.(?:localhost|amazonaws\.com)(?::\d+)?$")


def _s3_virtual_host(host: str) -> str | None:
    m = _S3_HOST.match(host)
    return m.group("bucket") if m else None


def _streaming_input(route: Route) -> bool:
    shape = route.operation.input_shape
    if shape is None:
        return False
    payload = shape.serialization.get("payload")
    if not payload:
        return False
    member = shape.members[payload]
    return bool(member.type_name == "blob" and (member.serialization.get("streaming") or member.metadata.get("streaming")))


def _guess_protocol(headers: dict[str, str], request: WireRequest) -> str:
    """The protocol of a request that could not be routed (for its error)."""
    if "x-amz-target" in headers:
        return "json"
    if "smithy-protocol" in headers:
        return "smithy-rpc-v2-cbor"
    if headers.get("content-type", "").startswith(_FORM) or "Action" in request.query:
        return "query"
    if "x-amz-content-sha256" in headers:
        return "rest-xml"
    return "rest-json"


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


#: encoded header names (a few dozen distinct ones; bounded all the same)
_NAMES: dict[str, bytes] = {}


def _name(key: str) -> bytes:
    name = _NAMES.get(key)
    if name is None:
        name = key.encode("latin-1")
        if len(_NAMES) < 1024:
            _NAMES[key] = name
    return name


_RID_NAME = b"x-amzn-RequestId"
_RID_NAME_S3 = b"x-amz-request-id"


async def _send(send: Send, response: WireResponse, head: bool, request_id: str) -> None:
    """Send ``response``, with the request id headers unless it set its own."""
    body = response.body
    status = response.status
    if status in (204, 304):
        head = True  # these responses never carry a body (HTTP semantics)
    headers: list[tuple[bytes, bytes]] = []
    has_length = has_rid = has_rid_s3 = False
    for k, v in response.headers.items():
        name = _name(k)
        if name == _RID_NAME:
            has_rid = True
        elif name == _RID_NAME_S3:
            has_rid_s3 = True
        elif len(name) == 14 and name.lower() == b"content-length":
            has_length = True
        headers.append((name, (v if type(v) is str else str(v)).encode("latin-1")))
    if not (has_rid and has_rid_s3):
        rid = request_id.encode("latin-1")
        if not has_rid:
            headers.append((_RID_NAME, rid))
        if not has_rid_s3:
            headers.append((_RID_NAME_S3, rid))
    for k, v in response.extra_headers:
        name = k.encode("latin-1")
        has_length = has_length or name.lower() == b"content-length"
        headers.append((name, v.encode("latin-1")))
    if isinstance(body, bytes | bytearray):
        if status in (204, 304):
            headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
        elif not has_length:
            headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head else bytes(body)})
        return
    await send({"type": "http.response.start", "status": status, "headers": headers})
    if not head:
        async for chunk in body:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def path_unquote(path: str) -> str:
    return unquote(path)
