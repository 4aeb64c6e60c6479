"""Executions: start (with name idempotency), run, resume after a restart, stop,
describe, list, history; Express executions in memory; status change events.

A Standard execution's document lives in ``sfn.executions``, its history in the
log ``sfn.history:<arn>``, its interpreter checkpoint in ``sfn.checkpoints`` and
those of its Parallel branches and Map iterations in ``sfn.branch_checkpoints``;
events and checkpoints are written in one transaction (``StoreSink``), so after a
restart :meth:`ExecutionOps.start` finds every execution in ``sfn.running`` and
resumes it — and each of its branches — where its history ends.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import orjson

from nubes.services.base import Provider, RequestContext
from nubes.services.stepfunctions import store
from nubes.services.stepfunctions.cluster import WAKE, Owners
from nubes.services.stepfunctions.common import (
    MAX_INPUT,
    check_name,
    error,
    machine_from,
    new_id,
    now,
    page,
    parse_arn,
)
from nubes.services.stepfunctions.integrations import Integrations
from nubes.storage.base import Txn
from nubes.workflows.errors import InvalidDefinition
from nubes.workflows.history import (
    BranchWrites,
    Checkpoint,
    ExecutionInfo,
    MemorySink,
    ThreadPath,
)
from nubes.workflows.interpreter import Interpreter, Outcome

if TYPE_CHECKING:
    from nubes.app import App

log = logging.getLogger(__name__)
#: how many finished Express executions DescribeExecution still knows
EXPRESS_KEPT = 1000
_DATA_FIELDS = ("input", "output")


def redrive_status(doc: dict[str, Any]) -> str:
    """DescribeExecution's ``redriveStatus`` (defined with RedriveExecution)."""
    from nubes.services.stepfunctions import redrive

    return redrive.redrive_status(doc)


class StoreSink:
    """History and checkpoints of a Standard execution, in the store."""

    def __init__(self, app: App, arn: str) -> None:
        self.app = app
        self.arn = arn
        self.log = store.history_log(arn)
        self._key = store.key(arn)  # pack(arn, *path) == pack(arn) + pack(*path)

    async def record(self, events: list[dict[str, Any]], checkpoint: Checkpoint | None,
                     branches: BranchWrites | None = None) -> None:
        """Append events and replace the checkpoints in one transaction."""
        blobs = [orjson.dumps(e) for e in events]
        cp = checkpoint.to_json() if checkpoint is not None else None
        base = self._key
        clears = [base + store.key(*p) for p in branches.clears] if branches else []
        puts = [(base + store.key(*p), c.to_json())
                for p, c in branches.puts.items()] if branches else []

        def write(txn: Txn) -> None:
            for blob in blobs:
                txn.append(self.log, blob)
            if cp is not None:
                txn.put(store.CHECKPOINTS, base, cp)
            for prefix in clears:
                txn.delete_prefix(store.BRANCH_CHECKPOINTS, prefix)
            for key, value in puts:
                txn.put(store.BRANCH_CHECKPOINTS, key, value)

        await self.app.store.write(write)


async def resume_point(app: App, arn: str, checkpoint: Checkpoint
                       ) -> dict[ThreadPath, Checkpoint]:
    """The stored checkpoints of an execution's branches; moves ``checkpoint``'s next
    event id past every event its branches recorded since it was written."""
    log_name = store.history_log(arn)

    def read(txn: Txn) -> tuple[dict[ThreadPath, bytes], int]:
        last = txn.log_bounds(log_name)[1]
        tail = txn.read_log(log_name, after=max(0, last - 64), limit=64)
        ids = [int(orjson.loads(v).get("id", 0)) for _, v in tail]
        return store.branch_checkpoints(txn, arn), max([last, *ids])

    raw, last_id = await app.store.read(read)
    checkpoint.event_id = max(checkpoint.event_id, last_id)
    return {path: Checkpoint.from_json(value) for path, value in raw.items()}


def _summary(doc: dict[str, Any]) -> dict[str, Any]:
    out = {k: doc[k] for k in ("executionArn", "stateMachineArn", "name", "status", "startDate")}
    for k in ("stopDate", "stateMachineVersionArn", "stateMachineAliasArn"):
        if doc.get(k) is not None:
            out[k] = doc[k]
    return out


class ExecutionOps(Provider):
    """Execution operations and the lifecycle of running executions."""

    def __init__(self, app: App) -> None:
        super().__init__(app)
        self.integrations = Integrations(app)
        self.running: dict[str, Interpreter] = {}
        #: asyncio tasks of the Standard executions this node runs
        self.tasks: dict[str, asyncio.Task[Any]] = {}
        self.owners = Owners(app)
        self.express: OrderedDict[str, dict[str, Any]] = OrderedDict()

    async def start(self) -> None:
        """Resume every Standard execution that was running when nubes stopped (on a
        shared store: those whose owner's lease ran out, continuously)."""
        if self.owners.enabled:
            self.app.spawn(self._cluster_loop(), name="sfn-cluster")
            return

        def pending(txn: Txn) -> list[tuple[dict[str, Any], bytes | None]]:
            out = []
            for key, _ in txn.scan(store.RUNNING):
                doc = store.get(txn, store.EXECUTIONS, key)
                if doc is not None:
                    out.append((doc, txn.get(store.CHECKPOINTS, key)))
            return out

        self._resume(await self.app.store.read(pending))

    def _resume(self, found: list[tuple[dict[str, Any], bytes | None]]) -> None:
        for doc, cp in found:
            checkpoint = Checkpoint.from_json(cp) if cp is not None else None
            self._spawn_run(doc, checkpoint)

    def _spawn_run(self, doc: dict[str, Any], checkpoint: Checkpoint | None) -> None:
        arn = doc["executionArn"]
        task = self.app.spawn(self._run(doc, checkpoint), name=f"sfn-{doc['name']}")
        self.tasks[arn] = task
        task.add_done_callback(lambda _: self.tasks.pop(arn, None))

    async def _cluster_loop(self) -> None:
        """Renew our leases, honour stop requests, adopt orphaned executions."""
        while True:
            try:
                for arn in await self.owners.renew(list(self.tasks)):
                    log.warning("execution %s was taken over by another node", arn)
                    self.tasks[arn].cancel()
                await self._stop_requests()
                self._resume(await self.owners.orphans(set(self.tasks)))
            except Exception:
                log.exception("step functions cluster pass failed")
            await self.app.bus.wait(WAKE, self.owners.renew_every)

    async def _stop_requests(self) -> None:
        arns = [a for a in self.running if a in self.tasks]

        def read(txn: Txn) -> list[tuple[str, dict[str, Any]]]:
            out = []
            for arn in arns:
                doc = store.get(txn, store.EXECUTIONS, store.key(arn))
                if doc is not None and doc.get("stop_requested"):
                    out.append((arn, doc["stop_requested"]))
            return out

        for arn, request in await self.app.store.read(read):
            interp = self.running.get(arn)
            if interp is not None:
                interp.abort(request.get("error"), request.get("cause"))

    async def stop(self) -> None:
        """Running executions are cancelled by the app; their checkpoints stay."""

    # -- start -------------------------------------------------------------------

    async def _resolve(self, arn: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """(machine doc, execution fields) for a machine, version or alias ARN."""
        machine_doc, sub = await self.machine(arn)  # type: ignore[attr-defined]
        fields: dict[str, Any] = {"definition": machine_doc["definition"],
                                  "roleArn": machine_doc["roleArn"]}
        if sub is not None and "routingConfiguration" in sub:
            routing = sub["routingConfiguration"]
            pick = random.uniform(0, 100)
            chosen = routing[-1]["stateMachineVersionArn"]
            for entry in routing:
                pick -= entry["weight"]
                if pick <= 0:
                    chosen = entry["stateMachineVersionArn"]
                    break
            _, sub_version = await self.machine(chosen)  # type: ignore[attr-defined]
            fields["stateMachineAliasArn"] = arn
            sub = sub_version
        if sub is not None:
            fields.update(definition=sub["definition"], roleArn=sub["roleArn"],
                          stateMachineVersionArn=sub["arn"])
        return machine_doc, fields

    @staticmethod
    def _input(params: dict[str, Any]) -> tuple[str, Any]:
        text = params.get("input")
        text = "{}" if text is None else str(text)
        if len(text.encode()) > MAX_INPUT:
            raise error("ValidationException", "1 validation error detected: Value at 'input' "
                        f"failed to satisfy constraint: Member must have length less than or "
                        f"equal to {MAX_INPUT}")
        try:
            return text, orjson.loads(text)
        except orjson.JSONDecodeError:
            raise error("InvalidExecutionInput", "Invalid State Machine Execution Input: "
                        f"'{text[:100]}'") from None

    async def start_execution(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        machine_arn = str(params.get("stateMachineArn"))
        machine_doc, fields = await self._resolve(machine_arn)
        name = check_name(params.get("name") or new_id())
        text, value = self._input(params)
        base_arn = machine_doc["arn"]
        doc = {"executionArn": ctx.arn("states", f"execution:{machine_doc['name']}:{name}"),
               "stateMachineArn": base_arn, "name": name, "status": "RUNNING",
               "startDate": now(), "input": text, "type": machine_doc["type"],
               "region": ctx.region, "loggingConfiguration": machine_doc["loggingConfiguration"],
               "redriveCount": 0, **fields}
        if machine_doc["type"] == "EXPRESS":
            doc["executionArn"] = ctx.arn(
                "states", f"express:{machine_doc['name']}:{name}:{new_id()}")
            self._remember_express(doc)
            self.app.spawn(self._run_express(doc, value), name=f"sfn-express-{name}")
            return {"executionArn": doc["executionArn"], "startDate": doc["startDate"]}
        arn = doc["executionArn"]

        def create(txn: Txn) -> dict[str, Any]:
            existing = store.get(txn, store.EXECUTIONS, store.key(arn))
            if existing is not None:
                if existing["status"] == "RUNNING" and existing["input"] == text:
                    return existing  # same name and input while running: idempotent
                raise error("ExecutionAlreadyExists", f"Execution Already Exists: '{arn}'")
            store.put(txn, store.EXECUTIONS, store.key(arn), doc)
            txn.put(store.BY_MACHINE, store.key(base_arn, int(doc["startDate"] * 1000), arn),
                    b"RUNNING")
            txn.put(store.RUNNING, store.key(arn), b"{}")
            if self.owners.enabled:
                self.owners.claim(txn, arn)
            return doc

        saved = await self.app.store.write(create)
        if saved is doc:
            self._status_event(doc)
            self._spawn_run(doc, None)
        return {"executionArn": arn, "startDate": saved["startDate"]}

    def _info(self, doc: dict[str, Any], value: Any) -> ExecutionInfo:
        machine_arn = doc["stateMachineArn"]
        return ExecutionInfo(
            execution_arn=doc["executionArn"], name=doc["name"],
            state_machine_arn=doc.get("stateMachineVersionArn") or machine_arn,
            state_machine_name=machine_arn.split(":")[6], input=value,
            start_time=doc["startDate"], role_arn=doc.get("roleArn", ""),
            region=doc["region"], account_id=self.app.settings.account_id,
            redrive_count=doc.get("redriveCount", 0), type=doc["type"],
            version_arn=doc.get("stateMachineVersionArn"),
            alias_arn=doc.get("stateMachineAliasArn"))

    async def _run(self, doc: dict[str, Any], checkpoint: Checkpoint | None) -> None:
        """Run (or resume) a Standard execution to its end and record the outcome."""
        arn = doc["executionArn"]
        try:
            machine = machine_from(doc["definition"])
        except InvalidDefinition as exc:  # stored by an older nubes with other rules
            await self._finish(doc, Outcome("FAILED", error="States.Runtime", cause=exc.message))
            return
        interp = Interpreter(machine, self._info(doc, orjson.loads(doc["input"])),
                             self.integrations, StoreSink(self.app, arn), durable=True)
        branches = None if checkpoint is None else await resume_point(self.app, arn, checkpoint)
        self.running[arn] = interp
        try:
            outcome = await interp.run(checkpoint, branches)
        finally:
            self.running.pop(arn, None)
        if interp.map_runs:
            runs = list(interp.map_runs.values())

            def keep(txn: Txn) -> None:
                for run in runs:
                    store.put(txn, store.MAP_RUNS, store.key(arn, run["mapRunArn"]), run)

            await self.app.store.write(keep)
        await self._finish(doc, outcome)

    async def _finish(self, doc: dict[str, Any], outcome: Outcome) -> None:
        arn = doc["executionArn"]
        doc.update(status=outcome.status, stopDate=now())
        if outcome.status == "SUCCEEDED":
            doc["output"] = orjson.dumps(outcome.output).decode()
        else:
            doc.update(error=outcome.error, cause=outcome.cause)

        def finish(txn: Txn) -> None:
            store.put(txn, store.EXECUTIONS, store.key(arn), doc)
            txn.put(store.BY_MACHINE, store.key(doc["stateMachineArn"], int(
                doc["startDate"] * 1000), arn), doc["status"].encode())
            txn.delete(store.RUNNING, store.key(arn))
            if doc["status"] == "SUCCEEDED":  # others keep it: RedriveExecution resumes there
                txn.delete(store.CHECKPOINTS, store.key(arn))
                txn.delete_prefix(store.BRANCH_CHECKPOINTS, store.key(arn))
            self.owners.release(txn, arn)
            # tokens still waiting belong to a closed execution: callbacks now fail
            # (timed-out ones stay so that late callbacks get TaskTimedOut)
            for key, _ in txn.scan(store.EXEC_TOKENS, prefix=store.key(arn)):
                token = store_unpack_arn(key)  # the last key part: the token
                waiting = store.get(txn, store.TOKENS, store.key(token))
                if waiting is not None and waiting["status"] != "TIMED_OUT":
                    txn.delete(store.TOKENS, store.key(token))
                txn.delete(store.EXEC_TOKENS, key)

        await self.app.store.write(finish)
        self.app.bus.wake(f"sfn:done:{arn}")
        self._status_event(doc)
        if (doc.get("loggingConfiguration") or {}).get("level", "OFF") != "OFF":
            name = store.history_log(arn)
            events = await self.app.store.read(lambda txn: [
                orjson.loads(v) for _, v in txn.read_log(name, after=0, limit=1_000_000)])
            await self._log_express(doc, events)

    def _status_event(self, doc: dict[str, Any]) -> None:
        """Publish "Step Functions Execution Status Change" for EventBridge."""
        detail: dict[str, Any] = {
            "executionArn": doc["executionArn"], "stateMachineArn": doc["stateMachineArn"],
            "name": doc["name"], "status": doc["status"],
            "startDate": int(doc["startDate"] * 1000),
            "stopDate": int(doc["stopDate"] * 1000) if doc.get("stopDate") else None,
            "input": doc["input"], "output": doc.get("output"),
            "inputDetails": {"included": True}, "outputDetails": (
                {"included": True} if doc.get("output") is not None else None),
            "error": doc.get("error"), "cause": doc.get("cause"),
        }
        self.app.bus.publish("events:put", {
            "Source": "aws.states", "DetailType": "Step Functions Execution Status Change",
            "Detail": detail, "Resources": [doc["executionArn"]], "region": doc["region"]})

    # -- Express -----------------------------------------------------------------

    def _remember_express(self, doc: dict[str, Any]) -> None:
        self.express[doc["executionArn"]] = doc
        while len(self.express) > EXPRESS_KEPT:
            self.express.popitem(last=False)

    async def _run_express(self, doc: dict[str, Any], value: Any) -> Outcome:
        sink = MemorySink()
        interp = Interpreter(machine_from(doc["definition"]), self._info(doc, value),
                             self.integrations, sink, durable=False)
        self.running[doc["executionArn"]] = interp
        try:
            outcome = await interp.run()
        finally:
            self.running.pop(doc["executionArn"], None)
        doc.update(status=outcome.status, stopDate=now())
        if outcome.status == "SUCCEEDED":
            doc["output"] = orjson.dumps(outcome.output).decode()
        else:
            doc.update(error=outcome.error, cause=outcome.cause)
        await self._log_express(doc, sink.events)
        return outcome

    async def _log_express(self, doc: dict[str, Any], events: list[dict[str, Any]]) -> None:
        """Write an execution's events to its CloudWatch Logs destination (Express
        executions always; Standard ones when their machine has logging on)."""
        from nubes.services.stepfunctions.logging import log_execution

        try:
            await log_execution(self.app, doc, events)
        except Exception:  # logging must never fail the execution
            log.exception("logging the execution %s failed", doc["executionArn"])

    async def start_sync_execution(self, ctx: RequestContext,
                                   params: dict[str, Any]) -> dict[str, Any]:
        machine_arn = str(params.get("stateMachineArn"))
        machine_doc, fields = await self._resolve(machine_arn)
        if machine_doc["type"] != "EXPRESS":
            raise error("StateMachineTypeNotSupported",
                        "This operation is not supported by this type of state machine")
        name = check_name(params.get("name") or new_id())
        text, value = self._input(params)
        doc = {"executionArn": ctx.arn("states", f"express:{machine_doc['name']}:{name}:"
                                       f"{new_id()}"),
               "stateMachineArn": machine_doc["arn"], "name": name, "status": "RUNNING",
               "startDate": now(), "input": text, "type": "EXPRESS", "region": ctx.region,
               "loggingConfiguration": machine_doc["loggingConfiguration"], **fields}
        self._remember_express(doc)
        outcome = await self._run_express(doc, value)
        out = {k: doc[k] for k in ("executionArn", "stateMachineArn", "name", "startDate",
                                   "stopDate", "status", "input")}
        out["inputDetails"] = {"included": True}
        out["billingDetails"] = {"billedMemoryUsedInMB": 64,
                                 "billedDurationInMilliseconds": max(100, int(
                                     (doc["stopDate"] - doc["startDate"]) * 1000))}
        if outcome.status == "SUCCEEDED":
            out.update(output=doc["output"], outputDetails={"included": True})
        else:
            out.update({k: doc[k] for k in ("error", "cause") if doc.get(k) is not None})
        return out

    # -- reading -------------------------------------------------------------------

    async def execution(self, arn: Any) -> dict[str, Any]:
        """An execution document; ExecutionDoesNotExist if there is none."""
        if isinstance(arn, str) and arn in self.express:
            return self.express[arn]
        parse_arn(arn, "express" if isinstance(arn, str) and ":express:" in arn else "execution")
        doc = await self.app.store.read(
            lambda txn: store.get(txn, store.EXECUTIONS, store.key(str(arn))))
        if doc is None:
            raise error("ExecutionDoesNotExist", f"Execution Does Not Exist: '{arn}'")
        return doc

    async def describe_execution(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        doc = await self.execution(params.get("executionArn"))
        out = _summary(doc)
        out.update(input=doc["input"], inputDetails={"included": True},
                   redriveCount=doc.get("redriveCount", 0),
                   redriveStatus=redrive_status(doc))
        if doc.get("redriveDate"):
            out["redriveDate"] = doc["redriveDate"]
        if doc.get("output") is not None:
            out.update(output=doc["output"], outputDetails={"included": True})
        for k in ("error", "cause"):
            if doc.get(k) is not None:
                out[k] = doc[k]
        return out

    async def describe_state_machine_for_execution(self, ctx: RequestContext,
                                                   params: dict[str, Any]) -> dict[str, Any]:
        doc = await self.execution(params.get("executionArn"))
        out = {"stateMachineArn": doc["stateMachineArn"],
               "name": doc["stateMachineArn"].split(":")[6], "definition": doc["definition"],
               "roleArn": doc.get("roleArn", ""), "updateDate": doc["startDate"],
               "loggingConfiguration": doc.get("loggingConfiguration") or {"level": "OFF"}}
        for k in ("stateMachineVersionArn", "stateMachineAliasArn"):
            if doc.get(k):
                out[k] = doc[k]
        return out

    async def list_executions(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("mapRunArn"):
            raise error("ValidationException", "Listing the child executions of a map run is not "
                        "supported by nubes")
        machine_arn = str(params.get("stateMachineArn"))
        machine_doc, sub = await self.machine(machine_arn)  # type: ignore[attr-defined]
        if machine_doc["type"] == "EXPRESS":
            raise error("StateMachineTypeNotSupported",
                        "This operation is not supported by this type of state machine")
        status = params.get("statusFilter")

        def read(txn: Txn) -> list[dict[str, Any]]:
            out = []
            for key, value in txn.scan(store.BY_MACHINE, prefix=store.key(machine_doc["arn"]),
                                       reverse=True):
                if status and value.decode() != status:
                    continue
                doc = store.get(txn, store.EXECUTIONS, store.key(str(store_unpack_arn(key))))
                if doc is not None:
                    out.append(_summary(doc))
            return out

        items = await self.app.store.read(read)
        if sub is not None:
            field = ("stateMachineAliasArn" if "routingConfiguration" in sub
                     else "stateMachineVersionArn")
            items = [i for i in items if i.get(field) == machine_arn]
        chunk, token = page(items, params)
        return {"executions": chunk, **({"nextToken": token} if token else {})}

    async def get_execution_history(self, ctx: RequestContext,
                                    params: dict[str, Any]) -> dict[str, Any]:
        doc = await self.execution(params.get("executionArn"))
        if doc["type"] == "EXPRESS":
            raise error("InvalidArn", "GetExecutionHistory does not support Express executions")
        name = store.history_log(doc["executionArn"])
        events = await self.app.store.read(lambda txn: [
            orjson.loads(v) for _, v in txn.read_log(name, after=0, limit=1_000_000)])
        # concurrent branches flush separately: order by event id, not by append order
        events.sort(key=lambda e: e["id"], reverse=bool(params.get("reverseOrder")))
        if params.get("includeExecutionData") is False:
            for event in events:
                for key, details in list(event.items()):
                    if key.endswith("EventDetails") and isinstance(details, dict):
                        for f in (*_DATA_FIELDS, "parameters"):
                            details.pop(f, None)
        chunk, token = page(events, params, default=1000)
        return {"events": chunk, **({"nextToken": token} if token else {})}

    async def stop_execution(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        doc = await self.execution(params.get("executionArn"))
        arn = doc["executionArn"]
        if doc["status"] != "RUNNING":
            return {"stopDate": doc.get("stopDate") or now()}
        interp = self.running.get(arn)
        if interp is not None and interp.abort(params.get("error"), params.get("cause")):
            await self._closed(arn)  # the interpreter records the abort itself
            return {"stopDate": now()}
        if self.owners.enabled and await self._stop_elsewhere(arn, params):
            return {"stopDate": now()}
        # not running anywhere (never resumed): record the abort directly
        log_name = store.history_log(arn)
        details = {k: params[k] for k in ("error", "cause") if params.get(k) is not None}

        def last(txn: Txn) -> int:
            return txn.log_bounds(log_name)[1]

        previous = await self.app.store.read(last)
        event = {"timestamp": now(), "type": "ExecutionAborted", "id": previous + 1,
                 "previousEventId": previous, "executionAbortedEventDetails": details}
        await StoreSink(self.app, arn).record([event], None)
        await self._finish(doc, Outcome("ABORTED", error=details.get("error"),
                                        cause=details.get("cause")))
        return {"stopDate": doc["stopDate"]}

    async def _stop_elsewhere(self, arn: str, params: dict[str, Any]) -> bool:
        """Ask the node that owns ``arn`` to stop it; False if no node owns it."""
        request = {k: params[k] for k in ("error", "cause") if params.get(k) is not None}

        def ask(txn: Txn) -> bool:
            if not self.owners.held_elsewhere(txn, arn):
                return False
            doc = store.get(txn, store.EXECUTIONS, store.key(arn))
            if doc is None:
                return False
            doc["stop_requested"] = request or {"error": None}
            store.put(txn, store.EXECUTIONS, store.key(arn), doc)
            return True

        if not await self.app.store.write(ask):
            return False
        self.app.bus.wake(WAKE)
        await self._closed(arn)  # the owner records the abort
        return True

    async def _closed(self, arn: str, timeout: float = 10.0) -> None:
        """Wait until an execution's stored status is no longer RUNNING (so that a
        DescribeExecution right after StopExecution shows ABORTED)."""
        for _ in range(int(timeout / 0.1)):
            current = await self.app.store.read(
                lambda txn: store.get(txn, store.EXECUTIONS, store.key(arn)))
            if current is None or current["status"] != "RUNNING":
                return
            await self.app.bus.wait(f"sfn:done:{arn}", 0.1)

    async def map_runs(self, execution_arn: str) -> dict[str, dict[str, Any]]:
        """Map runs of an execution: finished ones from the store, live ones from
        its interpreter if it runs here."""
        stored = await self.app.store.read(
            lambda txn: store.scan(txn, store.MAP_RUNS, execution_arn))
        out = {r["mapRunArn"]: r for r in stored}
        interp = self.running.get(execution_arn)
        if interp is not None:
            out.update(interp.map_runs)
        return out

    async def list_map_runs(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        doc = await self.execution(params.get("executionArn"))
        runs = list((await self.map_runs(doc["executionArn"])).values())
        items = [{"executionArn": r["executionArn"], "mapRunArn": r["mapRunArn"],
                  "stateMachineArn": doc["stateMachineArn"], "startDate": r["startDate"],
                  **({"stopDate": r["stopDate"]} if r.get("stopDate") else {})} for r in runs]
        chunk, token = page(items, params)
        return {"mapRuns": chunk, **({"nextToken": token} if token else {})}

    async def describe_map_run(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        arn = str(params.get("mapRunArn"))
        # mapRun:<machine>/<label>:<id> belongs to an execution we find through its runs
        run = None
        for execution_arn in list(self.running):
            run = (await self.map_runs(execution_arn)).get(arn) or run
        if run is None:
            found = await self.app.store.read(lambda txn: [
                orjson.loads(v) for k, v in txn.scan(store.MAP_RUNS) if arn.encode() in k])
            run = found[0] if found else None
        if run is None:
            raise error("ResourceNotFound", f"Resource not found: '{params.get('mapRunArn')}'")
        counts = run["counts"]
        item_counts = {"pending": 0, "running": counts["total"] - counts["succeeded"]
                       - counts["failed"], "succeeded": counts["succeeded"],
                       "failed": counts["failed"], "timedOut": 0, "aborted": 0,
                       "total": counts["total"], "resultsWritten": 0}
        out = {k: run[k] for k in ("mapRunArn", "executionArn", "status", "startDate",
                                   "maxConcurrency", "toleratedFailurePercentage",
                                   "toleratedFailureCount")}
        out.update(itemCounts=item_counts, executionCounts=item_counts)
        if run.get("stopDate"):
            out["stopDate"] = run["stopDate"]
        return out


def store_unpack_arn(key: bytes) -> str:
    """The last part of a key (the execution ARN of ``sfn.by_machine``, the token of
    ``sfn.exec_tokens``)."""
    from nubes.storage.keys import unpack

    return str(unpack(key)[-1])

