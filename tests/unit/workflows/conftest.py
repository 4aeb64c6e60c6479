"""Shared helpers for the workflow engine tests: a scriptable task executor and a
runner that executes a definition in memory."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from nubes.workflows.definition import load
from nubes.workflows.history import ExecutionInfo, MemorySink, TaskRequest
from nubes.workflows.interpreter import Interpreter, Outcome

Handler = Callable[[TaskRequest], Awaitable[Any]]


class Executor:
    """Routes a task to the handler registered for its resource (or a prefix of it)."""

    def __init__(self, handlers: dict[str, Handler] | None = None) -> None:
        self.handlers = handlers or {}
        self.calls: list[TaskRequest] = []

    async def run_task(self, request: TaskRequest) -> Any:
        self.calls.append(request)
        for prefix, handler in self.handlers.items():
            if request.resource.startswith(prefix):
                return await handler(request)
        raise AssertionError(f"no handler for {request.resource}")


class FakeClock:
    """A clock advanced by sleeps, so Wait/Retry tests take no real time."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def execution(input: Any = None, name: str = "run1") -> ExecutionInfo:
    return ExecutionInfo(
        execution_arn=f"arn:aws:states:us-east-1:000000000000:execution:sm:{name}",
        name=name,
        state_machine_arn="arn:aws:states:us-east-1:000000000000:stateMachine:sm",
        state_machine_name="sm",
        input=input if input is not None else {},
        start_time=1_700_000_000.0,
    )


def interpreter(
    definition: dict[str, Any],
    input: Any = None,
    executor: Executor | None = None,
    clock: FakeClock | None = None,
    sink: MemorySink | None = None,
) -> tuple[Interpreter, MemorySink, FakeClock]:
    clock = clock or FakeClock()
    sink = sink or MemorySink()
    interp = Interpreter(
        load(definition), execution(input), executor or Executor(), sink,
        clock=clock, sleep=clock.sleep,
    )
    return interp, sink, clock


async def run(
    definition: dict[str, Any], input: Any = None, executor: Executor | None = None
) -> tuple[Outcome, MemorySink, FakeClock]:
    interp, sink, clock = interpreter(definition, input, executor)
    outcome = await interp.run()
    return outcome, sink, clock


class Helpers:
    """What the ``wf`` fixture hands to tests."""

    Executor = Executor
    FakeClock = FakeClock
    execution = staticmethod(execution)
    interpreter = staticmethod(interpreter)
    run = staticmethod(run)


@pytest.fixture
def wf() -> type[Helpers]:
    """The workflow test helpers."""
    return Helpers
