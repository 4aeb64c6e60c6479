"""The execution graph: layout and the status each state gets from a history."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from nubes.console.graph import execution_graph, layout, state_statuses
from nubes.testing.server import NubesServer


def _entered(name: str, kind: str = "Task") -> dict[str, Any]:
    return {"type": f"{kind}StateEntered", "stateEnteredEventDetails": {"name": name}}


def _exited(name: str, kind: str = "Task") -> dict[str, Any]:
    return {"type": f"{kind}StateExited", "stateExitedEventDetails": {"name": name}}


def test_caught_failure_running_and_failed_states() -> None:
    events = [
        {"type": "ExecutionStarted"},
        _entered("Call"),
        {"type": "TaskFailed"},
        _exited("Call"),
        _entered("Recover", "Pass"),
        _exited("Recover", "Pass"),
        _entered("Wait", "Wait"),
    ]
    running = state_statuses(events, "RUNNING")
    assert {k: v["status"] for k, v in running.items()} == {
        "Call": "caught",
        "Recover": "succeeded",
        "Wait": "running",
    }
    ended = state_statuses(events, "FAILED")
    assert ended["Wait"]["status"] == "failed"


def test_failure_found_through_previous_event_ids_across_branches() -> None:
    events = [
        {"id": 1, "type": "ExecutionStarted"},
        {"id": 2, "previousEventId": 1, **_entered("Left")},
        {"id": 3, "previousEventId": 1, **_entered("Right")},
        {"id": 4, "previousEventId": 2, "type": "TaskScheduled"},
        {"id": 5, "previousEventId": 3, "type": "TaskScheduled"},
        {
            "id": 6,
            "previousEventId": 4,
            "type": "TaskFailed",
        },  # Left fails while Right was entered last
        {"id": 7, "previousEventId": 5, **_exited("Right")},
    ]
    statuses = state_statuses(events, "FAILED")
    assert statuses["Left"]["failed"] == 1 and statuses["Right"]["failed"] == 0
    assert statuses["Left"]["status"] == "failed" and statuses["Right"]["status"] == "succeeded"


def test_layout_rows_follow_transitions_and_groups_contain_children() -> None:
    definition = {
        "StartAt": "A",
        "States": {
            "A": {"Type": "Pass", "Next": "P"},
            "P": {"Type": "Parallel", "Next": "B", "Branches": [
                {"StartAt": "X", "States": {"X": {"Type": "Pass", "End": True}}},
                {"StartAt": "Y", "States": {"Y": {"Type": "Pass", "End": True}}},
            ]},
            "B": {"Type": "Pass", "Next": "A"},
            "Lost": {"Type": "Succeed"},
        },
    }  # fmt: skip
    graph = layout(definition)
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert nodes["A"]["y"] < nodes["P"]["y"] < nodes["B"]["y"] < nodes["Lost"]["y"]
    p, x, y = nodes["P"], nodes["P/0/X"], nodes["P/1/Y"]
    for child in (x, y):
        assert child["parent"] == "P"
        assert p["x"] <= child["x"] and child["x"] + child["w"] <= p["x"] + p["w"]
        assert p["y"] <= child["y"] and child["y"] + child["h"] <= p["y"] + p["h"]
    assert x["x"] + x["w"] <= y["x"]  # branches side by side, not overlapping
    assert {"from": "B", "to": "A", "label": ""} in graph["edges"]  # the loop back
    assert (
        graph["width"] >= p["x"] + p["w"]
        and graph["height"] >= nodes["$end"]["y"] + nodes["$end"]["h"]
    )
    coloured = execution_graph(definition, [], "RUNNING")
    assert {n["status"] for n in coloured["nodes"]} == {"not-reached"}


def _wait_done(sfn: Any, arn: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = str(sfn.describe_execution(executionArn=arn)["status"])
        if status != "RUNNING":
            return status
        time.sleep(0.05)
    raise AssertionError("execution did not finish")


def test_graph_of_failed_and_running_executions(console: Any, nubes: NubesServer) -> None:
    sfn = nubes.client("stepfunctions")
    role = "arn:aws:iam::000000000000:role/sfn"
    tag = uuid.uuid4().hex[:8]
    failing = {"StartAt": "Check", "States": {"Check": {"Type": "Pass", "Next": "Oops"},
                                               "Oops": {"Type": "Fail", "Error": "Bad", "Cause": "on purpose"}}}  # fmt: skip
    arn = sfn.create_state_machine(
        name=f"console-fail-{tag}", definition=json.dumps(failing), roleArn=role
    )["stateMachineArn"]
    run = sfn.start_execution(stateMachineArn=arn)["executionArn"]
    assert _wait_done(sfn, run) == "FAILED"
    graph = console.api("graph", arn=run)
    nodes = {n["id"]: n["status"] for n in graph["nodes"]}
    assert nodes == {
        "Check": "succeeded",
        "Oops": "failed",
        "$start": "succeeded",
        "$end": "failed",
    }
    listed = console.api("executions", arn=arn, status="FAILED")["executions"]
    assert [e["executionArn"] for e in listed] == [run]

    waiting = {"StartAt": "Hold", "States": {"Hold": {"Type": "Wait", "Seconds": 300, "Next": "After"},
                                             "After": {"Type": "Succeed"}}}  # fmt: skip
    arn = sfn.create_state_machine(
        name=f"console-wait-{tag}", definition=json.dumps(waiting), roleArn=role
    )["stateMachineArn"]
    run = sfn.start_execution(stateMachineArn=arn)["executionArn"]
    try:
        deadline = time.monotonic() + 10
        nodes = {}
        while time.monotonic() < deadline and nodes.get("Hold") != "running":
            nodes = {n["id"]: n["status"] for n in console.api("graph", arn=run)["nodes"]}
            time.sleep(0.05)
        assert (
            nodes["Hold"] == "running"
            and nodes["After"] == "not-reached"
            and nodes["$end"] == "not-reached"
        )
    finally:
        sfn.stop_execution(executionArn=run)


def test_forward_transitions_point_down_even_past_a_shortcut() -> None:
    definition = {
        "StartAt": "A",
        "States": {
            "A": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.x", "IsPresent": True, "Next": "C"}],
                "Default": "B",
            },
            "B": {"Type": "Pass", "Next": "C"},
            "C": {"Type": "Pass", "Next": "D"},
            "D": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.y", "IsPresent": True, "Next": "A"}],
                "Default": "E",
            },
            "E": {"Type": "Succeed"},
        },
    }
    nodes = {n["id"]: n for n in layout(definition)["nodes"]}
    assert nodes["A"]["y"] < nodes["B"]["y"] < nodes["C"]["y"] < nodes["D"]["y"] < nodes["E"]["y"]
