"""Step Functions' tables and logs (the only module that knows them).

* ``sfn.machines`` — ``(region, name)`` → state machine document (definition,
  role, type, logging, tags, revision, next version number)
* ``sfn.versions`` — ``(region, name, version:int)`` → published version
* ``sfn.aliases`` — ``(region, name, alias)`` → alias (routing configuration)
* ``sfn.activities`` — ``(region, name)`` → activity document
* ``sfn.executions`` — ``(execution_arn,)`` → execution document (status, input,
  output, definition snapshot, ...)
* ``sfn.by_machine`` — ``(machine_arn, start_ms:int, execution_arn)`` → status, for
  ListExecutions in start order
* ``sfn.running`` — ``(execution_arn,)`` → ``{}`` for Standard executions to resume
* ``sfn.checkpoints`` — ``(execution_arn,)`` → interpreter checkpoint
* ``sfn.branch_checkpoints`` — ``(execution_arn, state, index, ...)`` → checkpoint of a
  Parallel branch / Map iteration (its thread path), or its ``done`` result
* ``sfn.tokens`` — ``(task_token,)`` → callback state of a waiting task
* ``sfn.map_runs`` — ``(execution_arn, map_run_arn)`` → finished map run summary
* ``sfn.exec_tokens`` — ``(execution_arn, task_token)`` → ``{}``: an execution's tokens
* log ``sfn.history:<execution_arn>`` — the history events, one per record
* queue ``sfn.activity:<activity_arn>`` — scheduled activity tasks
"""

from __future__ import annotations

from typing import Any

import orjson

from nubes.storage.base import Txn
from nubes.storage.keys import pack

MACHINES = "sfn.machines"
VERSIONS = "sfn.versions"
ALIASES = "sfn.aliases"
ACTIVITIES = "sfn.activities"
EXECUTIONS = "sfn.executions"
BY_MACHINE = "sfn.by_machine"
RUNNING = "sfn.running"
CHECKPOINTS = "sfn.checkpoints"
BRANCH_CHECKPOINTS = "sfn.branch_checkpoints"
TOKENS = "sfn.tokens"
EXEC_TOKENS = "sfn.exec_tokens"
MAP_RUNS = "sfn.map_runs"


def history_log(execution_arn: str) -> str:
    """Name of an execution's history log."""
    return f"sfn.history:{execution_arn}"


def activity_queue(activity_arn: str) -> str:
    """Name of an activity's task queue."""
    return f"sfn.activity:{activity_arn}"


def get(txn: Txn, table: str, key: bytes) -> dict[str, Any] | None:
    """A JSON record or None."""
    raw = txn.get(table, key)
    return None if raw is None else orjson.loads(raw)


def put(txn: Txn, table: str, key: bytes, doc: dict[str, Any]) -> None:
    """Store a JSON record."""
    txn.put(table, key, orjson.dumps(doc))


def scan(txn: Txn, table: str, *parts: str | int) -> list[dict[str, Any]]:
    """Every record under a key prefix, in key order."""
    return [orjson.loads(v) for _, v in txn.scan(table, prefix=pack(*parts))]


def key(*parts: str | int) -> bytes:
    """A composite key."""
    return pack(*parts)


def branch_checkpoints(txn: Txn, execution_arn: str) -> dict[tuple[str | int, ...], bytes]:
    """Every stored branch checkpoint of an execution, by thread path."""
    from nubes.storage.keys import unpack

    out: dict[tuple[str | int, ...], bytes] = {}
    for k, value in txn.scan(BRANCH_CHECKPOINTS, prefix=pack(execution_arn)):
        out[tuple(p for p in unpack(k)[1:] if isinstance(p, (str, int)))] = value
    return out
