"""Parallel branches and Map iterations survive a killed server: finished ones are
not run again (each Lambda counts its runs in DynamoDB), a Wait inside a branch
keeps its deadline, task tokens handed out inside a Map stay valid — on the embedded
SQLite store and on PostgreSQL."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nubes.testing.server import NubesServer

ROLE = "arn:aws:iam::000000000000:role/sfn"
INVOKE = "arn:aws:states:::lambda:invoke"
PG_URL = os.environ.get("NUBES_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
#: the function adds one to ``calls[name]`` each time it runs, then answers ``name``
#: (or fails its first ``fail_times`` runs)
COUNTER = """
import boto3

ddb = boto3.client("dynamodb")


def handler(event, context):
    got = ddb.update_item(TableName="calls", Key={"name": {"S": event["name"]}},
                          UpdateExpression="ADD n :one", ReturnValues="UPDATED_NEW",
                          ExpressionAttributeValues={":one": {"N": "1"}})
    if int(got["Attributes"]["n"]["N"]) <= event.get("fail_times", 0):
        raise RuntimeError("not yet")
    return event["name"]
"""


def _setup_counter(server: NubesServer) -> None:
    ddb = server.client("dynamodb")
    ddb.create_table(TableName="calls", BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "name", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "name", "AttributeType": "S"}])
    server.create_function(COUNTER, name="count", Role=ROLE, Timeout=30)


def _calls(server: NubesServer) -> dict[str, int]:
    items = server.client("dynamodb").scan(TableName="calls")["Items"]
    return {i["name"]["S"]: int(i["n"]["N"]) for i in items}


def _call(name: str | None, nxt: str | None = None) -> dict[str, Any]:
    """A Task state running the counter for ``name`` (None: the input's ``name``)."""
    payload = {"name": name} if name is not None else {"name.$": "$.name"}
    state: dict[str, Any] = {"Type": "Task", "Resource": INVOKE,
                             "Parameters": {"FunctionName": "count", "Payload": payload}}
    if nxt is None:
        state.update(End=True, OutputPath="$.Payload")
    else:
        state.update(Next=nxt, ResultPath="$.r")
    return state


def _history(sfn: Any, arn: str) -> list[dict[str, Any]]:
    return list(sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"])


def _types(sfn: Any, arn: str) -> list[str]:
    return [e["type"] for e in _history(sfn, arn)]


def _until(sfn: Any, arn: str, ready: Callable[[list[str]], bool], timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not ready(_types(sfn, arn)):
        assert time.time() < deadline, _types(sfn, arn)
        time.sleep(0.05)


def _wait(sfn: Any, arn: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        desc = sfn.describe_execution(executionArn=arn)
        if desc["status"] != "RUNNING":
            return dict(desc)
        time.sleep(0.1)
    raise AssertionError(f"execution {arn} still running")


def _ids_contiguous(sfn: Any, arn: str) -> None:
    ids = [e["id"] for e in _history(sfn, arn)]
    assert ids == list(range(1, len(ids) + 1)), ids


def _start(sfn: Any, name: str, definition: dict[str, Any], value: Any = None) -> str:
    machine = sfn.create_state_machine(name=name, roleArn=ROLE,
                                       definition=json.dumps(definition))
    return str(sfn.start_execution(stateMachineArn=machine["stateMachineArn"],
                                   input=json.dumps(value or {}))["executionArn"])


PARALLEL = {"StartAt": "P", "States": {"P": {"Type": "Parallel", "End": True, "Branches": [
    {"StartAt": "A", "States": {"A": _call("a")}},
    {"StartAt": "B1", "States": {"B1": _call("b1", "W"),
                                 "W": {"Type": "Wait", "Seconds": 6, "Next": "B2"},
                                 "B2": _call("b2")}}]}}}

MAP = {"StartAt": "M", "States": {"M": {
    "Type": "Map", "End": True, "ItemsPath": "$.items",
    "ItemProcessor": {"StartAt": "Call", "States": {
        "Call": _call(None, "Pause"),
        "Pause": {"Type": "Wait", "SecondsPath": "$.wait", "Next": "Out"},
        "Out": {"Type": "Pass", "OutputPath": "$.r.Payload", "End": True}}}}}}
MAP_ITEMS = {"items": [{"name": "m0", "wait": 0}, {"name": "m1", "wait": 0},
                       {"name": "m2", "wait": 6}]}


def _kill_mid_parallel(server: NubesServer) -> None:
    """Kill the server once branch A finished and branch B sits in its Wait."""
    _setup_counter(server)
    sfn = server.client("stepfunctions")
    run = _start(sfn, "par", PARALLEL)
    _until(sfn, run, lambda t: t.count("TaskSucceeded") == 2 and "WaitStateEntered" in t)
    assert _calls(server) == {"a": 1, "b1": 1}
    server.kill()
    server.start()
    sfn = server.client("stepfunctions")
    done = _wait(sfn, run)
    assert done["status"] == "SUCCEEDED", done
    assert json.loads(done["output"]) == ["a", "b2"]
    assert _calls(server) == {"a": 1, "b1": 1, "b2": 1}  # nothing ran twice
    events = _history(sfn, run)
    types = [e["type"] for e in events]
    for kind in ("ExecutionStarted", "ParallelStateEntered", "ParallelStateStarted",
                 "WaitStateEntered", "WaitStateExited", "ParallelStateSucceeded"):
        assert types.count(kind) == 1, (kind, types)
    entered = next(e for e in events if e["type"] == "WaitStateEntered")["timestamp"]
    exited = next(e for e in events if e["type"] == "WaitStateExited")["timestamp"]
    assert 5.9 <= (exited - entered).total_seconds() < 6 + 30  # the original deadline
    _ids_contiguous(sfn, run)


def test_kill_mid_parallel(tmp_path: Path) -> None:
    server = NubesServer(tmp_path / "data").start()
    try:
        _kill_mid_parallel(server)
    finally:
        server.close()


def test_kill_mid_map(tmp_path: Path) -> None:
    server = NubesServer(tmp_path / "data").start()
    try:
        _setup_counter(server)
        sfn = server.client("stepfunctions")
        run = _start(sfn, "map", MAP, MAP_ITEMS)
        _until(sfn, run, lambda t: t.count("MapIterationSucceeded") == 2
               and t.count("WaitStateEntered") == 3)
        assert _calls(server) == {"m0": 1, "m1": 1, "m2": 1}
        server.kill()
        server.start()
        sfn = server.client("stepfunctions")
        done = _wait(sfn, run)
        assert done["status"] == "SUCCEEDED", done
        assert json.loads(done["output"]) == ["m0", "m1", "m2"]
        assert _calls(server) == {"m0": 1, "m1": 1, "m2": 1}
        types = _types(sfn, run)
        assert types.count("MapIterationStarted") == 3 and types.count("MapStateEntered") == 1
        assert types.count("MapIterationSucceeded") == 3 and types.count("TaskScheduled") == 3
        _ids_contiguous(sfn, run)
    finally:
        server.close()


def _tokens_in_a_map(server: NubesServer) -> None:
    """Hand out three tokens in a Map, complete one, kill the server; after the restart
    the other two still complete (and heartbeat) their iterations."""
    sfn = server.client("stepfunctions")
    definition = {"StartAt": "M", "States": {"M": {
        "Type": "Map", "End": True, "ItemsPath": "$.items",
        "ItemProcessor": {"StartAt": "Ask", "States": {"Ask": {
            "Type": "Task", "End": True,
            "Resource": "arn:aws:states:::events:putEvents.waitForTaskToken",
            "Parameters": {"Entries": [{
                "Source": "test", "DetailType": "approval",
                "Detail": {"token.$": "$$.Task.Token", "item.$": "$"}}]}}}}}}}
    run = _start(sfn, "approvals", definition, {"items": ["t0", "t1", "t2"]})
    _until(sfn, run, lambda t: t.count("TaskSubmitted") == 3)
    tokens = {}
    for event in _history(sfn, run):
        if event["type"] == "TaskScheduled":
            detail = json.loads(event["taskScheduledEventDetails"]["parameters"])
            tokens[detail["Entries"][0]["Detail"]["item"]] = (
                detail["Entries"][0]["Detail"]["token"])
    assert sorted(tokens) == ["t0", "t1", "t2"]
    sfn.send_task_success(taskToken=tokens["t0"], output='{"ok": "t0"}')
    _until(sfn, run, lambda t: t.count("MapIterationSucceeded") == 1)

    server.kill()
    server.start()
    sfn = server.client("stepfunctions")
    sfn.send_task_heartbeat(taskToken=tokens["t1"])
    sfn.send_task_success(taskToken=tokens["t1"], output='{"ok": "t1"}')
    _until(sfn, run, lambda t: t.count("MapIterationSucceeded") == 2)
    sfn.send_task_failure(taskToken=tokens["t2"], error="Rejected", cause="no")
    done = _wait(sfn, run)
    assert (done["status"], done["error"]) == ("FAILED", "Rejected"), done
    with pytest.raises(sfn.exceptions.TaskDoesNotExist):  # consumed before the kill
        sfn.send_task_success(taskToken=tokens["t0"], output="{}")
    types = _types(sfn, run)
    assert types.count("TaskScheduled") == 3 and types.count("MapIterationStarted") == 3
    assert types.count("TaskSucceeded") == 2 and types.count("TaskFailed") == 1
    outputs = [json.loads(e["taskSucceededEventDetails"]["output"])
               for e in _history(sfn, run) if e["type"] == "TaskSucceeded"]
    assert outputs == [{"ok": "t0"}, {"ok": "t1"}]
    _ids_contiguous(sfn, run)


def test_task_tokens_inside_a_map_survive_a_kill(tmp_path: Path) -> None:
    server = NubesServer(tmp_path / "data").start()
    try:
        _tokens_in_a_map(server)
    finally:
        server.close()


def test_kill_mid_distributed_map(tmp_path: Path) -> None:
    """A distributed Map's child workflows are not in the parent history; the counts
    show that finished children are not run again and the waiting one resumes."""
    server = NubesServer(tmp_path / "data").start()
    try:
        _setup_counter(server)
        sfn = server.client("stepfunctions")
        definition = json.loads(json.dumps(MAP))
        definition["States"]["M"]["ItemProcessor"]["ProcessorConfig"] = {
            "Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
        run = _start(sfn, "dmap", definition, MAP_ITEMS)
        deadline = time.time() + 60
        while len(_calls(server)) < 3:
            assert time.time() < deadline
            time.sleep(0.05)
        time.sleep(1)  # m0 and m1 finish (Wait 0) and record it; m2 waits 6 s
        runs = sfn.list_map_runs(executionArn=run)["mapRuns"]
        server.kill()
        server.start()
        sfn = server.client("stepfunctions")
        done = _wait(sfn, run)
        assert done["status"] == "SUCCEEDED", done
        assert json.loads(done["output"]) == ["m0", "m1", "m2"]
        assert _calls(server) == {"m0": 1, "m1": 1, "m2": 1}
        types = _types(sfn, run)
        assert types.count("MapRunStarted") == 1 and types.count("MapRunSucceeded") == 1
        after = sfn.list_map_runs(executionArn=run)["mapRuns"]
        assert [r["mapRunArn"] for r in after] == [r["mapRunArn"] for r in runs]
        described = sfn.describe_map_run(mapRunArn=runs[0]["mapRunArn"])
        assert described["itemCounts"]["succeeded"] == 3
    finally:
        server.close()


def test_redrive_runs_only_the_failed_branch(tmp_path: Path) -> None:
    """As on AWS: a redriven Parallel keeps its finished branches' results."""
    server = NubesServer(tmp_path / "data").start()
    try:
        _setup_counter(server)
        sfn = server.client("stepfunctions")
        flaky = _call("flaky")
        flaky["Parameters"]["Payload"]["fail_times"] = 1
        definition = {"StartAt": "P", "States": {"P": {
            "Type": "Parallel", "End": True, "Branches": [
                {"StartAt": "A", "States": {"A": _call("a")}},
                # F fails once A has finished (a Parallel's failure cancels the others)
                {"StartAt": "Later", "States": {
                    "Later": {"Type": "Wait", "Seconds": 3, "Next": "F"}, "F": flaky}}]}}}
        run = _start(sfn, "redrive", definition)
        failed = _wait(sfn, run)
        assert failed["status"] == "FAILED", failed
        assert _calls(server) == {"a": 1, "flaky": 1}
        sfn.redrive_execution(executionArn=run)
        done = _wait(sfn, run)
        assert done["status"] == "SUCCEEDED", done
        assert json.loads(done["output"]) == ["a", "flaky"]
        assert _calls(server) == {"a": 1, "flaky": 2}
        _ids_contiguous(sfn, run)
    finally:
        server.close()


@pytest.fixture
def pg_args() -> Iterator[list[str]]:
    """``nubes up`` arguments for a fresh schema of the test PostgreSQL database."""
    try:
        import psycopg

        admin = psycopg.connect(PG_URL, autocommit=True, connect_timeout=3)
    except Exception as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required with CI=true: {exc}")
        pytest.skip(f"PostgreSQL is not reachable: {exc}")
    schema = f"nubes_sfnb_{uuid.uuid4().hex[:10]}"
    try:
        yield ["--store", f"{PG_URL}?options=-csearch_path%3D{schema}"]
    finally:
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.close()


@pytest.mark.postgres
@pytest.mark.slow
def test_kill_mid_parallel_on_postgresql(tmp_path: Path, pg_args: list[str]) -> None:
    # a short owner lease: the restarted node adopts the killed node's execution sooner
    server = NubesServer(tmp_path / "data", extra_args=pg_args,
                         env={"NUBES_SFN_LEASE_SECONDS": "2"}).start()
    try:
        _kill_mid_parallel(server)
    finally:
        server.close()


@pytest.mark.postgres
@pytest.mark.slow
def test_task_tokens_inside_a_map_on_postgresql(tmp_path: Path, pg_args: list[str]) -> None:
    server = NubesServer(tmp_path / "data", extra_args=pg_args,
                         env={"NUBES_SFN_LEASE_SECONDS": "2"}).start()
    try:
        _tokens_in_a_map(server)
    finally:
        server.close()
