"""WebSocket access-log variables and metric data (no server)."""

from __future__ import annotations

import datetime as dt

from nubes.services.apigateway.telemetry import (
    WsOutcome,
    _ws_metric_data,
    _WsSums,
    render_access_log,
    ws_context_values,
)

CONTEXT = {
    "routeKey": "sendmessage", "eventType": "MESSAGE", "extendedRequestId": "ext1", "requestTime": "23/Nov/2026:12:00:00 +0000",
    "messageDirection": "IN", "stage": "prod", "connectedAt": 1700000000000, "requestTimeEpoch": 1700000001000,
    "identity": {"sourceIp": "10.0.0.1", "userAgent": "ua/1"}, "requestId": "req-1", "domainName": "abc.execute-api.localhost",
    "connectionId": "conn=1", "apiId": "abc", "messageId": "msg-1", "authorizer": {"principalId": "ann", "tier": "gold"},
}  # fmt: skip


def test_ws_context_values_render_as_aws_names_them() -> None:
    fmt = ("$context.connectionId $context.eventType $context.routeKey $context.status $context.integrationStatus "
           "$context.integration.latency $context.messageId $context.authorizer.principalId $context.authorizer.tier "
           "$context.identity.userAgent $context.connectedAt $context.error.messageString $context.nope")  # fmt: skip
    line = render_access_log(fmt, ws_context_values(CONTEXT, WsOutcome(200, 12.7, 201)))
    assert line == 'conn=1 MESSAGE sendmessage 200 201 12 msg-1 ann gold ua/1 1700000000000 - -'
    failed = render_access_log("$context.status $context.integrationLatency $context.error.messageString",
                               ws_context_values(CONTEXT, WsOutcome(500, None, error_message="Internal server error")))  # fmt: skip
    assert failed == '500 - "Internal server error"'


def test_ws_metric_data_has_aws_names_dimensions_and_sums() -> None:
    sums = _WsSums(samples=10, connects=2, messages=7, integration_errors=1, client_errors=0, execution_errors=3,
                   integration=(4, 40.0, 5.0, 15.0))  # fmt: skip
    data = {d["MetricName"]: d for d in _ws_metric_data("abc", "prod", sums, dt.datetime.now(dt.UTC))}
    assert set(data) == {"ConnectCount", "MessageCount", "IntegrationError", "ClientError", "ExecutionError", "IntegrationLatency"}
    assert all(d["Dimensions"] == [{"Name": "ApiId", "Value": "abc"}, {"Name": "Stage", "Value": "prod"}] for d in data.values())
    assert [data[m]["StatisticValues"]["Sum"] for m in ("ConnectCount", "MessageCount", "IntegrationError", "ClientError", "ExecutionError")] == [2, 7, 1, 0, 3]
    assert data["ClientError"]["StatisticValues"]["Maximum"] == 0.0 and data["MessageCount"]["StatisticValues"]["Maximum"] == 1.0
    assert data["IntegrationLatency"]["Unit"] == "Milliseconds"
    assert data["IntegrationLatency"]["StatisticValues"] == {"SampleCount": 4.0, "Sum": 40.0, "Minimum": 5.0, "Maximum": 15.0}
    assert "IntegrationLatency" not in {d["MetricName"] for d in _ws_metric_data("abc", "prod", _WsSums(samples=1, messages=1), dt.datetime.now(dt.UTC))}
