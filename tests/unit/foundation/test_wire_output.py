"""JSON output through the converters compiled per shape: blobs in base64,
timestamps formatted, members renamed, and members the shape does not know or
that are null left out — also where a structure is sent on as it is."""

from __future__ import annotations

import datetime as dt

import orjson

from nubes.aws.protocol import serialize_response
from nubes.aws.protocol.values import json_output
from nubes.aws.spec import service_index


def test_attribute_values_convert_blobs_and_drop_what_the_shape_lacks() -> None:
    shape = service_index("dynamodb").model.operation_model("GetItem").output_shape
    plain = {"S": "x"}
    result = {
        "Item": {
            "a": plain,
            "b": {"B": b"\x00\x01"},
            "c": {"S": "y", "Bogus": 1},
            "d": {"N": "1", "S": None},
            "e": {"M": {"f": {"BS": [b"\xff"]}, "g": {"L": [{"NULL": True}]}}},
        },
        "Extra": 1,
    }
    out = json_output(shape, result)
    assert out == {
        "Item": {
            "a": {"S": "x"},
            "b": {"B": "AAE="},
            "c": {"S": "y"},
            "d": {"N": "1"},
            "e": {"M": {"f": {"BS": ["/w=="]}, "g": {"L": [{"NULL": True}]}}},
        }
    }
    assert out["Item"]["a"] is plain  # nothing to change: sent on, not copied
    assert result["Item"]["b"] == {"B": b"\x00\x01"}  # the provider's value is left alone


def test_a_shape_without_blobs_timestamps_or_renames_goes_out_as_it_is() -> None:
    index = service_index("sqs")
    op = index.model.operation_model("SendMessage")
    result = {"MessageId": "m", "MD5OfMessageBody": "0" * 32}
    assert json_output(op.output_shape, result) is result
    response = serialize_response(index, op, result, "request-id")
    assert orjson.loads(response.body) == result
    assert response.headers["Content-Type"] == "application/x-amz-json-1.0"


def test_timestamps_take_the_format_of_their_shape() -> None:
    shape = service_index("logs").model.operation_model("DescribeLogGroups").output_shape
    when = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    out = json_output(shape, {"logGroups": [{"logGroupName": "g", "creationTime": 1577836800000}]})
    assert out == {"logGroups": [{"logGroupName": "g", "creationTime": 1577836800000}]}
    sfn = service_index("stepfunctions").model.operation_model("StartExecution").output_shape
    assert json_output(sfn, {"executionArn": "a", "startDate": when}) == {
        "executionArn": "a",
        "startDate": 1577836800,
    }
