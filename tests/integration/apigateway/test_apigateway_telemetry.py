"""Access logs (stage AccessLogSettings → CloudWatch Logs) and execution metrics
(AWS/ApiGateway in CloudWatch) of REST and HTTP API stages."""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from nubes.testing import NubesServer


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def _eventually(fn: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.3)


def _metric(cw: Any, name: str, dims: list[dict[str, str]]) -> float:
    now = dt.datetime.now(dt.UTC)
    points = cw.get_metric_statistics(Namespace="AWS/ApiGateway", MetricName=name, Dimensions=dims, StartTime=now - dt.timedelta(minutes=5),
                                      EndTime=now + dt.timedelta(minutes=1), Period=60, Statistics=["Sum", "SampleCount"])["Datapoints"]  # fmt: skip
    return float(sum(p["Sum"] for p in points))


def test_rest_api_access_logs_and_metrics(nubes: NubesServer) -> None:
    logs, cw, gw = nubes.client("logs"), nubes.client("cloudwatch"), nubes.client("apigateway")
    logs.create_log_group(logGroupName="/apigw/rest-access")
    group_arn = "arn:aws:logs:us-east-1:000000000000:log-group:/apigw/rest-access:*"
    api = gw.create_rest_api(name="metered-rest")
    gw.put_method(restApiId=api["id"], resourceId=api["rootResourceId"], httpMethod="GET", authorizationType="NONE")
    gw.put_integration(restApiId=api["id"], resourceId=api["rootResourceId"], httpMethod="GET", type="MOCK",
                       requestTemplates={"application/json": '{"statusCode": 200}'})  # fmt: skip
    gw.put_integration_response(restApiId=api["id"], resourceId=api["rootResourceId"], httpMethod="GET", statusCode="200")
    gw.create_deployment(restApiId=api["id"], stageName="live")
    fmt = '{"id":"$context.requestId","status":"$context.status","method":"$context.httpMethod","path":"$context.resourcePath","x":"$context.nope"}'
    gw.update_stage(restApiId=api["id"], stageName="live", patchOperations=[
        {"op": "replace", "path": "/accessLogSettings/destinationArn", "value": group_arn},
        {"op": "replace", "path": "/accessLogSettings/format", "value": fmt}])  # fmt: skip
    base = f"{nubes.endpoint}/_nubes/execute-api/{api['id']}/live"
    assert [_status(base + "/"), _status(base + "/"), _status(base + "/missing")] == [200, 200, 403]
    events = _eventually(lambda: len(logs.filter_log_events(logGroupName="/apigw/rest-access")["events"]) >= 3 and
                         logs.filter_log_events(logGroupName="/apigw/rest-access")["events"])  # fmt: skip
    lines = [json.loads(e["message"]) for e in events]
    assert sorted(line["status"] for line in lines) == ["200", "200", "403"]
    assert all(line["method"] == "GET" and line["x"] == "-" and len(line["id"]) == 36 for line in lines)
    dims = [{"Name": "ApiName", "Value": "metered-rest"}, {"Name": "Stage", "Value": "live"}]
    assert _eventually(lambda: _metric(cw, "Count", dims) >= 3) is True
    assert _metric(cw, "4XXError", dims) == 1.0 and _metric(cw, "5XXError", dims) == 0.0
    assert _eventually(lambda: _metric(cw, "Latency", dims) > 0) is True


def test_http_api_access_logs_and_metrics(nubes: NubesServer) -> None:
    logs, cw, v2 = nubes.client("logs"), nubes.client("cloudwatch"), nubes.client("apigatewayv2")
    logs.create_log_group(logGroupName="/apigw/http-access")
    api_id = v2.create_api(Name="metered-http", ProtocolType="HTTP")["ApiId"]
    v2.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True, AccessLogSettings={
        "DestinationArn": "arn:aws:logs:us-east-1:000000000000:log-group:/apigw/http-access",
        "Format": "$context.requestId $context.routeKey $context.status $context.error.message"})  # fmt: skip
    assert _status(f"{nubes.endpoint}/_nubes/execute-api/{api_id}/nothing") == 404
    events = _eventually(lambda: logs.filter_log_events(logGroupName="/apigw/http-access")["events"])
    assert events and events[0]["message"].endswith(" $default 404 Not Found")
    dims = [{"Name": "ApiId", "Value": api_id}, {"Name": "Stage", "Value": "$default"}]
    assert _eventually(lambda: _metric(cw, "4xx", dims) >= 1) is True
    assert _metric(cw, "Count", dims) == 1.0
