"""SQS pieces without a server: digests, validation, queue URLs, redrive policies."""

from __future__ import annotations

import pytest

from nubes.aws.errors import AwsError
from nubes.services.sqs.messages import (
    check_attributes,
    check_body,
    md5_of_attributes,
    select_attributes,
)
from nubes.services.sqs.models import check_queue_name, parse_queue_url, validate_attributes


def test_md5_of_attributes_matches_aws_algorithm() -> None:
    # AWS: names sorted; name, type and value length-prefixed; transport byte 1=string, 2=binary
    attrs = {
        "a": {"DataType": "String", "StringValue": "x"},
        "b": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
    }
    assert md5_of_attributes(attrs) == "fa20e2def088daf7b14bc51e836c5547"
    assert (
        md5_of_attributes({"b": attrs["b"], "a": attrs["a"]}) == "fa20e2def088daf7b14bc51e836c5547"
    )


def test_body_rules() -> None:
    check_body("ok \t\n\r \U0001f600", 262144, 0)
    with pytest.raises(AwsError) as err:
        check_body("\x01", 262144, 0)
    assert err.value.code == "InvalidMessageContents"
    with pytest.raises(AwsError) as err:
        check_body("x" * 100, 120, 30)
    assert err.value.code == "InvalidParameterValue"


@pytest.mark.parametrize(
    "attrs",
    [
        {"": {"DataType": "String", "StringValue": "x"}},
        {"a..b": {"DataType": "String", "StringValue": "x"}},
        {"Amazon.x": {"DataType": "String", "StringValue": "x"}},
        {"a": {"DataType": "Text", "StringValue": "x"}},
        {"a": {"DataType": "String"}},
        {"a": {"DataType": "Binary"}},
        {"a": {"DataType": "Number", "StringValue": "1e"}},
        {f"a{i}": {"DataType": "String", "StringValue": "x"} for i in range(11)},
    ],
)
def test_bad_attributes(attrs: dict[str, dict[str, str]]) -> None:
    with pytest.raises(AwsError) as err:
        check_attributes(attrs)
    assert err.value.code == "InvalidParameterValue"


def test_select_attributes() -> None:
    stored = {
        "a.x": {"DataType": "String"},
        "a.y": {"DataType": "String"},
        "b": {"DataType": "String"},
    }
    assert set(select_attributes(stored, ["a.*"])) == {"a.x", "a.y"}
    assert set(select_attributes(stored, ["All"])) == {"a.x", "a.y", "b"}
    assert set(select_attributes(stored, ["b", "c"])) == {"b"}
    assert select_attributes(stored, []) == {}


def test_queue_urls_and_names() -> None:
    assert parse_queue_url("http://h:1/123456789012/q", "0") == ("123456789012", "q")
    assert parse_queue_url("https://sqs.us-east-1.amazonaws.com/1/q.fifo", "0") == ("1", "q.fifo")
    assert parse_queue_url("q", "000") == ("000", "q")
    check_queue_name("a-b_c", fifo=False)
    check_queue_name("a.fifo", fifo=True)
    for bad, fifo in (("a" * 81, False), ("a.b", False), ("a", True), ("a.fifo", False)):
        with pytest.raises(AwsError):
            check_queue_name(bad, fifo)


def test_validate_attributes() -> None:
    out = validate_attributes({"FifoQueue": "TRUE", "ContentBasedDeduplication": "True"}, fifo=True)
    assert out == {"FifoQueue": "true", "ContentBasedDeduplication": "true"}
    policy = validate_attributes(
        {
            "RedrivePolicy": '{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:1:d","maxReceiveCount":"3"}'
        },
        fifo=False,
    )
    assert (
        policy["RedrivePolicy"]
        == '{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:1:d","maxReceiveCount":3}'
    )
    for bad in ({"DelaySeconds": "901"}, {"Nope": "1"}, {"ContentBasedDeduplication": "true"},
                {"RedrivePolicy": "{"}, {"RedrivePolicy": '{"deadLetterTargetArn":"x","maxReceiveCount":0}'}):  # fmt: skip
        with pytest.raises(AwsError):
            validate_attributes(bad, fifo=False)
