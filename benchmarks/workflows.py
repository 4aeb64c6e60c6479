"""Step Functions speed: state transitions/s and a Map over a Lambda echo.

``python -m benchmarks.workflows [--duration S] [--items N] [--skip-peers]`` prints JSON
lines ``{"bench", "metric", "value", "unit", "baseline", "ratio", ...}``:

* ``engine_express_transitions`` — the interpreter in-process, a 100-state Pass chain,
  history in memory (what an Express execution pays). Target >= 20,000/s.
* ``engine_standard_pass_transitions`` — the same chain with durable history in the
  SQLite store (side-effect-free states are batched into one durable write).
* ``engine_standard_task_transitions`` — 100 Task states (no-op executor), every one
  checkpointed durably before it runs: the honest per-transition durable cost.
  Target >= 2,000/s.
* ``engine_standard_map_transitions`` — a Map over ``MAP_ITEMS`` items whose iterations
  each run one Task (no-op executor), durable: every iteration checkpoints its task and
  records its result, so a restart neither re-runs nor loses it.
* ``server_express_transitions`` / ``server_standard_transitions`` — the Pass chain
  through the API (StartSyncExecution; StartExecution + DescribeExecution polling).
* ``moto_standard_transitions`` — moto's server executing the same chain (its
  ``execute_state_machine`` mode), the same-run baseline of the server figures.
* ``map_lambda_items`` — an Express Map over ``--items`` items with MaxConcurrency 100
  calling a Lambda echo through ``lambda:invoke``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from benchmarks.harness import emit, free_port, start
from nubes.services.stepfunctions.executions import StoreSink
from nubes.workflows.definition import load
from nubes.workflows.history import ExecutionInfo, MemorySink, TaskRequest
from nubes.workflows.interpreter import Interpreter

PYTHON = sys.executable
ROLE = "arn:aws:iam::000000000000:role/sfn"
CHAIN = 100
MAP_ITEMS = 100


def chain(kind: str = "Pass") -> dict[str, Any]:
    """A machine of ``CHAIN`` states of one type, each passing its input on."""
    states: dict[str, Any] = {}
    for i in range(CHAIN):
        state: dict[str, Any] = {"Type": kind}
        if kind == "Task":
            state["Resource"] = "arn:aws:states:::noop:run"
        if i == CHAIN - 1:
            state["End"] = True
        else:
            state["Next"] = f"S{i + 1}"
        states[f"S{i}"] = state
    return {"StartAt": "S0", "States": states}


class Noop:
    """A task executor that returns its parameters."""

    async def run_task(self, request: TaskRequest) -> Any:
        return request.parameters


def _info(n: int) -> ExecutionInfo:
    return ExecutionInfo(f"arn:aws:states:us-east-1:000000000000:execution:bench:{n}", str(n),
                         "arn:aws:states:us-east-1:000000000000:stateMachine:bench", "bench",
                         {"n": n}, time.time())


def map_of_tasks() -> dict[str, Any]:
    """A Pass making ``MAP_ITEMS`` items, then a Map running one Task per item."""
    return {"StartAt": "Items", "States": {
        "Items": {"Type": "Pass", "Next": "M",
                  "Parameters": {"items.$": f"States.ArrayRange(1, {MAP_ITEMS}, 1)"}},
        "M": {"Type": "Map", "ItemsPath": "$.items", "End": True,
              "ItemProcessor": {"StartAt": "T", "States": {"T": {
                  "Type": "Task", "Resource": "arn:aws:states:::noop:run", "End": True}}}}}}


async def _engine(definition: dict[str, Any], duration: float, store: Any = None,
                  transitions: int = CHAIN) -> float:
    machine = load(definition)
    done = 0
    begin = time.perf_counter()
    while time.perf_counter() - begin < duration:
        sink: Any = MemorySink() if store is None else _Sink(store, _info(done).execution_arn)
        interp = Interpreter(machine, _info(done), Noop(), sink, durable=store is not None)
        outcome = await interp.run()
        assert outcome.status == "SUCCEEDED", outcome
        done += 1
    return done * transitions / (time.perf_counter() - begin)


class _Sink(StoreSink):
    def __init__(self, store: Any, arn: str) -> None:
        app: Any = type("A", (), {"store": store})()  # StoreSink only uses app.store
        super().__init__(app, arn)


def engine(duration: float) -> None:
    """In-process interpreter figures."""
    from nubes.storage.sqlite import SqliteStore

    express = asyncio.run(_engine(chain(), duration))
    emit("workflows", "engine_express_transitions", express, "transitions/s", 20000.0,
         target=">= 20,000/s")
    tmp = Path(tempfile.mkdtemp(prefix="bench-sfn-"))

    async def durable(kind: str) -> float:
        store = SqliteStore(tmp / f"{kind}.db")
        try:
            if kind == "Map":
                return await _engine(map_of_tasks(), duration, store, MAP_ITEMS + 2)
            return await _engine(chain(kind), duration, store)
        finally:
            await store.close()

    standard_pass = asyncio.run(durable("Pass"))
    emit("workflows", "engine_standard_pass_transitions", standard_pass, "transitions/s", 2000.0,
         target=">= 2,000/s")
    standard_task = asyncio.run(durable("Task"))
    emit("workflows", "engine_standard_task_transitions", standard_task, "transitions/s", 2000.0,
         target=">= 2,000/s", note="one durable checkpoint per state")
    standard_map = asyncio.run(durable("Map"))
    emit("workflows", "engine_standard_map_transitions", standard_map, "transitions/s",
         standard_task, ratio_of="engine_standard_task_transitions",
         note=f"Map of {MAP_ITEMS} one-Task iterations, each checkpointed and its result kept")


def _client(port: int, service: str = "stepfunctions") -> Any:
    return boto3.client(service, endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test",
                        config=Config(inject_host_prefix=False, retries={"max_attempts": 1}))


def _standard_over_api(sfn: Any, duration: float) -> float:
    arn = sfn.create_state_machine(name=f"chain{time.time_ns()}", roleArn=ROLE,
                                   definition=json.dumps(chain()))["stateMachineArn"]
    done = 0
    begin = time.perf_counter()
    while time.perf_counter() - begin < duration:
        run = sfn.start_execution(stateMachineArn=arn, name=f"r{done}",
                                  input="{}")["executionArn"]
        while sfn.describe_execution(executionArn=run)["status"] == "RUNNING":
            time.sleep(0.001)
        done += 1
    return done * CHAIN / (time.perf_counter() - begin)


def server(duration: float, items: int) -> float:
    """Figures through nubes' API; returns the Standard transitions/s."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-sfn-server-"))
    port = free_port()
    nubes = start("nubes", [PYTHON, "-m", "nubes", "up", "--port", str(port), "--data-dir",
                            str(tmp)], port, ready_path="/_nubes/health")
    try:
        sfn = _client(port)
        arn = sfn.create_state_machine(name="express", roleArn=ROLE, type="EXPRESS",
                                       definition=json.dumps(chain()))["stateMachineArn"]
        done = 0
        begin = time.perf_counter()
        while time.perf_counter() - begin < duration:
            assert sfn.start_sync_execution(stateMachineArn=arn)["status"] == "SUCCEEDED"
            done += 1
        emit("workflows", "server_express_transitions",
             done * CHAIN / (time.perf_counter() - begin), "transitions/s", None)
        standard = _standard_over_api(sfn, duration)
        emit("workflows", "server_standard_transitions", standard, "transitions/s", None)
        if items:
            _map_lambda(port, items)
        return standard
    finally:
        nubes.stop()


def _map_lambda(port: int, items: int) -> None:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("app.py", "def handler(event, context):\n    return event\n")
    lam = _client(port, "lambda")
    lam.create_function(FunctionName="echo", Runtime="python3.12", Handler="app.handler",
                        Role=ROLE, Code={"ZipFile": buf.getvalue()})
    lam.get_waiter("function_active_v2").wait(FunctionName="echo")
    definition = {"StartAt": "M", "States": {"M": {
        "Type": "Map", "MaxConcurrency": 100, "End": True,
        "ItemProcessor": {"StartAt": "E", "States": {"E": {
            "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "OutputPath": "$.Payload",
            "Parameters": {"FunctionName": "echo", "Payload.$": "$"}, "End": True}}}}}}
    sfn = _client(port)
    arn = sfn.create_state_machine(name="map", roleArn=ROLE, type="EXPRESS",
                                   definition=json.dumps(definition))["stateMachineArn"]
    begin = time.perf_counter()
    # Express history is not kept per item, so the 256 KB limit is on the whole output
    out = sfn.start_sync_execution(stateMachineArn=arn, input=json.dumps(list(range(items))))
    elapsed = time.perf_counter() - begin
    emit("workflows", "map_lambda_items", items / elapsed, "items/s", None,
         items=items, status=out["status"], error=out.get("error"),
         cause=str(out.get("cause") or "")[:300] or None, seconds=round(elapsed, 2))


def moto(duration: float) -> float | None:
    """moto's server executing the Pass chain (Standard), or None if it cannot."""
    port = free_port()
    try:
        peer = start("moto", ["moto_server", "-p", str(port)], port)
    except (RuntimeError, FileNotFoundError):
        return None
    try:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/moto-api/config",
            data=json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode(),
            method="POST")
        urllib.request.urlopen(request).read()
        return _standard_over_api(_client(port), duration)
    except Exception as exc:  # a peer that cannot run the chain has no figure
        print(json.dumps({"bench": "workflows", "moto_error": str(exc)[:200]}), flush=True)
        return None
    finally:
        peer.stop()


def main() -> None:
    """Run every figure of this benchmark."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--items", type=int, default=10000, help="Map items (0: skip the Map)")
    parser.add_argument("--skip-peers", action="store_true", help="do not run moto")
    parser.add_argument("--engine-only", action="store_true")
    args = parser.parse_args()
    engine(args.duration)
    if args.engine_only:
        return
    ours = server(args.duration, args.items)
    if not args.skip_peers:
        theirs = moto(args.duration)
        if theirs:
            emit("workflows", "moto_standard_transitions", theirs, "transitions/s", None)
            emit("workflows", "server_standard_vs_moto", ours, "transitions/s", theirs)


if __name__ == "__main__":
    main()
