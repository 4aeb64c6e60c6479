"""Resuming an execution from its checkpoint after a restart."""

from __future__ import annotations

import asyncio
from typing import Any

from nubes.workflows.definition import load
from nubes.workflows.history import Checkpoint, MemorySink, TaskRequest
from nubes.workflows.interpreter import Interpreter


async def run_until(interp: Interpreter, sink: MemorySink, phase: str) -> None:
    """Run until the sink holds a checkpoint in ``phase``, then 'crash' (cancel)."""
    task = asyncio.create_task(interp.run())
    for _ in range(200):
        await asyncio.sleep(0.005)
        if sink.checkpoint is not None and sink.checkpoint.phase == phase:
            break
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


def test_wait_keeps_its_deadline(wf: Any) -> None:
    definition = {"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Result": {"v": 1}, "Next": "W"},
        "W": {"Type": "Wait", "Seconds": 100, "Next": "B"},
        "B": {"Type": "Pass", "End": True}}}
    clock = wf.FakeClock()
    sink = MemorySink()

    async def first() -> None:
        interp = Interpreter(load(definition), wf.execution({}), wf.Executor(), sink,
                             clock=clock, sleep=asyncio.sleep)
        await run_until(interp, sink, "wait")

    asyncio.run(first())
    checkpoint = Checkpoint.from_json(sink.checkpoint.to_json())  # as stored
    assert checkpoint.phase == "wait" and checkpoint.wait_until == clock.now + 100
    before = list(sink.events)
    assert [e["type"] for e in before][-1] == "WaitStateEntered"

    clock.now += 40  # the server was down for 40 s
    resumed = Interpreter(load(definition), wf.execution({}), wf.Executor(), sink,
                          clock=clock, sleep=clock.sleep)
    outcome = asyncio.run(resumed.run(checkpoint))
    assert outcome.status == "SUCCEEDED" and outcome.output == {"v": 1}
    assert clock.slept == [60.0]
    types = sink.types()
    assert types.count("WaitStateEntered") == 1 and types.count("ExecutionStarted") == 1
    ids = [e["id"] for e in sink.events]
    assert ids == list(range(1, len(ids) + 1))  # numbering continues without gaps


def test_waiting_task_token_stays_valid(wf: Any) -> None:
    resource = "arn:aws:states:::sqs:sendMessage.waitForTaskToken"
    definition = {"StartAt": "T", "States": {"T": {
        "Type": "Task", "Resource": resource,
        "Parameters": {"MessageBody": {"token.$": "$$.Task.Token"}}, "End": True}}}
    sent: list[TaskRequest] = []

    async def send_then_block(req: TaskRequest) -> Any:
        sent.append(req)
        await asyncio.sleep(3600)

    sink = MemorySink()

    async def first() -> None:
        interp = Interpreter(load(definition), wf.execution({}),
                             wf.Executor({resource: send_then_block}), sink)
        await run_until(interp, sink, "task")

    asyncio.run(first())
    token = sent[0].task_token
    assert token and sent[0].parameters == {"MessageBody": {"token": token}}
    checkpoint = Checkpoint.from_json(sink.checkpoint.to_json())
    assert checkpoint.task_token == token

    resumed_calls: list[TaskRequest] = []

    async def callback(req: TaskRequest) -> Any:
        resumed_calls.append(req)
        return {"approved": True}

    interp = Interpreter(load(definition), wf.execution({}), wf.Executor({resource: callback}),
                         sink)
    outcome = asyncio.run(interp.run(checkpoint))
    assert outcome.output == {"approved": True}
    assert resumed_calls[0].resumed and resumed_calls[0].task_token == token
    assert sink.types().count("TaskScheduled") == 1


def test_pass_only_machine_flushes_once_per_checkpointed_state(wf: Any) -> None:
    states: dict[str, Any] = {f"S{i}": {"Type": "Pass", "Next": f"S{i + 1}"} for i in range(50)}
    states["S50"] = {"Type": "Pass", "End": True}
    outcome, sink, _ = asyncio.run(wf.run({"StartAt": "S0", "States": states}, {"a": 1}))
    assert outcome.status == "SUCCEEDED"
    # side-effect-free states are batched: one write for the whole run
    assert sink.flushes == 1 and len(sink.events) == 2 + 51 * 2


def test_request_response_task_is_called_again_after_restart(wf: Any) -> None:
    resource = "arn:aws:states:::sqs:sendMessage"
    definition = {"StartAt": "T", "States": {"T": {
        "Type": "Task", "Resource": resource, "Parameters": {"v.$": "$.v"}, "End": True}}}
    calls: list[TaskRequest] = []

    async def block(req: TaskRequest) -> Any:
        calls.append(req)
        await asyncio.sleep(3600)

    sink = MemorySink()

    async def first() -> None:
        interp = Interpreter(load(definition), wf.execution({"v": 1}),
                             wf.Executor({resource: block}), sink)
        await run_until(interp, sink, "task")

    asyncio.run(first())
    checkpoint = sink.checkpoint
    assert checkpoint is not None and checkpoint.task_token is None

    async def answer(req: TaskRequest) -> Any:
        calls.append(req)
        return {"MessageId": "m"}

    interp = Interpreter(load(definition), wf.execution({"v": 1}),
                         wf.Executor({resource: answer}), sink)
    outcome = asyncio.run(interp.run(checkpoint))
    assert outcome.output == {"MessageId": "m"}
    assert [c.parameters for c in calls] == [{"v": 1}, {"v": 1}] and not calls[1].resumed
    assert sink.types().count("TaskStateEntered") == 1
    assert sink.types().count("TaskScheduled") == 1
