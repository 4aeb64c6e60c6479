"""For every operation nubes implements: what botocore serializes we route and
parse to the same input; what we serialize botocore parses back to the same
output; every modeled error comes back as ClientError with its code.

The list of operations comes from the providers themselves, so this suite grows
with every service.
"""

from __future__ import annotations

import inspect
import io
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from botocore import parsers, serialize
from botocore.awsrequest import create_request_object, prepare_request_dict
from botocore.compat import HTTPHeaders
from botocore.model import OperationModel
from botocore.response import StreamingBody

from nubes.app import operation_method_name
from nubes.aws.errors import AwsError
from nubes.aws.protocol import WireRequest, parse_request, serialize_error, serialize_response
from nubes.aws.spec import build_catalog, service_index
from nubes.gateway.routing import resolve
from nubes.services.registry import discover

from .shapes import VARIANTS, Generator, normalize

#: protocols both botocore and nubes speak
_PROTOCOLS = ("json", "rest-json", "rest-xml", "smithy-rpc-v2-cbor", "query")


def _implemented() -> list[tuple[str, str]]:
    pairs = []
    for model, spec in sorted(discover().items()):
        index = service_index(model)
        for op_name in index.model.operation_names:
            method = getattr(spec.provider, operation_method_name(op_name), None)
            if method is not None and inspect.iscoroutinefunction(method):
                pairs.append((model, op_name))
    return pairs


IMPLEMENTED = _implemented()
#: every (model, operation, protocol): a model may list several protocols
#: (CloudWatch: CBOR, JSON, query) and clients pick different ones
WITH_PROTOCOLS = [
    (model, op, protocol)
    for model, op in IMPLEMENTED
    for protocol in service_index(model).protocols
    if protocol in _PROTOCOLS and not (protocol == "query" and service_index(model).query_compatible)
]
CATALOG = build_catalog(discover().keys())


def _skip_unsupported(op: OperationModel) -> None:
    for shape in (op.input_shape, op.output_shape):
        if shape is None:
            continue
        for member in shape.members.values():
            if member.serialization.get("eventstream") or member.metadata.get("eventstream"):
                pytest.skip("event streams are not round-tripped")


def _wire_request(model: str, op: OperationModel, params: dict[str, Any], protocol: str | None = None) -> tuple[WireRequest, dict[str, str] | None]:
    index = service_index(model)
    serializer = serialize.create_serializer(protocol or index.protocol, include_validation=False)
    request_dict = serializer.serialize_to_request(params, op)
    prepare_request_dict(request_dict, endpoint_url="http://localhost:4566")
    prepared = create_request_object(request_dict).prepare()
    url = urlsplit(prepared.url)
    headers = {k.lower(): (v.decode() if isinstance(v, bytes) else str(v)) for k, v in prepared.headers.items()}
    body = prepared.body or b""
    if isinstance(body, str):
        body = body.encode()
    elif not isinstance(body, bytes):
        body = body.read()
    query: dict[str, list[str]] = {}
    for key, value in parse_qsl(url.query, keep_blank_values=True):
        query.setdefault(key, []).append(value)
    form = None
    if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        form = dict(parse_qsl(body.decode(), keep_blank_values=True))
    request = WireRequest(prepared.method, url.path, query, headers, body)
    return request, form


def _strip_streaming(shape: Any, value: dict[str, Any]) -> dict[str, Any]:
    payload = shape.serialization.get("payload")
    if payload and shape.members[payload].type_name == "blob":
        return {k: v for k, v in value.items() if k != payload}
    return value


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(("model", "operation", "protocol"), WITH_PROTOCOLS)
def test_request_roundtrip(model: str, operation: str, protocol: str, variant: str) -> None:
    """botocore's serialized request routes to the operation and parses back equal."""
    index = service_index(model)
    op = index.model.operation_model(operation)
    _skip_unsupported(op)
    params = Generator(variant).value(op.input_shape) if op.input_shape is not None else {}
    request, form = _wire_request(model, op, params, protocol)
    route = resolve(CATALOG, request, index.signing_name, form)
    if route.operation.name != operation and op.deprecated and route.operation.http.get("requestUri") == op.http.get("requestUri"):
        pytest.skip(f"{operation} is deprecated and indistinguishable on the wire from {route.operation.name}")
    assert (route.index.name, route.operation.name, route.protocol) == (model, operation, protocol)
    parsed = parse_request(route.index, route.operation, request, labels=route.labels, form=route.form, protocol=route.protocol)
    assert normalize(parsed) == normalize(params)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(("model", "operation", "protocol"), WITH_PROTOCOLS)
def test_response_roundtrip(model: str, operation: str, protocol: str, variant: str) -> None:
    """What nubes serializes, botocore parses back to the same output."""
    index = service_index(model)
    op = index.model.operation_model(operation)
    _skip_unsupported(op)
    if op.output_shape is None:
        return
    result = Generator(variant).value(op.output_shape)
    payload = op.output_shape.serialization.get("payload")
    if payload and op.output_shape.members[payload].type_name == "blob":
        # given bytes, botocore decodes even a streaming payload as text; streams are
        # compared without their payload anyway
        result[payload] = b'{"text": "payloads that are not streams are UTF-8"}'
    response = serialize_response(index, op, result, "req-1", protocol=protocol)
    assert isinstance(response.body, bytes)
    parser = parsers.create_parser(protocol)
    body: Any = response.body
    if op.has_streaming_output:
        body = StreamingBody(io.BytesIO(response.body), len(response.body))
    parsed = parser.parse(
        {"status_code": response.status, "headers": HTTPHeaders.from_dict(response.headers), "body": body},
        op.output_shape,
    )
    assert "Error" not in parsed, parsed.get("Error")
    expected = _strip_streaming(op.output_shape, result)
    got = _strip_streaming(op.output_shape, parsed)
    assert normalize(got) == normalize(expected)


def _error_cases() -> list[tuple[str, str]]:
    cases = []
    for model in sorted({m for m, _ in IMPLEMENTED}):
        index = service_index(model)
        for name in index.model.shape_names:
            shape = index.model.shape_for(name)
            if shape.metadata.get("exception"):
                cases.append((model, str(shape.metadata.get("error", {}).get("code", name))))
    return cases


@pytest.mark.parametrize(("model", "code"), _error_cases())
def test_error_roundtrip(model: str, code: str) -> None:
    """Every modeled error reaches botocore with its code, message and status, in
    every protocol the model lists."""
    index = service_index(model)
    op = index.model.operation_model(next(o for m, o in IMPLEMENTED if m == model))
    for protocol in {p for m, _, p in WITH_PROTOCOLS if m == model}:
        _check_error(index, op, code, protocol)


def _check_error(index: Any, op: OperationModel, code: str, protocol: str) -> None:
    response = serialize_error(index, AwsError(code, "it went wrong"), "req-1", op=op, protocol=protocol)
    assert isinstance(response.body, bytes)
    parser = parsers.create_parser(protocol)
    parsed = parser.parse(
        {"status_code": response.status, "headers": HTTPHeaders.from_dict(response.headers), "body": response.body},
        op.output_shape,
    )
    assert parsed["Error"]["Code"] == code
    assert parsed["Error"]["Message"] == "it went wrong"
    assert response.status >= 400
    assert parsed["ResponseMetadata"]["HTTPStatusCode"] == response.status
