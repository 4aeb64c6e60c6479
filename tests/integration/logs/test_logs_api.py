"""CloudWatch Logs through boto3 and the aws CLI against a real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from nubes.testing.server import NubesServer


def _name(prefix: str) -> str:
    return f"/test/{prefix}-{uuid.uuid4().hex[:8]}"


def _put(logs: Any, group: str, stream: str, messages: list[str], base: int | None = None) -> None:
    now = base if base is not None else int(time.time() * 1000)
    events = [{"timestamp": now + i, "message": m} for i, m in enumerate(messages)]
    logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)


def test_groups_streams_and_events(nubes: NubesServer) -> None:
    logs = nubes.client("logs")
    group = _name("g")
    logs.create_log_group(logGroupName=group, tags={"team": "a"})
    with pytest.raises(ClientError) as err:
        logs.create_log_group(logGroupName=group)
    assert err.value.response["Error"]["Code"] == "ResourceAlreadyExistsException"
    logs.create_log_stream(logGroupName=group, logStreamName="s1")
    _put(logs, group, "s1", ["one", "two", "three"])
    got = logs.get_log_events(logGroupName=group, logStreamName="s1", startFromHead=True)
    assert [e["message"] for e in got["events"]] == ["one", "two", "three"]
    again = logs.get_log_events(
        logGroupName=group, logStreamName="s1", nextToken=got["nextForwardToken"]
    )
    assert again["events"] == [] and again["nextForwardToken"] == got["nextForwardToken"]
    _put(logs, group, "s1", ["four"])
    newer = logs.get_log_events(
        logGroupName=group, logStreamName="s1", nextToken=got["nextForwardToken"]
    )
    assert [e["message"] for e in newer["events"]] == ["four"]
    last_two = logs.get_log_events(logGroupName=group, logStreamName="s1", limit=2)
    assert [e["message"] for e in last_two["events"]] == ["three", "four"]
    groups = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    assert [g["logGroupName"] for g in groups] == [group]
    assert groups[0]["arn"].endswith(f"log-group:{group}:*")
    streams = logs.describe_log_streams(logGroupName=group)["logStreams"]
    assert streams[0]["logStreamName"] == "s1" and streams[0]["lastEventTimestamp"] > 0
    assert logs.list_tags_log_group(logGroupName=group)["tags"] == {"team": "a"}
    logs.delete_log_group(logGroupName=group)
    with pytest.raises(ClientError) as err:
        logs.get_log_events(logGroupName=group, logStreamName="s1")
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_put_events_errors(nubes: NubesServer) -> None:
    logs = nubes.client("logs")
    group = _name("e")
    with pytest.raises(ClientError) as err:
        _put(logs, group, "s", ["x"])
    assert err.value.response["Error"]["Message"] == "The specified log group does not exist."
    logs.create_log_group(logGroupName=group)
    with pytest.raises(ClientError) as err:
        _put(logs, group, "s", ["x"])
    assert err.value.response["Error"]["Message"] == "The specified log stream does not exist."
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    now = int(time.time() * 1000)
    with pytest.raises(ClientError) as err:
        logs.put_log_events(
            logGroupName=group, logStreamName="s",
            logEvents=[{"timestamp": now, "message": "b"}, {"timestamp": now - 5, "message": "a"}],
        )  # fmt: skip
    assert err.value.response["Error"]["Code"] == "InvalidParameterException"
    old = now - 20 * 86_400_000
    out = logs.put_log_events(
        logGroupName=group, logStreamName="s",
        logEvents=[{"timestamp": old, "message": "old"}, {"timestamp": now, "message": "new"}],
    )  # fmt: skip
    assert out["rejectedLogEventsInfo"] == {"tooOldLogEventEndIndex": 0}
    with pytest.raises(ClientError) as err:
        logs.put_retention_policy(logGroupName=group, retentionInDays=2)
    assert err.value.response["Error"]["Code"] == "InvalidParameterException"


def test_filter_log_events(nubes: NubesServer) -> None:
    logs = nubes.client("logs")
    group = _name("f")
    logs.create_log_group(logGroupName=group)
    for stream in ("a", "b"):
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
    base = int(time.time() * 1000)
    _put(logs, group, "a", ['{"level": "ERROR", "n": 1}', "INFO ok", "ERROR plain"], base)
    _put(logs, group, "b", ['{"level": "INFO", "n": 2}', "ERROR other"], base)
    errors = logs.filter_log_events(logGroupName=group, filterPattern="ERROR")["events"]
    assert sorted(e["message"] for e in errors) == sorted(
        ['{"level": "ERROR", "n": 1}', "ERROR plain", "ERROR other"]
    )
    as_json = logs.filter_log_events(logGroupName=group, filterPattern='{ $.level = "ERROR" }')
    assert [e["message"] for e in as_json["events"]] == ['{"level": "ERROR", "n": 1}']
    only_b = logs.filter_log_events(logGroupName=group, logStreamNames=["b"], filterPattern="?ERROR ?INFO")
    assert {e["logStreamName"] for e in only_b["events"]} == {"b"} and len(only_b["events"]) == 2
    page1 = logs.filter_log_events(logGroupName=group, limit=2)
    assert len(page1["events"]) == 2 and "nextToken" in page1
    page2 = logs.filter_log_events(logGroupName=group, limit=10, nextToken=page1["nextToken"])
    assert len(page1["events"]) + len(page2["events"]) == 5
    with pytest.raises(ClientError) as err:
        logs.filter_log_events(logGroupName=group, filterPattern="{ $.level = ")
    assert err.value.response["Error"]["Code"] == "InvalidParameterException"


def test_aws_cli_filter_log_events(nubes: NubesServer) -> None:
    logs = nubes.client("logs")
    group = _name("cli")
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    _put(logs, group, "s", ["hello cli", "bye"])
    env = {**os.environ, **nubes.env_vars()}
    out = subprocess.run(
        [sys.executable, "-m", "awscli", "logs", "filter-log-events",
         "--log-group-name", group, "--filter-pattern", "hello"],
        capture_output=True, text=True, env=env, timeout=60, check=True,
    )  # fmt: skip
    assert [e["message"] for e in json.loads(out.stdout)["events"]] == ["hello cli"]


def test_retention_sweep_removes_old_events(nubes: NubesServer) -> None:
    logs = nubes.client("logs")
    group = _name("ret")
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    old = int(time.time() * 1000) - 5 * 86_400_000
    _put(logs, group, "s", ["old one", "old two"], old)
    _put(logs, group, "s", ["fresh"])
    logs.put_retention_policy(logGroupName=group, retentionInDays=3)
    assert logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"][0]["retentionInDays"] == 3
    deadline = time.time() + 10
    messages: list[str] = []
    while time.time() < deadline:
        messages = [e["message"] for e in logs.get_log_events(logGroupName=group, logStreamName="s",
                                                                startFromHead=True)["events"]]  # fmt: skip
        if messages == ["fresh"]:
            break
        time.sleep(0.1)
    assert messages == ["fresh"]


def test_insights_query(nubes: NubesServer) -> None:
    logs = nubes.client("logs")
    group = _name("q")
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    _put(logs, group, "s", ['{"level": "ERROR", "ms": 5}', '{"level": "INFO", "ms": 7}', '{"level": "ERROR", "ms": 9}'])
    now = int(time.time())
    query_id = logs.start_query(logGroupName=group, startTime=now - 600, endTime=now + 600,
                                queryString='filter level = "ERROR" | stats count(*) as n, sum(ms) as total')["queryId"]  # fmt: skip
    deadline = time.time() + 10
    out: dict[str, Any] = {"status": "Running"}
    while out["status"] in ("Scheduled", "Running") and time.time() < deadline:
        out = logs.get_query_results(queryId=query_id)
        time.sleep(0.05)
    assert out["status"] == "Complete"
    assert out["results"] == [[{"field": "n", "value": "2"}, {"field": "total", "value": "14.0"}]]
    assert out["statistics"]["recordsScanned"] == 3.0
    assert any(q["queryId"] == query_id for q in logs.describe_queries(logGroupName=group)["queries"])
    with pytest.raises(ClientError) as err:
        logs.start_query(logGroupName=group, startTime=now - 600, endTime=now, queryString="bogus command")
    assert err.value.response["Error"]["Code"] == "MalformedQueryException"
    with pytest.raises(ClientError) as err:
        logs.get_query_results(queryId="nope")
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
