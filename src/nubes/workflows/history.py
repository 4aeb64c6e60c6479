"""History events, checkpoints and the interfaces the interpreter talks to.

The interpreter is pure logic: it emits history events (dicts shaped like the
botocore ``HistoryEvent``, with ``timestamp`` as unix seconds) into a
:class:`HistorySink` together with a :class:`Checkpoint` — where to resume the
execution after a restart — and calls tasks through a :class:`TaskExecutor`.
The Step Functions provider implements both on top of the store; tests use the
in-memory versions here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

#: 256 KB: the largest input/output/result AWS passes between states
MAX_PAYLOAD_BYTES = 262_144


@dataclass
class ExecutionInfo:
    """The execution the interpreter runs (what ``$$.Execution`` shows)."""

    execution_arn: str
    name: str
    state_machine_arn: str
    state_machine_name: str
    input: Any
    start_time: float
    role_arn: str = ""
    region: str = "us-east-1"
    account_id: str = "000000000000"
    redrive_count: int = 0
    #: STANDARD or EXPRESS
    type: str = "STANDARD"
    #: the version / alias the execution was started through, if any
    version_arn: str | None = None
    alias_arn: str | None = None


#: where a thread's checkpoints are kept: ``()`` for the execution itself,
#: ``(state, index, ...)`` for branch ``index`` of a Parallel (or iteration ``index``
#: of a Map) named ``state``, nested as deep as the branches are
ThreadPath = tuple[str | int, ...]


@dataclass
class Checkpoint:
    """Where a thread (the execution, a branch, an iteration) stands, written with
    the events before it.

    ``phase`` is ``enter`` (run ``state`` from the start with ``input``), ``wait``
    (a Wait state sleeping until ``wait_until``), ``task`` (a task whose token
    ``task_token`` was handed out: only wait for its callback), ``fanout`` (a
    Parallel or Map whose branches started: resume them from their own
    checkpoints), or — for branches only — ``done`` (finished with ``output``) or
    ``failed`` (a distributed Map child that failed with ``output`` = Error/Cause).
    """

    state: str
    input: Any
    variables: dict[str, Any] = field(default_factory=dict)
    event_id: int = 0
    previous_event_id: int = 0
    phase: str = "enter"
    entered_event_id: int = 0
    wait_until: float | None = None
    task_token: str | None = None
    parameters: Any = None
    retry_counts: list[int] = field(default_factory=list)
    state_entered_time: float = 0.0
    output: Any = None
    #: a distributed Map's run (``mapRunArn``, ...), kept so a resumed run is the same run
    map_run: dict[str, Any] | None = None

    def to_json(self) -> bytes:
        """The checkpoint as stored (orjson writes dataclasses natively, far faster
        than ``dataclasses.asdict``)."""
        return orjson.dumps(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> Checkpoint:
        """Read a stored checkpoint."""
        return cls(**orjson.loads(data))


@dataclass
class BranchWrites:
    """Checkpoints of branches and iterations to write with a flush: first every
    checkpoint under each prefix of ``clears`` is dropped, then ``puts`` are stored."""

    clears: list[ThreadPath] = field(default_factory=list)
    puts: dict[ThreadPath, Checkpoint] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.clears or self.puts)


def under(path: ThreadPath, prefix: ThreadPath) -> bool:
    """Whether ``path`` is ``prefix`` or lies below it."""
    return path[: len(prefix)] == prefix


class HistorySink(Protocol):
    """Receives history events in order, with the checkpoints they lead to."""

    async def record(self, events: list[dict[str, Any]], checkpoint: Checkpoint | None,
                     branches: BranchWrites | None = None) -> None:
        """Persist ``events``, the execution's ``checkpoint`` and the ``branches``'
        checkpoints (when given) atomically."""


async def _nothing() -> None:
    return None


@dataclass
class TaskRequest:
    """One task invocation the interpreter asks the executor to perform."""

    resource: str
    parameters: Any
    state_name: str
    execution: ExecutionInfo
    timeout_seconds: float | None = None
    heartbeat_seconds: float | None = None
    #: set for ``.waitForTaskToken`` resources and activities
    task_token: str | None = None
    #: True when the execution resumed after a restart and the work was already
    #: handed out: only wait for the callback of ``task_token``
    resumed: bool = False
    credentials: Any = None
    #: emit an extra history event (``TaskSubmitted``, ``ActivityStarted``, ...)
    emit: Callable[[str, dict[str, Any] | None], object] = lambda kind, details: None
    #: write the events emitted so far (before a long wait, so the history shows them)
    flush: Callable[[], Awaitable[None]] = _nothing


class TaskExecutor(Protocol):
    """Runs tasks: service integrations, Lambda functions, activities."""

    async def run_task(self, request: TaskRequest) -> Any:
        """Return the task's result or raise ``StatesError``."""


class MemorySink:
    """A sink that keeps everything in memory (Express executions, tests)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.checkpoint: Checkpoint | None = None
        self.branches: dict[ThreadPath, Checkpoint] = {}
        self.flushes = 0

    async def record(self, events: list[dict[str, Any]], checkpoint: Checkpoint | None,
                     branches: BranchWrites | None = None) -> None:
        """Append events; remember the newest checkpoints."""
        self.events.extend(events)
        self.flushes += 1
        if checkpoint is not None:
            self.checkpoint = checkpoint
        if branches:
            for prefix in branches.clears:
                for path in [p for p in self.branches if under(p, prefix)]:
                    del self.branches[path]
            self.branches.update(branches.puts)

    def types(self) -> list[str]:
        """Event types in order (handy in tests)."""
        return [e["type"] for e in self.events]


def details_key(event_type: str) -> str:
    """The HistoryEvent member holding an event type's details."""
    if event_type.endswith("StateEntered"):
        return "stateEnteredEventDetails"
    if event_type.endswith("StateExited"):
        return "stateExitedEventDetails"
    return event_type[0].lower() + event_type[1:] + "EventDetails"


def payload(value: Any) -> tuple[str, bool]:
    """A JSON text for a history field and whether it was truncated."""
    text = orjson.dumps(value).decode()
    if len(text.encode()) > MAX_PAYLOAD_BYTES:
        return text[:MAX_PAYLOAD_BYTES], True
    return text, False


def resource_kind(resource: str) -> tuple[str, str, str]:
    """(family, resourceType, resource) for TaskScheduled-style events.

    family is ``lambda`` for a plain function ARN (LambdaFunction* events),
    ``activity`` for an activity ARN (Activity* events), ``task`` otherwise.
    """
    parts = resource.split(":")
    if len(parts) >= 7 and parts[2] == "lambda" and parts[5] == "function":
        return "lambda", "lambda", resource
    if len(parts) >= 7 and parts[2] == "states" and parts[5] == "activity":
        return "activity", "activity", resource
    if resource.startswith("arn:aws:states:::"):
        rest = resource[len("arn:aws:states:::"):]
        if rest.startswith("aws-sdk:"):
            _, service, action = rest.split(":", 2)
            return "task", f"aws-sdk:{service}", action
        service, _, action = rest.partition(":")
        return "task", service, action
    return "task", parts[2] if len(parts) > 2 else "unknown", resource
