"""Asynchronous invokes: the durable queue, retries, destinations, dead-letter queues."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nubes.testing.server import NubesServer

from .conftest import ROLE, make_zip

FLAKY = """
import json, os
def handler(event, context):
    if event.get("fail"):
        raise RuntimeError("failed " + str(event["fail"]))
    return {"ok": event}
"""

#: fails until the marker file exists (the first attempt creates it), then writes done
FAIL_ONCE = """
import os
def handler(event, context):
    marker = os.path.join(os.environ["WORK"], "attempted")
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("first attempt fails")
    with open(os.path.join(os.environ["WORK"], "done"), "w") as f:
        f.write(context.aws_request_id)
    return "ok"
"""


def _queue(nubes: NubesServer) -> tuple[str, str]:
    sqs = nubes.client("sqs")
    url = sqs.create_queue(QueueName=f"dest-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def _receive(nubes: NubesServer, url: str, timeout: float = 15) -> dict[str, Any]:
    sqs = nubes.client("sqs")
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1, MessageAttributeNames=["All"])
        if got.get("Messages"):
            message: dict[str, Any] = got["Messages"][0]
            return message
    raise AssertionError("no message arrived")


@pytest.fixture
def sqs_available(nubes: NubesServer) -> None:
    import urllib.request

    health = json.loads(urllib.request.urlopen(nubes.endpoint + "/_nubes/health").read())
    if "sqs" not in health["services"]:
        pytest.skip("SQS is not in this build")


@pytest.mark.usefixtures("sqs_available")
def test_retries_then_on_failure_destination(nubes: NubesServer, make_function: Callable[..., str]) -> None:
    lam = nubes.client("lambda")
    url, arn = _queue(nubes)
    name = make_function({"app.py": FLAKY}, Tags={"nubes:retry-delays": "0.1,0.2"})
    lam.put_function_event_invoke_config(FunctionName=name, DestinationConfig={"OnFailure": {"Destination": arn}})
    out = lam.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"fail": 7}')
    request_id = out["ResponseMetadata"]["RequestId"]
    record = json.loads(_receive(nubes, url)["Body"])
    assert record["version"] == "1.0"
    assert record["requestContext"] == {"requestId": request_id, "condition": "RetriesExhausted",
                                        "functionArn": f"{lam.get_function(FunctionName=name)['Configuration']['FunctionArn']}:$LATEST",
                                        "approximateInvokeCount": 3}  # fmt: skip
    assert record["requestPayload"] == {"fail": 7}
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"}
    assert record["responsePayload"]["errorMessage"] == "failed 7"


@pytest.mark.usefixtures("sqs_available")
def test_on_success_destination(nubes: NubesServer, make_function: Callable[..., str]) -> None:
    lam = nubes.client("lambda")
    url, arn = _queue(nubes)
    name = make_function({"app.py": FLAKY})
    lam.put_function_event_invoke_config(FunctionName=name, DestinationConfig={"OnSuccess": {"Destination": arn}})
    lam.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"n": 1}')
    record = json.loads(_receive(nubes, url)["Body"])
    assert record["requestContext"]["condition"] == "Success"
    assert record["responsePayload"] == {"ok": {"n": 1}}


@pytest.mark.usefixtures("sqs_available")
def test_dead_letter_queue(nubes: NubesServer, make_function: Callable[..., str]) -> None:
    lam = nubes.client("lambda")
    url, arn = _queue(nubes)
    name = make_function({"app.py": FLAKY}, DeadLetterConfig={"TargetArn": arn})
    lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0)
    out = lam.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"fail": "dlq"}')
    message = _receive(nubes, url)
    assert json.loads(message["Body"]) == {"fail": "dlq"}
    attributes = message["MessageAttributes"]
    assert attributes["RequestID"]["StringValue"] == out["ResponseMetadata"]["RequestId"]
    assert attributes["ErrorMessage"]["StringValue"] == "failed dlq"


def test_async_payload_limit(nubes: NubesServer, make_function: Callable[..., str]) -> None:
    lam = nubes.client("lambda")
    name = make_function({"app.py": FLAKY})
    big = json.dumps({"x": "a" * 300_000}).encode()
    with pytest.raises(lam.exceptions.RequestTooLargeException):
        lam.invoke(FunctionName=name, InvocationType="Event", Payload=big)


def test_queued_retry_survives_restart(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    with NubesServer(tmp_path / "data") as server:
        lam = server.client("lambda")
        lam.create_function(FunctionName="once", Runtime="python3.12", Handler="app.handler", Role=ROLE,
                            Code={"ZipFile": make_zip({"app.py": FAIL_ONCE})},
                            Environment={"Variables": {"WORK": str(work)}},
                            Tags={"nubes:retry-delays": "2"})  # fmt: skip
        lam.get_waiter("function_active_v2").wait(FunctionName="once", WaiterConfig={"Delay": 0.1, "MaxAttempts": 50})
        request_id = lam.invoke(FunctionName="once", InvocationType="Event")["ResponseMetadata"]["RequestId"]
        deadline = time.time() + 10
        while not (work / "attempted").exists() and time.time() < deadline:
            time.sleep(0.05)
        assert (work / "attempted").exists()
        server.stop()  # the retry is due in 2 s: it must come back from the store
        assert not (work / "done").exists()
        server.start()
        deadline = time.time() + 15
        while not (work / "done").exists() and time.time() < deadline:
            time.sleep(0.1)
        assert (work / "done").read_text() == request_id


def test_throttled_async_event_runs_later(nubes: NubesServer, make_function: Callable[..., str],
                                          tmp_path: Path) -> None:  # fmt: skip
    lam = nubes.client("lambda")
    name = make_function({"app.py": FAIL_ONCE.replace('raise RuntimeError("first attempt fails")', "pass")},
                         Environment={"Variables": {"WORK": str(tmp_path)}})  # fmt: skip
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    request_id = lam.invoke(FunctionName=name, InvocationType="Event")["ResponseMetadata"]["RequestId"]
    time.sleep(1.5)
    assert not (tmp_path / "attempted").exists()  # throttled: still queued
    lam.delete_function_concurrency(FunctionName=name)
    deadline = time.time() + 15
    while not (tmp_path / "done").exists() and time.time() < deadline:
        time.sleep(0.1)
    assert (tmp_path / "done").read_text() == request_id
