"""EventBridge deliveries to each kind of target, archives and replay."""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from nubes.testing.server import NubesServer

FORWARD = """
import json, os, boto3

def handler(event, context):
    boto3.client("sqs").send_message(QueueUrl=os.environ["QUEUE_URL"], MessageBody=json.dumps(event))
"""


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def events(nubes: NubesServer) -> Any:
    return nubes.client("events")


@pytest.fixture
def sqs(nubes: NubesServer) -> Any:
    return nubes.client("sqs")


def _queue(sqs: Any, fifo: bool = False) -> tuple[str, str]:
    name = _name("q") + (".fifo" if fifo else "")
    attributes = {"FifoQueue": "true", "ContentBasedDeduplication": "true"} if fifo else {}
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return url, attrs["Attributes"]["QueueArn"]


def _receive(sqs: Any, url: str, count: int = 1, timeout: float = 15.0) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    deadline = time.time() + timeout
    while len(got) < count and time.time() < deadline:
        answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                     AttributeNames=["All"])  # fmt: skip
        got.extend(answer.get("Messages", []))
    return got


def _rule_to(
    events: Any, pattern: dict[str, Any], target: dict[str, Any], bus: str = "default"
) -> str:
    rule = _name("rule")
    events.put_rule(Name=rule, EventBusName=bus, EventPattern=json.dumps(pattern))
    events.put_targets(Rule=rule, EventBusName=bus, Targets=[target])
    return rule


def test_lambda_target_gets_the_event(nubes: NubesServer, events: Any, sqs: Any) -> None:
    url, _ = _queue(sqs)
    lam = nubes.client("lambda")
    name = _name("fn")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("app.py", FORWARD)
    function_arn = lam.create_function(
        FunctionName=name, Runtime="python3.12", Handler="app.handler",
        Role="arn:aws:iam::000000000000:role/lambda", Code={"ZipFile": buf.getvalue()},
        Environment={"Variables": {"QUEUE_URL": url}},
    )["FunctionArn"]  # fmt: skip
    lam.get_waiter("function_active_v2").wait(
        FunctionName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 50}
    )
    source = _name("src")
    _rule_to(events, {"source": [source]}, {"Id": "fn", "Arn": function_arn})
    events.put_events(Entries=[{"Source": source, "DetailType": "t", "Detail": '{"k": "v"}'}])
    messages = _receive(sqs, url, timeout=30)
    assert json.loads(messages[0]["Body"])["detail"] == {"k": "v"}


def test_cross_bus_and_fifo_queue(events: Any, sqs: Any) -> None:
    url, queue_arn = _queue(sqs, fifo=True)
    second = _name("bus")
    second_arn = events.create_event_bus(Name=second)["EventBusArn"]
    source = _name("src")
    _rule_to(events, {"source": [source]}, {"Id": "bus", "Arn": second_arn})
    _rule_to(events, {"source": [source]},
             {"Id": "q", "Arn": queue_arn, "SqsParameters": {"MessageGroupId": "g1"}}, bus=second)  # fmt: skip
    events.put_events(Entries=[{"Source": source, "DetailType": "t", "Detail": '{"n": 1}'}])
    messages = _receive(sqs, url)
    assert json.loads(messages[0]["Body"])["detail"] == {"n": 1}
    assert messages[0]["Attributes"]["MessageGroupId"] == "g1"


def test_archive_and_replay(events: Any, sqs: Any) -> None:
    url, queue_arn = _queue(sqs)
    bus = _name("bus")
    bus_arn = events.create_event_bus(Name=bus)["EventBusArn"]
    archive = _name("arch")
    archive_arn = events.create_archive(ArchiveName=archive, EventSourceArn=bus_arn,
                                        EventPattern=json.dumps({"detail-type": ["keep"]}))["ArchiveArn"]  # fmt: skip
    start = time.time() - 5
    events.put_events(Entries=[
        {"Source": "a", "DetailType": "keep", "Detail": '{"i": 1}', "EventBusName": bus},
        {"Source": "a", "DetailType": "drop", "Detail": '{"i": 2}', "EventBusName": bus},
    ])  # fmt: skip
    described = events.describe_archive(ArchiveName=archive)
    assert described["EventCount"] == 1 and described["SizeBytes"] > 100
    # a rule added after the events were put still gets them on replay
    _rule_to(events, {"source": ["a"]}, {"Id": "q", "Arn": queue_arn}, bus=bus)
    replay = _name("replay")
    events.start_replay(ReplayName=replay, EventSourceArn=archive_arn, EventStartTime=start,
                        EventEndTime=time.time() + 5, Destination={"Arn": bus_arn})  # fmt: skip
    deadline = time.time() + 10
    while events.describe_replay(ReplayName=replay)["State"] != "COMPLETED":
        assert time.time() < deadline
        time.sleep(0.1)
    messages = _receive(sqs, url)
    body = json.loads(messages[0]["Body"])
    assert body["detail"] == {"i": 1}
    assert body["replay-name"] == replay
    assert (
        events.describe_archive(ArchiveName=archive)["EventCount"] == 1
    )  # replays are not re-archived


class _Recorder(BaseHTTPRequestHandler):
    seen: list[tuple[str, str, dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.seen.append(("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_endpoint() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_api_destination_with_api_key(events: Any, http_endpoint: str) -> None:
    connection = events.create_connection(
        Name=_name("conn"), AuthorizationType="API_KEY",
        AuthParameters={"ApiKeyAuthParameters": {"ApiKeyName": "x-api-key", "ApiKeyValue": "s3cret"}},
    )  # fmt: skip
    assert connection["ConnectionState"] == "AUTHORIZED"
    name = _name("dest")
    destination = events.create_api_destination(
        Name=name, ConnectionArn=connection["ConnectionArn"],
        InvocationEndpoint=f"{http_endpoint}/hooks/*", HttpMethod="POST",
        InvocationRateLimitPerSecond=10,
    )  # fmt: skip
    described = events.describe_api_destination(Name=name)
    assert described["InvocationRateLimitPerSecond"] == 10
    source = _name("src")
    _rule_to(events, {"source": [source]}, {
        "Id": "api", "Arn": destination["ApiDestinationArn"],
        "HttpParameters": {"PathParameterValues": ["orders"], "HeaderParameters": {"X-Extra": "1"}},
        "InputPath": "$.detail",
    })  # fmt: skip
    _Recorder.seen.clear()
    events.put_events(Entries=[{"Source": source, "DetailType": "t", "Detail": '{"id": 7}'}])
    deadline = time.time() + 10
    while not _Recorder.seen and time.time() < deadline:
        time.sleep(0.05)
    method, path, headers, body = _Recorder.seen[0]
    assert (method, path) == ("POST", "/hooks/orders")
    assert headers["x-api-key"] == "s3cret" and headers["x-extra"] == "1"
    assert json.loads(body) == {"id": 7}
    secrets = events.describe_connection(Name=connection["ConnectionArn"].split("/")[1])
    assert "ApiKeyValue" not in secrets["AuthParameters"]["ApiKeyAuthParameters"]


def test_sns_step_functions_and_logs_targets(nubes: NubesServer, events: Any, sqs: Any) -> None:
    url, queue_arn = _queue(sqs)
    sns, sfn, logs = nubes.client("sns"), nubes.client("stepfunctions"), nubes.client("logs")
    topic = sns.create_topic(Name=_name("t"))["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn,
                  Attributes={"RawMessageDelivery": "true"})  # fmt: skip
    machine = sfn.create_state_machine(
        name=_name("m"), roleArn="arn:aws:iam::000000000000:role/sfn",
        definition=json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}),
    )["stateMachineArn"]  # fmt: skip
    group = f"/aws/events/{_name('g')}"
    logs.create_log_group(logGroupName=group)
    group_arn = f"arn:aws:logs:us-east-1:000000000000:log-group:{group}"
    source = _name("src")
    rule = _name("rule")
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": [source]}))
    events.put_targets(Rule=rule, Targets=[
        {"Id": "sns", "Arn": topic},
        {"Id": "sfn", "Arn": machine, "RoleArn": "arn:aws:iam::000000000000:role/r"},
        {"Id": "logs", "Arn": group_arn},
    ])  # fmt: skip
    events.put_events(Entries=[{"Source": source, "DetailType": "t", "Detail": '{"x": 1}'}])
    messages = _receive(sqs, url)
    assert json.loads(messages[0]["Body"])["detail"] == {"x": 1}
    deadline = time.time() + 10
    while True:
        executions = sfn.list_executions(stateMachineArn=machine)["executions"]
        found = logs.filter_log_events(logGroupName=group).get("events", [])
        if executions and found:
            break
        assert time.time() < deadline, (executions, found)
        time.sleep(0.1)
    described = sfn.describe_execution(executionArn=executions[0]["executionArn"])
    assert json.loads(described["input"])["detail"] == {"x": 1}
    assert json.loads(found[0]["message"])["source"] == source


class _TokenRecorder(_Recorder):
    seen: list[tuple[str, str, dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.seen.append(("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        answer = b'{"access_token": "tok-1", "expires_in": 3600}' if self.path == "/token" else b""
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


def test_api_destination_with_oauth_client_credentials(events: Any) -> None:
    server = HTTPServer(("127.0.0.1", 0), _TokenRecorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        connection = events.create_connection(
            Name=_name("oauth"), AuthorizationType="OAUTH_CLIENT_CREDENTIALS",
            AuthParameters={"OAuthParameters": {
                "ClientParameters": {"ClientID": "id", "ClientSecret": "secret"},
                "AuthorizationEndpoint": f"{base}/token", "HttpMethod": "POST"}},
        )  # fmt: skip
        destination = events.create_api_destination(
            Name=_name("dest"), ConnectionArn=connection["ConnectionArn"],
            InvocationEndpoint=f"{base}/hook", HttpMethod="POST",
        )  # fmt: skip
        source = _name("src")
        _rule_to(
            events, {"source": [source]}, {"Id": "api", "Arn": destination["ApiDestinationArn"]}
        )
        _TokenRecorder.seen.clear()
        events.put_events(Entries=[{"Source": source, "DetailType": "t", "Detail": "{}"}])
        deadline = time.time() + 10
        while len(_TokenRecorder.seen) < 2 and time.time() < deadline:
            time.sleep(0.05)
        token_call, hook_call = _TokenRecorder.seen[:2]
        assert token_call[1] == "/token" and b"grant_type=client_credentials" in token_call[3]
        assert token_call[2]["authorization"].startswith("Basic ")
        assert hook_call[1] == "/hook" and hook_call[2]["authorization"] == "Bearer tok-1"
    finally:
        server.shutdown()
