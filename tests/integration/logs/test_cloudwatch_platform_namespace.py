"""The AWS/ metric namespaces: the platform publishes there, users over the wire may not."""

from __future__ import annotations

import datetime as dt
import io
import time
import uuid
import zipfile

import pytest
from botocore.exceptions import ClientError

from nubes.testing.server import NubesServer


def test_users_may_not_publish_to_aws_namespaces(nubes: NubesServer) -> None:
    cw = nubes.client("cloudwatch")
    with pytest.raises(ClientError) as err:
        cw.put_metric_data(
            Namespace="AWS/Lambda", MetricData=[{"MetricName": "Invocations", "Value": 1.0}]
        )
    assert err.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert "AWS/" in err.value.response["Error"]["Message"]


def test_platform_publishes_lambda_metrics(nubes: NubesServer) -> None:
    # internal calls act as the platform identity (they carry an access key), and must still
    # reach AWS/Lambda: a check on the key instead of on the wire once dropped every metric
    lam, cw = nubes.client("lambda"), nubes.client("cloudwatch")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("app.py", "def handler(e, c):\n    return 1\n")
    name = f"cwns-{uuid.uuid4().hex[:10]}"
    lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler",
                        Role="arn:aws:iam::000000000000:role/lambda", Code={"ZipFile": buf.getvalue()})  # fmt: skip
    lam.get_waiter("function_active_v2").wait(
        FunctionName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 300}
    )
    lam.invoke(FunctionName=name)
    now = dt.datetime.now(dt.UTC)
    total = 0.0
    deadline = time.monotonic() + 30  # metrics are flushed once a second, after the invoke answered
    while time.monotonic() < deadline and total < 1:
        stats = cw.get_metric_statistics(Namespace="AWS/Lambda", MetricName="Invocations",
                                         Dimensions=[{"Name": "FunctionName", "Value": name}],
                                         StartTime=now - dt.timedelta(minutes=5), EndTime=now + dt.timedelta(minutes=5),
                                         Period=60, Statistics=["Sum"])  # fmt: skip
        total = sum(p["Sum"] for p in stats["Datapoints"])
        if total < 1:
            time.sleep(0.1)
    assert total == 1
