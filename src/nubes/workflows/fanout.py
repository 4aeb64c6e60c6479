"""Parallel and Map states: branches and iterations running concurrently.

Inline Map iterations and Parallel branches write their events into the parent
history (``MapIteration*``, branch states). A distributed Map runs its items as a
*map run* whose child workflows are not part of the parent history (as on AWS):
the parent shows ``MapRunStarted`` and ``MapRunSucceeded``/``MapRunFailed``.
Items come from the input or an ``ItemReader`` (S3 object or listing), can be
batched (``ItemBatcher``) and results written to S3 (``ResultWriter``).
"""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from collections.abc import Awaitable, Sequence
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
from nubes.workflows.history import TaskRequest

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


def _branch(interp: Interpreter, parent: Thread, machine: Any, *,
            child_workflow: bool = False) -> Thread:
    """A thread for a branch or iteration: it reads the outer variables (a copy, so
    its assignments stay inside) — except a distributed Map's child workflows, which
    see none and are not part of the parent's history."""
    from nubes.workflows.interpreter import Thread

    variables = {} if child_workflow else dict(parent.variables)
    return Thread(machine, variables, parent.last_event_id,
                  silent=parent.silent or child_workflow)


async def run_parallel(
    interp: Interpreter, thread: Thread, state: State, raw: Any
) -> tuple[str | None, Any]:
    """Run every branch on the same input; the output is the list of their outputs."""

    async def attempt(tries: int) -> Any:
        frame = interp.frame(thread, state, interp.clock(), tries)
        value = dataflow.state_input(state, raw, frame)
        interp.emit(thread, "ParallelStateStarted")
        branches = [_branch(interp, thread, m) for m in state.branches]
        try:
            results = await first_error(
                [interp.run_machine(b, b.machine.start_at, value) for b in branches])
        except StatesError:
            interp.emit(thread, "ParallelStateFailed")
            raise
        interp.emit(thread, "ParallelStateSucceeded")
        return dataflow.finish(state, raw, results, frame)

    return await interp.with_retry(thread, state, raw, [0] * len(state.retry), attempt)


async def run_map(
    interp: Interpreter, thread: Thread, state: State, raw: Any
) -> tuple[str | None, Any]:
    """Run the item processor for every item (inline or as a distributed map run)."""
    distributed = processor_mode(state) == "DISTRIBUTED"

    async def attempt(tries: int) -> Any:
        frame = interp.frame(thread, state, interp.clock(), tries)
        if state.query_language == JSONATA:
            value = raw
        else:
            value = dataflow.select_path(state.input_path, raw, frame)
        items = await _items(interp, thread, state, value, frame)
        inputs = [_item_input(state, value, i, item, frame) for i, item in enumerate(items)]
        limit = _int_field(state, "MaxConcurrency", value, frame, 0)
        if distributed:
            results = await _map_run(interp, thread, state, value, inputs, limit, frame)
        else:
            results = await _inline(interp, thread, state, inputs, limit)
        return dataflow.finish(state, raw, results, frame)

    return await interp.with_retry(thread, state, raw, [0] * len(state.retry), attempt)


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
    interp: Interpreter, thread: Thread, state: State, inputs: list[Any], limit: float
) -> list[Any]:
    assert state.processor is not None
    processor = state.processor
    interp.emit(thread, "MapStateStarted", {"length": len(inputs)})

    async def one(index: int, item_input: Any) -> Any:
        child = _branch(interp, thread, processor)
        interp.emit(child, "MapIterationStarted", {"name": state.name, "index": index})
        try:
            output = await interp.run_machine(child, processor.start_at, item_input)
        except StatesError:
            interp.emit(child, "MapIterationFailed", {"name": state.name, "index": index})
            raise
        except asyncio.CancelledError:
            interp.emit(child, "MapIterationAborted", {"name": state.name, "index": index})
            raise
        interp.emit(child, "MapIterationSucceeded", {"name": state.name, "index": index})
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
               tolerance: _Tolerance) -> tuple[str, str, dict[str, Any]]:
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
    interp: Interpreter, thread: Thread, state: State, value: Any, inputs: list[Any],
    limit: float, frame: Frame,
) -> Any:
    assert state.processor is not None
    processor = state.processor
    batches = _batches(state, inputs, value, frame)
    tolerance = _Tolerance(state, value, frame, len(batches))
    arn, run_id, run = _start_run(interp, thread, state, limit, tolerance)
    await interp.flush()
    counts: dict[str, int] = run["counts"]
    outcomes: list[tuple[bool, Any, Any]] = [(False, None, None)] * len(batches)
    exceeded = asyncio.Event()

    async def one(index: int, item_input: Any) -> None:
        child = _branch(interp, thread, processor, child_workflow=True)
        try:
            output = await interp.run_machine(child, processor.start_at, item_input)
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
