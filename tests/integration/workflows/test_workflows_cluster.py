"""Two nodes sharing PostgreSQL (and NATS): executions are owned by one node,
stopped from another, and adopted when their node dies."""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from nubes.testing.server import NubesServer

PG_URL = os.environ.get("NUBES_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
NATS_URL = "nats://127.0.0.1:4222"
ROLE = "arn:aws:iam::000000000000:role/sfn"
pytestmark = [pytest.mark.postgres, pytest.mark.nats, pytest.mark.slow]


@pytest.fixture
def nodes() -> Iterator[tuple[NubesServer, NubesServer]]:
    try:
        import psycopg

        admin = psycopg.connect(PG_URL, autocommit=True, connect_timeout=3)
        socket.create_connection(("127.0.0.1", 4222), timeout=1).close()
    except Exception as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL and NATS are required with CI=true: {exc}")
        pytest.skip(f"PostgreSQL or NATS is not reachable: {exc}")
    schema = f"nubes_sfn_{uuid.uuid4().hex[:10]}"
    args = ["--store", f"{PG_URL}?options=-csearch_path%3D{schema}", "--broker", NATS_URL]
    # a short owner lease, so that node b adopts a dead node's executions in seconds
    env = {"NUBES_SFN_LEASE_SECONDS": "4"}
    a, b = NubesServer(extra_args=args, env=env), NubesServer(extra_args=args, env=env)
    try:
        a.start()
        b.start()
        yield a, b
    finally:
        a.close()
        b.close()
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.close()


def _wait(sfn: Any, arn: str, timeout: float) -> dict[str, Any]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        desc = sfn.describe_execution(executionArn=arn)
        if desc["status"] != "RUNNING":
            return dict(desc)
        time.sleep(0.1)
    raise AssertionError(f"execution {arn} still running")


def _wait_for_event(sfn: Any, arn: str, event_type: str, timeout: float = 30) -> None:
    """Wait until the execution's history has ``event_type`` (it is under way on its node)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        events = sfn.get_execution_history(executionArn=arn)["events"]
        if any(e["type"] == event_type for e in events):
            return
        time.sleep(0.05)
    raise AssertionError(f"execution {arn} has no {event_type} event")


def test_stop_from_another_node_and_failover(nodes: tuple[NubesServer, NubesServer]) -> None:
    a, b = nodes
    sfn_a, sfn_b = a.client("stepfunctions"), b.client("stepfunctions")
    long_wait = sfn_a.create_state_machine(
        name="long",
        roleArn=ROLE,
        definition=json.dumps(
            {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 300, "End": True}}}
        ),
    )
    run = sfn_a.start_execution(stateMachineArn=long_wait["stateMachineArn"])["executionArn"]
    _wait_for_event(sfn_a, run, "WaitStateEntered")  # node a is running it
    sfn_b.stop_execution(executionArn=run, error="Stop", cause="from node b")
    stopped = _wait(sfn_b, run, 10)
    assert (stopped["status"], stopped["error"]) == ("ABORTED", "Stop")
    types = [e["type"] for e in sfn_b.get_execution_history(executionArn=run)["events"]]
    assert types.count("ExecutionAborted") == 1 and types[-1] == "ExecutionAborted"

    short = sfn_a.create_state_machine(
        name="short",
        roleArn=ROLE,
        definition=json.dumps(
            {
                "StartAt": "W",
                "States": {
                    "W": {"Type": "Wait", "Seconds": 2, "Next": "P"},
                    "P": {"Type": "Pass", "Result": "adopted", "End": True},
                },
            }
        ),
    )
    orphan = sfn_a.start_execution(stateMachineArn=short["stateMachineArn"])["executionArn"]
    _wait_for_event(sfn_a, orphan, "WaitStateEntered")  # node a dies mid-Wait, not before starting
    a.kill()  # node a dies; node b adopts the execution once a's lease runs out
    done = _wait(sfn_b, orphan, 45)
    assert done["status"] == "SUCCEEDED" and json.loads(done["output"]) == "adopted"
    types = [e["type"] for e in sfn_b.get_execution_history(executionArn=orphan)["events"]]
    assert types.count("ExecutionStarted") == 1 and types.count("WaitStateEntered") == 1
