"""Universal targets: JSON Input converted to the botocore shapes of the call."""

from __future__ import annotations

import datetime as dt

import pytest

from nubes.aws.errors import AwsError
from nubes.services.scheduler.universal import coerce, resolve


def test_resolve_names() -> None:
    assert resolve("arn:aws:scheduler:::aws-sdk:sqs:sendMessage") == ("sqs", "SendMessage")
    assert resolve("arn:aws:scheduler:::aws-sdk:sfn:startExecution") == (
        "stepfunctions",
        "StartExecution",
    )
    assert resolve("arn:aws:scheduler:::aws-sdk:lambda:invoke") == ("lambda", "Invoke")


def test_blobs_and_timestamps_follow_the_shape() -> None:
    params = coerce("lambda", "Invoke", {"FunctionName": "f", "Payload": '{"a": 1}'})
    assert params == {"FunctionName": "f", "Payload": b'{"a": 1}'}
    params = coerce("cloudwatch", "PutMetricData", {"Namespace": "n", "MetricData": [
        {"MetricName": "m", "Value": 1, "Timestamp": "2024-01-02T03:04:05Z"}]})  # fmt: skip
    assert params["MetricData"][0]["Timestamp"] == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    params = coerce("sqs", "SendMessage", {"QueueUrl": "u", "MessageBody": "b", "Extra": 1})
    assert params == {"QueueUrl": "u", "MessageBody": "b", "Extra": 1}
    with pytest.raises(AwsError):
        coerce("sqs", "NoSuchOperation", {})
    with pytest.raises(AwsError):
        coerce("no-such-service", "Op", {})
