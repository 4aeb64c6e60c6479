"""Serving HTTP APIs (v2): stage, CORS, route selection, authorizers, integrations."""

from __future__ import annotations

import re
import time
from typing import Any

from nubes.app import App
from nubes.aws.protocol.types import WireResponse
from nubes.services.apigateway import integrations as run
from nubes.services.apigateway.authorizers import Authorizers, Denied
from nubes.services.apigateway.payloads import (
    BadProxyResponse,
    Incoming,
    event_v1,
    event_v2,
    json_response,
    read_proxy_result,
)

_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


def compile_path(template: str) -> tuple[re.Pattern[str], tuple[int, int, int]]:
    """A route path (``/items/{id}``, ``/{proxy+}``) as a regex, with a
    specificity score: no greedy variable, literal segments, segments."""
    pattern = "^"
    literal = 0
    greedy = False
    segments = [s for s in template.split("/") if s]
    for segment in segments:
        m = re.fullmatch(r"\{([^}+]+)(\+)?\}", segment)
        if m is None:
            pattern += "/" + re.escape(segment)
            literal += 1
        elif m.group(2):
            pattern += f"/(?P<{_group(m.group(1))}>.+)"
            greedy = True
        else:
            pattern += f"/(?P<{_group(m.group(1))}>[^/]+)"
    pattern += "/?$"
    return re.compile(pattern), (0 if greedy else 1, literal, len(segments))


def _group(name: str) -> str:
    return "p_" + re.sub(r"\W", "_", name) + "_" + str(abs(hash(name)) % 10000)


def match_route(routes: dict[str, dict[str, Any]], method: str, path: str) -> tuple[dict[str, Any], dict[str, str]] | None:
    """The most specific route for ``method path``, else ``$default``."""
    best: tuple[tuple[int, ...], dict[str, Any], dict[str, str]] | None = None
    default = None
    for route in routes.values():
        key = route["RouteKey"]
        if key == "$default":
            default = route
            continue
        route_method, _, template = key.partition(" ")
        if route_method not in (method, "ANY"):
            continue
        regex, score = compile_path(template)
        m = regex.match(path)
        if m is None:
            continue
        names = re.findall(r"\{([^}+]+)\+?\}", template)
        params = {name: m.group(_group(name)) for name in names}
        rank = (*score, 1 if route_method == method else 0)
        if best is None or rank > best[0]:
            best = (rank, route, params)
    if best is not None:
        return best[1], best[2]
    return (default, {}) if default is not None else None


def cors_headers(cors: dict[str, Any] | None, origin: str | None, preflight: bool) -> dict[str, str]:
    """The Access-Control-* headers an HTTP API's CORS configuration allows."""
    if not cors or not origin:
        return {}
    allowed = cors.get("AllowOrigins") or []
    if "*" not in allowed and origin not in allowed:
        return {}
    headers = {"Access-Control-Allow-Origin": "*" if "*" in allowed and not cors.get("AllowCredentials") else origin}
    if cors.get("AllowCredentials"):
        headers["Access-Control-Allow-Credentials"] = "true"
    if cors.get("ExposeHeaders") and not preflight:
        headers["Access-Control-Expose-Headers"] = ",".join(cors["ExposeHeaders"])
    if preflight:
        if cors.get("AllowMethods"):
            headers["Access-Control-Allow-Methods"] = ",".join(cors["AllowMethods"])
        if cors.get("AllowHeaders"):
            headers["Access-Control-Allow-Headers"] = ",".join(cors["AllowHeaders"])
        if cors.get("MaxAge") is not None:
            headers["Access-Control-Max-Age"] = str(cors["MaxAge"])
    return headers


class HttpApiServer:
    """Answers requests to one deployed HTTP API stage."""

    def __init__(self, app: App, authorizers: Authorizers) -> None:
        self.app = app
        self.authorizers = authorizers

    async def serve(self, snapshot: dict[str, Any], stage: dict[str, Any], req: Incoming, raw_path: str) -> WireResponse:
        cors = snapshot.get("CorsConfiguration")
        origin = req.headers.get("origin")
        if req.method == "OPTIONS" and cors and "access-control-request-method" in req.headers:
            return WireResponse(204, cors_headers(cors, origin, True), b"")
        found = match_route(snapshot["Routes"], req.method, req.path)
        if found is None:
            return json_response(404, {"message": "Not Found"})
        route, params = found
        req.route_key = route["RouteKey"]
        req.resource_path = route["RouteKey"].partition(" ")[2] or req.path
        req.path_parameters = params
        req.stage_variables = dict(stage.get("StageVariables") or {})
        try:
            await self._authorize(snapshot, route, req, raw_path)
        except Denied as denied:
            return json_response(denied.status, {"message": denied.message}, denied.headers)
        begun = time.perf_counter()
        response = await self._integrate(snapshot, route, req)
        req.integration_ms = (time.perf_counter() - begun) * 1000
        response.headers.update(cors_headers(cors, origin, False))
        response.headers.setdefault("apigw-requestid", req.request_id)
        return response

    async def _authorize(self, snapshot: dict[str, Any], route: dict[str, Any], req: Incoming, raw_path: str) -> None:
        kind = route.get("AuthorizationType") or "NONE"
        if kind == "NONE":
            return
        if kind == "AWS_IAM":
            req.identity = await self.authorizers.iam(req, raw_path)
            return
        authorizer = snapshot["Authorizers"].get(route.get("AuthorizerId") or "")
        if authorizer is None:
            raise Denied(500, "Internal Server Error")
        if kind == "JWT":
            req.authorizer = await self.authorizers.jwt(authorizer, route.get("AuthorizationScopes") or [], req)
        else:
            arn = f"arn:aws:execute-api:{self.app.settings.default_region}:{req.account_id}:{req.api_id}/{req.stage}/{req.method}{req.path}"
            req.authorizer = await self.authorizers.lambda_(authorizer, req, arn, v2=True)

    async def _integrate(self, snapshot: dict[str, Any], route: dict[str, Any], req: Incoming) -> WireResponse:
        target = str(route.get("Target") or "")
        integration = snapshot["Integrations"].get(target.removeprefix("integrations/"))
        if integration is None:
            return json_response(500, {"message": "Internal Server Error"})
        timeout = min(float(integration.get("TimeoutInMillis") or 30000), 30000) / 1000
        kind = integration.get("IntegrationType")
        try:
            if kind == "AWS_PROXY" and integration.get("IntegrationSubtype"):
                return await run.aws_service(self.app, integration, req)
            if kind == "AWS_PROXY":
                version = str(integration.get("PayloadFormatVersion") or "2.0")
                event = event_v2(req) if version == "2.0" else event_v1(req, http_api=True)
                payload = await run.invoke_lambda(self.app, integration["IntegrationUri"], event, timeout)
                return read_proxy_result(payload, version)
            if kind == "HTTP_PROXY":
                return await run.http_proxy(integration["IntegrationUri"], integration.get("IntegrationMethod") or "ANY", req, timeout)
        except run.IntegrationTimeout:
            return json_response(503, {"message": "Service Unavailable"})
        except (run.FunctionFailed, BadProxyResponse):
            return json_response(500, {"message": "Internal Server Error"})
        return json_response(500, {"message": "Internal Server Error"})
