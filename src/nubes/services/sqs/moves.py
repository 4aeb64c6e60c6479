"""Dead-letter queue redrive: StartMessageMoveTask, ListMessageMoveTasks, CancelMessageMoveTask.

A task is a durable record (``sqs.move_tasks``) plus a worker on this node; it
moves the messages present when it started, oldest first, each move and the
task's progress committed together, and resumes after a restart.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
import uuid
from typing import Any

import orjson

from nubes.services.base import RequestContext
from nubes.services.sqs.base import SqsBase, sqs_operation
from nubes.services.sqs.models import (
    MOVE_TASKS_TABLE,
    QUEUES_TABLE,
    Queue,
    invalid_parameter,
    sqs_error,
)
from nubes.services.sqs.queues import move_message
from nubes.storage.base import QueueMessage, Txn

DEFAULT_RATE = 500
MAX_RATE = 500


def _task_key(source_arn: str, task_id: str) -> bytes:
    return f"{source_arn}/{task_id}".encode()


def _handle(source_arn: str, task_id: str) -> str:
    return base64.b64encode(orjson.dumps({"taskId": task_id, "sourceArn": source_arn})).decode()


def _parse_handle(handle: str) -> tuple[str, str]:
    try:
        doc = orjson.loads(base64.b64decode(handle.encode()))
        return str(doc["sourceArn"]), str(doc["taskId"])
    except (ValueError, KeyError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise sqs_error("ResourceNotFoundException", "Task does not exist.") from None


class MoveTaskOps(SqsBase):
    """Redrive of dead-letter queues."""

    async def _is_dead_letter_queue(self, queue: Queue) -> bool:
        rows = await self.app.store.read(
            lambda txn: txn.scan(QUEUES_TABLE, prefix=f"{queue.region}/{queue.account}/".encode())
        )
        return any((Queue.load(raw).redrive or ("", 0))[0] == queue.arn for _, raw in rows)

    async def _tasks(self, source_arn: str) -> list[dict[str, Any]]:
        rows = await self.app.store.read(
            lambda txn: txn.scan(MOVE_TASKS_TABLE, prefix=f"{source_arn}/".encode())
        )
        tasks = [orjson.loads(raw) for _, raw in rows]
        return sorted(tasks, key=lambda t: t["StartedTimestamp"], reverse=True)

    @sqs_operation
    async def start_message_move_task(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        """Start moving a dead-letter queue's messages back (to their sources or DestinationArn)."""
        source = await self.queue_by_arn(params["SourceArn"])
        if source is None:
            raise sqs_error(
                "ResourceNotFoundException",
                "The resource that you specified for the SourceArn parameter doesn't exist.",
            )
        if not await self._is_dead_letter_queue(source):
            raise invalid_parameter("Source queue must be configured as a Dead Letter Queue.")
        destination_arn = params.get("DestinationArn")
        if destination_arn and await self.queue_by_arn(destination_arn) is None:
            raise sqs_error(
                "ResourceNotFoundException",
                "The resource that you specified for the DestinationArn parameter doesn't exist.",
            )
        rate = params.get("MaxNumberOfMessagesPerSecond")
        if rate is not None and not 1 <= rate <= MAX_RATE:
            raise invalid_parameter(
                f"Value {rate} for parameter MaxNumberOfMessagesPerSecond is invalid. Reason: must be between 1 and {MAX_RATE}."
            )
        if any(t["Status"] == "RUNNING" for t in await self._tasks(source.arn)):
            raise invalid_parameter(
                "There is already a task running. Only one active task is allowed for a source queue arn at a given time."
            )
        task_id = uuid.uuid4().hex
        now = time.time()

        def start(txn: Txn) -> dict[str, Any]:
            last = txn.peek(source.store_queue, limit=1_000_000)
            task: dict[str, Any] = {
                "TaskHandle": _handle(source.arn, task_id), "TaskId": task_id, "Status": "RUNNING",
                "SourceArn": source.arn, "ApproximateNumberOfMessagesMoved": 0,
                "ApproximateNumberOfMessagesToMove": len(last), "StartedTimestamp": int(now * 1000),
                "MaxId": last[-1].id if last else 0, "AfterId": 0,
            }  # fmt: skip
            if destination_arn:
                task["DestinationArn"] = destination_arn
            if rate is not None:
                task["MaxNumberOfMessagesPerSecond"] = rate
            txn.put(MOVE_TASKS_TABLE, _task_key(source.arn, task_id), orjson.dumps(task))
            return task

        task = await self.app.store.write(start)
        self.app.spawn(self._run_task(source.arn, task_id), name=f"sqs-move-{task_id}")
        return {"TaskHandle": task["TaskHandle"]}

    @sqs_operation
    async def list_message_move_tasks(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        """The most recent tasks of a source queue (MaxResults, default 1, at most 10)."""
        source = await self.queue_by_arn(params["SourceArn"])
        if source is None:
            raise sqs_error(
                "ResourceNotFoundException",
                "The resource that you specified for the SourceArn parameter doesn't exist.",
            )
        limit = params.get("MaxResults") or 1
        if not 1 <= limit <= 10:
            raise invalid_parameter(
                f"Value {limit} for parameter MaxResults is invalid. Reason: must be between 1 and 10."
            )
        results = []
        for task in (await self._tasks(source.arn))[:limit]:
            entry = {k: v for k, v in task.items() if k not in ("TaskId", "MaxId", "AfterId")}
            if task["Status"] != "RUNNING":
                entry.pop("TaskHandle", None)
            results.append(entry)
        return {"Results": results}

    @sqs_operation
    async def cancel_message_move_task(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        """Ask a running move task to stop; returns how many messages it moved."""
        source_arn, task_id = _parse_handle(params["TaskHandle"])
        key = _task_key(source_arn, task_id)

        def cancel(txn: Txn) -> dict[str, Any]:
            raw = txn.get(MOVE_TASKS_TABLE, key)
            if raw is None:
                raise sqs_error("ResourceNotFoundException", "Task does not exist.")
            task: dict[str, Any] = orjson.loads(raw)
            if task["Status"] != "RUNNING":
                raise invalid_parameter("Only active tasks can be cancelled.")
            task["Status"] = "CANCELLING"
            txn.put(MOVE_TASKS_TABLE, key, orjson.dumps(task))
            return task

        task = await self.app.store.write(cancel)
        return {"ApproximateNumberOfMessagesMoved": task["ApproximateNumberOfMessagesMoved"]}

    async def resume_move_tasks(self) -> None:
        """Restart the workers of tasks that were running when the server stopped."""
        rows = await self.app.store.read(lambda txn: txn.scan(MOVE_TASKS_TABLE))
        for _, raw in rows:
            task = orjson.loads(raw)
            if task["Status"] in ("RUNNING", "CANCELLING"):
                self.app.spawn(
                    self._run_task(task["SourceArn"], task["TaskId"]),
                    name=f"sqs-move-{task['TaskId']}",
                )

    async def _run_task(self, source_arn: str, task_id: str) -> None:
        key = _task_key(source_arn, task_id)
        while True:
            raw = await self.app.store.read(lambda txn: txn.get(MOVE_TASKS_TABLE, key))
            if raw is None:
                return
            task = orjson.loads(raw)
            rate = int(task.get("MaxNumberOfMessagesPerSecond") or DEFAULT_RATE)
            source = await self.queue_by_arn(source_arn)
            if task["Status"] != "RUNNING" or source is None:
                await self._finish(key, "CANCELLED" if task["Status"] == "CANCELLING" else "FAILED",
                                   None if source else "AWS.SimpleQueueService.NonExistentQueue")  # fmt: skip
                return
            store_queue, after, limit = source.store_queue, int(task["AfterId"]), min(rate, 100)
            batch = await self.app.store.read(
                lambda txn: txn.peek(store_queue, after_id=after, limit=limit)  # noqa: B023 - awaited at once
            )
            batch = [m for m in batch if m.id <= task["MaxId"]]
            if not batch:
                await self._finish(key, "COMPLETED", None)
                return
            moved = await self._move_batch(source, task, batch)
            await asyncio.sleep(max(moved, 1) / rate)

    async def _move_batch(
        self, source: Queue, task: dict[str, Any], batch: list[QueueMessage]
    ) -> int:
        targets: dict[str, Queue | None] = {}
        for message in batch:
            arn = task.get("DestinationArn") or orjson.loads(message.value).get("src", "")
            if arn not in targets:
                targets[arn] = await self.queue_by_arn(arn)
        key = _task_key(source.arn, task["TaskId"])
        now = time.time()

        def move(txn: Txn) -> int:
            current = orjson.loads(txn.get(MOVE_TASKS_TABLE, key) or b"{}")
            if current.get("Status") != "RUNNING":
                return 0
            moved = 0
            for message in batch:
                fresh = txn.get_message(source.store_queue, message.id)
                current["AfterId"] = message.id
                if fresh is None or fresh.visible_at > now:
                    continue  # deleted or in flight meanwhile: AWS skips it too
                doc = orjson.loads(fresh.value)
                target = targets.get(task.get("DestinationArn") or doc.get("src", ""))
                if target is None:
                    continue
                doc.pop("src", None)
                move_message(txn, fresh, doc, source, target, now, mark_source=False)
                moved += 1
            current["ApproximateNumberOfMessagesMoved"] += moved
            txn.put(MOVE_TASKS_TABLE, key, orjson.dumps(current))
            return moved

        moved = await self.app.store.write(move)
        for target in {t.arn: t for t in targets.values() if t is not None}.values():
            self.notify(target)
        return moved

    async def _finish(self, key: bytes, status: str, reason: str | None) -> None:
        def finish(txn: Txn) -> None:
            raw = txn.get(MOVE_TASKS_TABLE, key)
            if raw is None:
                return
            task = orjson.loads(raw)
            task["Status"] = status
            if reason:
                task["FailureReason"] = reason
            txn.put(MOVE_TASKS_TABLE, key, orjson.dumps(task))

        await self.app.store.write(finish)
