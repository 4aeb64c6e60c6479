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


#: AWS's allowed set: #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF
_VALID_EDGES = ["\t", "\n", "\r", " ", "~", "\x7f", "\x80", "\u00e9", "\ud7ff", "\ue000",
                "\ufffd", "\U00010000", "\U0010ffff", "\uefbf"]  # fmt: skip
_INVALID_EDGES = ["\x00", "\x08", "\x0b", "\x0c", "\x0e", "\x1f", "\ud800", "\udfff",
                  "\ufffe", "\uffff"]  # fmt: skip


@pytest.mark.parametrize("char", _VALID_EDGES)
def test_body_valid_characters(char: str) -> None:
    """Each edge of AWS's range is accepted, alone, inside ASCII and inside non-ASCII text,
    and the body's UTF-8 bytes come back (the MD5 is taken of them)."""
    for body in (char, f"abc{char}def", f"\u00e9{char}\U0001f600"):
        assert check_body(body, 262144, 0) == body.encode()


@pytest.mark.parametrize("char", _INVALID_EDGES)
def test_body_invalid_characters(char: str) -> None:
    for body in (char, f"abc{char}def", f"\u00e9{char}\U0001f600", "x" * 1000 + char):
        with pytest.raises(AwsError) as err:
            check_body(body, 262144, 0)
        assert err.value.code == "InvalidMessageContents"


def test_body_size_counts_utf8_bytes() -> None:
    check_body("\u00e9" * 60, 120, 0)  # 120 bytes: at the limit
    with pytest.raises(AwsError) as err:
        check_body("\u00e9" * 60 + "x", 120, 0)
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
