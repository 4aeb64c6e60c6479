"""Where EventBridge Scheduler keeps its records.

* ``scheduler.groups``    — ``(region, group)`` → group record
* ``scheduler.schedules`` — ``(region, group, schedule)`` → schedule record; its
  ``NextScheduled`` is the nominal time of the next run (the timer may fire
  later within the flexible window)
* ``scheduler.tags``      — ``(arn,)`` → ``{key: value}``
* timers ``scheduler.timers`` (see ``nubes.services.events.timers``), items
  ``region/group/name``
* queue ``scheduler.deliveries`` — invocations still to deliver
"""

from __future__ import annotations

from typing import Any

import orjson

from nubes.storage.base import Txn
from nubes.storage.keys import pack

GROUPS = "scheduler.groups"
SCHEDULES = "scheduler.schedules"
TAGS = "scheduler.tags"
TIMERS = "scheduler.timers"
DELIVERIES = "scheduler.deliveries"


def get_json(txn: Txn, table: str, key: bytes) -> dict[str, Any] | None:
    raw = txn.get(table, key)
    return None if raw is None else orjson.loads(raw)


def put_json(txn: Txn, table: str, key: bytes, doc: dict[str, Any]) -> None:
    txn.put(table, key, orjson.dumps(doc))


def default_group(region: str, account: str) -> dict[str, Any]:
    """The ``default`` group every account has."""
    return {
        "Name": "default",
        "Arn": f"arn:aws:scheduler:{region}:{account}:schedule-group/default",
        "State": "ACTIVE",
        "CreationDate": 0.0,
        "LastModificationDate": 0.0,
    }


def get_group(txn: Txn, region: str, account: str, name: str) -> dict[str, Any] | None:
    doc = get_json(txn, GROUPS, pack(region, name))
    if doc is None and name == "default":
        return default_group(region, account)
    return doc


def timer_item(region: str, group: str, name: str) -> str:
    return f"{region}/{group}/{name}"


def get_tags(txn: Txn, arn: str) -> dict[str, str]:
    doc = get_json(txn, TAGS, pack(arn))
    return {str(k): str(v) for k, v in (doc or {}).items()}


def put_tags(txn: Txn, arn: str, tags: dict[str, str]) -> None:
    if tags:
        put_json(txn, TAGS, pack(arn), tags)
    else:
        txn.delete(TAGS, pack(arn))
