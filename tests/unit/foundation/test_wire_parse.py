"""The JSON-like request parser (awsJson, rest-json bodies, RPCv2 CBOR): results and
errors — codes, messages, member paths and the order of "N validation errors
detected" — pinned to what the model-walking parser produced before requests
were parsed through converters compiled per shape."""

from __future__ import annotations

import datetime as dt
from typing import Any

import cbor2
import orjson
import pytest

import nubes.services.sqs  # noqa: F401  (its model patch: ReceiveMessage's AttributeNames)
from nubes.aws.errors import AwsError
from nubes.aws.protocol import parse_request
from nubes.aws.protocol.types import WireRequest
from nubes.aws.spec import service_index

CBOR = "smithy-rpc-v2-cbor"
UTC = dt.UTC


def _parse(
    model: str,
    op: str,
    body: Any,
    protocol: str | None = None,
    labels: dict[str, str] | None = None,
) -> str:
    index = service_index(model)
    raw = cbor2.dumps(body) if protocol == CBOR else orjson.dumps(body)
    request = WireRequest("POST", "/", {}, {}, raw)
    try:
        params = parse_request(
            index, index.model.operation_model(op), request, protocol=protocol, labels=labels
        )
    except AwsError as error:
        return f"{error.code}: {error.message}"
    return repr(params)  # repr: an int where a float was sent is a difference


GOLDEN: list[tuple[tuple[Any, ...], str]] = [
    (
        (
            "dynamodb",
            "PutItem",
            {"TableName": "t", "Item": {"a": {"M": {"b": {"L": [{"S": "x"}, {"S": 5}]}}}}},
        ),
        "SerializationException: Unexpected value type for item.a.m.b.l.2.member.s: expected string",
    ),
    (
        (
            "dynamodb",
            "PutItem",
            {"TableName": "", "Item": {"a": {"S": "x"}}, "ReturnValues": "BAD"},
        ),
        "ValidationException: 2 validation errors detected: Value '' at 'tableName' failed to satisfy constraint: Member must have length greater than or equal to 1; Value 'BAD' at 'returnValues' failed to satisfy constraint: Member must satisfy enum value set: [NONE, ALL_OLD, UPDATED_OLD, ALL_NEW, UPDATED_NEW]",
    ),
    (
        ("dynamodb", "PutItem", {}),
        "ValidationException: 2 validation errors detected: Value null at 'tableName' failed to satisfy constraint: Member must not be null; Value null at 'item' failed to satisfy constraint: Member must not be null",
    ),
    (
        ("dynamodb", "PutItem", {"TableName": "t", "Item": {"a": {"B": "!!"}}}),
        "SerializationException: Unexpected value type for item.a.b: expected base64-encoded blob",
    ),
    (
        ("dynamodb", "PutItem", {"TableName": "t", "Item": {"a": {"BS": ["AAE=", 3]}}}),
        "SerializationException: Unexpected value type for item.a.bS.2.member: expected blob",
    ),
    (
        ("dynamodb", "PutItem", {"TableName": "t", "Item": []}),
        "SerializationException: Unexpected value type for item: expected map",
    ),
    (
        ("dynamodb", "PutItem", {"TableName": "", "Item": {"a": {"BOOL": "yes"}}}),
        "SerializationException: Unexpected value type for item.a.bOOL: expected boolean",
    ),
    (
        (
            "dynamodb",
            "PutItem",
            {
                "TableName": "t",
                "Item": {
                    "a": {
                        "M": {
                            "b": {
                                "NULL": True,
                                "BOOL": False,
                                "N": "1",
                                "B": "AAE=",
                                "L": [None, {"NS": ["1"]}],
                            }
                        }
                    }
                },
                "Extra": 1,
            },
        ),
        "{'TableName': 't', 'Item': {'a': {'M': {'b': {'NULL': True, 'BOOL': False, 'N': '1', 'B': b'\\x00\\x01', 'L': [None, {'NS': ['1']}]}}}}}",
    ),
    (
        (
            "dynamodb",
            "CreateTable",
            {
                "TableName": "ab",
                "KeySchema": [{"AttributeName": "", "KeyType": "X"}, {"AttributeName": "b"}],
                "AttributeDefinitions": [],
                "BillingMode": "Y",
            },
        ),
        "ValidationException: 4 validation errors detected: Value '' at 'keySchema.1.member.attributeName' failed to satisfy constraint: Member must have length greater than or equal to 1; Value 'X' at 'keySchema.1.member.keyType' failed to satisfy constraint: Member must satisfy enum value set: [HASH, RANGE]; Value null at 'keySchema.2.member.keyType' failed to satisfy constraint: Member must not be null; Value 'Y' at 'billingMode' failed to satisfy constraint: Member must satisfy enum value set: [PROVISIONED, PAY_PER_REQUEST]",
    ),
    (
        ("dynamodb", "Scan", {"TableName": "t", "Limit": 0, "Segment": 1.5}),
        "SerializationException: Unexpected value type for segment: expected integer",
    ),
    (
        (
            "dynamodb",
            "Scan",
            {"TableName": "t", "Limit": 0, "Segment": 2.0, "TotalSegments": 5000000},
        ),
        "ValidationException: 2 validation errors detected: Value '0' at 'limit' failed to satisfy constraint: Member must have value greater than or equal to 1; Value '5000000' at 'totalSegments' failed to satisfy constraint: Member must have value less than or equal to 1000000",
    ),
    (
        (
            "dynamodb",
            "Scan",
            {
                "TableName": "t",
                "Limit": 7.0,
                "Segment": 2,
                "ScanFilter": {"a": {"ComparisonOperator": "EQ", "AttributeValueList": "x"}},
            },
        ),
        "SerializationException: Unexpected value type for scanFilter.a.attributeValueList: expected list",
    ),
    (
        ("dynamodb", "Scan", {"TableName": "t", "Limit": 7.0, "Segment": 2, "TotalSegments": 4}),
        "{'TableName': 't', 'Limit': 7, 'Segment': 2, 'TotalSegments': 4}",
    ),
    (
        ("sqs", "SendMessage", {"QueueUrl": "u", "MessageBody": "x", "DelaySeconds": True}),
        "SerializationException: Unexpected value type for delaySeconds: expected integer",
    ),
    (
        (
            "sqs",
            "SendMessage",
            {
                "QueueUrl": "u",
                "MessageBody": "x",
                "DelaySeconds": 3.0,
                "MessageAttributes": {
                    "a": {"StringValue": "v"},
                    "b": {"DataType": "Binary", "BinaryValue": "AAEC"},
                },
            },
        ),
        "ValidationException: 1 validation error detected: Value null at 'messageAttributes.a.dataType' failed to satisfy constraint: Member must not be null",
    ),
    (
        (
            "sqs",
            "SendMessage",
            {
                "QueueUrl": "u",
                "MessageBody": "x",
                "DelaySeconds": 3.0,
                "MessageAttributes": {
                    "a": {"DataType": "String", "StringValue": "v"},
                    "b": {"DataType": "Binary", "BinaryValue": "AAEC"},
                },
            },
        ),
        "{'QueueUrl': 'u', 'MessageBody': 'x', 'DelaySeconds': 3, 'MessageAttributes': {'a': {'DataType': 'String', 'StringValue': 'v'}, 'b': {'DataType': 'Binary', 'BinaryValue': b'\\x00\\x01\\x02'}}}",
    ),
    (
        (
            "sqs",
            "SendMessage",
            {"MessageAttributes": {"a": {"StringValue": "v", "StringListValues": [1]}}},
        ),
        "SerializationException: Unexpected value type for messageAttributes.a.stringListValues.1.member: expected string",
    ),
    (
        ("sqs", "SendMessage", {"QueueUrl": "u", "MessageBody": None, "Bogus": 1}),
        "ValidationException: 1 validation error detected: Value null at 'messageBody' failed to satisfy constraint: Member must not be null",
    ),
    (
        ("sqs", "SendMessage", {"QueueUrl": "u", "MessageBody": "x", "MessageAttributes": "no"}),
        "SerializationException: Unexpected value type for messageAttributes: expected map",
    ),
    (
        (
            "sqs",
            "ChangeMessageVisibility",
            {"QueueUrl": "u", "ReceiptHandle": "r", "VisibilityTimeout": 2.5},
        ),
        "SerializationException: Unexpected value type for visibilityTimeout: expected integer",
    ),
    (
        (
            "sqs",
            "ReceiveMessage",
            {
                "QueueUrl": "u",
                "AttributeNames": ["ApproximateReceiveCount"],
                "MaxNumberOfMessages": 10,
            },
        ),
        "{'QueueUrl': 'u', 'AttributeNames': ['ApproximateReceiveCount'], 'MaxNumberOfMessages': 10}",
    ),
    (
        (
            "logs",
            "PutLogEvents",
            {
                "logGroupName": "g",
                "logStreamName": "s",
                "logEvents": [{"timestamp": "x", "message": "m"}],
            },
        ),
        "SerializationException: Unexpected value type for logEvents.1.member.timestamp: expected integer",
    ),
    (
        ("logs", "PutLogEvents", {"logGroupName": "", "logStreamName": "s", "logEvents": []}),
        "ValidationException: 2 validation errors detected: Value '' at 'logGroupName' failed to satisfy constraint: Member must have length greater than or equal to 1; Value '[]' at 'logEvents' failed to satisfy constraint: Member must have length greater than or equal to 1",
    ),
    (
        (
            "logs",
            "PutLogEvents",
            {"logGroupName": "g", "logStreamName": "s", "logEvents": [{"timestamp": 5}]},
        ),
        "ValidationException: 1 validation error detected: Value null at 'logEvents.1.member.message' failed to satisfy constraint: Member must not be null",
    ),
    (
        ("stepfunctions", "StartExecution", {"stateMachineArn": 5}),
        "SerializationException: Unexpected value type for stateMachineArn: expected string",
    ),
    (
        (
            "events",
            "PutEvents",
            {"Entries": [{"Time": "2020-01-01T00:00:00Z", "Detail": "{}"}, {"Time": "nope"}]},
        ),
        "SerializationException: Unexpected value type for entries.2.member.time: expected timestamp",
    ),
    (
        ("events", "PutEvents", {"Entries": [{"Time": 1577836800.5}]}),
        "{'Entries': [{'Time': datetime.datetime(2020, 1, 1, 0, 0, 0, 500000, tzinfo=datetime.timezone.utc)}]}",
    ),
    (
        ("events", "PutEvents", {"Entries": {"Time": 1}}),
        "SerializationException: Unexpected value type for entries: expected list",
    ),
    (
        (
            "cloudwatch",
            "PutMetricData",
            {
                "Namespace": "n",
                "MetricData": [
                    {
                        "MetricName": "m",
                        "Timestamp": dt.datetime(2020, 1, 1, tzinfo=UTC),
                        "Value": 1,
                        "Values": [1, 2.5],
                    }
                ],
            },
            CBOR,
        ),
        "{'Namespace': 'n', 'MetricData': [{'MetricName': 'm', 'Timestamp': datetime.datetime(2020, 1, 1, 0, 0, tzinfo=datetime.timezone.utc), 'Value': 1.0, 'Values': [1.0, 2.5]}]}",
    ),
    (
        ("cloudwatch", "PutMetricData", {"Namespace": "", "MetricData": [{"MetricName": 5}]}, CBOR),
        "SerializationException: Unexpected value type for metricData.1.member.metricName: expected string",
    ),
    (
        (
            "cloudwatch",
            "PutMetricData",
            {"Namespace": "n", "MetricData": [{"MetricName": "m", "Value": "x"}]},
            CBOR,
        ),
        "SerializationException: Unexpected value type for metricData.1.member.value: expected number",
    ),
    (
        (
            "cloudwatch",
            "PutMetricData",
            {"Namespace": "", "MetricData": [{"MetricName": "m", "Value": True}]},
            CBOR,
        ),
        "SerializationException: Unexpected value type for metricData.1.member.value: expected number",
    ),
    (
        (
            "kms",
            "Encrypt",
            {"KeyId": "k", "Plaintext": "AAEC", "EncryptionContext": {"a": "b", "c": 1}},
        ),
        "SerializationException: Unexpected value type for encryptionContext.c: expected string",
    ),
    (
        ("kms", "Encrypt", {"KeyId": "k", "Plaintext": ""}),
        "ValidationException: 1 validation error detected: Value 'java.nio.HeapByteBuffer' at 'plaintext' failed to satisfy constraint: Member must have length greater than or equal to 1",
    ),
    (
        ("kms", "Encrypt", {"KeyId": "k", "Plaintext": "AAEC", "GrantTokens": ["a"] * 11}),
        "ValidationException: 1 validation error detected: Value '[a, a, a, a, a, a, a, a, a, a, a]' at 'grantTokens' failed to satisfy constraint: Member must have length less than or equal to 10",
    ),
    (
        (
            "kms",
            "Encrypt",
            {
                "KeyId": "k",
                "Plaintext": "AAEC",
                "EncryptionContext": {"a": "b"},
                "GrantTokens": ["g"],
            },
        ),
        "{'KeyId': 'k', 'Plaintext': b'\\x00\\x01\\x02', 'EncryptionContext': {'a': 'b'}, 'GrantTokens': ['g']}",
    ),
    (
        (
            "lambda",
            "UpdateFunctionConfiguration",
            {"Timeout": 0, "MemorySize": 1, "Environment": {"Variables": {"A": 1}}},
            None,
            {"FunctionName": ""},
        ),
        "SerializationException: Unexpected value type for environment.variables.A: expected string",
    ),
    (
        (
            "lambda",
            "UpdateFunctionConfiguration",
            {"Timeout": 0, "MemorySize": 1, "Layers": ["a"]},
            None,
            {"FunctionName": ""},
        ),
        "ValidationException: 3 validation errors detected: Value '' at 'functionName' failed to satisfy constraint: Member must have length greater than or equal to 1; Value '0' at 'timeout' failed to satisfy constraint: Member must have value greater than or equal to 1; Value '1' at 'memorySize' failed to satisfy constraint: Member must have value greater than or equal to 128",
    ),
    (
        (
            "lambda",
            "CreateFunction",
            {"FunctionName": "f", "Code": {"ZipFile": "AAEC"}, "Timeout": 3},
            None,
            {},
        ),
        "ValidationException: 1 validation error detected: Value null at 'role' failed to satisfy constraint: Member must not be null",
    ),
    (
        (
            "scheduler",
            "CreateSchedule",
            {
                "ScheduleExpression": "rate(1 minute)",
                "StartDate": 1700000000,
                "FlexibleTimeWindow": {"Mode": "OFF"},
                "Target": {"Arn": "a", "RoleArn": "r"},
            },
            None,
            {"Name": "n"},
        ),
        "{'Name': 'n', 'ScheduleExpression': 'rate(1 minute)', 'StartDate': datetime.datetime(2023, 11, 14, 22, 13, 20, tzinfo=datetime.timezone.utc), 'Target': {'Arn': 'a', 'RoleArn': 'r'}, 'FlexibleTimeWindow': {'Mode': 'OFF'}}",
    ),
]


@pytest.mark.parametrize(
    ("case", "expected"), GOLDEN, ids=[f"{c[0]}-{c[1]}-{i}" for i, (c, _) in enumerate(GOLDEN)]
)
def test_parse_result_or_error_is_unchanged(case: tuple[Any, ...], expected: str) -> None:
    assert _parse(*case) == expected
