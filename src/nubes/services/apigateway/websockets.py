"""WebSocket APIs: $connect/$disconnect/$default and custom routes chosen by the
RouteSelectionExpression, and the @connections management API."""

from __future__ import annotations

import base64
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from nubes.app import App
from nubes.aws.errors import AwsError
from nubes.aws.ids import new_request_id
from nubes.gateway.websocket import WebSocket, WebSocketClosed
from nubes.services.apigateway import integrations as run
from nubes.services.apigateway.authorizers import Authorizers, Denied
from nubes.services.apigateway.payloads import BadProxyResponse, Incoming, read_proxy_result
from nubes.services.apigateway.telemetry import Telemetry, WsOutcome

log = logging.getLogger(__name__)


@dataclass
class Connection:
    id: str
    api_id: str
    stage: str
    socket: WebSocket
    connected_at: float
    source_ip: str
    user_agent: str
    last_active: float = field(default_factory=time.time)
    authorizer: dict[str, Any] | None = None
    #: the stage record when the client connected (its access-log settings)
    stage_record: dict[str, Any] = field(default_factory=dict)


def _gone() -> AwsError:
    return AwsError("GoneException", "", 410)


class WebSocketServer:
    """Live connections of this node and the routes they are served by."""

    def __init__(self, app: App, authorizers: Authorizers, telemetry: Telemetry | None = None) -> None:
        self.app = app
        self.authorizers = authorizers
        self.telemetry = telemetry
        self.connections: dict[str, Connection] = {}

    def _context(self, conn: Connection, route_key: str, event_type: str, domain: str) -> dict[str, Any]:
        now = time.time()
        context: dict[str, Any] = {
            "routeKey": route_key, "eventType": event_type, "extendedRequestId": secrets.token_hex(8),
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)), "messageDirection": "IN",
            "stage": conn.stage, "connectedAt": int(conn.connected_at * 1000), "requestTimeEpoch": int(now * 1000),
            "identity": {"sourceIp": conn.source_ip, "userAgent": conn.user_agent}, "requestId": new_request_id(),
            "domainName": domain, "connectionId": conn.id, "apiId": conn.api_id,
        }  # fmt: skip
        if conn.authorizer:
            context["authorizer"] = conn.authorizer
        if event_type == "MESSAGE":
            context["messageId"] = base64.b64encode(secrets.token_bytes(12)).decode()
        return context

    async def _run_route(self, snapshot: dict[str, Any], route: dict[str, Any], event: dict[str, Any]) -> tuple[dict[str, Any] | None, WsOutcome]:
        """Invoke the route's integration: its proxy result (statusCode/body, None when
        the route has none) and the outcome for access logs and metrics."""
        integration = snapshot["Integrations"].get(str(route.get("Target") or "").removeprefix("integrations/"))
        if integration is None:
            return None, WsOutcome(200)
        if integration.get("IntegrationType") == "MOCK":
            return {"statusCode": 200}, WsOutcome(200, integration_status=200)
        begun = time.perf_counter()
        try:
            payload = await run.invoke_lambda(self.app, integration["IntegrationUri"], event, 29.0)
            response = read_proxy_result(payload, "2.0")
        except (run.FunctionFailed, run.IntegrationTimeout, BadProxyResponse, AwsError) as exc:
            status = 504 if isinstance(exc, run.IntegrationTimeout) else 500
            return None, WsOutcome(status, (time.perf_counter() - begun) * 1000, error_message="Internal server error", execution_error=True)
        elapsed = (time.perf_counter() - begun) * 1000
        body = response.body if isinstance(response.body, bytes) else b""
        return {"statusCode": response.status, "body": body.decode(errors="replace")}, WsOutcome(response.status, elapsed, response.status)

    def _record(self, conn: Connection, context: dict[str, Any], outcome: WsOutcome) -> None:
        if self.telemetry is not None:
            self.telemetry.record_ws(conn.stage_record, context, outcome)

    def _sent(self, conn: Connection) -> None:
        """One message went to the client (MessageCount)."""
        if self.telemetry is not None:
            self.telemetry.count_ws_message(conn.api_id, conn.stage)

    @staticmethod
    def _route(snapshot: dict[str, Any], key: str) -> dict[str, Any] | None:
        return next((r for r in snapshot["Routes"].values() if r["RouteKey"] == key), None)

    async def serve(self, ws: WebSocket, api_id: str, stage: str, snapshot: dict[str, Any], domain: str,
                    stage_record: dict[str, Any] | None = None) -> None:  # fmt: skip
        """Run one client connection from handshake to close."""
        await ws.wait_connect()
        conn = Connection(base64.b64encode(secrets.token_bytes(12)).decode(), api_id, stage, ws, time.time(),
                          ws.client_ip, ws.headers.get("user-agent", ""), stage_record=stage_record or {})  # fmt: skip
        connect = self._route(snapshot, "$connect")
        if not await self._connect(snapshot, connect, conn, ws, domain):
            await ws.close(1008)
            return
        await ws.accept()
        self.connections[conn.id] = conn
        try:
            while True:
                message = await ws.receive()
                conn.last_active = time.time()
                await self._message(snapshot, conn, message, domain)
        except WebSocketClosed:
            pass
        finally:
            self.connections.pop(conn.id, None)
            disconnect = self._route(snapshot, "$disconnect")
            context = self._context(conn, "$disconnect", "DISCONNECT", domain)
            outcome = WsOutcome(200)
            if disconnect is not None:
                event = {"headers": {}, "requestContext": context, "isBase64Encoded": False}
                _, outcome = await self._run_route(snapshot, disconnect, event)
                if outcome.execution_error:
                    log.info("$disconnect integration of %s failed", api_id)
            self._record(conn, context, outcome)

    async def _connect(self, snapshot: dict[str, Any], route: dict[str, Any] | None, conn: Connection, ws: WebSocket, domain: str) -> bool:
        """Run $connect (authorizer, then integration); whether the client may connect."""
        headers = dict(ws.headers)
        context = self._context(conn, "$connect", "CONNECT", domain)
        if route is None:
            self._record(conn, context, WsOutcome(200))
            return True
        req = Incoming("GET", "/", ws.query_string.decode(), headers, b"", conn.source_ip, conn.api_id, conn.stage,
                       domain, new_request_id(), self.app.settings.account_id, route_key="$connect")  # fmt: skip
        authorizer = snapshot["Authorizers"].get(route.get("AuthorizerId") or "")
        try:
            if route.get("AuthorizationType") == "CUSTOM" and authorizer is not None:
                arn = f"arn:aws:execute-api:{self.app.settings.default_region}:{req.account_id}:{conn.api_id}/{conn.stage}/$connect"
                conn.authorizer = await self.authorizers.lambda_(authorizer, req, arn, v2=False)
                context["authorizer"] = conn.authorizer
        except Denied as denied:
            self._record(conn, context, WsOutcome(denied.status, error_message=denied.message, client_error=denied.status < 500,
                                                  execution_error=denied.status >= 500))  # fmt: skip
            return False
        query = dict(req.query_pairs)
        event = {"headers": headers, "multiValueHeaders": {k: [v] for k, v in headers.items()},
                 "queryStringParameters": query or None, "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} or None,
                 "requestContext": context, "isBase64Encoded": False}  # fmt: skip
        result, outcome = await self._run_route(snapshot, route, event)
        self._record(conn, context, outcome)
        return not outcome.execution_error and (result is None or 200 <= int(result.get("statusCode", 200)) < 300)

    async def _message(self, snapshot: dict[str, Any], conn: Connection, message: str | bytes, domain: str) -> None:
        text = message if isinstance(message, str) else base64.b64encode(message).decode()
        key = self._select_key(snapshot.get("RouteSelectionExpression") or "", message)
        route = (self._route(snapshot, key) if key else None) or self._route(snapshot, "$default")
        context = self._context(conn, route["RouteKey"] if route is not None else "$default", "MESSAGE", domain)
        if route is None:
            await conn.socket.send(orjson.dumps({"message": "Forbidden", "connectionId": conn.id,
                                                 "requestId": context["requestId"]}).decode())  # fmt: skip
            self._record(conn, context, WsOutcome(403, error_message="Forbidden", client_error=True))
            self._sent(conn)
            return
        event: dict[str, Any] = {"requestContext": context, "body": text, "isBase64Encoded": not isinstance(message, str)}
        result, outcome = await self._run_route(snapshot, route, event)
        self._record(conn, context, outcome)
        if outcome.execution_error:
            await conn.socket.send(orjson.dumps({"message": "Internal server error", "connectionId": conn.id,
                                                 "requestId": context["requestId"]}).decode())  # fmt: skip
            self._sent(conn)
            return
        if route.get("RouteResponseSelectionExpression") and result is not None and result.get("body"):
            await conn.socket.send(result["body"])
            self._sent(conn)

    @staticmethod
    def _select_key(expression: str, message: str | bytes) -> str | None:
        if not expression.startswith("$request.body"):
            return None
        try:
            node: Any = orjson.loads(message)
        except orjson.JSONDecodeError:
            return None
        for part in expression[len("$request.body") :].strip(".").split("."):
            if part:
                node = node.get(part) if isinstance(node, dict) else None
        return node if isinstance(node, str) else None

    # -- @connections ----------------------------------------------------------------------

    async def post(self, connection_id: str, data: bytes) -> None:
        conn = self.connections.get(connection_id)
        if conn is None:
            raise _gone()
        try:
            text = data.decode()
        except UnicodeDecodeError:
            await conn.socket.send(data)
            self._sent(conn)
            return
        try:
            await conn.socket.send(text)
        except Exception:
            self.connections.pop(connection_id, None)
            raise _gone() from None
        self._sent(conn)

    def describe(self, connection_id: str) -> dict[str, Any]:
        conn = self.connections.get(connection_id)
        if conn is None:
            raise _gone()
        return {"ConnectedAt": conn.connected_at, "LastActiveAt": conn.last_active,
                "Identity": {"SourceIp": conn.source_ip, "UserAgent": conn.user_agent}}  # fmt: skip

    async def delete(self, connection_id: str) -> None:
        conn = self.connections.pop(connection_id, None)
        if conn is None:
            raise _gone()
        await conn.socket.close(1000)

    def api_of(self, connection_id: str) -> str | None:
        """The API a live connection of this node belongs to."""
        conn = self.connections.get(connection_id)
        return conn.api_id if conn is not None else None
