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


WS_FN = (
    "import json\n"
    "def handler(event, context):\n"
    "    rc = event['requestContext']\n"
    "    if rc['eventType'] != 'MESSAGE':\n"
    "        return {'statusCode': 200}\n"
    "    action = json.loads(event['body']).get('action')\n"
    "    if action == 'boom':\n"
    "        raise RuntimeError('boom')\n"
    "    if action == 'teapot':\n"
    "        return {'statusCode': 418, 'body': 'short and stout'}\n"
    "    return {'statusCode': 200, 'body': rc['connectionId']}\n"
)


def _ws_function(nubes: NubesServer) -> str:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", WS_FN)
    lam = nubes.client("lambda")
    arn: str = lam.create_function(FunctionName="ws-metered", Runtime="python3.12", Handler="app.handler",
                                   Role="arn:aws:iam::000000000000:role/x", Code={"ZipFile": buf.getvalue()})["FunctionArn"]  # fmt: skip
    lam.get_waiter("function_active_v2").wait(FunctionName="ws-metered")
    return arn


def test_websocket_api_access_logs_and_metrics(nubes: NubesServer) -> None:
    from websockets.sync.client import connect

    logs, cw, v2 = nubes.client("logs"), nubes.client("cloudwatch"), nubes.client("apigatewayv2")
    logs.create_log_group(logGroupName="/apigw/ws-access")
    arn = _ws_function(nubes)
    api_id = v2.create_api(Name="metered-ws", ProtocolType="WEBSOCKET", RouteSelectionExpression="$request.body.action")["ApiId"]
    integ = v2.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY", IntegrationUri=arn)["IntegrationId"]
    for key in ("$connect", "$disconnect", "boom", "teapot"):
        v2.create_route(ApiId=api_id, RouteKey=key, Target=f"integrations/{integ}")
    v2.create_route(ApiId=api_id, RouteKey="echo", Target=f"integrations/{integ}", RouteResponseSelectionExpression="$default")
    fmt = ('{"id":"$context.connectionId","type":"$context.eventType","route":"$context.routeKey","status":"$context.status",'
           '"integration":"$context.integrationStatus","error":"$context.error.message","ip":"$context.identity.sourceIp",'
           '"req":"$context.requestId","api":"$context.apiId","stage":"$context.stage","latency":"$context.integrationLatency"}')  # fmt: skip
    v2.create_stage(ApiId=api_id, StageName="prod", AutoDeploy=True, AccessLogSettings={
        "DestinationArn": "arn:aws:logs:us-east-1:000000000000:log-group:/apigw/ws-access:*", "Format": fmt})  # fmt: skip
    management = nubes.client("apigatewaymanagementapi", endpoint_url=f"{nubes.endpoint}/_nubes/execute-api/{api_id}/prod")
    with connect(f"ws://127.0.0.1:{nubes.port}/_nubes/execute-api/{api_id}/prod") as ws:
        ws.send(json.dumps({"action": "echo"}))
        connection_id = ws.recv(timeout=20)
        ws.send(json.dumps({"action": "boom"}))
        assert json.loads(ws.recv(timeout=20))["message"] == "Internal server error"
        ws.send(json.dumps({"action": "teapot"}))  # no route response: nothing comes back
        ws.send(json.dumps({"action": "nowhere"}))  # no such route and no $default
        assert json.loads(ws.recv(timeout=20))["message"] == "Forbidden"
        management.post_to_connection(ConnectionId=connection_id, Data=b"pushed")
        assert ws.recv(timeout=20) == "pushed"

    def lines() -> list[dict[str, str]]:
        return [json.loads(e["message"]) for e in logs.filter_log_events(logGroupName="/apigw/ws-access")["events"]]

    found = _eventually(lambda: len(lines()) >= 6 and lines())
    assert [(line["type"], line["route"], line["status"], line["integration"]) for line in found] == [
        ("CONNECT", "$connect", "200", "200"),
        ("MESSAGE", "echo", "200", "200"),
        ("MESSAGE", "boom", "500", "-"),
        ("MESSAGE", "teapot", "418", "418"),
        ("MESSAGE", "$default", "403", "-"),
        ("DISCONNECT", "$disconnect", "200", "200"),
    ]
    assert {line["id"] for line in found} == {connection_id}
    assert all(line["ip"] == "127.0.0.1" and line["api"] == api_id and line["stage"] == "prod" for line in found)
    assert len({line["req"] for line in found}) == 6
    assert [line["error"] for line in found][2:5] == ["Internal server error", "-", "Forbidden"]
    assert found[1]["latency"].isdigit() and found[4]["latency"] == "-"
    streams = logs.describe_log_streams(logGroupName="/apigw/ws-access")["logStreams"]
    assert [s["logStreamName"] for s in streams] == [f"{api_id}-prod"]

    dims = [{"Name": "ApiId", "Value": api_id}, {"Name": "Stage", "Value": "prod"}]
    # 4 messages in; the echo, the two errors and the push out
    assert _eventually(lambda: _metric(cw, "MessageCount", dims) >= 8) is True
    assert _eventually(lambda: _metric(cw, "ConnectCount", dims) >= 1) is True
    assert (_metric(cw, "MessageCount", dims), _metric(cw, "ConnectCount", dims)) == (8.0, 1.0)
    assert _metric(cw, "ExecutionError", dims) == 1.0
    assert _metric(cw, "IntegrationError", dims) == 1.0
    assert _metric(cw, "ClientError", dims) == 1.0
    assert _metric(cw, "IntegrationLatency", dims) > 0
    # HTTP API metric names are not used for WebSocket stages
    assert _metric(cw, "Count", dims) == 0.0
