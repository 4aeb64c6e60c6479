"""API Gateway: REST (v1), HTTP and WebSocket (v2) APIs and the @connections API.

Operations that both generations have (CreateStage, CreateDeployment,
CreateAuthorizer, ...) arrive with ``ctx.service`` telling which model they
belong to and are handed to that generation's implementation.

Importing this module is cheap (every service is imported when nubes starts):
the control-plane classes, the data-plane servers and what they need (OpenAPI
and YAML, Velocity templates, JWT) are imported when first used."""

from __future__ import annotations

import re
import time
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from nubes.app import App
from nubes.aws.errors import not_implemented
from nubes.aws.ids import new_request_id
from nubes.aws.protocol.types import WireResponse
from nubes.services.apigateway.operations import OPERATIONS
from nubes.services.apigateway.payloads import MAX_PAYLOAD, Incoming, json_response
from nubes.services.apigateway.store import ApiStore
from nubes.services.apigateway.telemetry import Outcome, Telemetry
from nubes.services.base import HttpRequest, Provider, RequestContext

if TYPE_CHECKING:
    from nubes.gateway.websocket import WebSocket
    from nubes.services.apigateway.authorizers import Authorizers
    from nubes.services.apigateway.export import Exports
    from nubes.services.apigateway.http_api import HttpApiServer
    from nubes.services.apigateway.openapi_http import HttpApiImports
    from nubes.services.apigateway.rest_api import RestApiServer
    from nubes.services.apigateway.tags import TagsV1, TagsV2
    from nubes.services.apigateway.usage import UsagePlans
    from nubes.services.apigateway.v1 import RestApis
    from nubes.services.apigateway.v1_more import RestApiExtras
    from nubes.services.apigateway.v2 import HttpApis
    from nubes.services.apigateway.websockets import WebSocketServer


class ApiGatewayProvider(Provider):
    """Control planes of both generations, the execute-api data plane, WebSockets."""

    def __init__(self, app: App) -> None:
        super().__init__(app)
        self.apis = ApiStore(app)
        self.telemetry = Telemetry(app)
        self._snapshots: dict[tuple[str, str], dict[str, Any]] = {}

    # -- control planes (see operations.OPERATIONS), built on first use ----------------

    @cached_property
    def v1(self) -> RestApis:
        from nubes.services.apigateway.v1 import RestApis

        return RestApis(self.apis)

    @cached_property
    def v2(self) -> HttpApis:
        from nubes.services.apigateway.v2 import HttpApis

        return HttpApis(self.apis)

    @cached_property
    def usage(self) -> UsagePlans:
        from nubes.services.apigateway.usage import UsagePlans

        return UsagePlans(self.app)

    @cached_property
    def v1x(self) -> RestApiExtras:
        from nubes.services.apigateway.v1_more import RestApiExtras

        return RestApiExtras(self.apis)

    @cached_property
    def tags1(self) -> TagsV1:
        from nubes.services.apigateway.tags import TagsV1

        return TagsV1(self.apis)

    @cached_property
    def tags2(self) -> TagsV2:
        from nubes.services.apigateway.tags import TagsV2

        return TagsV2(self.apis)

    @cached_property
    def v2x(self) -> HttpApiImports:
        from nubes.services.apigateway.openapi_http import HttpApiImports

        return HttpApiImports(self.apis, self.v2)

    @cached_property
    def exports(self) -> Exports:
        from nubes.services.apigateway.export import Exports

        return Exports(self.apis)

    # -- data plane, built on the first request -----------------------------------------

    @cached_property
    def authorizers(self) -> Authorizers:
        from nubes.services.apigateway.authorizers import Authorizers

        return Authorizers(self.app)

    @cached_property
    def http(self) -> HttpApiServer:
        from nubes.services.apigateway.http_api import HttpApiServer

        return HttpApiServer(self.app, self.authorizers)

    @cached_property
    def rest(self) -> RestApiServer:
        from nubes.services.apigateway.rest_api import RestApiServer

        return RestApiServer(self.app, self.authorizers)

    @cached_property
    def ws(self) -> WebSocketServer:
        from nubes.services.apigateway.websockets import WebSocketServer

        return WebSocketServer(self.app, self.authorizers, self.telemetry)

    # -- @connections (apigatewaymanagementapi) -------------------------------------

    async def post_to_connection(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self.ws.post(params["ConnectionId"], params["Data"] if isinstance(params["Data"], bytes) else str(params["Data"]).encode())
        return {}

    async def get_connection(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return self.ws.describe(params["ConnectionId"])

    async def delete_connection(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self.ws.delete(params["ConnectionId"])
        return {}

    # -- execute-api ------------------------------------------------------------------

    async def _snapshot(self, api_id: str, deployment_id: str | None) -> dict[str, Any] | None:
        if not deployment_id:
            return None
        key = (api_id, deployment_id)
        snapshot = self._snapshots.get(key)
        if snapshot is None:
            deployment = await self.apis.deployment(api_id, deployment_id)
            if deployment is None:
                return None
            snapshot = deployment["Snapshot"]
            self._snapshots[key] = snapshot
        return snapshot

    @staticmethod
    def _split_stage(api: dict[str, Any], path: str) -> tuple[str, str] | None:
        parts = path.split("/", 2)
        first = parts[1] if len(parts) > 1 else ""
        if first and first in api["Stages"] and first != "$default":
            return first, "/" + (parts[2] if len(parts) > 2 else "")
        if api["Version"] == 2 and "$default" in api["Stages"]:
            return "$default", path or "/"
        return None

    async def execute_api(self, request: HttpRequest, match: re.Match[str]) -> WireResponse:
        """``{api}.execute-api.localhost/...`` and ``/_nubes/execute-api/{api}/...``."""
        api_id = match.group("api")
        path = match.groupdict().get("rest") or request.path
        api = await self.apis.find_serving(api_id)
        if api is None:
            return json_response(404 if api_id else 403, {"message": "Not Found"})
        split = self._split_stage(api, path or "/")
        if split is None:
            return json_response(403 if api["Version"] == 1 else 404, {"message": "Forbidden" if api["Version"] == 1 else "Not Found"})
        stage_name, rest = split
        if len(request.body) > MAX_PAYLOAD:
            return json_response(413, {"message": "Request Too Long"})
        if rest.startswith("/@connections/") and api.get("ProtocolType") == "WEBSOCKET":
            return await self._connections_http(request, api_id, stage_name, rest)
        stage = api["Stages"][stage_name]
        snapshot = await self._snapshot(api_id, stage.get("DeploymentId") or stage.get("deploymentId"))
        if snapshot is None:
            return json_response(404, {"message": "Not Found"})
        host = request.headers.get("host", "").split(":")[0]
        req = Incoming(request.method, rest, request.query_string.decode("latin-1"), dict(request.headers), request.body,
                       request.client_ip, api_id, stage_name, host or f"{api_id}.execute-api.localhost",
                       new_request_id(), self.app.settings.account_id, started=time.time())  # fmt: skip
        begun = time.perf_counter()
        if api["Version"] == 2:
            response = await self.http.serve(snapshot, stage, req, request.raw_path or quote(request.path))
        else:
            response = await self.rest.serve(snapshot, stage, req, request.raw_path or quote(request.path))
        body = response.body if isinstance(response.body, bytes) else b""
        self.telemetry.record(api, stage, req, Outcome(response.status, len(body), (time.perf_counter() - begun) * 1000,
                                                       req.integration_ms, _error_message(response, body)))  # fmt: skip
        return response

    async def _connections_http(self, request: HttpRequest, api_id: str, stage_name: str, rest: str) -> WireResponse:
        """``{stage}/@connections/{id}`` under the API's own URL: the management API,
        IAM-authorized like AWS's (a SigV4 signature is required)."""
        from nubes.aws.errors import AwsError

        connection_id = rest.split("/", 2)[2]
        denied = await self._verify_management_call(request, api_id, stage_name, rest, connection_id)
        if denied is not None:
            return denied
        try:
            if self.ws.api_of(connection_id) != api_id:
                raise AwsError("GoneException", "", 410)
            if request.method == "POST":
                await self.ws.post(connection_id, request.body)
                return WireResponse(200, {}, b"")
            if request.method == "GET":
                info = self.ws.describe(connection_id)
                return json_response(200, {"connectedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(info["ConnectedAt"])),
                                           "identity": {"sourceIp": info["Identity"]["SourceIp"], "userAgent": info["Identity"]["UserAgent"]},
                                           "lastActiveAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(info["LastActiveAt"]))})  # fmt: skip
            if request.method == "DELETE":
                await self.ws.delete(connection_id)
                return WireResponse(204, {}, b"")
        except AwsError as err:
            if err.code == "GoneException":  # AWS answers a gone connection with an empty body
                return WireResponse(410, {"x-amzn-ErrorType": "GoneException"}, b"")
            return json_response(err.status or 400, {"message": err.message}, {"x-amzn-ErrorType": err.code})
        return json_response(403, {"message": "Missing Authentication Token"}, {"x-amzn-ErrorType": "MissingAuthenticationTokenException"})

    async def _verify_management_call(
        self, request: HttpRequest, api_id: str, stage_name: str, rest: str, connection_id: str
    ) -> WireResponse | None:
        """AWS's 403 for an unsigned or badly signed @connections call, None when it is
        signed by a known key (or signatures are off, ``--no-auth``)."""
        if self.app.settings.no_auth:
            return None
        prefix = quote(request.path[: len(request.path) - len(rest)])
        req = Incoming(request.method, rest, request.query_string.decode("latin-1"), dict(request.headers), request.body,
                       request.client_ip, api_id, stage_name, "", "", self.app.settings.account_id)  # fmt: skip
        from nubes.services.apigateway.authorizers import Denied

        # the path as the client signed it; without it (in-process), how SDKs spell it: a
        # literal "@" and the id escaped ("=" as %3D) — the IAM check tries other spellings too
        signed_path = request.raw_path or prefix + "/@connections/" + quote(connection_id, safe="")
        try:
            await self.authorizers.iam(req, signed_path)
        except Denied as denied:
            return json_response(denied.status, {"message": denied.message}, denied.headers)
        return None

    async def execute_api_ws(self, ws: WebSocket, match: re.Match[str]) -> None:
        api_id = match.group("api")
        api = await self.apis.find(api_id)
        path = match.groupdict().get("rest") or ws.path
        split = self._split_stage(api, path or "/") if api is not None and api.get("ProtocolType") == "WEBSOCKET" else None
        if api is None or split is None:
            await ws.wait_connect()
            await ws.close(1008)
            return
        stage = api["Stages"][split[0]]
        snapshot = await self._snapshot(api_id, stage.get("DeploymentId"))
        if snapshot is None:
            await ws.wait_connect()
            await ws.close(1008)
            return
        host = ws.headers.get("host", "").split(":")[0] or f"{api_id}.execute-api.localhost"
        await self.ws.serve(ws, api_id, split[0], snapshot, host, stage)


def _error_message(response: WireResponse, body: bytes) -> str | None:
    """``$context.error.message``: the message of an error API Gateway itself answered."""
    if response.status < 400 or not body.startswith(b'{"message":'):
        return None
    try:
        message = orjson.loads(body).get("message")
    except orjson.JSONDecodeError:
        return None
    return str(message) if message is not None else None


def _dispatch(name: str, implementations: tuple[tuple[str, str, str], ...]) -> Any:
    by_generation = {generation: (plane, method) for generation, plane, method in implementations}

    async def method(self: ApiGatewayProvider, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        found = by_generation.get("v2" if ctx.service == "apigatewayv2" else "v1")
        if found is None:
            raise not_implemented(ctx.service, ctx.operation)
        result: dict[str, Any] = await getattr(getattr(self, found[0]), found[1])(ctx, params)
        return result

    method.__name__ = name
    method.__doc__ = f"{name} of API Gateway ({' and '.join(sorted(by_generation))})."
    return method


def _install() -> None:
    """Give the provider one method per operation of either control plane; a name
    both generations have (GetIntegration, CreateStage, ...) dispatches on
    ``ctx.service``."""
    for name, implementations in OPERATIONS.items():
        if not hasattr(ApiGatewayProvider, name):
            setattr(ApiGatewayProvider, name, _dispatch(name, implementations))


_install()
