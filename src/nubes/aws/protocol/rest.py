"""The ``rest-json`` and ``rest-xml`` protocols: members in the URI, query string,
headers and body (Lambda, API Gateway, S3, Scheduler, ...)."""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import unquote

import orjson
from botocore.model import ListShape, MapShape, OperationModel, Shape, StructureShape

from nubes.aws.errors import AwsError
from nubes.aws.protocol.types import WireRequest, WireResponse
from nubes.aws.protocol.values import (
    Problems,
    check_required,
    format_timestamp,
    from_json,
    scalar_from_text,
    to_json,
)
from nubes.aws.protocol.xmlcodec import parse_document, read_element, write_element


def _header_value(shape: Shape, text: str, path: str, problems: Problems) -> Any:
    if shape.serialization.get("jsonvalue") or shape.metadata.get("jsonvalue"):
        try:
            return orjson.loads(base64.b64decode(text))
        except (binascii.Error, orjson.JSONDecodeError, ValueError):
            problems.add(text, path, "Member must be base64-encoded JSON")
            return None
    if shape.type_name == "list":
        assert isinstance(shape, ListShape)
        return [scalar_from_text(shape.member, part.strip(), path, problems, "rfc822")
                for part in text.split(",")]  # fmt: skip
    return scalar_from_text(shape, text, path, problems, "rfc822")


def parse_rest_request(
    op: OperationModel, request: WireRequest, labels: dict[str, str], xml: bool
) -> dict[str, Any]:
    """Pull every input member from where the model puts it."""
    shape = op.input_shape
    if not isinstance(shape, StructureShape):
        return {}
    problems = Problems()
    params: dict[str, Any] = {}
    payload_name = shape.serialization.get("payload")
    body_members: dict[str, Shape] = {}
    # a querystring map member takes the query keys no named member claims
    request.claimed_query.update(
        str(m.serialization.get("name", n))
        for n, m in shape.members.items()
        if m.serialization.get("location") == "querystring" and m.type_name != "map"
    )
    # and the literal query of the request URI (``/restapis?mode=import``) is the route's, not the map's
    literal_query = str(op.http.get("requestUri", "")).partition("?")[2]
    request.claimed_query.update(part.partition("=")[0] for part in literal_query.split("&") if part)
    for name, member in shape.members.items():
        location = member.serialization.get("location")
        loc_name = member.serialization.get("name", name)
        path = name[:1].lower() + name[1:]
        if location == "uri":
            if loc_name in labels:
                # labels come from the path as sent (percent-encoded): decode exactly once,
                # so an S3 key "%41" (sent as %2541) stays "%41" and an ARN's %2F is "/"
                params[name] = scalar_from_text(member, unquote(labels[loc_name]), path, problems, "iso8601")
        elif location == "querystring":
            _read_query_member(params, name, member, loc_name, request, path, problems)
        elif location == "header":
            text = request.headers.get(loc_name.lower())
            if text is not None:
                params[name] = _header_value(member, text, path, problems)
        elif location == "headers":
            prefix = loc_name.lower()
            found = {k[len(prefix):]: v for k, v in request.headers.items() if k.startswith(prefix)}
            if found:
                params[name] = found
        elif name == payload_name:
            _read_payload(params, name, member, request, xml, path, problems)
        elif location is None:
            body_members[name] = member
    if body_members and request.body and payload_name is None:
        _read_body_members(params, shape, body_members, request.body, xml, problems)
    check_required(shape, params, "", problems)
    problems.raise_if_any()
    return params


def _read_query_member(
    params: dict[str, Any], name: str, member: Shape, loc_name: str,
    request: WireRequest, path: str, problems: Problems,
) -> None:  # fmt: skip
    if member.type_name == "map":
        assert isinstance(member, MapShape)
        claimed = request.claimed_query
        found = {k: (v if member.value.type_name == "list" else v[0])
                 for k, v in request.query.items() if k not in claimed}  # fmt: skip
        if found:
            params[name] = found
        return
    values = request.query.get(loc_name)
    if values is None:
        return
    if member.type_name == "list":
        assert isinstance(member, ListShape)
        params[name] = [scalar_from_text(member.member, v, path, problems, "iso8601") for v in values]
    else:
        params[name] = scalar_from_text(member, values[0], path, problems, "iso8601")


def _read_payload(
    params: dict[str, Any], name: str, member: Shape, request: WireRequest,
    xml: bool, path: str, problems: Problems,
) -> None:  # fmt: skip
    if member.type_name in ("blob", "string"):
        if member.serialization.get("streaming") or member.metadata.get("streaming"):
            params[name] = request.body_stream if request.body_stream is not None else request.body
        elif request.body:
            params[name] = request.body if member.type_name == "blob" else request.body.decode()
        return
    if not request.body:
        return
    if xml:
        params[name] = read_element(member, parse_document(request.body), path, problems)
    else:
        params[name] = from_json(member, _load_json(request.body), path, problems)


def _read_body_members(
    params: dict[str, Any], shape: StructureShape, members: dict[str, Shape],
    body: bytes, xml: bool, problems: Problems,
) -> None:  # fmt: skip
    if xml:
        root = parse_document(body)
        parsed = read_element(shape, root, "", Problems())
        for name in members:
            if name in parsed:
                params[name] = parsed[name]
        return
    doc = _load_json(body)
    if not isinstance(doc, dict):
        raise AwsError("SerializationException", "Request body must be a JSON object", 400)
    for name, member in members.items():
        key = member.serialization.get("name", name)
        if doc.get(key) is not None:
            lower = name[:1].lower() + name[1:]
            params[name] = from_json(member, doc[key], lower, problems)


def _load_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise AwsError("SerializationException", "Could not parse request body into json", 400) from None


# -- responses --------------------------------------------------------------------


def serialize_rest_response(
    op: OperationModel, result: dict[str, Any], xml: bool, headers: dict[str, str]
) -> WireResponse:
    """Headers, status code and body of a REST operation's output."""
    status = int(op.http.get("responseCode", 200))
    shape = op.output_shape
    if not isinstance(shape, StructureShape):
        return WireResponse(status, headers, b"")
    payload_name = shape.serialization.get("payload")
    body_members: dict[str, Any] = {}
    body: Any = b""
    for name, value in result.items():
        member = shape.members.get(name)
        if member is None or value is None:
            continue
        location = member.serialization.get("location")
        loc_name = member.serialization.get("name", name)
        if location == "header":
            headers[loc_name] = _header_text(member, value)
        elif location == "headers":
            for k, v in value.items():
                headers[f"{loc_name}{k}"] = str(v)
        elif location == "statusCode":
            status = int(value)
        elif name == payload_name:
            body = _payload_body(member, value, xml, headers)
        elif location is None:
            body_members[name] = value
    if payload_name is None:
        if xml:
            if body_members:
                out: list[str] = ['<?xml version="1.0" encoding="UTF-8"?>']
                write_element(out, shape, body_members, shape.serialization.get("name", shape.name))
                body = "".join(out).encode()
                headers.setdefault("Content-Type", "application/xml")
        else:
            body = orjson.dumps(to_json(shape, body_members))
            headers.setdefault("Content-Type", "application/json")
    return WireResponse(status, headers, body)


def _payload_body(member: Shape, value: Any, xml: bool, headers: dict[str, str]) -> Any:
    if member.type_name == "blob":
        if isinstance(value, str):
            return value.encode()
        return value  # bytes, or a stream the gateway sends chunk by chunk
    if member.type_name == "string":
        return value.encode() if isinstance(value, str) else value
    if xml:
        out: list[str] = ['<?xml version="1.0" encoding="UTF-8"?>']
        write_element(out, member, value, member.serialization.get("name", member.name))
        headers.setdefault("Content-Type", "application/xml")
        return "".join(out).encode()
    headers.setdefault("Content-Type", "application/json")
    return orjson.dumps(to_json(member, value))


def _header_text(shape: Shape, value: Any) -> str:
    if shape.serialization.get("jsonvalue") or shape.metadata.get("jsonvalue"):
        return base64.b64encode(orjson.dumps(value)).decode()
    kind = shape.type_name
    if kind == "timestamp":
        return str(format_timestamp(value, shape.serialization.get("timestampFormat", "rfc822")))
    if kind == "boolean":
        return "true" if value else "false"
    if kind == "list":
        return ",".join(str(v) for v in value)
    if kind == "blob":
        raw = value.encode() if isinstance(value, str) else bytes(value)
        return base64.b64encode(raw).decode()
    return str(value)


def rest_json_error_body(error: AwsError) -> bytes:
    doc: dict[str, Any] = {"message": error.message, "__type": error.code}
    doc.update({k: v for k, v in error.fields.items()})
    return orjson.dumps(doc, default=str)


def rest_xml_error_body(error: AwsError, request_id: str) -> bytes:
    from xml.sax.saxutils import escape

    extra = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in error.fields.items())
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{escape(error.code)}</Code>'
        f"<Message>{escape(error.message)}</Message>{extra}<RequestId>{request_id}</RequestId></Error>"
    ).encode()
