"""Serving REST APIs (v1): resource and method selection, API keys, authorizers,
proxy and non-proxy integrations with mapping templates."""

from __future__ import annotations

import re
import time
from typing import Any

import orjson

from nubes.app import App
from nubes.aws.errors import AwsError
from nubes.aws.protocol import WireRequest, parse_request, serialize_response
from nubes.aws.protocol.types import WireResponse
from nubes.aws.spec import service_index
from nubes.services.apigateway import integrations as run
from nubes.services.apigateway import vtl
from nubes.services.apigateway.authorizers import Authorizers, Denied
from nubes.services.apigateway.http_api import compile_path
from nubes.services.apigateway.payloads import (
    BadProxyResponse,
    Incoming,
    event_v1,
    json_response,
    read_proxy_result,
)
from nubes.services.apigateway.usage import UsageGuard
from nubes.services.apigateway.validation import (
    check_request,
    is_binary,
    request_for_integration,
    response_from_integration,
)


def match_resource(resources: dict[str, dict[str, Any]], path: str) -> tuple[dict[str, Any], dict[str, str]] | None:
    best: tuple[tuple[int, ...], dict[str, Any], dict[str, str]] | None = None
    for resource in resources.values():
        regex, score = compile_path(resource["path"])
        m = regex.match(path)
        if m is None:
            continue
        names = re.findall(r"\{([^}+]+)\+?\}", resource["path"])
        values = list(m.groups())
        params = dict(zip(names, values, strict=False))
        if best is None or score > best[0]:
            best = (score, resource, params)
    return None if best is None else (best[1], best[2])


def _missing_token() -> WireResponse:
    return json_response(403, {"message": "Missing Authentication Token"})


class RestApiServer:
    """Answers requests to one deployed REST API stage."""

    def __init__(self, app: App, authorizers: Authorizers) -> None:
        self.app = app
        self.authorizers = authorizers
        self.usage = UsageGuard(app)

    async def serve(self, snapshot: dict[str, Any], stage: dict[str, Any], req: Incoming, raw_path: str) -> WireResponse:
        found = match_resource(snapshot["Resources"], req.path)
        if found is None:
            return _missing_token()
        resource, params = found
        methods = resource.get("resourceMethods") or {}
        method = methods.get(req.method) or methods.get("ANY")
        if method is None:
            return _missing_token()
        req.path_parameters = params
        req.resource_path = resource["path"]
        req.resource_id = resource["id"]
        req.stage_variables = dict(stage.get("variables") or {})
        try:
            await self._authorize(snapshot, method, req, raw_path)
        except Denied as denied:
            return json_response(denied.status, {"message": denied.message}, denied.headers)
        if method.get("apiKeyRequired"):
            refused = await self.usage.check(req.api_id, req.stage, self._api_key(snapshot, req), f"{req.resource_path}/{req.method}")
            if refused is not None:
                return json_response(refused[0], {"message": refused[1]})
        problem = check_request(snapshot, method, req)
        if problem is not None:
            return json_response(400, {"message": problem}, {"x-amzn-ErrorType": "BadRequestException"})
        integration = method.get("methodIntegration")
        if integration is None:
            return json_response(500, {"message": "Internal server error"})
        begun = time.perf_counter()
        try:
            return await self._integrate(snapshot, integration, req)
        except run.IntegrationTimeout:
            return json_response(504, {"message": "Endpoint request timed out"})
        except (run.FunctionFailed, BadProxyResponse):
            return json_response(502, {"message": "Internal server error"})
        except ValueError as exc:
            return json_response(500, {"message": str(exc)})
        finally:
            req.integration_ms = (time.perf_counter() - begun) * 1000

    async def _authorize(self, snapshot: dict[str, Any], method: dict[str, Any], req: Incoming, raw_path: str) -> None:
        kind = method.get("authorizationType") or "NONE"
        if kind == "NONE":
            return
        if kind == "AWS_IAM":
            req.identity = await self.authorizers.iam(req, raw_path)
            return
        authorizer = snapshot["Authorizers"].get(method.get("authorizerId") or "")
        if authorizer is None:
            raise Denied(500, "Internal server error")
        if kind == "COGNITO_USER_POOLS":
            req.authorizer = await self.authorizers.cognito(authorizer, req, method.get("authorizationScopes") or [])
            return
        arn = f"arn:aws:execute-api:{self.app.settings.default_region}:{req.account_id}:{req.api_id}/{req.stage}/{req.method}{req.path}"
        req.authorizer = dict(await self.authorizers.lambda_(authorizer, req, arn, v2=False))  # a copy: results are cached
        req.authorizer_api_key = req.authorizer.pop("usageIdentifierKey", None)

    @staticmethod
    def _api_key(snapshot: dict[str, Any], req: Incoming) -> str | None:
        """The key the request presents: ``x-api-key``, or the Lambda authorizer's
        ``usageIdentifierKey`` when the API's apiKeySource is AUTHORIZER."""
        if snapshot.get("apiKeySource") == "AUTHORIZER":
            return req.authorizer_api_key
        return req.headers.get("x-api-key")

    def _template_params(self, req: Incoming) -> dict[str, dict[str, str]]:
        return {"path": dict(req.path_parameters), "querystring": dict(req.query_pairs), "header": dict(req.headers)}

    def _context(self, req: Incoming) -> dict[str, Any]:
        return {"requestId": req.request_id, "stage": req.stage, "apiId": req.api_id, "httpMethod": req.method,
                "resourcePath": req.resource_path, "resourceId": req.resource_id, "accountId": req.account_id,
                "identity": {"sourceIp": req.source_ip, "userAgent": req.headers.get("user-agent"), **req.identity},
                "authorizer": req.authorizer or {}, "domainName": req.domain, "path": f"/{req.stage}{req.path}"}  # fmt: skip

    def _request_body(self, snapshot: dict[str, Any], integration: dict[str, Any], req: Incoming) -> tuple[bytes, bool]:
        """The rendered request template (or the body passed through); False = 415."""
        templates = integration.get("requestTemplates") or {}
        kind = req.headers.get("content-type", "application/json").split(";")[0].strip() or "application/json"
        binary = is_binary(snapshot.get("binaryMediaTypes"), kind)
        handling = integration.get("contentHandling")
        if binary and handling != "CONVERT_TO_TEXT":
            # a binary payload is passed through as it is (no template applies to it)
            return req.body, True
        body = request_for_integration(req.body, binary, handling)
        template = templates.get(kind)
        if template is None:
            behavior = integration.get("passthroughBehavior", "WHEN_NO_MATCH")
            if templates and behavior in ("NEVER", "WHEN_NO_TEMPLATES"):
                return b"", False
            return body, True
        rendered = vtl.render(template, body, self._template_params(req), self._context(req), req.stage_variables)
        return rendered.encode(), True

    async def _integrate(self, snapshot: dict[str, Any], integration: dict[str, Any], req: Incoming) -> WireResponse:
        kind = integration.get("type")
        timeout = min(float(integration.get("timeoutInMillis") or 29000), 29000) / 1000
        if kind == "AWS_PROXY":
            binary_types = snapshot.get("binaryMediaTypes")
            payload = await run.invoke_lambda(self.app, integration["uri"], event_v1(req, binary_types=binary_types), timeout)
            accepts = [a.split(";")[0].strip() for a in req.headers.get("accept", "").split(",") if a.strip()]
            return read_proxy_result(payload, "1.0", decode_base64=any(is_binary(binary_types, a) for a in accepts))
        if kind == "HTTP_PROXY":
            return await run.http_proxy(integration["uri"], integration.get("httpMethod") or "ANY", req, timeout)
        body, ok = self._request_body(snapshot, integration, req)
        if not ok:
            return json_response(415, {"message": "Unsupported Media Type"})
        if kind == "MOCK":
            try:
                status = int((orjson.loads(body) if body else {}).get("statusCode", 200))
            except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
                status = 200
            return self._respond(integration, req, status, b"", {}, None)
        if kind == "HTTP":
            forward = Incoming(**{**req.__dict__, "body": body})
            response = await run.http_proxy(integration["uri"], integration.get("httpMethod") or req.method, forward, timeout)
            raw = response.body if isinstance(response.body, bytes) else b""
            return self._respond(integration, req, response.status, raw, response.headers, str(response.status))
        if kind == "AWS":
            status, raw, error = await self._aws(integration, body, req)
            return self._respond(integration, req, status, raw, {}, error)
        return json_response(500, {"message": "Internal server error"})

    async def _aws(self, integration: dict[str, Any], body: bytes, req: Incoming) -> tuple[int, bytes, str | None]:
        """An ``AWS`` integration: Lambda (non-proxy) or any service action."""
        uri: str = integration["uri"]
        if ":lambda:path/" in uri:
            try:
                payload = await run.invoke_lambda(self.app, uri, orjson.loads(body or b"{}"), 29.0)
            except run.FunctionFailed as failed:
                doc = orjson.loads(failed.args[0] or b"{}")
                return 200, failed.args[0] or b"", str(doc.get("errorMessage", "")) if isinstance(doc, dict) else ""
            return 200, payload, None
        m = re.match(r"arn:aws:apigateway:([^:]*):([^:]+):action/(\w+)", uri)
        if m is None:
            raise ValueError(f"nubes supports AWS integrations by action (arn:aws:apigateway:region:service:action/Name), not {uri}")
        region, service, action = m.group(1) or self.app.settings.default_region, m.group(2), m.group(3)
        model = {"states": "stepfunctions", "email": "ses", "monitoring": "cloudwatch"}.get(service, service)
        index = service_index(model)
        op = index.model.operation_model(action)
        form: dict[str, str] | None = None
        if body.lstrip().startswith(b"{") or (index.protocol == "json" and not index.query_compatible):
            wire = WireRequest("POST", "/", {}, {"content-type": "application/x-amz-json-1.0"}, body)
            protocol = index.protocol
        else:
            # the query API, as AWS's documented API Gateway → SQS templates write it
            from urllib.parse import parse_qsl

            wire = WireRequest("POST", "/", {}, {}, body)
            form = {k: v for k, v in parse_qsl(body.decode(), keep_blank_values=True) if k not in ("Action", "Version")}
            protocol = "query"
            hook = getattr(self.app.provider(model), "query_operation_model", None)
            if hook is not None and index.protocol != "query":
                op = hook(action)
        try:
            params = parse_request(index, op, wire, form=form, protocol=protocol)
            result = await self.app.call(model, action, params, region=region)
        except AwsError as err:
            return err.status or 400, orjson.dumps({"__type": err.code, "message": err.message}), err.code
        response = serialize_response(index, op, result, req.request_id, protocol=protocol)
        return 200, response.body if isinstance(response.body, bytes) else b"", None

    def _respond(self, integration: dict[str, Any], req: Incoming, status: int, body: bytes, headers: dict[str, str],
                 selector: str | None) -> WireResponse:  # fmt: skip
        """Pick the integration response (selectionPattern), map status, headers and body."""
        responses = integration.get("integrationResponses") or {}
        chosen = None
        for response in responses.values():
            pattern = response.get("selectionPattern")
            if pattern and selector is not None and re.fullmatch(pattern, selector, re.DOTALL):
                chosen = response
                break
        if chosen is None:
            chosen = next((r for r in responses.values() if not r.get("selectionPattern")), None)
        if chosen is None:
            if integration.get("type") == "MOCK":
                return WireResponse(status, {}, b"")
            return json_response(500, {"message": "Internal server error"})
        out_headers = {"Content-Type": "application/json"}
        for name, source in (chosen.get("responseParameters") or {}).items():
            header = name.removeprefix("method.response.header.")
            if source.startswith("'") and source.endswith("'"):
                out_headers[header] = source[1:-1]
            elif source.startswith("integration.response.header."):
                value = headers.get(source.removeprefix("integration.response.header."))
                if value is not None:
                    out_headers[header] = value
        template = (chosen.get("responseTemplates") or {}).get("application/json")
        if chosen.get("contentHandling"):
            body = response_from_integration(body, chosen["contentHandling"])
        if template and chosen.get("contentHandling") != "CONVERT_TO_BINARY":
            body = vtl.render(template, body, self._template_params(req), self._context(req), req.stage_variables).encode()
        return WireResponse(int(chosen.get("statusCode", 200)), out_headers, body)
