"""GetExport (a REST API stage as OpenAPI 3 or Swagger 2) and ExportApi (an HTTP
API as OpenAPI 3), with the ``x-amazon-apigateway-*`` extensions, in JSON or
YAML — documents ImportRestApi / ImportApi read back to the same API."""

from __future__ import annotations

from typing import Any

import orjson

from nubes.aws.errors import AwsError
from nubes.services.apigateway.store import ApiStore, not_found
from nubes.services.base import RequestContext

_LOWER = {"GET": "get", "PUT": "put", "POST": "post", "DELETE": "delete", "PATCH": "patch", "HEAD": "head",
          "OPTIONS": "options", "ANY": "x-amazon-apigateway-any-method"}  # fmt: skip


def _integration_v1(integration: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"type": str(integration.get("type", "")).lower()}
    for key in ("uri", "httpMethod", "requestTemplates", "requestParameters", "contentHandling", "timeoutInMillis"):
        if integration.get(key) is not None:
            out[key] = integration[key]
    out["passthroughBehavior"] = str(integration.get("passthroughBehavior", "WHEN_NO_MATCH")).lower()
    responses = {}
    for status, response in (integration.get("integrationResponses") or {}).items():
        entry = {k: v for k, v in response.items() if k in ("responseTemplates", "responseParameters", "contentHandling")}
        responses[response.get("selectionPattern") or "default"] = {"statusCode": status, **entry}
    if responses:
        out["responses"] = responses
    return out


def _operation_v1(method: dict[str, Any], snapshot: dict[str, Any], swagger: bool) -> dict[str, Any]:
    op: dict[str, Any] = {"responses": {code: {"description": f"{code} response"} for code in method.get("methodResponses") or {}}}
    if not op["responses"]:
        op["responses"] = {"200": {"description": "200 response"}}
    if method.get("operationName"):
        op["operationId"] = method["operationName"]
    params = []
    for name, required in (method.get("requestParameters") or {}).items():
        parts = name.split(".", 3)
        if len(parts) == 4:
            place = {"querystring": "query"}.get(parts[2], parts[2])
            param: dict[str, Any] = {"name": parts[3], "in": place, "required": bool(required) or place == "path"}
            param.update({"type": "string"} if swagger else {"schema": {"type": "string"}})
            params.append(param)
    if params:
        op["parameters"] = params
    security = []
    authorizer = (snapshot.get("Authorizers") or {}).get(method.get("authorizerId") or "")
    if authorizer is not None:
        security.append({authorizer["name"]: list(method.get("authorizationScopes") or [])})
    if method.get("apiKeyRequired"):
        security.append({"api_key": []})
    if security:
        op["security"] = security
    validator = (snapshot.get("Validators") or {}).get(method.get("requestValidatorId") or "")
    if validator is not None:
        op["x-amazon-apigateway-request-validator"] = validator["name"]
    if method.get("methodIntegration"):
        op["x-amazon-apigateway-integration"] = _integration_v1(method["methodIntegration"])
    return op


def rest_document(name: str, snapshot: dict[str, Any], swagger: bool) -> dict[str, Any]:
    """The OpenAPI 3 / Swagger 2 document of a deployed REST API."""
    paths: dict[str, Any] = {}
    for resource in sorted(snapshot["Resources"].values(), key=lambda r: r["path"]):
        ops = {_LOWER[verb]: _operation_v1(m, snapshot, swagger) for verb, m in (resource.get("resourceMethods") or {}).items()}
        if ops:
            paths[resource["path"]] = ops
    schemes: dict[str, Any] = {}
    for authorizer in (snapshot.get("Authorizers") or {}).values():
        ext = {"type": str(authorizer.get("type", "")).lower(), "authorizerResultTtlInSeconds": authorizer.get("authorizerResultTtlInSeconds", 300)}
        for key in ("authorizerUri", "providerARNs", "identitySource", "identityValidationExpression"):
            if authorizer.get(key):
                ext[key] = authorizer[key]
        schemes[authorizer["name"]] = {"type": "apiKey", "name": "Authorization", "in": "header",
                                       "x-amazon-apigateway-authtype": "cognito_user_pools" if ext["type"] == "cognito_user_pools" else "custom",
                                       "x-amazon-apigateway-authorizer": ext}  # fmt: skip
    if any(m.get("apiKeyRequired") for r in snapshot["Resources"].values() for m in (r.get("resourceMethods") or {}).values()):
        schemes["api_key"] = {"type": "apiKey", "name": "x-api-key", "in": "header"}
    models = {name: orjson.loads(m["schema"]) for name, m in (snapshot.get("Models") or {}).items() if m.get("schema")}
    doc: dict[str, Any] = {"swagger": "2.0"} if swagger else {"openapi": "3.0.1"}
    doc["info"] = {"title": name, "version": "1"}
    doc["paths"] = paths
    if swagger:
        doc.update({k: v for k, v in (("securityDefinitions", schemes), ("definitions", models)) if v})
    elif schemes or models:
        doc["components"] = {k: v for k, v in (("securitySchemes", schemes), ("schemas", models)) if v}
    validators = {v["name"]: {"validateRequestBody": v.get("validateRequestBody", False),
                              "validateRequestParameters": v.get("validateRequestParameters", False)}
                  for v in (snapshot.get("Validators") or {}).values()}  # fmt: skip
    if validators:
        doc["x-amazon-apigateway-request-validators"] = validators
    if snapshot.get("binaryMediaTypes"):
        doc["x-amazon-apigateway-binary-media-types"] = snapshot["binaryMediaTypes"]
    return doc


def http_document(api: dict[str, Any], extensions: bool) -> dict[str, Any]:
    """The OpenAPI 3 document of an HTTP API."""
    paths: dict[str, Any] = {}
    names = {a["AuthorizerId"]: a.get("Name") or a["AuthorizerId"] for a in api["Authorizers"].values()}
    for route in api["Routes"].values():
        verb, _, path = str(route["RouteKey"]).partition(" ")
        if route["RouteKey"] == "$default":
            verb, path = "ANY", "$default"
        op: dict[str, Any] = {"responses": {"default": {"description": "Default response"}}}
        if route.get("AuthorizerId") in names:
            op["security"] = [{names[route["AuthorizerId"]]: list(route.get("AuthorizationScopes") or [])}]
        integration = api["Integrations"].get(str(route.get("Target", "")).removeprefix("integrations/"))
        if extensions and integration is not None:
            ext = {"type": str(integration["IntegrationType"]).lower(), "payloadFormatVersion": integration.get("PayloadFormatVersion", "1.0"),
                   "connectionType": integration.get("ConnectionType", "INTERNET"), "timeoutInMillis": integration.get("TimeoutInMillis", 30000)}  # fmt: skip
            if integration.get("IntegrationUri"):
                ext["uri"], ext["httpMethod"] = integration["IntegrationUri"], integration.get("IntegrationMethod", "POST")
            op["x-amazon-apigateway-integration"] = ext
        paths.setdefault(path, {})[_LOWER.get(verb, verb.lower())] = op
    doc: dict[str, Any] = {"openapi": "3.0.1", "info": {"title": api["Name"], "version": str(api.get("ApiVersion") or "1")}, "paths": paths}
    schemes = {}
    for authorizer in api["Authorizers"].values():
        if authorizer.get("AuthorizerType") == "JWT":
            jwt = authorizer.get("JwtConfiguration") or {}
            ext = {"type": "jwt", "identitySource": ",".join(authorizer.get("IdentitySource") or []),
                   "jwtConfiguration": {"issuer": jwt.get("Issuer"), "audience": jwt.get("Audience") or []}}  # fmt: skip
        else:
            ext = {"type": "request", "authorizerUri": authorizer.get("AuthorizerUri"), "identitySource": ",".join(authorizer.get("IdentitySource") or []),
                   "authorizerPayloadFormatVersion": authorizer.get("AuthorizerPayloadFormatVersion", "2.0")}  # fmt: skip
        schemes[names[authorizer["AuthorizerId"]]] = {"type": "oauth2" if ext["type"] == "jwt" else "apiKey", "x-amazon-apigateway-authorizer": ext}
    if schemes and extensions:
        doc["components"] = {"securitySchemes": schemes}
    cors = api.get("CorsConfiguration")
    if cors and extensions:
        doc["x-amazon-apigateway-cors"] = {k[:1].lower() + k[1:]: v for k, v in cors.items()}
    return doc


def _serialize(doc: dict[str, Any], yaml_out: bool) -> bytes:
    if yaml_out:
        import yaml  # only YAML exports need it (and it is slow to import)

        return yaml.safe_dump(doc, sort_keys=False).encode()
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2)


class Exports:
    """GetExport (v1) and ExportApi (v2)."""

    def __init__(self, apis: ApiStore) -> None:
        self.apis = apis

    async def get_export(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        kind = params["exportType"]
        if kind not in ("oas30", "swagger"):
            raise AwsError("BadRequestException", f"No API exporter for type '{kind}'", 400)
        api = await self.apis.get(params["restApiId"], False)
        stage = api["Stages"].get(params["stageName"])
        if stage is None:
            raise not_found("stage identifier", False)
        deployment = await self.apis.deployment(api["Id"], stage.get("deploymentId") or "")
        if deployment is None:
            raise not_found("deployment identifier", False)
        yaml_out = "yaml" in str(params.get("accepts") or "")
        body = _serialize(rest_document(api["name"], deployment["Snapshot"], kind == "swagger"), yaml_out)
        extension = "yaml" if yaml_out else "json"
        return {"contentType": "application/yaml" if yaml_out else "application/json", "body": body,
                "contentDisposition": f'attachment; filename="{kind}_{api["Id"]}_{params["stageName"]}.{extension}"'}  # fmt: skip

    async def export_api(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("Specification") != "OAS30":
            raise AwsError("BadRequestException", "Specification must be OAS30", 400)
        if params.get("OutputType") not in ("JSON", "YAML"):
            raise AwsError("BadRequestException", "OutputType must be JSON or YAML", 400)
        api = await self.apis.get(params["ApiId"], True)
        if api.get("ProtocolType") != "HTTP":
            raise AwsError("BadRequestException", "Only HTTP APIs can be exported", 400)
        if params.get("StageName"):
            stage = api["Stages"].get(params["StageName"])
            if stage is None:
                raise not_found(f"Stage identified by {params['StageName']}", True)
            deployment = await self.apis.deployment(api["Id"], stage.get("DeploymentId") or "")
            if deployment is not None:
                api = {**api, **{k: v for k, v in deployment["Snapshot"].items() if v is not None}}
        include = params.get("IncludeExtensions", True) is not False
        return {"body": _serialize(http_document(api, include), params["OutputType"] == "YAML")}
