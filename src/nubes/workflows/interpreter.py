"""The asynchronous States Language interpreter.

One :class:`Interpreter` runs one execution. It walks validated states, emits
every history event AWS emits (with ids and ``previousEventId``) into a
:class:`~nubes.workflows.history.HistorySink`, and calls tasks through a
pluggable :class:`~nubes.workflows.history.TaskExecutor`.

Durability (``durable=True``, Standard executions): pending events are flushed
together with a :class:`~nubes.workflows.history.Checkpoint` once per state that
blocks or has effects — a Task once it is scheduled (with its parameters and task
token), a Wait once its deadline is known, a Parallel or Map once its branches
start. Every thread has its own checkpoint: the execution's, and one per Parallel
branch and Map iteration (keyed by its :data:`~nubes.workflows.history.ThreadPath`);
a branch that wrote one also records its result (``done``) when it finishes.
After a restart ``run(checkpoint, branches)`` resumes exactly there, in every
thread: a Wait keeps its deadline, a task whose token was handed out keeps waiting
for that same token, a request-response task is called again (at-least-once, as
on AWS), and a finished branch is not run again — its result comes from the store.
Side-effect-free states (Pass, Choice, Succeed, Fail) between checkpoints are
simply re-run, which is deterministic.

Branch checkpoints belong to one visit of their Parallel/Map state: when the
state ends (or is retried) they are cleared in the same write as the next
checkpoint, so a loop that enters the state again starts its branches afresh.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from nubes.workflows import choice, dataflow, jsonata_mode
from nubes.workflows.dataflow import Frame
from nubes.workflows.definition import ABSENT, JSONATA, Retrier, State, StateMachine
from nubes.workflows.errors import (
    ALL,
    DATA_LIMIT_EXCEEDED,
    HEARTBEAT_TIMEOUT,
    INTRINSIC_FAILURE,
    NO_CHOICE_MATCHED,
    NOT_MATCHED_BY_ALL,
    PARAMETER_PATH_FAILURE,
    QUERY_EVALUATION_ERROR,
    RESULT_PATH_MATCH_FAILURE,
    RUNTIME,
    TASK_FAILED,
    TIMEOUT,
    StatesError,
)
from nubes.workflows.history import (
    MAX_PAYLOAD_BYTES,
    BranchWrites,
    Checkpoint,
    ExecutionInfo,
    HistorySink,
    TaskExecutor,
    TaskRequest,
    ThreadPath,
    details_key,
    payload,
    resource_kind,
    under,
)

log = logging.getLogger(__name__)

#: states whose start is checkpointed (they block or have effects)
_CHECKPOINTED = frozenset({"Task", "Wait", "Parallel", "Map"})
#: a Standard execution's history holds at most this many events (AWS's quota)
MAX_HISTORY_EVENTS = 25_000
#: runtime errors AWS reports with the state they happened in
_LOCATED = frozenset({RUNTIME, RESULT_PATH_MATCH_FAILURE, PARAMETER_PATH_FAILURE,
                      INTRINSIC_FAILURE, QUERY_EVALUATION_ERROR})


@dataclass
class Outcome:
    """How an execution ended."""

    status: str  # SUCCEEDED | FAILED | TIMED_OUT | ABORTED
    output: Any = None
    error: str | None = None
    cause: str | None = None


@dataclass
class Thread:
    """One sequence of states: the execution itself, a branch, a Map iteration."""

    machine: StateMachine
    variables: dict[str, Any] = field(default_factory=dict)
    last_event_id: int = 0
    top: bool = False
    #: distributed Map iterations run as child workflows: not in the parent history
    silent: bool = False
    map_item: dict[str, Any] | None = None
    #: where its checkpoints are kept (``()``: the execution's own)
    path: ThreadPath = ()
    #: it wrote a checkpoint, so its end must be recorded too (``done``)
    dirty: bool = False
    #: the id of the StateEntered event of the state it is in
    entered_event_id: int = 0


def error_matches(names: tuple[str, ...], error: str) -> bool:
    """Whether a Retry/Catch ``ErrorEquals`` list matches an error name."""
    for name in names:
        if name == error:
            return True
        if name == ALL and error not in NOT_MATCHED_BY_ALL:
            return True
        if name == TASK_FAILED and error not in NOT_MATCHED_BY_ALL and error != TIMEOUT:
            return True
    return False


def retry_delay(retrier: Retrier, attempt: int) -> float:
    """Seconds before retry number ``attempt`` (0-based) of a retrier."""
    delay = retrier.interval_seconds * retrier.backoff_rate**attempt
    if retrier.max_delay_seconds is not None:
        delay = min(delay, float(retrier.max_delay_seconds))
    if retrier.jitter_strategy == "FULL":
        delay = random.uniform(0, delay)
    return delay


def check_size(value: Any, what: str) -> str:
    """The JSON text of a payload; over 256 KB is ``States.DataLimitExceeded``."""
    text, truncated = payload(value)
    if truncated:
        raise StatesError(
            DATA_LIMIT_EXCEEDED,
            f"The state/task '{what}' returned a result with a size exceeding the maximum "
            f"number of bytes service limit ({MAX_PAYLOAD_BYTES}).",
        )
    return text


class Interpreter:
    """Runs one execution of a state machine."""

    def __init__(
        self,
        machine: StateMachine,
        execution: ExecutionInfo,
        executor: TaskExecutor,
        sink: HistorySink,
        *,
        durable: bool = True,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.machine = machine
        self.execution = execution
        self.executor = executor
        self.sink = sink
        self.durable = durable
        self.clock = clock
        self.sleep = sleep
        self._next_id = 0
        self._pending: list[dict[str, Any]] = []
        self._task: asyncio.Task[Any] | None = None
        self._abort: tuple[str | None, str | None] | None = None
        self._current: tuple[Thread, State] | None = None
        #: branch checkpoints to write with the next flush
        self._writes = BranchWrites()
        #: stored branch checkpoints not yet picked up by their resumed branch
        self.resumed_branches: dict[ThreadPath, Checkpoint] = {}
        #: Parallel/Map visits (thread path + state name) with branch checkpoints
        self._dirty: set[ThreadPath] = set()
        #: flushes :meth:`record_done` scheduled (kept until they are done)
        self._soon: set[asyncio.Task[None]] = set()
        #: one of them has yet to take the pending writes
        self._soon_waiting = False
        #: map runs started by distributed Map states: arn → summary (for the provider)
        self.map_runs: dict[str, dict[str, Any]] = {}
        #: TestState sets this to collect each data-flow step (``inspectionData``)
        self.trace: dict[str, Any] | None = None

    # -- events -------------------------------------------------------------

    def emit(self, thread: Thread, kind: str, details: dict[str, Any] | None = None) -> int:
        """Record a history event in ``thread``; returns its id."""
        if thread.silent:
            return 0
        self._next_id += 1
        event: dict[str, Any] = {
            "timestamp": self.clock(),
            "type": kind,
            "id": self._next_id,
            "previousEventId": thread.last_event_id,
        }
        if details is not None:
            event[details_key(kind)] = details
        self._pending.append(event)
        thread.last_event_id = self._next_id
        return self._next_id

    async def flush(self, checkpoint: Checkpoint | None = None,
                    thread: Thread | None = None) -> None:
        """Hand pending events (and ``thread``'s checkpoint, by default the
        execution's) to the sink."""
        if checkpoint is not None and thread is not None and not thread.top:
            self._writes.puts[thread.path] = checkpoint
            self._dirty.add(thread.path[:-1])
            thread.dirty = True
            checkpoint = None
        if self._pending or checkpoint is not None or self._writes:
            events, self._pending = self._pending, []
            writes, self._writes = self._writes, BranchWrites()
            # a resumed run numbers its events after the newest written with a checkpoint
            if checkpoint is not None:
                checkpoint.event_id = self._next_id
            for written in writes.puts.values():
                written.event_id = self._next_id
            await self.sink.record(events, checkpoint, writes or None)

    def _checkpoint(self, thread: Thread, state: str, raw_input: Any, **extra: Any) -> Checkpoint:
        return Checkpoint(
            state=state,
            input=raw_input,
            variables=dict(thread.variables),
            event_id=self._next_id,
            previous_event_id=thread.last_event_id,
            entered_event_id=thread.entered_event_id,
            **extra,
        )

    def record_done(self, thread: Thread, output: Any, phase: str = "done") -> None:
        """Record that a branch finished with ``output`` (Error/Cause when ``failed``).

        The record is written by a flush at the next turn of the event loop, shared by
        every branch that finishes meanwhile (a Map's iterations often end together).
        """
        self._writes.puts[thread.path] = Checkpoint(
            "", None, event_id=self._next_id, previous_event_id=thread.last_event_id,
            phase=phase, output=output)
        self._dirty.add(thread.path[:-1])
        if not self._soon_waiting:
            self._soon_waiting = True
            task = asyncio.get_running_loop().create_task(self._flush_soon())
            self._soon.add(task)
            task.add_done_callback(self._soon.discard)

    async def _flush_soon(self) -> None:
        await asyncio.sleep(0)  # let the branches finishing in this turn add theirs
        self._soon_waiting = False  # records added from now on need another flush
        try:
            await self.flush()
        except Exception:  # the next flush writes them (a failing store fails it there)
            log.exception("execution %s: recording finished branches failed",
                          self.execution.execution_arn)

    def clear_branches(self, thread: Thread, state: State) -> None:
        """Forget the branch checkpoints of ``state``'s visit by ``thread`` (it ended
        or starts again): written with the next flush."""
        prefix = (*thread.path, state.name)
        if prefix not in self._dirty:
            return
        self._dirty.discard(prefix)
        self._writes.clears.append(prefix)
        for store in (self._writes.puts, self.resumed_branches):
            for path in [p for p in store if under(p, prefix)]:
                del store[path]

    # -- the execution ---------------------------------------------------------

    def abort(self, error: str | None = None, cause: str | None = None) -> bool:
        """Stop the execution (StopExecution); False if it is not running."""
        if self._task is None or self._task.done():
            return False
        self._abort = (error, cause)
        self._task.cancel()
        return True

    async def run(self, checkpoint: Checkpoint | None = None,
                  branches: dict[ThreadPath, Checkpoint] | None = None) -> Outcome:
        """Run (or resume from ``checkpoint`` and the ``branches``' checkpoints)
        until the execution ends."""
        self._task = asyncio.current_task()
        if branches:
            self.resumed_branches = dict(branches)
            self._dirty = {p[:k] for p in branches for k in range(1, len(p), 2)}
        top = Thread(self.machine, top=True)
        if checkpoint is None:
            text, truncated = payload(self.execution.input)
            details = {"input": text, "inputDetails": {"truncated": truncated},
                       "roleArn": self.execution.role_arn}
            if self.execution.version_arn:
                details["stateMachineVersionArn"] = self.execution.version_arn
            if self.execution.alias_arn:
                details["stateMachineAliasArn"] = self.execution.alias_arn
            self.emit(top, "ExecutionStarted", details)
            checkpoint = Checkpoint(self.machine.start_at, self.execution.input)
        else:
            # branches flushed events after the execution's checkpoint was written
            self._next_id = max([checkpoint.event_id,
                                 *(b.event_id for b in self.resumed_branches.values())])
            top.last_event_id = checkpoint.previous_event_id
            top.variables = dict(checkpoint.variables)
        try:
            async with asyncio.timeout_at(self._execution_deadline()):
                output = await self.run_machine(top, checkpoint.state, checkpoint.input, checkpoint)
            text = check_size(output, "execution output")
            self.emit(top, "ExecutionSucceeded", {"output": text, "outputDetails": {"truncated": False}})
            outcome = Outcome("SUCCEEDED", output=output)
        except StatesError as err:
            self.emit(top, "ExecutionFailed", {"error": err.error, "cause": err.cause})
            outcome = Outcome("FAILED", error=err.error, cause=err.cause)
        except TimeoutError:
            self._abort_current()
            cause = f"The execution exceeded its TimeoutSeconds ({self.machine.timeout_seconds})."
            self.emit(top, "ExecutionTimedOut", {"error": TIMEOUT, "cause": cause})
            outcome = Outcome("TIMED_OUT", error=TIMEOUT, cause=cause)
        except asyncio.CancelledError:
            if self._abort is None:
                raise  # shutdown: the checkpoint stays, the execution resumes later
            if self._task is not None:
                self._task.uncancel()  # the abort is handled: later awaits run normally
            self._abort_current()
            abort_error, abort_cause = self._abort
            details = {k: v for k, v in (("error", abort_error), ("cause", abort_cause))
                       if v is not None}
            self.emit(top, "ExecutionAborted", details)
            outcome = Outcome("ABORTED", error=abort_error, cause=abort_cause)
        except Exception as exc:  # a bug must end the execution, not leave it running
            log.exception("execution %s failed inside nubes", self.execution.execution_arn)
            cause = f"nubes could not run the execution: {type(exc).__name__}: {exc}"
            self.emit(top, "ExecutionFailed", {"error": RUNTIME, "cause": cause})
            outcome = Outcome("FAILED", error=RUNTIME, cause=cause)
        await self.flush()
        if self._soon:
            await asyncio.gather(*self._soon)
        return outcome

    def _execution_deadline(self) -> float | None:
        if self.machine.timeout_seconds is None:
            return None
        deadline = self.execution.start_time + self.machine.timeout_seconds
        return asyncio.get_running_loop().time() + max(0.0, deadline - self.clock())

    def _abort_current(self) -> None:
        if self._current is not None:
            thread, state = self._current
            if state.type in _CHECKPOINTED:
                self.emit(thread, f"{state.type}StateAborted", None)

    # -- machines and states -----------------------------------------------

    async def run_machine(
        self, thread: Thread, start: str, raw_input: Any, resume: Checkpoint | None = None
    ) -> Any:
        """Run states from ``start`` until one ends the machine; returns its output."""
        name: str | None = start
        value = raw_input
        while name is not None:
            state = thread.machine.states[name]
            if thread.top:
                self._current = (thread, state)
            name, value = await self.run_state(thread, state, value, resume)
            resume = None
        return value

    def frame(self, thread: Thread, state: State, entered: float, retries: int = 0,
              token: str | None = None) -> Frame:
        """The context object and variables a state sees."""
        ex = self.execution
        context: dict[str, Any] = {
            "Execution": {
                "Id": ex.execution_arn, "Input": ex.input, "Name": ex.name,
                "RoleArn": ex.role_arn, "StartTime": dataflow.iso(ex.start_time),
                "RedriveCount": ex.redrive_count,
            },
            "StateMachine": {"Id": ex.state_machine_arn, "Name": ex.state_machine_name},
            "State": {"EnteredTime": dataflow.iso(entered), "Name": state.name,
                      "RetryCount": retries},
        }
        if token is not None:
            context["Task"] = {"Token": token}
        if thread.map_item is not None:
            context["Map"] = {"Item": thread.map_item}
        return Frame(context, thread.variables, self.trace)

    async def run_state(
        self, thread: Thread, state: State, raw_input: Any, resume: Checkpoint | None
    ) -> tuple[str | None, Any]:
        """Run one state; returns (next state or None, output)."""
        if self.durable and self._next_id >= MAX_HISTORY_EVENTS:
            raise StatesError(RUNTIME, "The execution reached the maximum number of history "
                              f"events ({MAX_HISTORY_EVENTS}).")
        entered = resume.entered_event_id if resume is not None else 0
        if resume is None or resume.phase == "enter":
            entered = self._entered(thread, state, raw_input)
        thread.entered_event_id = entered
        handler = getattr(self, f"_state_{state.type.lower()}")
        try:
            next_name, output = await handler(thread, state, raw_input, resume)
            text = check_size(output, state.name)
        except StatesError as err:
            if err.error in _LOCATED and not err.located:
                err.located = True
                if err.error == QUERY_EVALUATION_ERROR:
                    self.emit(thread, "EvaluationFailed", {
                        "error": err.error, "cause": err.cause, "state": state.name})
                err.cause = (f"An error occurred while executing the state '{state.name}' "
                             f"(entered at the event id #{entered}). {err.cause}")
            raise
        details: dict[str, Any] = {"name": state.name, "output": text,
                                   "outputDetails": {"truncated": False}}
        self.emit(thread, f"{state.type}StateExited", details)
        # End states return no Next; a Catch may still send an End state elsewhere
        return (None if state.type == "Succeed" else next_name), output

    def _entered(self, thread: Thread, state: State, raw_input: Any) -> int:
        text, truncated = payload(raw_input)
        return self.emit(thread, f"{state.type}StateEntered",
                  {"name": state.name, "input": text, "inputDetails": {"truncated": truncated}})

    async def _state_pass(self, thread: Thread, state: State, raw: Any,
                          resume: Checkpoint | None) -> tuple[str | None, Any]:
        frame = self.frame(thread, state, self.clock())
        if state.query_language == JSONATA:
            return state.next, dataflow.finish(state, raw, raw, frame)
        value = dataflow.state_input(state, raw, frame)
        result = state.get("Result")
        if result is ABSENT:
            result = value
        return state.next, dataflow.finish(state, raw, result, frame)

    async def _state_succeed(self, thread: Thread, state: State, raw: Any,
                             resume: Checkpoint | None) -> tuple[str | None, Any]:
        frame = self.frame(thread, state, self.clock())
        if state.query_language == JSONATA:
            if state.output is ABSENT:
                return None, raw
            return None, jsonata_mode.evaluate(state.output, frame.bindings(raw))
        value = dataflow.select_path(state.input_path, raw, frame)
        return None, dataflow.select_path(state.output_path, value, frame)

    async def _state_fail(self, thread: Thread, state: State, raw: Any,
                          resume: Checkpoint | None) -> tuple[str | None, Any]:
        frame = self.frame(thread, state, self.clock())
        error = dataflow.read_path_field(state, "Error", raw, frame)
        cause = dataflow.read_path_field(state, "Cause", raw, frame)
        for what, value in (("ErrorPath", error), ("CausePath", cause)):
            if value is not ABSENT and not isinstance(value, str):
                raise StatesError(RUNTIME, f"The {what} must resolve to a string")
        raise StatesError(
            "" if error is ABSENT else str(error), "" if cause is ABSENT else str(cause)
        )

    async def _state_choice(self, thread: Thread, state: State, raw: Any,
                            resume: Checkpoint | None) -> tuple[str | None, Any]:
        frame = self.frame(thread, state, self.clock())
        if state.query_language == JSONATA:
            bindings = frame.bindings(raw)
            for rule in state.get("Choices"):
                matched = jsonata_mode.evaluate(rule["Condition"], bindings)
                if not isinstance(matched, bool):
                    raise StatesError("States.QueryEvaluationError",
                                      "The Condition must evaluate to a boolean")
                if matched:
                    return rule["Next"], self._choice_output(state, rule, raw, frame)
            target = state.get("Default", None)
            if target is None:
                raise StatesError(NO_CHOICE_MATCHED, "No Matches!")
            return target, self._choice_output(state, {}, raw, frame)
        value = dataflow.select_path(state.input_path, raw, frame)
        scope = frame.scope(value)
        target = None
        matched_rule: dict[str, Any] = {}
        for rule in state.get("Choices"):
            if choice.matches(rule, scope):
                target, matched_rule = rule["Next"], rule
                break
        if target is None:
            target = state.get("Default", None)
        if target is None:
            raise StatesError(NO_CHOICE_MATCHED, "No Matches!")
        for template in (state.assign, matched_rule.get("Assign", ABSENT)):
            if template is not ABSENT:
                dataflow.assign(template, frame.scope(value), frame, jsonata=False)
        return target, dataflow.select_path(state.output_path, value, frame)

    def _choice_output(self, state: State, rule: dict[str, Any], raw: Any, frame: Frame) -> Any:
        bindings = frame.bindings(raw)
        output = rule.get("Output", state.output)
        value = raw if output is ABSENT else jsonata_mode.evaluate(output, bindings)
        for template in (state.assign, rule.get("Assign", ABSENT)):
            if template is not ABSENT:
                dataflow.assign(template, bindings, frame, jsonata=True)
        return value

    async def _state_wait(self, thread: Thread, state: State, raw: Any,
                          resume: Checkpoint | None) -> tuple[str | None, Any]:
        frame = self.frame(thread, state, self.clock())
        if resume is not None and resume.phase == "wait" and resume.wait_until is not None:
            until = resume.wait_until
        else:
            value = raw if state.query_language == JSONATA else dataflow.select_path(
                state.input_path, raw, frame)
            until = self._wait_until(state, value, frame)
            if self.durable:
                await self.flush(self._checkpoint(thread, state.name, raw, phase="wait",
                                                  wait_until=until), thread)
            else:
                await self.flush()
        delay = until - self.clock()
        if delay > 0:
            await self.sleep(delay)
        if state.query_language == JSONATA:
            return state.next, dataflow.finish(state, raw, raw, frame)
        value = dataflow.select_path(state.input_path, raw, frame)
        if state.assign is not ABSENT:
            dataflow.assign(state.assign, frame.scope(value), frame, jsonata=False)
        return state.next, dataflow.select_path(state.output_path, value, frame)

    def _wait_until(self, state: State, value: Any, frame: Frame) -> float:
        seconds = dataflow.read_path_field(state, "Seconds", value, frame)
        if seconds is not ABSENT:
            if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
                raise StatesError(RUNTIME, f"The Wait Seconds value {seconds!r} is not a "
                                  "non-negative number")
            return self.clock() + float(seconds)
        stamp = dataflow.read_path_field(state, "Timestamp", value, frame)
        parsed = choice.parse_timestamp(stamp)
        if parsed is None:
            raise StatesError(RUNTIME, f"The Wait Timestamp value {stamp!r} is not a valid "
                              "ISO-8601 timestamp")
        return parsed.timestamp()

    # -- Task ----------------------------------------------------------------

    async def _state_task(self, thread: Thread, state: State, raw: Any,
                          resume: Checkpoint | None) -> tuple[str | None, Any]:
        counts = list(resume.retry_counts) if resume and resume.retry_counts else [0] * len(
            state.retry)

        pending = [resume]  # only the first attempt after a restart resumes

        async def attempt(tries: int) -> Any:
            first = pending.pop() if pending else None
            return await self._task_attempt(thread, state, raw, tries, first)

        return await self.with_retry(thread, state, raw, counts, attempt)

    async def with_retry(
        self, thread: Thread, state: State, raw: Any, counts: list[int],
        attempt: Callable[[int], Awaitable[Any]],
    ) -> tuple[str | None, Any]:
        """Run ``attempt`` with the state's Retry policy; apply Catch; returns
        (next, output)."""
        while True:
            try:
                output = await attempt(sum(counts))
                return state.next, output
            except StatesError as err:
                index = next((i for i, r in enumerate(state.retry)
                              if error_matches(r.error_equals, err.error)), None)
                if index is not None and counts[index] < state.retry[index].max_attempts:
                    delay = retry_delay(state.retry[index], counts[index])
                    counts[index] += 1
                    if self.durable:
                        self.clear_branches(thread, state)  # the next attempt starts afresh
                        await self.flush(self._checkpoint(thread, state.name, raw,
                                                          retry_counts=list(counts)), thread)
                    await self.sleep(delay)
                    continue
                for catcher in state.catch:
                    if error_matches(catcher.error_equals, err.error):
                        if self.durable:
                            self.clear_branches(thread, state)
                        frame = self.frame(thread, state, self.clock())
                        error_output = {"Error": err.error, "Cause": err.cause}
                        output = dataflow.finish_error(
                            catcher.result_path, catcher.output, catcher.assign, state, raw,
                            error_output, frame)
                        return catcher.next, output
                raise

    async def _task_attempt(self, thread: Thread, state: State, raw: Any, tries: int,
                            resume: Checkpoint | None) -> Any:
        resource = str(state.get("Resource"))
        family, resource_type, short = resource_kind(resource)
        needs_token = resource.endswith(".waitForTaskToken") or family == "activity"
        resumed = resume is not None and resume.phase == "task"
        token = (resume.task_token if resumed and resume is not None
                 else (secrets.token_urlsafe(48) if needs_token else None))
        frame = self.frame(thread, state, self.clock(), tries, token)
        if resumed and resume is not None:
            params = resume.parameters
        else:
            params = dataflow.state_input(state, raw, frame)
        timeout = self._seconds(state, "TimeoutSeconds", raw, frame)
        heartbeat = self._seconds(state, "HeartbeatSeconds", raw, frame)
        if not resumed:
            text = check_size(params, state.name)
            self._scheduled(thread, family, resource_type, short, text, timeout, heartbeat)
            if family != "activity":
                self.emit(thread, "LambdaFunctionStarted" if family == "lambda" else "TaskStarted",
                          None if family == "lambda" else
                          {"resourceType": resource_type, "resource": short})
            if self.durable:
                # resuming from here waits for the token, or (no token) calls the task again
                await self.flush(self._checkpoint(thread, state.name, raw, phase="task",
                                                  task_token=token, parameters=params), thread)
            else:
                await self.flush()
        request = TaskRequest(
            resource=resource, parameters=params, state_name=state.name,
            execution=self.execution, timeout_seconds=timeout, heartbeat_seconds=heartbeat,
            task_token=token, resumed=resumed and token is not None, credentials=state.get("Credentials", None),
            emit=lambda kind, details: self.emit(thread, kind, details), flush=self.flush,
        )
        try:
            async with asyncio.timeout(timeout):
                result = await self.executor.run_task(request)
            text = check_size(result, state.name)
        except TimeoutError:
            err = StatesError(TIMEOUT, "")
            self._task_ended(thread, family, resource_type, short, err)
            raise err from None
        except StatesError as err:
            self._task_ended(thread, family, resource_type, short, err)
            raise
        except Exception as exc:  # an integration bug: a task failure Retry/Catch can handle
            log.exception("task %s of %s failed inside nubes", resource,
                          self.execution.execution_arn)
            failure = StatesError(TASK_FAILED, f"{type(exc).__name__}: {exc}")
            self._task_ended(thread, family, resource_type, short, failure)
            raise failure from None
        prefix = {"lambda": "LambdaFunction", "activity": "Activity"}.get(family, "Task")
        details: dict[str, Any] = {"output": text, "outputDetails": {"truncated": False}}
        if family == "task":
            details = {"resourceType": resource_type, "resource": short, **details}
        self.emit(thread, f"{prefix}Succeeded", details)
        return dataflow.finish(state, raw, result, frame)

    def _seconds(self, state: State, key: str, raw: Any, frame: Frame) -> float | None:
        value = dataflow.read_path_field(state, key, raw, frame)
        if value is ABSENT:
            return None
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise StatesError(RUNTIME, f"The {key} value {value!r} is not a positive number")
        return float(value)

    def _scheduled(self, thread: Thread, family: str, resource_type: str, short: str,
                   params: str, timeout: float | None, heartbeat: float | None) -> None:
        limits: dict[str, Any] = {}
        if timeout is not None:
            limits["timeoutInSeconds"] = int(timeout)
        if family == "lambda":
            self.emit(thread, "LambdaFunctionScheduled", {
                "resource": short, "input": params, "inputDetails": {"truncated": False},
                **limits})
            return
        if heartbeat is not None:
            limits["heartbeatInSeconds"] = int(heartbeat)
        if family == "activity":
            self.emit(thread, "ActivityScheduled", {
                "resource": short, "input": params, "inputDetails": {"truncated": False},
                **limits})
            return
        self.emit(thread, "TaskScheduled", {
            "resourceType": resource_type, "resource": short, "region": self.execution.region,
            "parameters": params, **limits})

    def _task_ended(self, thread: Thread, family: str, resource_type: str, short: str,
                    err: StatesError) -> None:
        prefix = {"lambda": "LambdaFunction", "activity": "Activity"}.get(family, "Task")
        timed_out = err.error in (TIMEOUT, HEARTBEAT_TIMEOUT)
        details: dict[str, Any] = {"error": err.error, "cause": err.cause}
        if family == "task":
            details = {"resourceType": resource_type, "resource": short, **details}
        self.emit(thread, f"{prefix}{'TimedOut' if timed_out else 'Failed'}", details)

    # Parallel and Map live in their own module to keep this one readable.
    async def _state_parallel(self, thread: Thread, state: State, raw: Any,
                              resume: Checkpoint | None) -> tuple[str | None, Any]:
        from nubes.workflows import fanout

        return await fanout.run_parallel(self, thread, state, raw, resume)

    async def _state_map(self, thread: Thread, state: State, raw: Any,
                         resume: Checkpoint | None) -> tuple[str | None, Any]:
        from nubes.workflows import fanout

        return await fanout.run_map(self, thread, state, raw, resume)
