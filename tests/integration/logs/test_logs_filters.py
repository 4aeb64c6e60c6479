"""Subscription filters (to a function) and metric filters (to CloudWatch metrics)."""

from __future__ import annotations

import datetime as dt
import io
import json
import time
import uuid
import zipfile
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from nubes.testing.server import NubesServer

RECEIVER = """
import base64, gzip, json, os
def handler(event, context):
    body = json.loads(gzip.decompress(base64.b64decode(event["awslogs"]["data"])))
    with open(os.environ["OUT"], "a") as f:
        f.write(json.dumps(body) + "\\n")
"""


def _zip(source: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("app.py", source)
    return buf.getvalue()


def test_subscription_filter_delivers_to_function(nubes: NubesServer, tmp_path: Path) -> None:
    lam, logs = nubes.client("lambda"), nubes.client("logs")
    out = tmp_path / "received.jsonl"
    fn = f"recv-{uuid.uuid4().hex[:8]}"
    arn = lam.create_function(FunctionName=fn, Runtime="python3.12", Handler="app.handler",
                              Role="arn:aws:iam::000000000000:role/x", Code={"ZipFile": _zip(RECEIVER)},
                              Environment={"Variables": {"OUT": str(out)}})["FunctionArn"]  # fmt: skip
    lam.get_waiter("function_active_v2").wait(FunctionName=fn, WaiterConfig={"Delay": 0.1, "MaxAttempts": 200})
    group = f"/app/{uuid.uuid4().hex[:8]}"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    logs.put_subscription_filter(logGroupName=group, filterName="errors", filterPattern="ERROR", destinationArn=arn)
    with pytest.raises(ClientError) as err:
        logs.put_subscription_filter(logGroupName=group, filterName="bad", filterPattern="{ $.x = ",
                                     destinationArn=arn)  # fmt: skip
    assert err.value.response["Error"]["Code"] == "InvalidParameterException"
    now = int(time.time() * 1000)
    logs.put_log_events(logGroupName=group, logStreamName="s", logEvents=[
        {"timestamp": now, "message": "INFO fine"}, {"timestamp": now + 1, "message": "ERROR broken"}])  # fmt: skip
    deadline = time.time() + 15
    while time.time() < deadline and not out.exists():
        time.sleep(0.1)
    body = json.loads(out.read_text().splitlines()[0])
    assert body["messageType"] == "DATA_MESSAGE" and body["logGroup"] == group and body["logStream"] == "s"
    assert body["subscriptionFilters"] == ["errors"]
    assert [e["message"] for e in body["logEvents"]] == ["ERROR broken"]
    described = logs.describe_subscription_filters(logGroupName=group)["subscriptionFilters"]
    assert [f["filterName"] for f in described] == ["errors"]
    logs.delete_subscription_filter(logGroupName=group, filterName="errors")
    assert logs.describe_subscription_filters(logGroupName=group)["subscriptionFilters"] == []


def test_metric_filter_publishes_metrics(nubes: NubesServer) -> None:
    logs, cw = nubes.client("logs"), nubes.client("cloudwatch")
    group = f"/app/{uuid.uuid4().hex[:8]}"
    ns = f"Logs/{uuid.uuid4().hex[:8]}"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    logs.put_metric_filter(logGroupName=group, filterName="latency", filterPattern='{ $.path = "/api*" }',
                           metricTransformations=[{"metricName": "Latency", "metricNamespace": ns,
                                                   "metricValue": "$.ms", "dimensions": {"Path": "$.path"}}])  # fmt: skip
    assert logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"][0]["metricFilterCount"] == 1
    now = int(time.time() * 1000)
    logs.put_log_events(logGroupName=group, logStreamName="s", logEvents=[
        {"timestamp": now, "message": json.dumps({"path": "/api", "ms": 10})},
        {"timestamp": now + 1, "message": json.dumps({"path": "/api", "ms": 30})},
        {"timestamp": now + 2, "message": json.dumps({"path": "/health", "ms": 99})}])  # fmt: skip
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    deadline = time.time() + 15
    points: list[dict[str, float]] = []
    while time.time() < deadline and not points:
        points = cw.get_metric_statistics(Namespace=ns, MetricName="Latency",
                                          Dimensions=[{"Name": "Path", "Value": "/api"}], StartTime=start,
                                          EndTime=start + dt.timedelta(minutes=10), Period=600,
                                          Statistics=["Sum", "SampleCount"])["Datapoints"]  # fmt: skip
        time.sleep(0.1)
    assert [(p["Sum"], p["SampleCount"]) for p in points] == [(40.0, 2.0)]
    matches = logs.test_metric_filter(filterPattern="ERROR", logEventMessages=["ERROR a", "ok"])["matches"]
    assert [m["eventMessage"] for m in matches] == ["ERROR a"]
    logs.delete_metric_filter(logGroupName=group, filterName="latency")
    assert logs.describe_metric_filters(logGroupName=group)["metricFilters"] == []
