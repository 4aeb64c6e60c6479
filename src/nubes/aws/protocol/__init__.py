"""One generic parser and serializer per protocol, driven by botocore's models.

A service implements semantics only: requests reach it as dicts shaped like the
operation's input shape; its dict results and ``AwsError``s leave in the
protocol the client speaks.
"""

from __future__ import annotations

from typing import Any

import orjson
from botocore.model import OperationModel, StructureShape

from nubes.aws.errors import AwsError
from nubes.aws.protocol.query import (
    parse_query_request,
    serialize_query_error,
    serialize_query_response,
    xml_namespace,
)
from nubes.aws.protocol.rest import (
    parse_rest_request,
    rest_json_error_body,
    rest_xml_error_body,
    serialize_rest_response,
)
from nubes.aws.protocol.types import WireRequest, WireResponse
from nubes.aws.protocol.values import Problems, from_json, json_output, to_cbor
from nubes.aws.spec import ServiceIndex

__all__ = ["WireRequest", "WireResponse", "parse_request", "serialize_error", "serialize_response"]


_JSON_CONTENT_TYPES: dict[str, str] = {}


def _json_content_type(index: ServiceIndex) -> str:
    content_type = _JSON_CONTENT_TYPES.get(index.name)
    if content_type is None:
        content_type = f"application/x-amz-json-{index.model.metadata.get('jsonVersion', '1.0')}"
        _JSON_CONTENT_TYPES[index.name] = content_type
    return content_type


def parse_request(
    index: ServiceIndex,
    op: OperationModel,
    request: WireRequest,
    *,
    labels: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    protocol: str | None = None,
) -> dict[str, Any]:
    """Parse and validate the input of ``op`` from ``request`` (in ``protocol``,
    by default the model's own)."""
    protocol = protocol or index.protocol
    if form is not None:  # a query-protocol request (also old SDKs of JSON services)
        return parse_query_request(op, form)
    if protocol in ("json", "smithy-rpc-v2-cbor"):
        shape = op.input_shape
        if shape is None:
            return {}
        cbor = protocol == "smithy-rpc-v2-cbor"
        doc = _load_document(request.body, cbor)
        if not isinstance(doc, dict):
            raise AwsError("SerializationException", "Request body must be a JSON object", 400)
        problems = Problems()
        params = from_json(shape, doc, "", problems, cbor=cbor)
        problems.raise_if_any()
        return params if isinstance(params, dict) else {}
    if protocol in ("rest-json", "rest-xml"):
        return parse_rest_request(op, request, labels or {}, protocol == "rest-xml")
    raise AwsError("InternalFailure", f"nubes cannot parse the {protocol} protocol", 500)


def _load_document(body: bytes, cbor: bool) -> Any:
    if not body:
        return {}
    if cbor:
        import cbor2  # only the RPCv2 CBOR services need it (~0.7 MB)

        try:
            return cbor2.loads(body)
        except (cbor2.CBORDecodeError, ValueError):
            raise AwsError("SerializationException", "Could not parse request body as CBOR", 400) from None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise AwsError(
            "SerializationException", "Start of structure or map found where not expected.", 400
        ) from None


def serialize_response(
    index: ServiceIndex,
    op: OperationModel,
    result: dict[str, Any],
    request_id: str,
    *,
    protocol: str | None = None,
    headers: dict[str, str] | None = None,
) -> WireResponse:
    """Serialize an operation's output in the protocol the request used."""
    out_headers = headers if headers is not None else {}
    protocol = protocol or index.protocol
    shape = op.output_shape
    if protocol == "json":
        out_headers["Content-Type"] = _json_content_type(index)
        if shape is None:
            return WireResponse(200, out_headers, b"{}")
        return WireResponse(200, out_headers, orjson.dumps(json_output(shape, result)))
    if protocol == "smithy-rpc-v2-cbor":
        out_headers["Content-Type"] = "application/cbor"
        out_headers["smithy-protocol"] = "rpc-v2-cbor"
        doc = to_cbor(shape, result) if isinstance(shape, StructureShape) else {}
        import cbor2

        return WireResponse(200, out_headers, cbor2.dumps(doc, datetime_as_timestamp=True))
    if protocol == "query":
        out_headers["Content-Type"] = "text/xml"
        return WireResponse(200, out_headers, serialize_query_response(op, result, request_id))
    return serialize_rest_response(op, result, protocol == "rest-xml", out_headers)


def error_status(index: ServiceIndex | None, error: AwsError) -> int:
    if error.status is not None:
        return error.status
    if index is not None and error.code in index.error_status:
        return index.error_status[error.code]
    return 400 if error.sender_fault else 500


def serialize_error(
    index: ServiceIndex | None,
    error: AwsError,
    request_id: str,
    *,
    protocol: str | None = None,
    op: OperationModel | None = None,
) -> WireResponse:
    """Serialize an error so botocore raises ``ClientError`` with its code."""
    status = error_status(index, error)
    headers = dict(error.headers)
    protocol = protocol or (index.protocol if index is not None else "json")
    if protocol == "query":
        ns = xml_namespace(op) if op is not None else "https://nubes/doc/"
        headers["Content-Type"] = "text/xml"
        return WireResponse(status, headers, serialize_query_error(error, request_id, ns))
    if protocol == "rest-xml":
        headers["Content-Type"] = "application/xml"
        return WireResponse(status, headers, rest_xml_error_body(error, request_id))
    headers["x-amzn-ErrorType"] = error.code
    if index is not None and index.query_compatible:
        fault = "Sender" if error.sender_fault else "Receiver"
        query_code = error.fields.pop("QueryErrorCode", error.code)
        headers["x-amzn-query-error"] = f"{query_code};{fault}"
    if protocol == "smithy-rpc-v2-cbor":
        headers["Content-Type"] = "application/cbor"
        headers["smithy-protocol"] = "rpc-v2-cbor"
        doc = {"__type": error.code, "message": error.message, **error.fields}
        import cbor2

        return WireResponse(status, headers, cbor2.dumps(doc))
    if protocol == "json":
        headers["Content-Type"] = _json_content_type(index) if index else "application/x-amz-json-1.1"
        doc = {"__type": error.code, "message": error.message, **error.fields}
        return WireResponse(status, headers, orjson.dumps(doc, default=str))
    headers["Content-Type"] = "application/json"
    return WireResponse(status, headers, rest_json_error_body(error))
