"""RedriveExecution: restart a failed, aborted or timed-out Standard execution from
where it stopped (its last checkpoint), continuing the same history. As on AWS,
Parallel branches and Map iterations that finished keep their results; only the
unsuccessful ones run again (from their own last checkpoint)."""

from __future__ import annotations

from typing import Any

import orjson

from nubes.services.base import RequestContext
from nubes.services.stepfunctions import store
from nubes.services.stepfunctions.common import error, machine_from, now
from nubes.services.stepfunctions.executions import ExecutionOps
from nubes.storage.base import Txn
from nubes.workflows.history import Checkpoint

REDRIVABLE = ("FAILED", "ABORTED", "TIMED_OUT")
#: AWS redrives executions that stopped at most 14 days ago
REDRIVE_WINDOW = 14 * 86_400


def redrive_status(doc: dict[str, Any]) -> str:
    """``REDRIVABLE`` or ``NOT_REDRIVABLE`` for DescribeExecution."""
    if doc.get("type") == "EXPRESS" or doc["status"] not in REDRIVABLE:
        return "NOT_REDRIVABLE"
    if now() - float(doc.get("stopDate") or 0) > REDRIVE_WINDOW:
        return "NOT_REDRIVABLE"
    return "REDRIVABLE"


def _rearm(checkpoint: Checkpoint) -> None:
    """The stopped state runs again from its start (a task gets a new token)."""
    checkpoint.phase, checkpoint.task_token, checkpoint.wait_until = "enter", None, None


def _rearm_branches(txn: Txn, arn: str) -> None:
    """Finished branches keep their result, failed distributed Map children run again,
    the others restart the state they stopped in."""
    for path, raw in store.branch_checkpoints(txn, arn).items():
        checkpoint = Checkpoint.from_json(raw)
        key = store.key(arn, *path)
        if checkpoint.phase == "failed":
            txn.delete(store.BRANCH_CHECKPOINTS, key)
        elif checkpoint.phase != "done":
            _rearm(checkpoint)
            txn.put(store.BRANCH_CHECKPOINTS, key, checkpoint.to_json())


class RedriveOps(ExecutionOps):
    """The RedriveExecution operation."""

    async def redrive_execution(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        doc = await self.execution(params.get("executionArn"))
        arn = doc["executionArn"]
        if redrive_status(doc) != "REDRIVABLE":
            raise error("ExecutionNotRedrivable", f"Execution '{arn}' cannot be redriven: its "
                        f"status is {doc['status']}")
        when = now()
        log_name = store.history_log(arn)

        def restart(txn: Txn) -> tuple[dict[str, Any], Checkpoint]:
            current = store.get(txn, store.EXECUTIONS, store.key(arn))
            if current is None or redrive_status(current) != "REDRIVABLE":
                raise error("ExecutionNotRedrivable", f"Execution '{arn}' cannot be redriven")
            raw = txn.get(store.CHECKPOINTS, store.key(arn))
            machine = machine_from(current["definition"])
            checkpoint = (Checkpoint.from_json(raw) if raw is not None
                          else Checkpoint(machine.start_at, orjson.loads(current["input"])))
            _rearm(checkpoint)
            _rearm_branches(txn, arn)
            last = txn.log_bounds(log_name)[1]
            count = int(current.get("redriveCount", 0)) + 1
            txn.append(log_name, orjson.dumps({
                "timestamp": when, "type": "ExecutionRedriven", "id": last + 1,
                "previousEventId": last, "executionRedrivenEventDetails": {"redriveCount": count}}))
            checkpoint.event_id = checkpoint.previous_event_id = last + 1
            for key in ("stopDate", "error", "cause", "output"):
                current.pop(key, None)
            current.update(status="RUNNING", redriveCount=count, redriveDate=when)
            store.put(txn, store.EXECUTIONS, store.key(arn), current)
            txn.put(store.BY_MACHINE, store.key(current["stateMachineArn"], int(
                current["startDate"] * 1000), arn), b"RUNNING")
            txn.put(store.RUNNING, store.key(arn), b"{}")
            txn.put(store.CHECKPOINTS, store.key(arn), checkpoint.to_json())
            if self.owners.enabled:
                self.owners.claim(txn, arn)
            return current, checkpoint

        current, checkpoint = await self.app.store.write(restart)
        self._status_event(current)
        self._spawn_run(current, checkpoint)
        return {"redriveDate": when}
