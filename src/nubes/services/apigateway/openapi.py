"""OpenAPI 3 / Swagger 2 documents for REST APIs (ImportRestApi, PutRestApi):
read the document and the ``x-amazon-apigateway-*`` extensions into the parts of
an API document, then merge those parts into a new or an existing API.

Everything is read and checked before anything is stored, so a bad document
changes nothing; errors name the place in the document that is wrong."""

from __future__ import annotations

import copy
from typing import Any

import orjson

from nubes.aws.errors import AwsError
from nubes.services.apigateway.store import new_id, now

_METHODS = {"get": "GET", "put": "PUT", "post": "POST", "delete": "DELETE", "patch": "PATCH", "head": "HEAD",
            "options": "OPTIONS", "x-amazon-apigateway-any-method": "ANY"}  # fmt: skip
_TYPES = ("aws", "aws_proxy", "http", "http_proxy", "mock")
_PASSTHROUGH = ("when_no_match", "when_no_templates", "never")


def invalid(where: str, why: str = "") -> AwsError:
    """The BadRequestException for a document that is wrong at ``where``."""
    return AwsError("BadRequestException", f"Invalid OpenAPI input: {where}" + (f" ({why})" if why else ""), 400)


def load_document(body: bytes | str | None) -> dict[str, Any]:
    """A JSON or YAML OpenAPI 3 / Swagger 2 document as a dict."""
    raw = body.encode() if isinstance(body, str) else (body or b"")
    if not raw.strip():
        raise invalid("body", "the document is empty")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        import yaml  # only YAML documents need it (and it is slow to import)

        try:
            doc = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise invalid("body", f"neither JSON nor YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(doc, dict):
        raise invalid("body", "the document is not an object")
    if not str(doc.get("openapi", "")).startswith("3") and str(doc.get("swagger", "")) != "2.0":
        raise invalid("openapi", "expected openapi 3.x or swagger 2.0")
    if not isinstance(doc.get("paths", {}), dict):
        raise invalid("paths")
    return doc


def _obj(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid(where, "expected an object")
    return value


def _schemes(doc: dict[str, Any]) -> dict[str, Any]:
    if "swagger" in doc:
        return _obj(doc.get("securityDefinitions"), "securityDefinitions")
    return _obj(_obj(doc.get("components"), "components").get("securitySchemes"), "components.securitySchemes")


def _schemas(doc: dict[str, Any]) -> tuple[dict[str, Any], str]:
    if "swagger" in doc:
        return _obj(doc.get("definitions"), "definitions"), "definitions"
    return _obj(_obj(doc.get("components"), "components").get("schemas"), "components.schemas"), "components.schemas"


def _authorizer(name: str, scheme: dict[str, Any], where: str) -> dict[str, Any]:
    ext = _obj(scheme.get("x-amazon-apigateway-authorizer"), where + ".x-amazon-apigateway-authorizer")
    kind = str(ext.get("type", "")).upper()
    if kind not in ("TOKEN", "REQUEST", "COGNITO_USER_POOLS"):
        raise invalid(where + ".x-amazon-apigateway-authorizer.type", "expected token, request or cognito_user_pools")
    out: dict[str, Any] = {"name": name, "type": kind, "authorizerResultTtlInSeconds": int(ext.get("authorizerResultTtlInSeconds", 300))}
    if kind == "COGNITO_USER_POOLS":
        if not ext.get("providerARNs"):
            raise invalid(where + ".x-amazon-apigateway-authorizer.providerARNs")
        out["providerARNs"] = list(ext["providerARNs"])
    else:
        if not ext.get("authorizerUri"):
            raise invalid(where + ".x-amazon-apigateway-authorizer.authorizerUri")
        out["authorizerUri"] = ext["authorizerUri"]
    source = ext.get("identitySource")
    if not source and scheme.get("in") == "header" and scheme.get("name"):
        source = f"method.request.header.{scheme['name']}"
    if source:
        out["identitySource"] = source
    for key in ("identityValidationExpression", "authorizerCredentials"):
        if ext.get(key):
            out[key] = ext[key]
    return out


def _integration(ext: Any, where: str) -> dict[str, Any]:
    ext = _obj(ext, where)
    kind = str(ext.get("type", "")).lower()
    if kind not in _TYPES:
        raise invalid(where + ".type", "expected one of aws, aws_proxy, http, http_proxy, mock")
    out: dict[str, Any] = {"type": kind.upper(), "timeoutInMillis": int(ext.get("timeoutInMillis", 29000))}
    if kind != "mock":
        if not ext.get("uri"):
            raise invalid(where + ".uri")
        if not ext.get("httpMethod"):
            raise invalid(where + ".httpMethod")
        out["uri"], out["httpMethod"] = str(ext["uri"]), str(ext["httpMethod"]).upper()
    passthrough = str(ext.get("passthroughBehavior", "when_no_match")).lower()
    if passthrough not in _PASSTHROUGH:
        raise invalid(where + ".passthroughBehavior")
    out["passthroughBehavior"] = passthrough.upper()
    for key in ("requestTemplates", "requestParameters"):
        if key in ext:
            out[key] = {str(k): str(v) for k, v in _obj(ext[key], f"{where}.{key}").items()}
    for key in ("contentHandling", "credentials", "cacheNamespace", "connectionType", "connectionId"):
        if ext.get(key):
            out[key] = ext[key]
    responses: dict[str, Any] = {}
    for pattern, response in _obj(ext.get("responses"), where + ".responses").items():
        response = _obj(response, f"{where}.responses.{pattern}")
        if not response.get("statusCode"):
            raise invalid(f"{where}.responses.{pattern}.statusCode")
        status = str(response["statusCode"])
        entry: dict[str, Any] = {"statusCode": status}
        if pattern != "default":
            entry["selectionPattern"] = pattern
        for key in ("responseTemplates", "responseParameters", "contentHandling"):
            if response.get(key):
                entry[key] = response[key]
        responses[status] = entry
    if responses or kind in ("aws_proxy", "http_proxy"):
        out["integrationResponses"] = responses
    return out


def _ref_name(ref: Any) -> str | None:
    return str(ref).rsplit("/", 1)[-1] if isinstance(ref, str) and ref.startswith("#/") else None


def _method(doc: dict[str, Any], op: dict[str, Any], inherited: list[Any], where: str, ctx: dict[str, Any]) -> dict[str, Any]:
    """One operation object as a method record (authorizers named, not yet ids)."""
    method: dict[str, Any] = {"authorizationType": "NONE", "apiKeyRequired": False}
    if op.get("operationId"):
        method["operationName"] = str(op["operationId"])
    params: dict[str, bool] = {}
    models: dict[str, str] = {}
    for i, param in enumerate([*inherited, *(op.get("parameters") or [])]):
        param = _obj(param, f"{where}.parameters[{i}]")
        place = {"path": "path", "query": "querystring", "header": "header"}.get(str(param.get("in")))
        if place is not None:
            if not param.get("name"):
                raise invalid(f"{where}.parameters[{i}].name")
            params[f"method.request.{place}.{param['name']}"] = bool(param.get("required"))
        elif param.get("in") == "body" and _ref_name(_obj(param.get("schema"), where).get("$ref")):
            models["application/json"] = str(_ref_name(param["schema"]["$ref"]))
    for kind, media in _obj(_obj(op.get("requestBody"), where + ".requestBody").get("content"), where + ".requestBody.content").items():
        name = _ref_name(_obj(_obj(media, where).get("schema"), where).get("$ref"))
        if name:
            models[kind] = name
    if params:
        method["requestParameters"] = params
    if models:
        if any(name not in ctx["models"] for name in models.values()):
            raise invalid(where + ".requestBody", "references a model that is not defined")
        method["requestModels"] = models
    _security(op.get("security", doc.get("security")), where, ctx, method)
    validator = op.get("x-amazon-apigateway-request-validator", doc.get("x-amazon-apigateway-request-validator"))
    if validator is not None:
        if validator not in ctx["validators"]:
            raise invalid(where + ".x-amazon-apigateway-request-validator", f"no validator named {validator}")
        method["Validator"] = validator
    responses = {}
    for code in _obj(op.get("responses"), where + ".responses"):
        if str(code).isdigit():
            responses[str(code)] = {"statusCode": str(code)}
    if responses:
        method["methodResponses"] = responses
    if "x-amazon-apigateway-integration" in op:
        method["methodIntegration"] = _integration(op["x-amazon-apigateway-integration"], where + ".x-amazon-apigateway-integration")
    return method


def _security(requirements: Any, where: str, ctx: dict[str, Any], method: dict[str, Any]) -> None:
    for requirement in requirements or []:
        for name, scopes in _obj(requirement, where + ".security").items():
            scheme = ctx["schemes"].get(name)
            if scheme is None:
                raise invalid(where + ".security", f"no security scheme named {name}")
            if name in ctx["authorizers"]:
                auth = ctx["authorizers"][name]
                method["authorizationType"] = "COGNITO_USER_POOLS" if auth["type"] == "COGNITO_USER_POOLS" else "CUSTOM"
                method["Authorizer"] = name
                if scopes:
                    method["authorizationScopes"] = list(scopes)
            elif str(scheme.get("x-amazon-apigateway-authtype", "")).lower() == "awssigv4":
                method["authorizationType"] = "AWS_IAM"
            elif scheme.get("type") == "apiKey":
                method["apiKeyRequired"] = True


def read_rest_api(doc: dict[str, Any]) -> dict[str, Any]:
    """The parts of a REST API a document describes: settings, resources by path
    (with methods), authorizers and models by name, validators by name."""
    info = _obj(doc.get("info"), "info")
    schemes = _schemes(doc)
    authorizers = {name: _authorizer(name, _obj(s, f"securitySchemes.{name}"), f"securitySchemes.{name}")
                   for name, s in schemes.items() if isinstance(s, dict) and "x-amazon-apigateway-authorizer" in s}  # fmt: skip
    schemas, schemas_where = _schemas(doc)
    models = {}
    for name, schema in schemas.items():
        models[str(name)] = {"name": str(name), "contentType": "application/json",
                             "schema": orjson.dumps(_obj(schema, f"{schemas_where}.{name}")).decode()}  # fmt: skip
    validators = {}
    for name, v in _obj(doc.get("x-amazon-apigateway-request-validators"), "x-amazon-apigateway-request-validators").items():
        v = _obj(v, f"x-amazon-apigateway-request-validators.{name}")
        validators[str(name)] = {"name": str(name), "validateRequestBody": bool(v.get("validateRequestBody")),
                                 "validateRequestParameters": bool(v.get("validateRequestParameters"))}  # fmt: skip
    ctx = {"schemes": schemes, "authorizers": authorizers, "models": models, "validators": validators}
    resources: dict[str, dict[str, Any]] = {"/": {}}
    for path, item in (doc.get("paths") or {}).items():
        where = f"paths.{path}"
        if not isinstance(path, str) or not path.startswith("/"):
            raise invalid(where, "a path starts with /")
        item = _obj(item, where)
        inherited = item.get("parameters") or []
        methods: dict[str, Any] = {}
        for key, op in item.items():
            if key in _METHODS:
                methods[_METHODS[key]] = _method(doc, _obj(op, f"{where}.{key}"), inherited, f"{where}.{key}", ctx)
        normal = "/" + "/".join(p for p in path.split("/") if p)
        resources.setdefault(normal, {}).update(methods)
    binary = doc.get("x-amazon-apigateway-binary-media-types")
    if binary is not None and (not isinstance(binary, list) or not all(isinstance(b, str) for b in binary)):
        raise invalid("x-amazon-apigateway-binary-media-types", "expected a list of media types")
    return {"name": info.get("title"), "description": info.get("description"), "version": info.get("version"),
            "binaryMediaTypes": binary, "apiKeySource": doc.get("x-amazon-apigateway-api-key-source"),
            "resources": resources, "authorizers": authorizers, "models": models, "validators": validators}  # fmt: skip


def new_rest_api(parts: dict[str, Any]) -> dict[str, Any]:
    """A fresh API document (ImportRestApi) from the parts of a document."""
    if not parts.get("name"):
        raise invalid("info.title", "an API needs a name")
    root = new_id(10)
    api: dict[str, Any] = {
        "Version": 1, "Id": new_id(), "name": parts["name"], "createdDate": now(), "rootResourceId": root,
        "apiKeySource": "HEADER", "tags": {}, "endpointConfiguration": {"types": ["EDGE"]},
        "disableExecuteApiEndpoint": False, "Resources": {root: {"id": root, "path": "/"}}, "Authorizers": {},
        "Stages": {}, "Validators": {}, "Models": {},
    }  # fmt: skip
    api["id"] = api["Id"]
    merge_rest_api(api, parts, "overwrite")
    return api


def merge_rest_api(api: dict[str, Any], parts: dict[str, Any], mode: str) -> None:
    """Put the document's parts into ``api``: ``overwrite`` replaces the definition
    (resources, methods, authorizers, models, validators), ``merge`` adds to it and
    replaces only the methods the document defines."""
    if mode not in ("overwrite", "merge"):
        raise AwsError("BadRequestException", f"Invalid mode: {mode}. Must be one of [merge, overwrite]", 400)
    root = api["rootResourceId"]
    if mode == "overwrite":
        api["Resources"] = {root: {"id": root, "path": "/"}}
        api["Authorizers"], api["Models"], api["Validators"] = {}, {}, {}
        for key in ("description", "version", "binaryMediaTypes"):
            api.pop(key, None)
    for key in ("name", "description", "version", "binaryMediaTypes", "apiKeySource"):
        if parts.get(key) is not None:
            api[key] = parts[key]
    auth_ids = _by_name(api["Authorizers"], parts["authorizers"], 6)
    validator_ids = _by_name(api["Validators"], parts["validators"], 6)
    for name, model in parts["models"].items():
        old = api["Models"].get(name)
        api["Models"][name] = {**model, "id": old["id"] if old else new_id(6)}
    by_path = {r["path"]: r for r in api["Resources"].values()}
    for path in sorted(parts["resources"], key=lambda p: p.count("/")):
        resource = _ensure_path(api, by_path, path)
        for verb, method in parts["resources"][path].items():
            record = copy.deepcopy(method)
            record["httpMethod"] = verb
            if "Authorizer" in record:
                record["authorizerId"] = auth_ids[record.pop("Authorizer")]
            if "Validator" in record:
                record["requestValidatorId"] = validator_ids[record.pop("Validator")]
            if "methodIntegration" in record:
                record["methodIntegration"].setdefault("cacheNamespace", resource["id"])
            resource.setdefault("resourceMethods", {})[verb] = record


def _by_name(existing: dict[str, Any], new: dict[str, Any], id_length: int) -> dict[str, str]:
    """Add/replace records by name, keeping the id of one with the same name."""
    ids = {}
    named = {v.get("name"): k for k, v in existing.items()}
    for name, record in new.items():
        record_id = named.get(name) or new_id(id_length)
        existing[record_id] = {**record, "id": record_id}
        ids[name] = record_id
    return ids


def _ensure_path(api: dict[str, Any], by_path: dict[str, dict[str, Any]], path: str) -> dict[str, Any]:
    if path in by_path:
        return by_path[path]
    parent_path = path.rsplit("/", 1)[0] or "/"
    parent = _ensure_path(api, by_path, parent_path)
    resource = {"id": new_id(6), "parentId": parent["id"], "pathPart": path.rsplit("/", 1)[1], "path": path}
    api["Resources"][resource["id"]] = resource
    by_path[path] = resource
    return resource
