"""Standard executions survive a killed server: Wait keeps its deadline, task
tokens stay valid, history continues."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from nubes.testing.server import NubesServer

ROLE = "arn:aws:iam::000000000000:role/sfn"


def _wait(sfn: Any, arn: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        desc = sfn.describe_execution(executionArn=arn)
        if desc["status"] != "RUNNING":
            return dict(desc)
        time.sleep(0.1)
    raise AssertionError(f"execution {arn} still running")


def _history(sfn: Any, arn: str) -> list[dict[str, Any]]:
    return list(sfn.get_execution_history(executionArn=arn)["events"])


def test_kill_and_resume(tmp_path: Path) -> None:
    server = NubesServer(tmp_path / "data").start()
    try:
        sfn = server.client("stepfunctions")
        waiting = sfn.create_state_machine(
            name="waiter",
            roleArn=ROLE,
            definition=json.dumps(
                {
                    "StartAt": "Before",
                    "States": {
                        "Before": {"Type": "Pass", "Result": {"step": 1}, "Next": "Sleep"},
                        "Sleep": {"Type": "Wait", "Seconds": 4, "Next": "After"},
                        "After": {"Type": "Pass", "Parameters": {"done.$": "$.step"}, "End": True},
                    },
                }
            ),
        )
        callback = sfn.create_state_machine(
            name="callback",
            roleArn=ROLE,
            definition=json.dumps(
                {
                    "StartAt": "Ask",
                    "States": {
                        "Ask": {
                            "Type": "Task",
                            "Resource": "arn:aws:states:::events:putEvents.waitForTaskToken",
                            "Parameters": {
                                "Entries": [
                                    {
                                        "Source": "test",
                                        "DetailType": "approval",
                                        "Detail": {"token.$": "$$.Task.Token"},
                                    }
                                ]
                            },
                            "End": True,
                        }
                    },
                }
            ),
        )
        started = time.time()
        w = sfn.start_execution(stateMachineArn=waiting["stateMachineArn"])["executionArn"]
        c = sfn.start_execution(stateMachineArn=callback["stateMachineArn"])["executionArn"]
        deadline = time.time() + 30
        while "WaitStateEntered" not in [
            e["type"] for e in _history(sfn, w)
        ] or "TaskStarted" not in [e["type"] for e in _history(sfn, c)]:
            assert time.time() < deadline
            time.sleep(0.05)
        scheduled = next(e for e in _history(sfn, c) if e["type"] == "TaskScheduled")
        params = json.loads(scheduled["taskScheduledEventDetails"]["parameters"])
        token = params["Entries"][0]["Detail"]["token"]

        server.kill()  # SIGKILL: no clean shutdown
        server.start()
        sfn = server.client("stepfunctions")
        done = _wait(sfn, w)
        assert done["status"] == "SUCCEEDED" and json.loads(done["output"]) == {"done": 1}
        # the Wait kept its original deadline: 4 s after it was entered, not after restart
        events = _history(sfn, w)
        entered = next(e for e in events if e["type"] == "WaitStateEntered")["timestamp"]
        exited = next(e for e in events if e["type"] == "WaitStateExited")["timestamp"]
        assert 3.9 <= (exited - entered).total_seconds() < 4 + 15  # ms precision on the wire
        assert done["stopDate"].timestamp() > started
        types = [e["type"] for e in _history(sfn, w)]
        assert types.count("WaitStateEntered") == 1 and types.count("ExecutionStarted") == 1
        ids = [e["id"] for e in _history(sfn, w)]
        assert ids == list(range(1, len(ids) + 1))

        sfn.send_task_success(taskToken=token, output='{"ok": true}')
        done = _wait(sfn, c)
        assert done["status"] == "SUCCEEDED" and json.loads(done["output"]) == {"ok": True}
        assert [e["type"] for e in _history(sfn, c)].count("TaskScheduled") == 1
    finally:
        server.close()
