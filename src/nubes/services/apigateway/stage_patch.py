"""UpdateStage's ``patchOperations`` for REST API stages, path by path as API
Gateway accepts them (stage fields, ``/variables/{name}``, access-log settings
and ``/{resource}/{method}/{setting}`` method settings), and the checks v2's
UpdateStage / UpdateApi make."""

from __future__ import annotations

from typing import Any

from nubes.aws.errors import AwsError

_FIELDS = {"/description": str, "/deploymentId": str, "/cacheClusterEnabled": bool, "/cacheClusterSize": str,
           "/clientCertificateId": str, "/tracingEnabled": bool, "/documentationVersion": str,
           "/accessLogSettings/destinationArn": str, "/accessLogSettings/format": str}  # fmt: skip
_METHOD_SETTINGS = {
    "metrics/enabled": ("metricsEnabled", bool), "logging/loglevel": ("loggingLevel", str),
    "logging/dataTrace": ("dataTraceEnabled", bool), "throttling/burstLimit": ("throttlingBurstLimit", int),
    "throttling/rateLimit": ("throttlingRateLimit", float), "caching/enabled": ("cachingEnabled", bool),
    "caching/ttlInSeconds": ("cacheTtlInSeconds", int), "caching/dataEncrypted": ("cacheDataEncrypted", bool),
    "caching/requireAuthorizationForCacheControl": ("requireAuthorizationForCacheControl", bool),
    "caching/unauthorizedCacheControlHeaderStrategy": ("unauthorizedCacheControlHeaderStrategy", str),
}  # fmt: skip
_LOG_LEVELS = ("OFF", "ERROR", "INFO")


def _bad(message: str) -> AwsError:
    return AwsError("BadRequestException", message, 400)


def _convert(kind: type, value: Any, path: str) -> Any:
    if kind is bool:
        if str(value).lower() not in ("true", "false"):
            raise _bad(f"Invalid value for {path}: {value!r} is not a boolean")
        return str(value).lower() == "true"
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise _bad(f"Invalid value for {path}: {value!r}") from None


def patch_stage(stage: dict[str, Any], operations: list[dict[str, Any]], deployments: set[str]) -> None:
    """Apply a v1 UpdateStage's operations to ``stage`` (all checked, or none applied)."""
    changed = dict(stage)
    changed["variables"] = dict(stage.get("variables") or {})
    changed["methodSettings"] = {k: dict(v) for k, v in (stage.get("methodSettings") or {}).items()}
    for op in operations or []:
        _one(changed, str(op.get("op")), str(op.get("path", "")), op.get("value"), deployments)
    if not changed["methodSettings"]:
        changed.pop("methodSettings")
    stage.clear()
    stage.update(changed)


def _one(stage: dict[str, Any], op: str, path: str, value: Any, deployments: set[str]) -> None:
    if op not in ("replace", "add", "remove"):
        raise _bad(f"Invalid patch operation specified. Must be 'add'|'remove'|'replace' for path {path}")
    if path.startswith("/variables/"):
        name = path.removeprefix("/variables/")
        if not name:
            raise _bad("Invalid patch path /variables/: a stage variable needs a name")
        if op == "remove":
            stage["variables"].pop(name, None)
        else:
            stage["variables"][name] = "" if value is None else str(value)
        return
    if path == "/accessLogSettings" and op == "remove":
        stage.pop("accessLogSettings", None)
        return
    if path in _FIELDS:
        _field(stage, op, path, value, deployments)
        return
    parts = path.lstrip("/").split("/")
    if len(parts) >= 4 and "/".join(parts[2:]) in _METHOD_SETTINGS:
        _method_setting(stage, op, parts, value, path)
        return
    raise _bad(f"Invalid patch path '{path}' specified for op '{op}'. Must be one of: [/description, /deploymentId, "
               "/variables/{name}, /accessLogSettings/*, /tracingEnabled, /cacheClusterEnabled, /cacheClusterSize, "
               "/clientCertificateId, /documentationVersion, /{resourcePath}/{httpMethod}/{setting}]")  # fmt: skip


def _field(stage: dict[str, Any], op: str, path: str, value: Any, deployments: set[str]) -> None:
    if path == "/deploymentId":
        if op != "replace":
            raise _bad("Only 'replace' is supported for /deploymentId")
        if value not in deployments:
            raise _bad("Invalid deployment identifier specified")
    if path.startswith("/accessLogSettings/"):
        settings = dict(stage.get("accessLogSettings") or {})
        key = path.rsplit("/", 1)[1]
        if op == "remove":
            settings.pop(key, None)
        else:
            if key == "destinationArn" and not str(value).startswith("arn:"):
                raise _bad(f"Invalid ARN specified in the request: {value}")
            settings[key] = str(value)
        stage["accessLogSettings"] = settings
        return
    key = path.lstrip("/")
    if op == "remove":
        stage.pop(key, None)
    else:
        stage[key] = _convert(_FIELDS[path], value, path)


def _method_setting(stage: dict[str, Any], op: str, parts: list[str], value: Any, path: str) -> None:
    resource, method = parts[0], parts[1]
    if method != "*" and method not in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY"):
        raise _bad(f"Invalid method setting path {path}: unknown HTTP method {method}")
    name, kind = _METHOD_SETTINGS["/".join(parts[2:])]
    key = f"{resource}/{method}"
    settings = stage["methodSettings"].setdefault(key, {})
    if op == "remove":
        settings.pop(name, None)
        if not settings:
            stage["methodSettings"].pop(key)
        return
    converted = _convert(kind, value, path)
    if name == "loggingLevel" and converted not in _LOG_LEVELS:
        raise _bad(f"Invalid value for {path}: must be one of {list(_LOG_LEVELS)}")
    settings[name] = converted


def check_stage_v2(api: dict[str, Any], stage: dict[str, Any], params: dict[str, Any], deployments: set[str]) -> None:
    """What v2's UpdateStage refuses before changing anything."""
    if params.get("DeploymentId") is not None:
        if params["DeploymentId"] not in deployments:
            raise AwsError("BadRequestException", f"Deployment with id {params['DeploymentId']} does not exist", 400)
        if params.get("AutoDeploy", stage.get("AutoDeploy")):
            raise AwsError("BadRequestException", "Deployment id cannot be specified when AutoDeploy is enabled", 400)
    if api.get("ProtocolType") == "WEBSOCKET" and params.get("AutoDeploy") is not None and stage.get("StageName") == "$default":
        raise AwsError("BadRequestException", "WebSocket APIs have no $default stage", 400)


_API_FIELDS = ("Name", "Description", "CorsConfiguration", "DisableExecuteApiEndpoint", "DisableSchemaValidation",
               "RouteSelectionExpression", "ApiKeySelectionExpression", "Version", "IpAddressType")  # fmt: skip


def api_update_v2(api: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The fields of an UpdateApi that may change, after v2's checks."""
    if api.get("ProtocolType") == "WEBSOCKET" and params.get("CorsConfiguration") is not None:
        raise AwsError("BadRequestException", "CORS is not supported for WEBSOCKET APIs", 400)
    expression = params.get("RouteSelectionExpression")
    if api.get("ProtocolType") == "HTTP" and expression is not None and expression != "${request.method} ${request.path}":
        raise AwsError("BadRequestException", "The RouteSelectionExpression of an HTTP API must be ${request.method} ${request.path}", 400)
    if params.get("Name") is not None and not str(params["Name"]).strip():
        raise AwsError("BadRequestException", "Name must not be empty", 400)
    # "Version" in the stored document is the API generation; the API's own version is kept apart
    out = {k: params[k] for k in _API_FIELDS if k in params}
    if "Version" in out:
        out["ApiVersion"] = out.pop("Version")
    return out
