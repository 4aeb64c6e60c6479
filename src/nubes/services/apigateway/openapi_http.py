"""OpenAPI documents for HTTP APIs (ImportApi, ReimportApi): routes from paths,
integrations from ``x-amazon-apigateway-integration`` (payloadFormatVersion),
JWT and Lambda authorizers from securitySchemes, CORS from
``x-amazon-apigateway-cors``. The whole document is read and checked first."""

from __future__ import annotations

from typing import Any

import orjson

from nubes.services.apigateway.openapi import _obj, _schemes, invalid, load_document
from nubes.services.apigateway.store import ApiStore, new_id, now
from nubes.services.apigateway.v2 import HttpApis, _endpoint, _public
from nubes.services.base import RequestContext

_METHODS = {"get": "GET", "put": "PUT", "post": "POST", "delete": "DELETE", "patch": "PATCH", "head": "HEAD",
            "options": "OPTIONS", "x-amazon-apigateway-any-method": "ANY"}  # fmt: skip
_CORS = {"allowOrigins": "AllowOrigins", "allowMethods": "AllowMethods", "allowHeaders": "AllowHeaders",
         "exposeHeaders": "ExposeHeaders", "maxAge": "MaxAge", "allowCredentials": "AllowCredentials"}  # fmt: skip


def _authorizer(name: str, scheme: dict[str, Any], where: str) -> dict[str, Any]:
    ext = _obj(scheme.get("x-amazon-apigateway-authorizer"), where + ".x-amazon-apigateway-authorizer")
    kind = str(ext.get("type", "")).lower()
    source = ext.get("identitySource")
    sources = [s.strip() for s in source.split(",")] if isinstance(source, str) else list(source or [])
    if kind == "jwt":
        jwt = _obj(ext.get("jwtConfiguration"), where + ".x-amazon-apigateway-authorizer.jwtConfiguration")
        if not jwt.get("issuer"):
            raise invalid(where + ".x-amazon-apigateway-authorizer.jwtConfiguration.issuer")
        return {"Name": name, "AuthorizerType": "JWT", "IdentitySource": sources or ["$request.header.Authorization"],
                "JwtConfiguration": {"Issuer": jwt["issuer"], "Audience": list(jwt.get("audience") or [])}}  # fmt: skip
    if kind == "request":
        if not ext.get("authorizerUri"):
            raise invalid(where + ".x-amazon-apigateway-authorizer.authorizerUri")
        out: dict[str, Any] = {"Name": name, "AuthorizerType": "REQUEST", "AuthorizerUri": ext["authorizerUri"],
                               "IdentitySource": sources, "AuthorizerPayloadFormatVersion": str(ext.get("authorizerPayloadFormatVersion", "2.0")),
                               "EnableSimpleResponses": bool(ext.get("enableSimpleResponses")),
                               "AuthorizerResultTtlInSeconds": int(ext.get("authorizerResultTtlInSeconds", 0))}  # fmt: skip
        return out
    raise invalid(where + ".x-amazon-apigateway-authorizer.type", "expected jwt or request")


def _integration(ext: Any, where: str) -> dict[str, Any]:
    ext = _obj(ext, where)
    kind = str(ext.get("type", "")).lower()
    if kind not in ("aws_proxy", "http_proxy"):
        raise invalid(where + ".type", "an HTTP API integration is aws_proxy or http_proxy")
    out: dict[str, Any] = {"IntegrationType": kind.upper(), "ConnectionType": str(ext.get("connectionType", "INTERNET")).upper(),
                           "TimeoutInMillis": int(ext.get("timeoutInMillis", 30000))}  # fmt: skip
    if ext.get("integrationSubtype"):
        out["IntegrationSubtype"] = ext["integrationSubtype"]
        out["RequestParameters"] = dict(_obj(ext.get("requestParameters"), where + ".requestParameters"))
        out["PayloadFormatVersion"] = "1.0"
        return out
    if not ext.get("uri"):
        raise invalid(where + ".uri")
    out["IntegrationUri"] = str(ext["uri"])
    out["IntegrationMethod"] = str(ext.get("httpMethod") or ("POST" if kind == "aws_proxy" else "ANY")).upper()
    version = str(ext.get("payloadFormatVersion", "2.0" if kind == "aws_proxy" else "1.0"))
    if version not in ("1.0", "2.0"):
        raise invalid(where + ".payloadFormatVersion", "expected 1.0 or 2.0")
    out["PayloadFormatVersion"] = version
    return out


def _route(op: dict[str, Any], doc: dict[str, Any], where: str, authorizers: dict[str, Any]) -> dict[str, Any]:
    route: dict[str, Any] = {"AuthorizationType": "NONE", "ApiKeyRequired": False}
    if op.get("operationId"):
        route["OperationName"] = str(op["operationId"])
    for requirement in op.get("security", doc.get("security")) or []:
        for name, scopes in _obj(requirement, where + ".security").items():
            if name not in authorizers:
                raise invalid(where + ".security", f"no authorizer named {name}")
            route["AuthorizationType"] = "JWT" if authorizers[name]["AuthorizerType"] == "JWT" else "CUSTOM"
            route["Authorizer"] = name
            if scopes:
                route["AuthorizationScopes"] = list(scopes)
    return route


def read_http_api(doc: dict[str, Any]) -> dict[str, Any]:
    """Name, description, CORS, routes, integrations and authorizers of a document."""
    info = _obj(doc.get("info"), "info")
    if not info.get("title"):
        raise invalid("info.title", "an API needs a name")
    authorizers = {name: _authorizer(name, _obj(s, f"securitySchemes.{name}"), f"securitySchemes.{name}")
                   for name, s in _schemes(doc).items() if isinstance(s, dict) and "x-amazon-apigateway-authorizer" in s}  # fmt: skip
    routes: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    for path, item in (doc.get("paths") or {}).items():
        where = f"paths.{path}"
        if not isinstance(path, str) or not (path.startswith("/") or path == "$default"):
            raise invalid(where, "a path starts with / (or is $default)")
        for key, op in _obj(item, where).items():
            if key not in _METHODS:
                continue
            op = _obj(op, f"{where}.{key}")
            route = _route(op, doc, f"{where}.{key}", authorizers)
            route["RouteKey"] = "$default" if path == "$default" else f"{_METHODS[key]} {path}"
            ext = op.get("x-amazon-apigateway-integration")
            integration = _integration(ext, f"{where}.{key}.x-amazon-apigateway-integration") if ext is not None else None
            routes.append((route, integration))
    cors = None
    if "x-amazon-apigateway-cors" in doc:
        raw = _obj(doc["x-amazon-apigateway-cors"], "x-amazon-apigateway-cors")
        cors = {_CORS[k]: v for k, v in raw.items() if k in _CORS}
    return {"Name": info["title"], "Description": info.get("description"),
            "CorsConfiguration": cors, "routes": routes, "authorizers": authorizers}  # fmt: skip


def apply_http_api(api: dict[str, Any], parts: dict[str, Any]) -> None:
    """Replace the API's definition by the document's (stages are kept)."""
    api["Name"] = parts["Name"]
    # (info.version is not kept: the document's "Version" field is the API generation)
    for key in ("Description", "CorsConfiguration"):
        if parts.get(key) is not None:
            api[key] = parts[key]
        else:
            api.pop(key, None)
    api["Routes"], api["Integrations"], api["Authorizers"] = {}, {}, {}
    auth_ids = {}
    for name, authorizer in parts["authorizers"].items():
        auth_ids[name] = new_id(6)
        api["Authorizers"][auth_ids[name]] = {**authorizer, "AuthorizerId": auth_ids[name]}
    same: dict[bytes, str] = {}
    for route, integration in parts["routes"]:
        route_id = new_id(7)
        record = {**route, "RouteId": route_id}
        if "Authorizer" in record:
            record["AuthorizerId"] = auth_ids[record.pop("Authorizer")]
        if integration is not None:
            # routes with identical integrations share one, as API Gateway's import does
            fingerprint = orjson.dumps(integration, option=orjson.OPT_SORT_KEYS)
            if fingerprint not in same:
                same[fingerprint] = new_id(7)
                api["Integrations"][same[fingerprint]] = {**integration, "IntegrationId": same[fingerprint]}
            record["Target"] = f"integrations/{same[fingerprint]}"
        api["Routes"][route_id] = record


class HttpApiImports:
    """ImportApi and ReimportApi."""

    def __init__(self, apis: ApiStore, v2: HttpApis) -> None:
        self.apis = apis
        self.v2 = v2

    async def import_api(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        parts = read_http_api(load_document(params.get("Body")))
        api_id = new_id()
        api: dict[str, Any] = {
            "Version": 2, "Id": api_id, "ProtocolType": "HTTP", "RouteSelectionExpression": "${request.method} ${request.path}",
            "ApiKeySelectionExpression": "$request.header.x-api-key", "CreatedDate": now(),
            "ApiEndpoint": _endpoint(ctx, api_id, "HTTP"), "Tags": {}, "Stages": {}, "RouteResponses": {},
        }  # fmt: skip
        apply_http_api(api, parts)
        await self.apis.put(api)
        return _public(api)

    async def reimport_api(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        parts = read_http_api(load_document(params.get("Body")))

        def change(api: dict[str, Any]) -> dict[str, Any]:
            if api.get("ProtocolType") != "HTTP":
                from nubes.aws.errors import AwsError

                raise AwsError("BadRequestException", "Only HTTP APIs can be reimported", 400)
            apply_http_api(api, parts)
            return _public(api)

        out: dict[str, Any] = await self.apis.change(params["ApiId"], True, change)
        await self.v2._auto_deploy(params["ApiId"])
        return out
