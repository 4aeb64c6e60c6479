"""GetItem over HTTP sends the stored item's JSON as it is: the response is
byte for byte what the wire serializer makes of the item the provider returns
in-process, for every kind of value, with and without ConsumedCapacity."""

from __future__ import annotations

import asyncio
import base64
import tempfile
from pathlib import Path
from typing import Any

import botocore.session
import orjson
import pytest

from nubes.app import App
from nubes.aws.protocol.values import json_output
from nubes.gateway.asgi import Gateway
from nubes.settings import Settings

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_OUTPUT = botocore.session.get_session().get_service_model("dynamodb").operation_model("GetItem").output_shape

_scalars = st.one_of(
    st.builds(lambda s: {"S": s}, st.text(max_size=12)),
    st.builds(lambda n: {"N": n}, st.sampled_from(["0", "-1.5", "1.50", "1e3", "12345678901234567890", "0.001"])),
    st.builds(lambda b: {"B": b}, st.binary(max_size=12)),
    st.builds(lambda b: {"BOOL": b}, st.booleans()),
    st.just({"NULL": True}),
    st.builds(lambda s: {"SS": sorted(s)}, st.sets(st.text(max_size=6), min_size=1, max_size=3)),
    st.builds(lambda s: {"BS": sorted(s)}, st.sets(st.binary(max_size=6), min_size=1, max_size=3)),
    st.builds(lambda s: {"NS": sorted(s)}, st.sets(st.integers(-999, 999).map(str), min_size=1, max_size=3)),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.builds(lambda v: {"L": v}, st.lists(inner, max_size=3)),
        st.builds(lambda m: {"M": m}, st.dictionaries(st.text(min_size=1, max_size=5), inner, max_size=3)),
    ),
    max_leaves=8,
)
_items = st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda n: n != "pk"), _values, max_size=5)


def _wire(value: Any) -> Any:
    """A value as JSON on the wire (binary as base64)."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: _wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_wire(v) for v in value]
    return value


async def _http(gateway: Gateway, operation: str, params: dict[str, Any]) -> tuple[int, bytes]:
    body = orjson.dumps(_wire(params))
    scope = {
        "type": "http", "method": "POST", "path": "/", "raw_path": b"/", "query_string": b"", "scheme": "http",
        "headers": [(b"host", b"127.0.0.1:4566"), (b"content-type", b"application/x-amz-json-1.0"),
                    (b"x-amz-target", f"DynamoDB_20120810.{operation}".encode())],
        "client": ("127.0.0.1", 5555), "server": ("127.0.0.1", 4566), "http_version": "1.1",
    }  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await gateway(scope, receive, send)
    return int(sent[0]["status"]), b"".join(m.get("body", b"") for m in sent[1:])


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=60)
@given(st.lists(_items, min_size=1, max_size=4))
def test_get_item_over_http_is_what_the_serializer_writes(items: list[dict[str, Any]]) -> None:
    async def main() -> None:
        app = App(Settings(data_dir=Path(tempfile.mkdtemp(prefix="ddb-stored-")), tls_port=-1, no_auth=True))
        gateway = Gateway(app)
        await app.start()
        try:
            await app.call("dynamodb", "CreateTable", {
                "TableName": "stored", "BillingMode": "PAY_PER_REQUEST",
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            })  # fmt: skip
            for n, item in enumerate(items):
                await app.call("dynamodb", "PutItem", {"TableName": "stored", "Item": {"pk": {"S": str(n)}, **item}})
            for n in range(len(items) + 1):  # the last one is missing
                for extra in ({}, {"ReturnConsumedCapacity": "TOTAL"}, {"ReturnConsumedCapacity": "INDEXES", "ConsistentRead": True}):
                    params = {"TableName": "stored", "Key": {"pk": {"S": str(n)}}, **extra}
                    expected = orjson.dumps(json_output(_OUTPUT, await app.call("dynamodb", "GetItem", params)))
                    assert await _http(gateway, "GetItem", params) == (200, expected)
        finally:
            await app.stop()

    asyncio.run(main())


def test_projected_and_failing_reads_still_take_the_serializer() -> None:
    async def main() -> None:
        app = App(Settings(data_dir=Path(tempfile.mkdtemp(prefix="ddb-stored-")), tls_port=-1, no_auth=True))
        gateway = Gateway(app)
        await app.start()
        try:
            await app.call("dynamodb", "CreateTable", {
                "TableName": "stored", "BillingMode": "PAY_PER_REQUEST",
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            })  # fmt: skip
            item = {"pk": {"S": "a"}, "b": {"B": b"\x00\xff"}, "n": {"N": "1.5"}}
            await app.call("dynamodb", "PutItem", {"TableName": "stored", "Item": item})
            status, body = await _http(gateway, "GetItem", {"TableName": "stored", "Key": {"pk": {"S": "a"}},
                                                            "ProjectionExpression": "b"})  # fmt: skip
            assert (status, orjson.loads(body)) == (200, {"Item": {"b": {"B": "AP8="}}})
            status, body = await _http(gateway, "GetItem", {"TableName": "stored", "Key": {"pk": {"N": "1"}}})
            assert status == 400
            assert orjson.loads(body)["message"] == "The provided key element does not match the schema"
            status, body = await _http(gateway, "GetItem", {"TableName": "absent", "Key": {"pk": {"S": "a"}}})
            assert (status, orjson.loads(body)["__type"].rsplit("#", 1)[-1]) == (400, "ResourceNotFoundException")
        finally:
            await app.stop()

    asyncio.run(main())


_QUERY_OUTPUT = botocore.session.get_session().get_service_model("dynamodb").operation_model("Query").output_shape
_SCAN_OUTPUT = botocore.session.get_session().get_service_model("dynamodb").operation_model("Scan").output_shape


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=30)
@given(st.lists(_items, min_size=1, max_size=6), st.integers(1, 4))
def test_query_and_scan_over_http_are_what_the_serializer_writes(items: list[dict[str, Any]], limit: int) -> None:
    async def main() -> None:
        app = App(Settings(data_dir=Path(tempfile.mkdtemp(prefix="ddb-stored-")), tls_port=-1, no_auth=True))
        gateway = Gateway(app)
        await app.start()
        try:
            await app.call("dynamodb", "CreateTable", {
                "TableName": "pages", "BillingMode": "PAY_PER_REQUEST",
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "B"}, {"AttributeName": "sk", "AttributeType": "N"},
                                         {"AttributeName": "ls", "AttributeType": "S"}],
                "LocalSecondaryIndexes": [{"IndexName": "byls", "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                                                                             {"AttributeName": "ls", "KeyType": "RANGE"}],
                                           "Projection": {"ProjectionType": "KEYS_ONLY"}}],
            })  # fmt: skip
            for n, item in enumerate(items):
                key = {"pk": {"B": b"\x00p"}, "sk": {"N": str(n)}, "ls": {"S": f"l{n}"}}
                await app.call("dynamodb", "PutItem", {"TableName": "pages", "Item": {**item, **key}})
            key_condition = {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"B": b"\x00p"}}}
            variants: list[tuple[str, Any, dict[str, Any]]] = [
                ("Query", _QUERY_OUTPUT, key_condition),
                ("Query", _QUERY_OUTPUT, {**key_condition, "Limit": limit, "ReturnConsumedCapacity": "TOTAL"}),
                ("Query", _QUERY_OUTPUT, {**key_condition, "ScanIndexForward": False, "ProjectionExpression": "sk"}),
                ("Query", _QUERY_OUTPUT, {**key_condition, "IndexName": "byls"}),
                ("Query", _QUERY_OUTPUT, {**key_condition, "IndexName": "byls", "Select": "ALL_ATTRIBUTES", "Limit": limit}),
                ("Query", _QUERY_OUTPUT, {**key_condition, "Select": "COUNT"}),
                ("Scan", _SCAN_OUTPUT, {"Limit": limit}),
                ("Scan", _SCAN_OUTPUT, {"FilterExpression": "sk > :z", "ExpressionAttributeValues": {":z": {"N": "0"}}}),
                ("Scan", _SCAN_OUTPUT, {"Segment": 0, "TotalSegments": 2}),
            ]
            for operation, shape, extra in variants:
                params = {"TableName": "pages", **extra}
                expected = orjson.dumps(json_output(shape, await app.call("dynamodb", operation, params)))
                assert await _http(gateway, operation, params) == (200, expected), (operation, extra)
        finally:
            await app.stop()

    asyncio.run(main())


_BATCH_OUTPUT = botocore.session.get_session().get_service_model("dynamodb").operation_model("BatchGetItem").output_shape


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=30)
@given(st.lists(_items, min_size=1, max_size=5))
def test_batch_get_item_over_http_is_what_the_serializer_writes(items: list[dict[str, Any]]) -> None:
    async def main() -> None:
        app = App(Settings(data_dir=Path(tempfile.mkdtemp(prefix="ddb-stored-")), tls_port=-1, no_auth=True))
        gateway = Gateway(app)
        await app.start()
        try:
            for table in ("one", "two"):
                await app.call("dynamodb", "CreateTable", {
                    "TableName": table, "BillingMode": "PAY_PER_REQUEST",
                    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "B"}],
                })  # fmt: skip
                for n, item in enumerate(items):
                    await app.call("dynamodb", "PutItem", {"TableName": table, "Item": {**item, "pk": {"B": bytes([n])}}})
            keys = [{"pk": {"B": bytes([n])}} for n in range(len(items) + 1)]  # the last one is missing
            variants: list[dict[str, Any]] = [
                {"RequestItems": {"one": {"Keys": keys}}},
                {"RequestItems": {"one": {"Keys": keys, "ConsistentRead": True}, "two": {"Keys": keys[:2]}},
                 "ReturnConsumedCapacity": "TOTAL"},
                {"RequestItems": {"one": {"Keys": keys, "ProjectionExpression": "pk"}, "two": {"Keys": keys}},
                 "ReturnConsumedCapacity": "INDEXES"},
            ]  # fmt: skip
            for params in variants:
                expected = orjson.dumps(json_output(_BATCH_OUTPUT, await app.call("dynamodb", "BatchGetItem", params)))
                assert await _http(gateway, "BatchGetItem", params) == (200, expected), params
            status, body = await _http(gateway, "BatchGetItem", {"RequestItems": {"one": {"Keys": [keys[0], keys[0]]}}})
            assert (status, orjson.loads(body)["message"]) == (400, "Provided list of item keys contains duplicates")
        finally:
            await app.stop()

    asyncio.run(main())
