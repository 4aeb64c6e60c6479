"""EventBridge through boto3 against a real nubes server."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from nubes.testing.server import NubesServer


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def events(nubes: NubesServer) -> Any:
    return nubes.client("events")


@pytest.fixture
def sqs(nubes: NubesServer) -> Any:
    return nubes.client("sqs")


def _queue(sqs: Any) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=_name("q"))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return url, arn


def _receive(sqs: Any, url: str, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    deadline = time.time() + timeout
    while len(got) < count and time.time() < deadline:
        answer = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"]
        )
        got.extend(answer.get("Messages", []))
    return got


def test_default_bus_always_present(events: Any) -> None:
    bus = events.describe_event_bus()
    assert bus["Name"] == "default"
    assert bus["Arn"].endswith(":event-bus/default")
    names = [b["Name"] for b in events.list_event_buses()["EventBuses"]]
    assert "default" in names
    with pytest.raises(ClientError) as info:
        events.delete_event_bus(Name="default")
    assert info.value.response["Error"]["Code"] == "ValidationException"


def test_bus_lifecycle_and_errors(events: Any) -> None:
    name = _name("bus")
    arn = events.create_event_bus(Name=name, Description="d", Tags=[{"Key": "k", "Value": "v"}])[
        "EventBusArn"
    ]
    assert arn.endswith(f":event-bus/{name}")
    with pytest.raises(ClientError) as info:
        events.create_event_bus(Name=name)
    assert info.value.response["Error"]["Code"] == "ResourceAlreadyExistsException"
    described = events.describe_event_bus(Name=name)
    assert described["Description"] == "d"
    assert events.list_tags_for_resource(ResourceARN=arn)["Tags"] == [{"Key": "k", "Value": "v"}]
    events.put_permission(
        EventBusName=name, StatementId="s1", Action="events:PutEvents", Principal="111122223333"
    )
    policy = json.loads(events.describe_event_bus(Name=name)["Policy"])
    assert policy["Statement"][0]["Sid"] == "s1"
    events.remove_permission(EventBusName=name, StatementId="s1")
    with pytest.raises(ClientError) as info:
        events.remove_permission(EventBusName=name, StatementId="s1")
    assert info.value.response["Error"]["Code"] == "ResourceNotFoundException"
    events.delete_event_bus(Name=name)
    with pytest.raises(ClientError) as info:
        events.describe_event_bus(Name=name)
    assert info.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert info.value.response["Error"]["Message"] == f"Event bus {name} does not exist."


def test_rules_and_bad_patterns(events: Any) -> None:
    rule = _name("rule")
    arn = events.put_rule(Name=rule, EventPattern=json.dumps({"source": ["my.app"]}))["RuleArn"]
    assert arn.endswith(f":rule/{rule}")
    described = events.describe_rule(Name=rule)
    assert described["State"] == "ENABLED"
    assert json.loads(described["EventPattern"]) == {"source": ["my.app"]}
    events.disable_rule(Name=rule)
    assert events.describe_rule(Name=rule)["State"] == "DISABLED"
    assert rule in [r["Name"] for r in events.list_rules(NamePrefix=rule[:8])["Rules"]]
    with pytest.raises(ClientError) as info:
        events.put_rule(Name=_name("bad"), EventPattern='{"source": "my.app"}')
    error = info.value.response["Error"]
    assert error["Code"] == "InvalidEventPatternException"
    assert error["Message"].startswith("Event pattern is not valid. Reason: ")
    with pytest.raises(ClientError) as info:
        events.put_rule(Name=_name("bad"), ScheduleExpression="rate(1 minutes)")
    assert info.value.response["Error"]["Message"] == "Parameter ScheduleExpression is not valid."
    with pytest.raises(ClientError) as info:
        events.describe_rule(Name="no-such-rule")
    assert info.value.response["Error"]["Code"] == "ResourceNotFoundException"
    events.put_targets(
        Rule=rule, Targets=[{"Id": "t1", "Arn": "arn:aws:sqs:us-east-1:000000000000:x"}]
    )
    with pytest.raises(ClientError) as info:
        events.delete_rule(Name=rule)
    assert info.value.response["Error"]["Code"] == "ValidationException"
    assert events.list_rule_names_by_target(TargetArn="arn:aws:sqs:us-east-1:000000000000:x")[
        "RuleNames"
    ] == [rule]
    events.remove_targets(Rule=rule, Ids=["t1"])
    events.delete_rule(Name=rule)


def test_test_event_pattern(events: Any) -> None:
    event = {
        "id": "1", "account": "000000000000", "source": "my.app", "time": "2024-01-01T00:00:00Z",
        "region": "us-east-1", "detail-type": "x", "resources": [], "detail": {"n": 5},
    }  # fmt: skip
    pattern = {"detail": {"n": [{"numeric": [">", 3]}]}}
    assert events.test_event_pattern(EventPattern=json.dumps(pattern), Event=json.dumps(event))[
        "Result"
    ]
    pattern = {"detail": {"n": [{"numeric": [">", 9]}]}}
    assert not events.test_event_pattern(EventPattern=json.dumps(pattern), Event=json.dumps(event))[
        "Result"
    ]
    with pytest.raises(ClientError) as info:
        events.test_event_pattern(EventPattern="{}", Event=json.dumps(event))
    assert info.value.response["Error"]["Code"] == "InvalidEventPatternException"


def test_put_events_entry_errors_and_size_limit(events: Any) -> None:
    result = events.put_events(Entries=[
        {"Source": "my.app", "DetailType": "t", "Detail": "{}"},
        {"Source": "my.app", "DetailType": "t"},
        {"Source": "my.app", "DetailType": "t", "Detail": "[1]"},
        {"Source": "aws.s3", "DetailType": "t", "Detail": "{}"},
    ])  # fmt: skip
    assert result["FailedEntryCount"] == 3
    assert result["Entries"][3]["ErrorCode"] == "NotAuthorizedForSourceException"
    assert "EventId" in result["Entries"][0]
    assert result["Entries"][1]["ErrorCode"] == "InvalidArgument"
    assert result["Entries"][1]["ErrorMessage"] == "Parameter Detail is not valid."
    assert result["Entries"][2]["ErrorCode"] == "MalformedDetail"
    big = json.dumps({"x": "a" * (256 * 1024)})
    with pytest.raises(ClientError) as info:
        events.put_events(Entries=[{"Source": "my.app", "DetailType": "t", "Detail": big}])
    assert info.value.response["Error"]["Code"] == "ValidationException"


def test_put_events_to_sqs_with_input_transformer(events: Any, sqs: Any) -> None:
    url, queue_arn = _queue(sqs)
    bus = _name("bus")
    events.create_event_bus(Name=bus)
    rule = _name("rule")
    events.put_rule(Name=rule, EventBusName=bus, EventPattern=json.dumps(
        {"source": ["shop"], "detail": {"total": [{"numeric": [">=", 100]}]}}))  # fmt: skip
    events.put_targets(Rule=rule, EventBusName=bus, Targets=[{
        "Id": "q", "Arn": queue_arn,
        "InputTransformer": {
            "InputPathsMap": {"order": "$.detail.order", "total": "$.detail.total"},
            "InputTemplate": '{"order": <order>, "total": <total>, "text": "order <order>", "rule": "<aws.events.rule-name>"}',
        },
    }])  # fmt: skip
    result = events.put_events(Entries=[
        {"Source": "shop", "DetailType": "o", "Detail": json.dumps({"order": "A1", "total": 150}), "EventBusName": bus},
        {"Source": "shop", "DetailType": "o", "Detail": json.dumps({"order": "A2", "total": 5}), "EventBusName": bus},
    ])  # fmt: skip
    assert result["FailedEntryCount"] == 0
    messages = _receive(sqs, url)
    assert len(messages) == 1
    assert json.loads(messages[0]["Body"]) == {
        "order": "A1",
        "total": 150,
        "text": "order A1",
        "rule": rule,
    }
    time.sleep(0.5)
    assert _receive(sqs, url, timeout=1.0) == []


def test_undeliverable_event_goes_to_dlq(events: Any, sqs: Any) -> None:
    dlq_url, dlq_arn = _queue(sqs)
    rule = _name("rule")
    rule_arn = events.put_rule(Name=rule, EventPattern=json.dumps({"source": ["dlq.test"]}))[
        "RuleArn"
    ]
    missing = "arn:aws:sqs:us-east-1:000000000000:no-such-queue"
    events.put_targets(Rule=rule, Targets=[{
        "Id": "gone", "Arn": missing, "DeadLetterConfig": {"Arn": dlq_arn},
        "RetryPolicy": {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 60},
    }])  # fmt: skip
    events.put_events(Entries=[{"Source": "dlq.test", "DetailType": "t", "Detail": '{"a": 1}'}])
    messages = _receive(sqs, dlq_url)
    assert len(messages) == 1
    attributes = {k: v["StringValue"] for k, v in messages[0]["MessageAttributes"].items()}
    assert attributes["RULE_ARN"] == rule_arn
    assert attributes["TARGET_ARN"] == missing
    assert attributes["ERROR_CODE"] == "RESOURCE_NOT_FOUND"
    assert json.loads(messages[0]["Body"])["detail"] == {"a": 1}


def test_put_targets_validation(events: Any) -> None:
    rule = _name("rule")
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": ["x"]}))
    bad_targets = [
        ({"Id": "f", "Arn": "arn:aws:sqs:us-east-1:000000000000:q.fifo"}, "SqsParameters must be specified"),
        ({"Id": "i", "Arn": "arn:aws:sqs:us-east-1:000000000000:q", "Input": "{", }, "Input is not valid JSON"),
        ({"Id": "p", "Arn": "arn:aws:sqs:us-east-1:000000000000:q", "InputPath": "detail"}, "not a valid JSON path"),
        ({"Id": "t", "Arn": "arn:aws:sqs:us-east-1:000000000000:q",
          "InputTransformer": {"InputPathsMap": {"a": "$.detail.a"}, "InputTemplate": "<b>"}},
         "invalid placeholder <b>"),
    ]  # fmt: skip
    for target, message in bad_targets:
        with pytest.raises(ClientError) as info:
            events.put_targets(Rule=rule, Targets=[target])
        assert info.value.response["Error"]["Code"] == "ValidationException"
        assert message in info.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as info:
        events.put_targets(Rule=rule, Targets=[
            {"Id": str(i), "Arn": f"arn:aws:sqs:us-east-1:000000000000:q{i}"} for i in range(6)])  # fmt: skip
    assert info.value.response["Error"]["Code"] == "LimitExceededException"
    assert events.list_targets_by_rule(Rule=rule)["Targets"] == []


def test_rule_tags_and_missing_resources(events: Any) -> None:
    rule = _name("rule")
    arn = events.put_rule(Name=rule, EventPattern=json.dumps({"source": ["x"]}),
                          Tags=[{"Key": "team", "Value": "a"}])["RuleArn"]  # fmt: skip
    events.tag_resource(ResourceARN=arn, Tags=[{"Key": "env", "Value": "dev"}])
    tags = events.list_tags_for_resource(ResourceARN=arn)["Tags"]
    assert tags == [{"Key": "env", "Value": "dev"}, {"Key": "team", "Value": "a"}]
    events.untag_resource(ResourceARN=arn, TagKeys=["team"])
    assert events.list_tags_for_resource(ResourceARN=arn)["Tags"] == [
        {"Key": "env", "Value": "dev"}
    ]
    missing = arn + "-gone"
    with pytest.raises(ClientError) as info:
        events.list_tags_for_resource(ResourceARN=missing)
    assert info.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as info:
        events.put_rule(
            Name=_name("r"), EventPattern='{"source": ["x"]}', EventBusName="no-such-bus"
        )
    assert info.value.response["Error"]["Message"] == "Event bus no-such-bus does not exist."
    with pytest.raises(ClientError) as info:
        events.start_replay(ReplayName=_name("rp"), EventSourceArn=arn.replace("rule/", "archive/"),
                            EventStartTime=1, EventEndTime=2, Destination={"Arn": "x"})  # fmt: skip
    assert info.value.response["Error"]["Code"] == "ResourceNotFoundException"
