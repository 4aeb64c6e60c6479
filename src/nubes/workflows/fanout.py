"""Parallel and Map states: branches and iterations running concurrently.

Inline Map iterations and Parallel branches write their events into the parent
history (``MapIteration*``, branch states). A distributed Map runs its items as a
*map run* whose child workflows are not part of the parent history (as on AWS):
the parent shows ``MapRunStarted`` and ``MapRunSucceeded``/``MapRunFailed``.
Items come from the input or an ``ItemReader`` (S3 object or listing), can be
batched (``ItemBatcher``) and results written to S3 (``ResultWriter``).

Durable executions checkpoint a Parallel/Map once its branches start (``fanout``),
and every branch, iteration and child workflow checkpoints on its own path (see
:mod:`nubes.workflows.interpreter`): after a restart finished ones return their
stored result and the others resume where they stood.
"""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from nubes.workflows import dataflow, jsonata_mode, jsonpath
from nubes.workflows.definition import ABSENT, JSONATA, State, processor_mode
from nubes.workflows.errors import (
    EXCEED_TOLERATED_FAILURE,
    ITEM_READER_FAILED,
    RESULT_WRITER_FAILED,
    RUNTIME,
    StatesError,
)
from nubes.workflows.history import Checkpoint, TaskRequest

if TYPE_CHECKING:
    from nubes.workflows.dataflow import Frame
    from nubes.workflows.interpreter import Interpreter, Thread


async def first_error(coros: Sequence[Awaitable[Any]], limit: int = 0) -> list[Any]:
    """Run coroutines concurrently (at most ``limit`` at once; 0 = no limit) and
    return their results in order; the first failure cancels the rest."""
    semaphore = asyncio.Semaphore(limit) if limit > 0 else None

    async def guarded(coro: Awaitable[Any]) -> Any:
        if semaphore is None:
            return await coro
        async with semaphore:
            return await coro

    tasks = [asyncio.ensure_future(guarded(c)) for c in coros]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        return [t.result() for t in tasks]
    finally:
        pending = [t for t in tasks if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


def _branch(interp: Interpreter, parent: Thread, state: State, index: int, machine: Any, *,
            child_workflow: bool = False) -> tuple[Thread, Checkpoint | None]:
    """A thread for branch/iteration ``index`` of ``state`` and, after a restart, its
    stored checkpoint. It reads the outer variables (a copy, so its assignments stay
    inside) — except a distributed Map's child workflows, which see none and are not
    part of the parent's history."""
    from nubes.workflows.interpreter import Thread

    variables = {} if child_workflow else dict(parent.variables)
    thread = Thread(machine, variables, parent.last_event_id,
                    silent=parent.silent or child_workflow, path=(*parent.path, state.name, index))
    stored = interp.resumed_branches.pop(thread.path, None) if interp.resumed_branches else None
    if stored is not None:
        thread.dirty = True
        if stored.phase not in ("done", "failed"):
            thread.variables = dict(stored.variables)
            thread.last_event_id = stored.previous_event_id
    return thread, stored


async def _run_branch(interp: Interpreter, thread: Thread, stored: Checkpoint | None,
                      value: Any) -> Any:
    """Run a branch from its start, or from where its stored checkpoint stands."""
    if stored is None:
        return await interp.run_machine(thread, thread.machine.start_at, value)
    return await interp.run_machine(thread, stored.state, stored.input, stored)


def _finished(interp: Interpreter, thread: Thread, output: Any, phase: str = "done") -> None:
    """Record the end of a branch that wrote checkpoints, so a restart does not run it
    again (one that wrote none only ran side-effect-free states: it just runs again)."""
    if interp.durable and thread.dirty:
        interp.record_done(thread, output, phase)


@dataclass
class _Fanout:
    """What a Parallel/Map attempt needs to checkpoint and resume its fan-out."""

    thread: Thread
    state: State
    raw: Any
    counts: list[int]
    #: the stored ``fanout`` checkpoint the first attempt after a restart resumes
    resume: Checkpoint | None

    def take_resume(self) -> Checkpoint | None:
        """The checkpoint to resume (only for the first attempt)."""
        resume, self.resume = self.resume, None
        return resume if resume is not None and resume.phase == "fanout" else None

    async def started(self, interp: Interpreter, **extra: Any) -> None:
        """Checkpoint the state: its branches are about to start."""
        if interp.durable:
            await interp.flush(interp._checkpoint(
                self.thread, self.state.name, self.raw, phase="fanout",
                retry_counts=list(self.counts), **extra), self.thread)


def _fanout(thread: Thread, state: State, raw: Any, resume: Checkpoint | None) -> _Fanout:
    counts = list(resume.retry_counts) if resume and resume.retry_counts else [0] * len(
        state.retry)
    return _Fanout(thread, state, raw, counts, resume)


async def run_parallel(
    interp: Interpreter, thread: Thread, state: State, raw: Any, resume: Checkpoint | None = None
) -> tuple[str | None, Any]:
    """Run every branch on the same input; the output is the list of their outputs."""
    fan = _fanout(thread, state, raw, resume)

    async def one(index: int, machine: Any, value: Any) -> Any:
        branch, stored = _branch(interp, thread, state, index, machine)
        if stored is not None and stored.phase == "done":
            return stored.output
        output = await _run_branch(interp, branch, stored, value)
        _finished(interp, branch, output)
        return output

    async def attempt(tries: int) -> Any:
        frame = interp.frame(thread, state, interp.clock(), tries)
        value = dataflow.state_input(state, raw, frame)
        if fan.take_resume() is None:
            interp.emit(thread, "ParallelStateStarted")
            await fan.started(interp)
        try:
            results = await first_error(
                [one(i, m, value) for i, m in enumerate(state.branches)])
        except StatesError:
            interp.emit(thread, "ParallelStateFailed")
            raise
        interp.emit(thread, "ParallelStateSucceeded")
        interp.clear_branches(thread, state)
        return dataflow.finish(state, raw, results, frame)

    return await interp.with_retry(thread, state, raw, fan.counts, attempt)


async def run_map(
    interp: Interpreter, thread: Thread, state: State, raw: Any, resume: Checkpoint | None = None
) -> tuple[str | None, Any]:
    """Run the item processor for every item (inline or as a distributed map run)."""
    distributed = processor_mode(state) == "DISTRIBUTED"
    fan = _fanout(thread, state, raw, resume)

    async def attempt(tries: int) -> Any:
        frame = interp.frame(thread, state, interp.clock(), tries)
        if state.query_language == JSONATA:
            value = raw
        else:
            value = dataflow.select_path(state.input_path, raw, frame)
        items = await _items(interp, thread, state, value, frame)
        inputs = [_item_input(state, value, i, item, frame) for i, item in enumerate(items)]
        limit = _int_field(state, "MaxConcurrency", value, frame, 0)
        resumed = fan.take_resume()
        if distributed:
            results = await _map_run(interp, fan, value, inputs, limit, frame, resumed)
        else:
            results = await _inline(interp, fan, inputs, limit, resumed)
        interp.clear_branches(thread, state)
        return dataflow.finish(state, raw, results, frame)

    return await interp.with_retry(thread, state, raw, fan.counts, attempt)


def _int_field(state: State, key: str, value: Any, frame: Frame, default: float) -> float:
    got = dataflow.read_path_field(state, key, value, frame)
    if got is ABSENT:
        return default
    if not isinstance(got, (int, float)) or isinstance(got, bool) or got < 0:
        raise StatesError(RUNTIME, f"The value of {key} must be a non-negative number: {got!r}")
    return float(got)


async def _items(
    interp: Interpreter, thread: Thread, state: State, value: Any, frame: Frame
) -> list[Any]:
    if "ItemReader" in state.raw:
        items = await read_items(interp, state, value, frame)
    elif state.query_language == JSONATA:
        expr = state.get("Items", ABSENT)
        items = value if expr is ABSENT else jsonata_mode.evaluate(expr, frame.bindings(value))
    else:
        items = dataflow.select_path(state.get("ItemsPath", "$"), value, frame)
    if not isinstance(items, list):
        raise StatesError(RUNTIME, "Map state input must be an array but was: "
                          f"{type(items).__name__}")
    return items


def _item_input(state: State, value: Any, index: int, item: Any, frame: Frame) -> Any:
    selector = state.get("ItemSelector", state.get("Parameters", ABSENT))
    if selector is ABSENT:
        return item
    context = dict(frame.context, Map={"Item": {"Index": index, "Value": item}})
    if state.query_language == JSONATA:
        bindings = jsonata_mode.bindings(frame.variables, input=value, context=context)
        return jsonata_mode.evaluate(selector, bindings)
    return dataflow.apply_template(selector, jsonpath.Scope(value, context, frame.variables))


async def _inline(
    interp: Interpreter, fan: _Fanout, inputs: list[Any], limit: float,
    resumed: Checkpoint | None,
) -> list[Any]:
    thread, state = fan.thread, fan.state
    assert state.processor is not None
    processor = state.processor
    if resumed is None:
        interp.emit(thread, "MapStateStarted", {"length": len(inputs)})
        await fan.started(interp)

    async def one(index: int, item_input: Any) -> Any:
        child, stored = _branch(interp, thread, state, index, processor)
        if stored is not None and stored.phase == "done":
            return stored.output
        if stored is None:
            interp.emit(child, "MapIterationStarted", {"name": state.name, "index": index})
        try:
            output = await _run_branch(interp, child, stored, item_input)
        except StatesError:
            interp.emit(child, "MapIterationFailed", {"name": state.name, "index": index})
            raise
        except asyncio.CancelledError:
            interp.emit(child, "MapIterationAborted", {"name": state.name, "index": index})
            raise
        interp.emit(child, "MapIterationSucceeded", {"name": state.name, "index": index})
        _finished(interp, child, output)
        return output

    try:
        results = await first_error([one(i, v) for i, v in enumerate(inputs)], int(limit))
    except StatesError:
        interp.emit(thread, "MapStateFailed")
        raise
    interp.emit(thread, "MapStateSucceeded")
    return results


def _batches(state: State, inputs: list[Any], value: Any, frame: Frame) -> list[Any]:
    batcher = state.get("ItemBatcher", ABSENT)
    if batcher is ABSENT:
        return inputs
    size = batcher.get("MaxItemsPerBatch")
    if size is None and "MaxItemsPerBatchPath" in batcher:
        size = jsonpath.read(batcher["MaxItemsPerBatchPath"], frame.scope(value))
    max_bytes = batcher.get("MaxInputBytesPerBatch", 262_144)
    base = batcher.get("BatchInput", {})
    if state.query_language == JSONATA:
        base = jsonata_mode.evaluate(base, frame.bindings(value))
    else:
        base = dataflow.apply_template(base, frame.scope(value))
    batches: list[list[Any]] = [[]]
    used = 0
    for item in inputs:
        cost = len(orjson.dumps(item))
        full = (size is not None and len(batches[-1]) >= int(size)) or (
            batches[-1] and used + cost > max_bytes)
        if full:
            batches.append([])
            used = 0
        batches[-1].append(item)
        used += cost
    return [dict(base, Items=b) for b in batches if b]


class _Tolerance:
    """ToleratedFailureCount/Percentage of a map run (no tolerance: any failure fails)."""

    def __init__(self, state: State, value: Any, frame: Frame, total: int) -> None:
        self.total = total
        self.pct = _int_field(state, "ToleratedFailurePercentage", value, frame, 0)
        self.count = _int_field(state, "ToleratedFailureCount", value, frame, 0)
        self.count_given = any(k in state.raw for k in ("ToleratedFailureCount",
                                                          "ToleratedFailureCountPath"))
        self.pct_given = any(k in state.raw for k in ("ToleratedFailurePercentage",
                                                        "ToleratedFailurePercentagePath"))

    def exceeded(self, failed: int) -> bool:
        """Whether ``failed`` failures are more than the run tolerates."""
        if failed == 0:
            return False
        if not self.count_given and not self.pct_given:
            return True
        pct = 100.0 * failed / max(1, self.total)
        return (self.count_given and failed > self.count) or (self.pct_given and pct > self.pct)


def _start_run(interp: Interpreter, thread: Thread, state: State, limit: float,
               tolerance: _Tolerance, resumed: Checkpoint | None) -> tuple[str, str, dict[str, Any]]:
    if resumed is not None and resumed.map_run is not None:  # the same run, counted again
        run = dict(resumed.map_run, status="RUNNING",
                   counts={"total": tolerance.total, "succeeded": 0, "failed": 0})
        interp.map_runs[run["mapRunArn"]] = run
        return run["mapRunArn"], str(run["mapRunArn"]).rsplit(":", 1)[-1], run
    ex = interp.execution
    run_id = str(uuid.uuid4())
    arn = (f"arn:aws:states:{ex.region}:{ex.account_id}:mapRun:{ex.state_machine_name}/"
           f"{state.get('Label', state.name)}:{run_id}")
    run = {"mapRunArn": arn, "executionArn": ex.execution_arn, "status": "RUNNING",
           "startDate": interp.clock(), "maxConcurrency": int(limit),
           "toleratedFailurePercentage": tolerance.pct,
           "toleratedFailureCount": int(tolerance.count),
           "counts": {"total": tolerance.total, "succeeded": 0, "failed": 0}}
    interp.map_runs[arn] = run
    interp.emit(thread, "MapRunStarted", {"mapRunArn": arn})
    return arn, run_id, run


async def _map_run(
    interp: Interpreter, fan: _Fanout, value: Any, inputs: list[Any],
    limit: float, frame: Frame, resumed: Checkpoint | None,
) -> Any:
    thread, state = fan.thread, fan.state
    assert state.processor is not None
    processor = state.processor
    batches = _batches(state, inputs, value, frame)
    tolerance = _Tolerance(state, value, frame, len(batches))
    arn, run_id, run = _start_run(interp, thread, state, limit, tolerance, resumed)
    if resumed is None:
        await fan.started(interp, map_run={k: v for k, v in run.items() if k != "counts"})
    counts: dict[str, int] = run["counts"]
    outcomes: list[tuple[bool, Any, Any]] = [(False, None, None)] * len(batches)
    exceeded = asyncio.Event()

    async def child_run(index: int, item_input: Any) -> Any:
        child, stored = _branch(interp, thread, state, index, processor, child_workflow=True)
        if stored is not None and stored.phase == "failed":
            raise StatesError(stored.output["Error"], stored.output["Cause"])
        if stored is not None and stored.phase == "done":
            return stored.output
        try:
            output = await _run_branch(interp, child, stored, item_input)
        except StatesError as err:
            _finished(interp, child, {"Error": err.error, "Cause": err.cause}, "failed")
            raise
        _finished(interp, child, output)
        return output

    async def one(index: int, item_input: Any) -> None:
        try:
            output = await child_run(index, item_input)
            outcomes[index] = (True, item_input, output)
            counts["succeeded"] += 1
        except StatesError as err:
            outcomes[index] = (False, item_input, {"Error": err.error, "Cause": err.cause})
            counts["failed"] += 1
            if tolerance.exceeded(counts["failed"]):
                exceeded.set()
                raise

    try:
        await first_error([one(i, b) for i, b in enumerate(batches)], int(limit))
    except StatesError:
        pass
    if exceeded.is_set():
        run.update(status="FAILED", stopDate=interp.clock())
        cause = "The specified tolerated failure threshold was exceeded"
        interp.emit(thread, "MapRunFailed", {"error": EXCEED_TOLERATED_FAILURE, "cause": cause})
        raise StatesError(EXCEED_TOLERATED_FAILURE, cause)
    run.update(status="SUCCEEDED", stopDate=interp.clock())
    interp.emit(thread, "MapRunSucceeded")
    if "ResultWriter" in state.raw:
        return await write_results(interp, state, value, frame, arn, run_id, outcomes)
    return [out for _, _, out in outcomes]


async def _sdk(interp: Interpreter, action: str, params: dict[str, Any], state: State) -> Any:
    request = TaskRequest(resource=f"arn:aws:states:::aws-sdk:s3:{action}", parameters=params,
                          state_name=state.name, execution=interp.execution)
    return await interp.executor.run_task(request)


def _reader_params(state: State, section: dict[str, Any], value: Any, frame: Frame) -> Any:
    if state.query_language == JSONATA:
        return jsonata_mode.evaluate(section.get("Arguments", {}), frame.bindings(value))
    return dataflow.apply_template(section.get("Parameters", {}), frame.scope(value))


async def read_items(interp: Interpreter, state: State, value: Any, frame: Frame) -> list[Any]:
    """Items named by an ``ItemReader`` (an S3 object as JSON/JSONL/CSV, or a listing)."""
    reader = state.get("ItemReader")
    params = _reader_params(state, reader, value, frame)
    config = reader.get("ReaderConfig", {})
    max_items = config.get("MaxItems")
    if max_items is None and "MaxItemsPath" in config:
        max_items = jsonpath.read(config["MaxItemsPath"], frame.scope(value))
    resource = str(reader["Resource"])
    try:
        if resource.endswith("s3:listObjectsV2"):
            items = await _list_objects(interp, state, params)
        elif resource.endswith("s3:getObject"):
            result = await _sdk(interp, "getObject", params, state)
            body = result.get("Body", "") if isinstance(result, dict) else ""
            if isinstance(body, bytes):
                body = body.decode()
            items = parse_items(str(body), config)
        else:
            raise StatesError(ITEM_READER_FAILED, f"The ItemReader resource {resource} is not "
                              "supported")
    except StatesError as err:
        if err.error == ITEM_READER_FAILED:
            raise
        raise StatesError(ITEM_READER_FAILED, f"{err.error}: {err.cause}") from None
    if max_items:
        items = items[: int(max_items)]
    return items


async def _list_objects(interp: Interpreter, state: State, params: Any) -> list[Any]:
    items: list[Any] = []
    request = dict(params)
    while True:
        page = await _sdk(interp, "listObjectsV2", request, state)
        items.extend(page.get("Contents", []))
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            return items
        request["ContinuationToken"] = token


def parse_items(body: str, config: dict[str, Any]) -> list[Any]:
    """Items of an S3 object by ``ReaderConfig.InputType``."""
    kind = config.get("InputType", "JSON")
    try:
        if kind == "JSON":
            items = orjson.loads(body)
            if not isinstance(items, list):
                raise StatesError(ITEM_READER_FAILED, "The JSON object must be an array")
            return items
        if kind == "JSONL":
            return [orjson.loads(line) for line in body.splitlines() if line.strip()]
    except orjson.JSONDecodeError as exc:
        raise StatesError(ITEM_READER_FAILED, f"Could not parse the object as {kind}: {exc}") \
            from None
    if kind == "CSV":
        delimiter = {"COMMA": ",", "PIPE": "|", "SEMICOLON": ";", "SPACE": " ", "TAB": "\t"}.get(
            config.get("CSVDelimiter", "COMMA"), ",")
        rows = list(csv.reader(io.StringIO(body), delimiter=delimiter))
        if config.get("CSVHeaderLocation", "FIRST_ROW") == "GIVEN":
            headers = list(config.get("CSVHeaders", []))
        else:
            headers, rows = (rows[0], rows[1:]) if rows else ([], [])
        return [dict(zip(headers, row, strict=False)) for row in rows if row]
    raise StatesError(ITEM_READER_FAILED, f"The InputType {kind} is not supported")


async def write_results(
    interp: Interpreter, state: State, value: Any, frame: Frame, arn: str, run_id: str,
    outcomes: list[tuple[bool, Any, Any]],
) -> dict[str, Any]:
    """Write a map run's results to S3 (``ResultWriter``); the Map output names them."""
    params = _reader_params(state, state.get("ResultWriter"), value, frame)
    bucket, prefix = params.get("Bucket"), str(params.get("Prefix", "")).strip("/")
    base = f"{prefix}/{run_id}" if prefix else run_id
    ex = interp.execution
    files: dict[str, list[dict[str, Any]]] = {"SUCCEEDED": [], "FAILED": []}
    for index, (ok, item_input, output) in enumerate(outcomes):
        entry = {"ExecutionArn": f"{ex.execution_arn}:{index}", "Input": orjson.dumps(
            item_input).decode(), "Name": str(index), "StateMachineArn": ex.state_machine_arn,
            "Status": "SUCCEEDED" if ok else "FAILED"}
        if ok:
            entry["Output"] = orjson.dumps(output).decode()
        else:
            entry.update(Error=output["Error"], Cause=output["Cause"])
        files["SUCCEEDED" if ok else "FAILED"].append(entry)
    manifest: dict[str, Any] = {"DestinationBucket": bucket, "MapRunArn": arn,
                                "ResultFiles": {}}
    try:
        for status, entries in files.items():
            key = f"{base}/{status}_0.json"
            await _sdk(interp, "putObject", {"Bucket": bucket, "Key": key,
                                             "Body": orjson.dumps(entries).decode()}, state)
            manifest["ResultFiles"][status] = [{"Key": key, "Size": len(entries)}]
        manifest_key = f"{base}/manifest.json"
        await _sdk(interp, "putObject", {"Bucket": bucket, "Key": manifest_key,
                                         "Body": orjson.dumps(manifest).decode()}, state)
    except StatesError as err:
        raise StatesError(RESULT_WRITER_FAILED, f"{err.error}: {err.cause}") from None
    return {"MapRunArn": arn, "ResultWriterDetails": {"Bucket": bucket, "Key": manifest_key}}
