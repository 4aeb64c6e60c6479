"""Functions on a real nubes server, created and invoked with boto3 as a user would."""

from __future__ import annotations

import io
import json
import sys
import time
import uuid
import zipfile
from typing import Any

from nubes.testing.server import NubesServer

ROLE = "arn:aws:iam::000000000000:role/lambda"


def _zip(files: dict[str, tuple[str, int]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, (text, mode) in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o100000 | mode) << 16
            archive.writestr(info, text)
    return buf.getvalue()


def _create(nubes: NubesServer, runtime: str, files: dict[str, tuple[str, int]], **kw: Any) -> str:
    lam = nubes.client("lambda")
    name = f"rt-{uuid.uuid4().hex[:10]}"
    lam.create_function(FunctionName=name, Runtime=runtime, Role=ROLE, Code={"ZipFile": _zip(files)},
                        Timeout=10, **kw)  # fmt: skip
    waiter = lam.get_waiter("function_active_v2")
    waiter.wait(FunctionName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 50})
    return name


SDK_INSIDE = """
import boto3

def handler(event, context):
    own = boto3.client("lambda").get_function(FunctionName=context.function_name)
    # an explicit regional AWS endpoint still reaches nubes
    named = boto3.client("lambda", endpoint_url="http://lambda.us-east-1.amazonaws.com")
    # paginated, as on AWS (50 a page): the shared test server holds many functions
    listed = [f["FunctionName"] for page in named.get_paginator("list_functions").paginate() for f in page["Functions"]]
    return {"arn": own["Configuration"]["FunctionArn"], "listed": context.function_name in listed}
"""


def test_sdk_inside_a_function_reaches_nubes(nubes: NubesServer) -> None:
    name = _create(nubes, "python3.13", {"app.py": (SDK_INSIDE, 0o644)}, Handler="app.handler")
    out = nubes.client("lambda").invoke(FunctionName=name, Payload=b"{}")
    body = json.loads(out["Payload"].read())
    assert "FunctionError" not in out, body
    assert body["arn"].endswith(f":function:{name}")
    assert body["listed"] is True


AWSLAMBDARIC_APP = """
def handler(event, context):
    print("custom runtime says hi")
    return {"echo": event, "request_id": context.aws_request_id}
"""


def test_provided_runtime_with_awslambdaric(nubes: NubesServer) -> None:
    bootstrap = f'#!/bin/sh\nexec {sys.executable} -m awslambdaric "$_HANDLER"\n'
    name = _create(
        nubes,
        "provided.al2023",
        {"bootstrap": (bootstrap, 0o755), "app.py": (AWSLAMBDARIC_APP, 0o644)},
        Handler="app.handler",
    )
    lam = nubes.client("lambda")
    out = lam.invoke(FunctionName=name, Payload=b'{"n": 7}', LogType="Tail")
    request_id = out["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    body = json.loads(out["Payload"].read())
    assert "FunctionError" not in out, body
    assert body == {"echo": {"n": 7}, "request_id": request_id}
    # the invocation's log lines land in the function's log group; a telemetry flusher writes them
    # after the invoke has answered (as on AWS), so poll until they are there, with a deadline
    # generous enough for a loaded machine
    logs = nubes.client("logs")
    messages: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            events = logs.filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]
        except logs.exceptions.ResourceNotFoundException:
            events = []  # the group is created when the first batch is flushed
        messages = [e["message"] for e in events]
        if any(m.startswith(f"REPORT RequestId: {request_id}") for m in messages):
            break
        time.sleep(0.1)
    assert any(m.startswith(f"START RequestId: {request_id}") for m in messages), messages
    assert any("custom runtime says hi" in m for m in messages)
    assert any(m.startswith(f"REPORT RequestId: {request_id}") for m in messages)
