"""A resumed token task whose token was never handed out (the server died between
the checkpoint and the call) hands it out again instead of waiting forever."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson

from nubes.events.bus import EventBus
from nubes.services.stepfunctions import store
from nubes.services.stepfunctions.integrations import Integrations
from nubes.storage.sqlite import SqliteStore
from nubes.workflows.history import ExecutionInfo, TaskRequest

ACTIVITY = "arn:aws:states:us-east-1:000000000000:activity:approve"
TOKEN_TASK = "arn:aws:states:::sqs:sendMessage.waitForTaskToken"


def _info() -> ExecutionInfo:
    return ExecutionInfo("arn:aws:states:us-east-1:000000000000:execution:sm:e", "e",
                         "arn:aws:states:us-east-1:000000000000:stateMachine:sm", "sm", {},
                         time.time())


class Recording(Integrations):
    """Integrations whose service calls are only recorded."""

    calls: list[TaskRequest]

    async def call_integration(self, target: str, pattern: str, request: TaskRequest) -> Any:
        self.calls.append(request)
        return {"MessageId": "m"}


async def _complete(app: Any, token: str, output: Any) -> None:
    """What SendTaskSuccess does, once the token is recorded."""
    for _ in range(200):
        doc = await app.store.read(lambda txn: store.get(txn, store.TOKENS, store.key(token)))
        if doc is not None:
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("the token was never recorded")
    doc.update(status="SUCCEEDED", output=orjson.dumps(output).decode())
    await app.store.write(lambda txn: store.put(txn, store.TOKENS, store.key(token), doc))
    app.bus.wake(f"sfn:token:{token}")


def _run(tmp_path: Path, scenario: Any) -> Any:
    async def go() -> Any:
        app = SimpleNamespace(store=SqliteStore(tmp_path / "db.sqlite"), bus=EventBus())
        try:
            return await scenario(app)
        finally:
            await app.store.close()

    return asyncio.run(go())


def test_resumed_token_task_that_never_handed_out_its_token_calls_again(tmp_path: Path) -> None:
    async def scenario(app: Any) -> Any:
        integrations = Recording(app)
        integrations.calls = []
        request = TaskRequest(TOKEN_TASK, {"MessageBody": {"token": "tok-1"}}, "Ask", _info(),
                              task_token="tok-1", resumed=True)
        waiting = asyncio.ensure_future(integrations.run_task(request))
        await _complete(app, "tok-1", {"ok": 1})
        result = await waiting
        return result, integrations.calls

    result, calls = _run(tmp_path, scenario)
    assert result == {"ok": 1}
    assert [c.task_token for c in calls] == ["tok-1"]  # the same token, handed out again


def test_resumed_token_task_with_its_token_out_only_waits(tmp_path: Path) -> None:
    async def scenario(app: Any) -> Any:
        integrations = Recording(app)
        integrations.calls = []
        first = TaskRequest(TOKEN_TASK, {}, "Ask", _info(), task_token="tok-2")
        waiting = asyncio.ensure_future(integrations.run_task(first))
        await asyncio.sleep(0.05)
        waiting.cancel()  # the server dies while the task waits
        await asyncio.gather(waiting, return_exceptions=True)
        resumed = TaskRequest(TOKEN_TASK, {}, "Ask", _info(), task_token="tok-2", resumed=True)
        waiting = asyncio.ensure_future(integrations.run_task(resumed))
        await _complete(app, "tok-2", {"ok": 2})
        return await waiting, integrations.calls

    result, calls = _run(tmp_path, scenario)
    assert result == {"ok": 2}
    assert len(calls) == 1  # only the first run called the service


def test_resumed_activity_that_was_never_scheduled_is_scheduled(tmp_path: Path) -> None:
    async def scenario(app: Any) -> Any:
        await app.store.write(lambda txn: store.put(
            txn, store.ACTIVITIES, store.key("us-east-1", "approve"), {"name": "approve"}))
        integrations = Integrations(app)
        request = TaskRequest(ACTIVITY, {"n": 1}, "Approve", _info(), task_token="tok-3",
                              resumed=True)
        waiting = asyncio.ensure_future(integrations.run_task(request))
        await _complete(app, "tok-3", "approved")
        queued = await app.store.write(lambda txn: txn.lease(
            store.activity_queue(ACTIVITY), now=time.time(), visibility=60.0))
        return await waiting, [orjson.loads(m.value) for m in queued]

    result, queued = _run(tmp_path, scenario)
    assert result == "approved"
    assert queued == [{"token": "tok-3", "input": '{"n":1}'}]
