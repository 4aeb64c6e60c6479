"""Parallel branches and Map iterations resume from their own checkpoints after a
restart: finished ones are not run again, a Wait keeps its deadline, task tokens
handed out inside a branch stay valid."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from nubes.workflows.definition import load
from nubes.workflows.history import Checkpoint, MemorySink, TaskRequest, ThreadPath
from nubes.workflows.interpreter import Interpreter, Outcome

LAMBDA = "arn:aws:states:::lambda:invoke"
TOKEN = "arn:aws:states:::sqs:sendMessage.waitForTaskToken"


def stored(sink: MemorySink) -> tuple[Checkpoint, dict[ThreadPath, Checkpoint]]:
    """The checkpoints as a restarted server reads them back."""
    assert sink.checkpoint is not None
    top = Checkpoint.from_json(sink.checkpoint.to_json())
    return top, {p: Checkpoint.from_json(c.to_json()) for p, c in sink.branches.items()}


def crash_when(interp: Interpreter, ready: Callable[[], bool]) -> None:
    """Run until ``ready()``, then cancel the run as a killed server would stop it."""

    async def go() -> None:
        task = asyncio.create_task(interp.run())
        for _ in range(400):
            await asyncio.sleep(0.005)
            if ready():
                break
        else:
            raise AssertionError("the execution never got there")
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    asyncio.run(go())


def resume(wf: Any, definition: dict[str, Any], sink: MemorySink, executor: Any,
           input: Any = None, clock: Any = None) -> Outcome:
    top, branches = stored(sink)
    clock = clock or wf.FakeClock()
    interp = Interpreter(load(definition), wf.execution(input), executor, sink,
                         clock=clock, sleep=clock.sleep)
    return asyncio.run(interp.run(top, branches))


def _ids_contiguous(sink: MemorySink) -> None:
    ids = [e["id"] for e in sink.events]
    assert sorted(ids) == list(range(1, len(ids) + 1)), ids


class Counter:
    """A Lambda stand-in counting its calls per payload name; ``block`` names never answer."""

    def __init__(self, block: frozenset[str] = frozenset()) -> None:
        self.calls: dict[str, int] = {}
        self.block = block

    async def __call__(self, req: TaskRequest) -> Any:
        name = req.parameters["Payload"]["name"]
        self.calls[name] = self.calls.get(name, 0) + 1
        if name in self.block:
            await asyncio.sleep(3600)
        return {"Payload": name}


def _call(name: str, nxt: str | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {"Type": "Task", "Resource": LAMBDA,
                             "Parameters": {"FunctionName": "f", "Payload": {"name": name}},
                             "ResultSelector": {"r.$": "$.Payload"}}
    if nxt is None:
        state["End"] = True
    else:
        state["Next"] = nxt
    return state


PARALLEL = {"StartAt": "P", "States": {"P": {"Type": "Parallel", "End": True, "Branches": [
    {"StartAt": "A", "States": {"A": _call("a")}},
    {"StartAt": "B1", "States": {"B1": _call("b1", "W"),
                                 "W": {"Type": "Wait", "Seconds": 100, "Next": "B2"},
                                 "B2": _call("b2")}},
]}}}


def test_parallel_finished_branch_is_not_run_again_and_wait_keeps_deadline(wf: Any) -> None:
    sink, clock, counter = MemorySink(), wf.FakeClock(), Counter()
    interp = Interpreter(load(PARALLEL), wf.execution({}), wf.Executor({LAMBDA: counter}), sink,
                         clock=clock, sleep=asyncio.sleep)
    crash_when(interp, lambda: ("P", 1) in sink.branches
               and sink.branches[("P", 1)].phase == "wait" and ("P", 0) in sink.branches)
    assert counter.calls == {"a": 1, "b1": 1}
    assert sink.branches[("P", 0)].phase == "done"
    assert sink.branches[("P", 1)].wait_until == clock.now + 100
    assert sink.checkpoint is not None and sink.checkpoint.phase == "fanout"

    clock.now += 30  # down for 30 s
    resumed_clock = wf.FakeClock(clock.now)
    outcome = resume(wf, PARALLEL, sink, wf.Executor({LAMBDA: counter}), clock=resumed_clock)
    assert outcome.status == "SUCCEEDED", outcome
    assert outcome.output == [{"r": "a"}, {"r": "b2"}]
    assert counter.calls == {"a": 1, "b1": 1, "b2": 1}
    assert resumed_clock.slept == [70.0]  # the rest of the original 100 s
    types = sink.types()
    for kind in ("ExecutionStarted", "ParallelStateEntered", "ParallelStateStarted",
                 "WaitStateEntered", "ParallelStateSucceeded"):
        assert types.count(kind) == 1, kind
    _ids_contiguous(sink)
    assert sink.branches == {}  # the visit ended: its branch checkpoints are gone


def test_task_in_flight_inside_a_branch_is_called_again(wf: Any) -> None:
    """As at top level: a request-response task that was running is retried."""
    sink, counter = MemorySink(), Counter(block=frozenset({"b1"}))
    interp = Interpreter(load(PARALLEL), wf.execution({}), wf.Executor({LAMBDA: counter}), sink)
    crash_when(interp, lambda: ("P", 1) in sink.branches and ("P", 0) in sink.branches)
    assert sink.branches[("P", 1)].phase == "task"
    counter.block = frozenset()
    outcome = resume(wf, PARALLEL, sink, wf.Executor({LAMBDA: counter}))
    assert outcome.status == "SUCCEEDED" and outcome.output == [{"r": "a"}, {"r": "b2"}]
    assert counter.calls == {"a": 1, "b1": 2, "b2": 1}
    assert sink.types().count("TaskScheduled") == 3  # b1's scheduling is not repeated
    _ids_contiguous(sink)


def test_task_tokens_inside_a_map_stay_valid(wf: Any) -> None:
    definition = {"StartAt": "M", "States": {"M": {
        "Type": "Map", "End": True, "ItemsPath": "$.items",
        "ItemProcessor": {"StartAt": "Ask", "States": {"Ask": {
            "Type": "Task", "Resource": TOKEN, "End": True,
            "Parameters": {"MessageBody": {"token.$": "$$.Task.Token", "item.$": "$"}}}}}}}}
    handed: dict[int, TaskRequest] = {}

    async def hand_out(req: TaskRequest) -> Any:
        handed[req.parameters["MessageBody"]["item"]] = req
        if req.parameters["MessageBody"]["item"] == 1:
            return {"done": 1}  # this one's callback came before the crash
        await asyncio.sleep(3600)

    sink = MemorySink()
    interp = Interpreter(load(definition), wf.execution({"items": [1, 2, 3]}),
                         wf.Executor({TOKEN: hand_out}), sink)
    crash_when(interp, lambda: len(handed) == 3 and ("M", 0) in sink.branches
               and sink.branches[("M", 0)].phase == "done")
    tokens = {item: req.task_token for item, req in handed.items()}
    assert len(set(tokens.values())) == 3
    assert {sink.branches[("M", i)].task_token for i in (1, 2)} == {tokens[2], tokens[3]}

    callbacks: list[TaskRequest] = []

    async def callback(req: TaskRequest) -> Any:
        callbacks.append(req)
        return {"approved": req.task_token}

    outcome = resume(wf, definition, sink, wf.Executor({TOKEN: callback}), {"items": [1, 2, 3]})
    assert outcome.status == "SUCCEEDED", outcome
    assert outcome.output == [{"done": 1}, {"approved": tokens[2]}, {"approved": tokens[3]}]
    assert all(c.resumed for c in callbacks)
    assert sorted(c.task_token or "" for c in callbacks) == sorted([tokens[2], tokens[3]])
    types = sink.types()
    assert types.count("TaskScheduled") == 3 and types.count("MapIterationStarted") == 3
    assert types.count("MapIterationSucceeded") == 3 and types.count("MapStateStarted") == 1
    _ids_contiguous(sink)


def test_nested_parallel_inside_map_resumes(wf: Any) -> None:
    definition = {"StartAt": "M", "States": {"M": {
        "Type": "Map", "End": True,
        "ItemProcessor": {"StartAt": "P", "States": {"P": {
            "Type": "Parallel", "End": True, "Branches": [
                {"StartAt": "X", "States": {"X": {
                    "Type": "Task", "Resource": LAMBDA, "End": True, "OutputPath": "$.Payload",
                    "Parameters": {"FunctionName": "f", "Payload": {"name.$": "$.x"}}}}},
                {"StartAt": "Y", "States": {"Y": {
                    "Type": "Task", "Resource": LAMBDA, "End": True, "OutputPath": "$.Payload",
                    "Parameters": {"FunctionName": "f", "Payload": {"name.$": "$.y"}}}}}]}}}}}}
    items = [{"x": "x0", "y": "y0"}, {"x": "x1", "y": "slow"}]
    counter = Counter(block=frozenset({"slow"}))
    sink = MemorySink()
    interp = Interpreter(load(definition), wf.execution(items), wf.Executor({LAMBDA: counter}),
                         sink)
    crash_when(interp, lambda: ("M", 0) in sink.branches and sink.branches[("M", 0)].phase
               == "done" and ("M", 1, "P", 0) in sink.branches
               and sink.branches[("M", 1, "P", 0)].phase == "done")
    counter.block = frozenset()
    outcome = resume(wf, definition, sink, wf.Executor({LAMBDA: counter}), items)
    assert outcome.status == "SUCCEEDED", outcome
    assert outcome.output == [["x0", "y0"], ["x1", "slow"]]
    assert counter.calls == {"x0": 1, "y0": 1, "x1": 1, "slow": 2}
    _ids_contiguous(sink)


def test_a_loop_entering_the_map_again_starts_its_iterations_afresh(wf: Any) -> None:
    definition = {"StartAt": "M", "States": {
        "M": {"Type": "Map", "ItemsPath": "$.items", "ResultPath": "$.out", "Next": "More",
              "ItemSelector": {"name.$": "States.Format('{}-{}', $.round, $$.Map.Item.Value)"},
              "ItemProcessor": {"StartAt": "T", "States": {"T": {
                  "Type": "Task", "Resource": LAMBDA, "End": True, "OutputPath": "$.Payload",
                  "Parameters": {"FunctionName": "f", "Payload": {"name.$": "$.name"}}}}}},
        "More": {"Type": "Choice", "Default": "Done", "Choices": [
            {"Variable": "$.round", "NumericEquals": 0, "Next": "Again"}]},
        "Again": {"Type": "Pass", "Parameters": {"round": 1, "items.$": "$.items"}, "Next": "M"},
        "Done": {"Type": "Succeed"}}}
    counter = Counter()
    outcome, sink, _ = asyncio.run(wf.run(definition, {"round": 0, "items": ["a", "b"]},
                                          wf.Executor({LAMBDA: counter})))
    assert outcome.status == "SUCCEEDED", outcome
    assert outcome.output["out"] == ["1-a", "1-b"]
    assert counter.calls == {"0-a": 1, "0-b": 1, "1-a": 1, "1-b": 1}
    assert sink.branches == {}


def test_retried_parallel_runs_every_branch_again(wf: Any) -> None:
    """AWS retries a Parallel state as a whole; a stored branch result of the failed
    attempt must not leak into the next one."""
    failures = [1]

    async def flaky(req: TaskRequest) -> Any:
        name = req.parameters["Payload"]["name"]
        counter.calls[name] = counter.calls.get(name, 0) + 1
        if name == "b" and failures:
            failures.pop()
            raise_error()
        return {"Payload": name}

    def raise_error() -> None:
        from nubes.workflows.errors import StatesError

        raise StatesError("Boom", "once")

    counter = Counter()
    definition = {"StartAt": "P", "States": {"P": {
        "Type": "Parallel", "End": True,
        "Retry": [{"ErrorEquals": ["Boom"], "IntervalSeconds": 1, "MaxAttempts": 2}],
        "Branches": [{"StartAt": "A", "States": {"A": _call("a")}},
                     {"StartAt": "B", "States": {"B": _call("b")}}]}}}
    outcome, sink, _ = asyncio.run(wf.run(definition, {}, wf.Executor({LAMBDA: flaky})))
    assert outcome.status == "SUCCEEDED", outcome
    assert counter.calls == {"a": 2, "b": 2}
    assert sink.branches == {}


def test_distributed_map_children_resume(wf: Any) -> None:
    definition = {"StartAt": "M", "States": {"M": {
        "Type": "Map", "End": True, "ToleratedFailureCount": 1,
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                          "StartAt": "T", "States": {"T": {
                              "Type": "Task", "Resource": LAMBDA, "End": True,
                              "OutputPath": "$.Payload",
                              "Parameters": {"FunctionName": "f", "Payload": {"name.$": "$"}}}}}}}}

    async def work(req: TaskRequest) -> Any:
        name = req.parameters["Payload"]["name"]
        counter.calls[name] = counter.calls.get(name, 0) + 1
        if name == "slow" and counter.calls[name] == 1:
            await asyncio.sleep(3600)
        if name == "bad":
            from nubes.workflows.errors import StatesError

            raise StatesError("Bad", "item")
        return {"Payload": name}

    counter = Counter()
    items = ["a", "bad", "slow"]
    sink = MemorySink()
    interp = Interpreter(load(definition), wf.execution(items), wf.Executor({LAMBDA: work}), sink)
    crash_when(interp, lambda: {("M", 0), ("M", 1), ("M", 2)} <= set(sink.branches)
               and sink.branches[("M", 1)].phase == "failed")
    assert sink.checkpoint is not None and sink.checkpoint.map_run is not None
    run_arn = sink.checkpoint.map_run["mapRunArn"]
    outcome = resume(wf, definition, sink, wf.Executor({LAMBDA: work}), items)
    assert outcome.status == "SUCCEEDED", outcome
    assert outcome.output == ["a", {"Error": "Bad", "Cause": "item"}, "slow"]
    assert counter.calls == {"a": 1, "bad": 1, "slow": 2}
    types = sink.types()
    assert types.count("MapRunStarted") == 1 and types.count("MapRunSucceeded") == 1
    started = next(e for e in sink.events if e["type"] == "MapRunStarted")
    assert started["mapRunStartedEventDetails"]["mapRunArn"] == run_arn


def test_express_executions_write_no_branch_checkpoints(wf: Any) -> None:
    sink = MemorySink()
    interp = Interpreter(load(PARALLEL), wf.execution({}),
                         wf.Executor({LAMBDA: Counter()}), sink, durable=False,
                         clock=wf.FakeClock(), sleep=wf.FakeClock().sleep)
    outcome = asyncio.run(interp.run())
    assert outcome.status == "SUCCEEDED"
    assert sink.branches == {} and sink.checkpoint is None


def test_lease_length_from_the_settings() -> None:
    from nubes.services.stepfunctions import cluster
    from nubes.settings import Settings

    assert cluster.lease_seconds(Settings.load(env={}).sfn_lease_seconds) == cluster.LEASE_SECONDS == 20.0
    assert cluster.lease_seconds(Settings.load(env={"NUBES_SFN_LEASE_SECONDS": "3.5"}).sfn_lease_seconds) == 3.5
    for bad in ("0", "-4", "nan", "inf"):
        value = Settings.load(env={"NUBES_SFN_LEASE_SECONDS": bad}).sfn_lease_seconds
        assert cluster.lease_seconds(value) == cluster.LEASE_SECONDS, bad


class SlowSink(MemorySink):
    """A sink whose writes take a while, as a store's do."""

    async def record(self, events: list[dict[str, Any]], checkpoint: Checkpoint | None,
                     branches: Any = None) -> None:
        await asyncio.sleep(0.02)
        await super().record(events, checkpoint, branches)


def test_a_branch_finishing_during_a_write_is_recorded_too(wf: Any) -> None:
    """B finishes while A's result is being written: B's needs a write of its own even
    though C never finishes (nothing else would flush it)."""

    async def task(req: TaskRequest) -> Any:
        name = req.parameters["Payload"]["name"]
        await asyncio.sleep({"a": 0, "b": 0.01, "c": 3600}[name])
        return {"Payload": name}

    definition = {"StartAt": "P", "States": {"P": {"Type": "Parallel", "End": True, "Branches": [
        {"StartAt": n, "States": {n: _call(n.lower())}} for n in "ABC"]}}}
    sink = SlowSink()
    interp = Interpreter(load(definition), wf.execution({}), wf.Executor({LAMBDA: task}), sink)

    def both_done() -> bool:
        return all(sink.branches.get(("P", i), Checkpoint("", None)).phase == "done"
                   for i in (0, 1))

    crash_when(interp, both_done)
    assert sink.branches[("P", 1)].output == {"r": "b"}


def test_a_resumed_parallel_keeps_its_retry_count(wf: Any) -> None:
    """Killed during its second (last) attempt, a Parallel does not get a third."""
    from nubes.workflows.errors import StatesError

    calls: list[str] = []

    async def work(req: TaskRequest) -> Any:
        name = req.parameters["Payload"]["name"]
        calls.append(name)
        if name == "bad":
            if calls.count("bad") == 2:
                await asyncio.sleep(3600)  # the crash comes here
            raise StatesError("Boom", str(calls.count("bad")))
        return {"Payload": name}

    definition = {"StartAt": "P", "States": {"P": {
        "Type": "Parallel", "End": True,
        "Retry": [{"ErrorEquals": ["Boom"], "IntervalSeconds": 1, "MaxAttempts": 1}],
        "Branches": [{"StartAt": "B", "States": {"B": _call("bad")}}]}}}
    sink, clock = MemorySink(), wf.FakeClock()
    interp = Interpreter(load(definition), wf.execution({}), wf.Executor({LAMBDA: work}), sink,
                         clock=clock, sleep=clock.sleep)
    crash_when(interp, lambda: calls.count("bad") == 2)
    assert sink.checkpoint is not None and sink.checkpoint.retry_counts == [1]
    outcome = resume(wf, definition, sink, wf.Executor({LAMBDA: work}))
    assert (outcome.status, outcome.error, outcome.cause) == ("FAILED", "Boom", "3")
    assert calls.count("bad") == 3  # the in-flight call again, and no further attempt
