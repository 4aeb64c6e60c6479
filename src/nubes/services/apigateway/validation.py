"""What a REST API checks about a request before its integration runs: the
method's request validator (required parameters, the body against its model),
and binary payload handling (binaryMediaTypes, contentHandling)."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from nubes.services.apigateway.payloads import Incoming, media_matches
from nubes.services.apigateway.schema import validate


def check_request(snapshot: dict[str, Any], method: dict[str, Any], req: Incoming) -> str | None:
    """AWS's 400 message when the method's validator refuses the request, else None."""
    validator = (snapshot.get("Validators") or {}).get(method.get("requestValidatorId") or "")
    if validator is None:
        return None
    if validator.get("validateRequestParameters"):
        missing = _missing_parameters(method.get("requestParameters") or {}, req)
        if missing:
            return f"Missing required request parameters: [{', '.join(missing)}]"
    body_checked = validator.get("validateRequestBody") and method.get("requestModels")
    if body_checked and not _body_valid(snapshot.get("Models") or {}, method["requestModels"], req):
        return "Invalid request body"
    return None


def _missing_parameters(declared: dict[str, Any], req: Incoming) -> list[str]:
    query = {k for k, _ in req.query_pairs}
    missing = []
    for name, required in declared.items():
        if not required or required == "false":
            continue
        parts = name.split(".", 3)
        if len(parts) != 4:
            continue
        place, key = parts[2], parts[3]
        present = (
            (place == "querystring" and key in query)
            or (place == "header" and key.lower() in req.headers)
            or (place == "path" and bool(req.path_parameters.get(key)))
        )
        if not present:
            missing.append(key)
    return missing


def _body_valid(models: dict[str, Any], request_models: dict[str, str], req: Incoming) -> bool:
    kind = req.headers.get("content-type", "application/json").split(";")[0].strip() or "application/json"
    name = request_models.get(kind) or request_models.get("$default")
    if name is None:
        return True
    model = models.get(name)
    if model is None or not model.get("schema"):
        return True
    try:
        schema = orjson.loads(model["schema"])
        instance = orjson.loads(req.body) if req.body else None
    except orjson.JSONDecodeError:
        return False

    def lookup(other: str) -> dict[str, Any] | None:
        found = models.get(other)
        if not found or not found.get("schema"):
            return None
        doc: dict[str, Any] = orjson.loads(found["schema"])
        return doc

    return not validate(instance, schema, lookup)


def is_binary(binary_types: list[str] | None, kind: str | None) -> bool:
    """Whether a payload of media type ``kind`` is binary for this API."""
    return bool(binary_types and kind and any(media_matches(kind, b) for b in binary_types))


def request_for_integration(body: bytes, binary: bool, content_handling: str | None) -> bytes:
    """The request payload a non-proxy integration gets: a binary body is passed
    through unless CONVERT_TO_TEXT asks for base64; CONVERT_TO_BINARY decodes
    a base64 text body."""
    if binary and content_handling == "CONVERT_TO_TEXT":
        return base64.b64encode(body)
    if not binary and content_handling == "CONVERT_TO_BINARY":
        try:
            return base64.b64decode(body, validate=True)
        except ValueError:
            return body
    return body


def response_from_integration(body: bytes, content_handling: str | None) -> bytes:
    """The method response payload after an integration response's contentHandling."""
    if content_handling == "CONVERT_TO_BINARY":
        try:
            return base64.b64decode(body, validate=True)
        except ValueError:
            return body
    if content_handling == "CONVERT_TO_TEXT":
        try:
            body.decode()
        except UnicodeDecodeError:
            return base64.b64encode(body)
    return body
