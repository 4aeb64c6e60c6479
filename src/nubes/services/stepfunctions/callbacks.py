"""Task callbacks (SendTaskSuccess/Failure/Heartbeat), activity workers
(GetActivityTask long poll) and TestState."""

from __future__ import annotations

import time
from typing import Any

import orjson

from nubes.services.base import Provider, RequestContext
from nubes.services.stepfunctions import store
from nubes.services.stepfunctions.common import MAX_INPUT, error, listening, parse_arn
from nubes.services.stepfunctions.integrations import Integrations
from nubes.storage.base import Txn
from nubes.workflows.definition import load
from nubes.workflows.errors import InvalidDefinition, StatesError
from nubes.workflows.history import ExecutionInfo, MemorySink
from nubes.workflows.interpreter import Interpreter, Thread

#: GetActivityTask waits at most this long for a task (AWS: 60 s)
ACTIVITY_POLL_SECONDS = 60.0


class CallbackOps(Provider):
    """Operations that complete or feed waiting tasks."""

    integrations: Integrations

    async def _callback(self, token: Any, change: dict[str, Any]) -> None:
        if not isinstance(token, str) or not 1 <= len(token) <= 1024:
            raise error("InvalidToken", f"Invalid Token: '{token}'")

        def apply(txn: Txn) -> None:
            doc = store.get(txn, store.TOKENS, store.key(token))
            if doc is None:
                raise error("TaskDoesNotExist", "Task Does Not Exist: the task token is not known "
                            "or its task already completed")
            if doc["status"] == "TIMED_OUT":
                raise error("TaskTimedOut", "Task Timed Out: the task's timeout or heartbeat "
                            "timeout passed")
            if doc["status"] not in ("WAITING", "STARTED"):
                raise error("TaskDoesNotExist", "Task Does Not Exist: the task already completed")
            doc.update(change)
            store.put(txn, store.TOKENS, store.key(token), doc)

        await self.app.store.write(apply)
        self.app.bus.wake(f"sfn:token:{token}")

    async def send_task_success(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        output = params.get("output")
        if not isinstance(output, str) or len(output.encode()) > MAX_INPUT:
            raise error("InvalidOutput", "Invalid Output: the output must be JSON of at most "
                        "256 KB")
        try:
            orjson.loads(output)
        except orjson.JSONDecodeError:
            raise error("InvalidOutput", f"Invalid Output: '{output[:100]}'") from None
        await self._callback(params.get("taskToken"), {"status": "SUCCEEDED", "output": output})
        return {}

    async def send_task_failure(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self._callback(params.get("taskToken"), {
            "status": "FAILED", "error": params.get("error") or "",
            "cause": params.get("cause") or ""})
        return {}

    async def send_task_heartbeat(self, ctx: RequestContext,
                                  params: dict[str, Any]) -> dict[str, Any]:
        await self._callback(params.get("taskToken"), {"heartbeat_at": time.time()})
        return {}

    async def get_activity_task(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        arn = str(params.get("activityArn"))
        region, name, _ = parse_arn(arn, "activity")
        exists = await self.app.store.read(
            lambda txn: txn.get(store.ACTIVITIES, store.key(region, name)))
        if exists is None:
            raise error("ActivityDoesNotExist", f"Activity Does Not Exist: '{arn}'")
        worker = params.get("workerName") or ""
        queue = store.activity_queue(arn)
        deadline = time.time() + ACTIVITY_POLL_SECONDS

        def take(txn: Txn) -> dict[str, Any] | None:
            leased = txn.lease(queue, now=time.time(), visibility=60.0)
            if not leased:
                return None
            txn.ack(queue, leased[0].id)
            task: dict[str, Any] = orjson.loads(leased[0].value)
            doc = store.get(txn, store.TOKENS, store.key(task["token"]))
            if doc is None or doc["status"] != "WAITING":
                return {}  # its execution ended meanwhile: look for the next task
            doc.update(status="STARTED", worker=worker, heartbeat_at=time.time())
            store.put(txn, store.TOKENS, store.key(task["token"]), doc)
            return task

        while True:
            remaining = deadline - time.time()
            # listen before leasing, so a task scheduled in between wakes us at once
            async with listening(self.app.bus, f"sfn:activity:{arn}",
                                 max(0.0, min(remaining, 5.0))) as woken:
                task = await self.app.store.write(take)
                if task:
                    self.app.bus.wake(f"sfn:token:{task['token']}")
                    return {"taskToken": task["token"], "input": task["input"]}
                if task is None:
                    if remaining <= 0:
                        return {}
                    await woken

    async def test_state(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Run one state on an input (no retries), as the TestState API does."""
        try:
            state_def = orjson.loads(str(params.get("definition")))
        except orjson.JSONDecodeError:
            raise error("InvalidDefinition", "Invalid State Machine Definition: 'The state "
                        "definition is not valid JSON'") from None
        if not isinstance(state_def, dict):
            raise error("InvalidDefinition", "Invalid State Machine Definition: 'The state "
                        "definition must be an object'")
        targets = {state_def.get("Next"), state_def.get("Default")}
        targets |= {c.get("Next") for c in state_def.get("Choices") or () if isinstance(c, dict)}
        targets |= {c.get("Next") for c in state_def.get("Catch") or () if isinstance(c, dict)}
        states: dict[str, Any] = {t: {"Type": "Succeed"} for t in targets if isinstance(t, str)}
        states["__TestState__"] = state_def
        try:
            machine = load({"StartAt": "__TestState__", "States": states})
        except InvalidDefinition as exc:
            raise error("InvalidDefinition", exc.message) from None
        state = machine.states["__TestState__"]
        state.retry = ()
        try:
            value = orjson.loads(str(params.get("input") or "{}"))
        except orjson.JSONDecodeError:
            raise error("InvalidExecutionInput", "Invalid input") from None
        info = ExecutionInfo(
            execution_arn=ctx.arn("states", "execution:TestState:test"), name="test",
            state_machine_arn=ctx.arn("states", "stateMachine:TestState"),
            state_machine_name="TestState", input=value, start_time=time.time(),
            role_arn=str(params.get("roleArn") or ""), region=ctx.region,
            account_id=ctx.account_id)
        interp = Interpreter(machine, info, self.integrations, MemorySink(), durable=False)
        variables = orjson.loads(params["variables"]) if params.get("variables") else {}
        thread = Thread(machine, dict(variables))
        interp.trace = {"input": value}
        try:
            next_state, output = await interp.run_state(thread, state, value, None)
        except StatesError as err:
            return {"status": "FAILED", "error": err.error, "cause": err.cause,
                    "inspectionData": _inspection(interp.trace, thread)}
        inspection = _inspection(interp.trace, thread)
        caught = bool(state.catch) and next_state != state.next and state.type != "Choice"
        out: dict[str, Any] = {"status": "CAUGHT_ERROR" if caught else "SUCCEEDED",
                               "output": orjson.dumps(output).decode(),
                               "inspectionData": inspection}
        if next_state is not None:
            out["nextState"] = next_state
        if caught and isinstance(output, dict):
            out.update({k.lower(): v for k, v in output.items() if k in ("Error", "Cause")})
        return out


def _inspection(trace: dict[str, Any], thread: Thread) -> dict[str, Any]:
    """TestState's ``inspectionData``: each recorded step as JSON text."""
    out = {k: orjson.dumps(v).decode() for k, v in trace.items()}
    if thread.variables:
        out["variables"] = orjson.dumps(thread.variables).decode()
    return out
