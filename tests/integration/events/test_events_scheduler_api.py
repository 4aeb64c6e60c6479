"""EventBridge Scheduler through boto3 against a real nubes server."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from nubes.testing.server import NubesServer

ROLE = "arn:aws:iam::000000000000:role/scheduler"


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def scheduler(nubes: NubesServer) -> Any:
    return nubes.client("scheduler")


@pytest.fixture
def sqs(nubes: NubesServer) -> Any:
    return nubes.client("sqs")


def _queue(sqs: Any) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=_name("q"))["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return url, attrs["Attributes"]["QueueArn"]


def _receive(sqs: Any, url: str, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    deadline = time.time() + timeout
    while len(got) < count and time.time() < deadline:
        answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        got.extend(answer.get("Messages", []))
    return got


def test_groups(scheduler: Any) -> None:
    assert scheduler.get_schedule_group(Name="default")["State"] == "ACTIVE"
    name = _name("g")
    arn = scheduler.create_schedule_group(Name=name, Tags=[{"Key": "k", "Value": "v"}])[
        "ScheduleGroupArn"
    ]
    assert arn.endswith(f":schedule-group/{name}")
    names = [g["Name"] for g in scheduler.list_schedule_groups()["ScheduleGroups"]]
    assert "default" in names and name in names
    with pytest.raises(ClientError) as info:
        scheduler.create_schedule_group(Name=name)
    assert info.value.response["Error"]["Code"] == "ConflictException"
    scheduler.delete_schedule_group(Name=name)
    with pytest.raises(ClientError) as info:
        scheduler.get_schedule_group(Name=name)
    assert info.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_group_tags(scheduler: Any) -> None:
    name = _name("g")
    arn = scheduler.create_schedule_group(Name=name, Tags=[{"Key": "k", "Value": "v"}])[
        "ScheduleGroupArn"
    ]
    assert scheduler.list_tags_for_resource(ResourceArn=arn)["Tags"] == [{"Key": "k", "Value": "v"}]
    scheduler.untag_resource(ResourceArn=arn, TagKeys=["k"])
    assert scheduler.list_tags_for_resource(ResourceArn=arn)["Tags"] == []


def test_schedule_crud_and_validation(scheduler: Any) -> None:
    name = _name("s")
    start = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    scheduler.create_schedule(
        Name=name, ScheduleExpression="cron(0 9 ? * MON-FRI *)",
        ScheduleExpressionTimezone="Europe/Berlin", StartDate=start,
        FlexibleTimeWindow={"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 15},
        Target={"Arn": "arn:aws:sqs:us-east-1:000000000000:q", "RoleArn": ROLE, "Input": "x"},
    )  # fmt: skip
    got = scheduler.get_schedule(Name=name)
    assert got["ScheduleExpressionTimezone"] == "Europe/Berlin"
    assert got["State"] == "ENABLED"
    assert abs(got["StartDate"].timestamp() - start.timestamp()) < 1
    assert got["FlexibleTimeWindow"] == {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 15}
    with pytest.raises(ClientError) as info:
        scheduler.create_schedule(Name=name, ScheduleExpression="rate(5 minutes)",
                                  FlexibleTimeWindow={"Mode": "OFF"},
                                  Target={"Arn": "arn:aws:sqs:us-east-1:000000000000:q", "RoleArn": ROLE})  # fmt: skip
    assert info.value.response["Error"]["Code"] == "ConflictException"
    scheduler.update_schedule(Name=name, ScheduleExpression="rate(5 minutes)", State="DISABLED",
                              FlexibleTimeWindow={"Mode": "OFF"},
                              Target={"Arn": "arn:aws:sqs:us-east-1:000000000000:q", "RoleArn": ROLE})  # fmt: skip
    assert scheduler.get_schedule(Name=name)["State"] == "DISABLED"
    listed = scheduler.list_schedules(NamePrefix=name)["Schedules"]
    assert [s["Name"] for s in listed] == [name]
    scheduler.delete_schedule(Name=name)
    with pytest.raises(ClientError) as info:
        scheduler.get_schedule(Name=name)
    assert info.value.response["Error"]["Code"] == "ResourceNotFoundException"
    for bad in ("rate(0 minutes)", "cron(0 9 * * * *)", "every day"):
        with pytest.raises(ClientError) as info:
            scheduler.create_schedule(Name=_name("bad"), ScheduleExpression=bad,
                                      FlexibleTimeWindow={"Mode": "OFF"},
                                      Target={"Arn": "arn:aws:sqs:us-east-1:000000000000:q", "RoleArn": ROLE})  # fmt: skip
        assert info.value.response["Error"]["Code"] == "ValidationException"
        assert info.value.response["Error"]["Message"] == f"Invalid Schedule Expression {bad}."
    with pytest.raises(ClientError) as info:
        scheduler.create_schedule(Name=_name("bad"), ScheduleExpression="rate(5 minutes)",
                                  FlexibleTimeWindow={"Mode": "OFF"},
                                  Target={"Arn": "arn:aws:scheduler:::aws-sdk:sqs:noSuchThing",
                                          "RoleArn": ROLE})  # fmt: skip
    assert info.value.response["Error"]["Code"] == "ValidationException"


def test_at_schedule_fires_templated_and_universal_targets(scheduler: Any, sqs: Any) -> None:
    url, arn = _queue(sqs)
    when = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%S")
    name = _name("once")
    scheduler.create_schedule(
        Name=name, ScheduleExpression=f"at({when})", FlexibleTimeWindow={"Mode": "OFF"},
        ActionAfterCompletion="DELETE",
        Target={"Arn": arn, "RoleArn": ROLE, "Input": '{"t": "<aws.scheduler.scheduled-time>"}'},
    )  # fmt: skip
    universal = _name("sdk")
    scheduler.create_schedule(
        Name=universal, ScheduleExpression="rate(1 hour)", FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": "arn:aws:scheduler:::aws-sdk:sqs:sendMessage", "RoleArn": ROLE,
                "Input": json.dumps({"QueueUrl": url, "MessageBody": "from universal"})},
    )  # fmt: skip
    bodies = sorted(m["Body"] for m in _receive(sqs, url, 2))
    assert bodies[0] == "from universal"
    assert json.loads(bodies[1])["t"] == f"{when}Z"
    with pytest.raises(ClientError):
        scheduler.get_schedule(Name=name)  # deleted after completion
    scheduler.delete_schedule(Name=universal)


def test_schedule_puts_events_on_a_bus(nubes: NubesServer, scheduler: Any, sqs: Any) -> None:
    url, queue_arn = _queue(sqs)
    events = nubes.client("events")
    source = _name("sched")
    rule = _name("rule")
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": [source]}))
    events.put_targets(Rule=rule, Targets=[{"Id": "q", "Arn": queue_arn}])
    bus_arn = events.describe_event_bus()["Arn"]
    name = _name("to-bus")
    scheduler.create_schedule(
        Name=name, ScheduleExpression="rate(1 day)", FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": bus_arn, "RoleArn": ROLE, "Input": '{"hello": "bus"}',
                "EventBridgeParameters": {"DetailType": "Nightly", "Source": source}},
    )  # fmt: skip
    event = json.loads(_receive(sqs, url)[0]["Body"])
    assert (event["source"], event["detail-type"], event["detail"]) == (
        source,
        "Nightly",
        {"hello": "bus"},
    )
    scheduler.delete_schedule(Name=name)
