"""Stack records in the store: stacks, their events, exports and change sets.

Tables (keys packed with ``storage.keys.pack``):

* ``cloudformation.stacks``: (region, stack id) → stack record (JSON), kept after
  deletion so ListStacks and DescribeStacks by id still show deleted stacks;
* ``cloudformation.names``: (region, stack name) → stack id of the live stack;
* ``cloudformation.exports``: (region, export name) → {StackId, StackName, Value};
* ``cloudformation.changesets``: (region, change set id) → change set record;
* log ``cloudformation.events:<stack id>``: the stack's events in order.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from nubes.aws.errors import AwsError
from nubes.storage.base import Store, Txn
from nubes.storage.keys import pack

STACKS = "cloudformation.stacks"
NAMES = "cloudformation.names"
EXPORTS = "cloudformation.exports"
CHANGESETS = "cloudformation.changesets"

IN_PROGRESS_SUFFIX = "_IN_PROGRESS"

#: sends a stack event to the stack's notification topics
Notify = Callable[[dict[str, Any], dict[str, Any]], Awaitable[None]]


def events_log(stack_id: str) -> str:
    """The log holding a stack's events."""
    return f"cloudformation.events:{stack_id}"


def validation(message: str) -> AwsError:
    """CloudFormation's ``ValidationError``."""
    return AwsError("ValidationError", message, 400)


def stack_arn(region: str, account_id: str, name: str) -> str:
    """A new stack id: ``arn:aws:cloudformation:{region}:{account}:stack/{name}/{uuid}``."""
    return f"arn:aws:cloudformation:{region}:{account_id}:stack/{name}/{uuid.uuid4()}"


def region_of(stack_id: str) -> str:
    """The region in a stack or change set ARN."""
    return stack_id.split(":")[3]


def _read_events(txn: Txn, *, log: str, after: int) -> list[tuple[int, bytes]]:
    return txn.read_log(log, after=after, limit=1000)


def _check_not_imported(txn: Txn, region: str, stack_id: str, names: set[str], exports: dict[str, Any]) -> None:
    """CloudFormation refuses to remove or change an export another stack imports."""
    for _, raw in txn.scan(STACKS, prefix=pack(region)):
        other = orjson.loads(raw)
        if other["StackId"] == stack_id or other["StackStatus"] == "DELETE_COMPLETE":
            continue
        for name in sorted(names & set(other.get("Imports") or [])):
            if name in exports:
                raise validation(f"Cannot update export {name} as it is in use by {other['StackName']}")
            raise validation(f"Export {name} cannot be deleted as it is in use by {other['StackName']}")


class StackStore:
    """Reads and writes stack records for the CloudFormation provider and engine."""

    def __init__(self, store: Store, notify: Notify | None = None) -> None:
        self.store = store
        #: called with (stack record, event) after each event is stored
        self.notify = notify

    # -- stacks -----------------------------------------------------------------

    async def find(self, region: str, name_or_id: str, *, deleted: bool = False) -> dict[str, Any] | None:
        """A stack by name (live stacks only) or by id (also deleted ones when ``deleted``)."""

        def read(txn: Txn) -> bytes | None:
            if name_or_id.startswith("arn:"):
                raw = txn.get(STACKS, pack(region_of(name_or_id), name_or_id))
                return raw
            stack_id = txn.get(NAMES, pack(region, name_or_id))
            return None if stack_id is None else txn.get(STACKS, pack(region, stack_id.decode()))

        raw = await self.store.read(read)
        if raw is None:
            return None
        record: dict[str, Any] = orjson.loads(raw)
        if record["StackStatus"] == "DELETE_COMPLETE" and not deleted:
            return None
        return record

    async def get(self, region: str, name_or_id: str, *, deleted: bool = False) -> dict[str, Any]:
        """Like :meth:`find`, raising CloudFormation's error when there is no such stack."""
        record = await self.find(region, name_or_id, deleted=deleted)
        if record is None:
            raise validation(f"Stack with id {name_or_id} does not exist")
        return record

    async def insert(self, record: dict[str, Any]) -> None:
        """Store a new stack; its name must not belong to a live stack."""
        region = region_of(record["StackId"])
        raw = orjson.dumps(record)

        def write(txn: Txn) -> None:
            if not txn.insert(NAMES, pack(region, record["StackName"]), record["StackId"].encode()):
                raise AwsError("AlreadyExistsException", f"Stack [{record['StackName']}] already exists", 400)
            txn.put(STACKS, pack(region, record["StackId"]), raw)

        await self.store.write(write)

    async def save(self, record: dict[str, Any], *, expect: str | None = None) -> None:
        """Replace a stack record (a snapshot taken now, so later mutation is safe).

        With ``expect``, only if the stored status is still that one: two operations
        started at once on one stack cannot both begin (on any node)."""
        region = region_of(record["StackId"])
        raw = orjson.dumps(record)
        done = record["StackStatus"] == "DELETE_COMPLETE"

        def write(txn: Txn) -> None:
            if expect is not None:
                stored = txn.get(STACKS, pack(region, record["StackId"]))
                current = orjson.loads(stored)["StackStatus"] if stored is not None else "DELETE_COMPLETE"
                if current != expect:
                    raise validation(f"Stack:{record['StackId']} is in {current} state and can not be updated.")
            txn.put(STACKS, pack(region, record["StackId"]), raw)
            if done:
                key = pack(region, record["StackName"])
                if txn.get(NAMES, key) == record["StackId"].encode():
                    txn.delete(NAMES, key)

        await self.store.write(write)

    async def all(self, region: str) -> list[dict[str, Any]]:
        """Every stack of a region (deleted ones too), oldest first."""
        rows = await self.store.read(lambda txn: txn.scan(STACKS, prefix=pack(region)))
        records = [orjson.loads(v) for _, v in rows]
        return sorted(records, key=lambda r: r["CreationTime"])

    async def every_region(self) -> list[dict[str, Any]]:
        """Every stack record of every region."""
        rows = await self.store.read(lambda txn: txn.scan(STACKS))
        return [orjson.loads(v) for _, v in rows]

    # -- events -----------------------------------------------------------------

    async def add_event(self, record: dict[str, Any], logical_id: str, status: str, *, physical_id: str = "",
                        resource_type: str = "", reason: str | None = None, properties: Any = None) -> None:
        """Append one event to the stack's event log."""
        event: dict[str, Any] = {
            "StackId": record["StackId"], "EventId": str(uuid.uuid4()), "StackName": record["StackName"],
            "LogicalResourceId": logical_id, "PhysicalResourceId": physical_id,
            "ResourceType": resource_type, "Timestamp": time.time(), "ResourceStatus": status,
        }  # fmt: skip
        if reason:
            event["ResourceStatusReason"] = reason
        if properties is not None:
            event["ResourceProperties"] = orjson.dumps(properties).decode()
        if record.get("ClientRequestToken"):
            event["ClientRequestToken"] = record["ClientRequestToken"]
        raw = orjson.dumps(event)
        await self.store.write(lambda txn: txn.append(events_log(record["StackId"]), raw))
        if self.notify is not None and record.get("NotificationARNs"):
            await self.notify(record, event)

    async def stack_event(self, record: dict[str, Any], status: str, reason: str | None = None) -> None:
        """Set the stack's status and log it as an event of the stack itself."""
        record["StackStatus"] = status
        if reason:
            record["StackStatusReason"] = reason
        else:
            record.pop("StackStatusReason", None)
        await self.save(record)
        await self.add_event(record, record["StackName"], status, physical_id=record["StackId"],
                             resource_type="AWS::CloudFormation::Stack", reason=reason)

    async def events(self, stack_id: str) -> list[dict[str, Any]]:
        """All events of a stack, newest first (as DescribeStackEvents lists them)."""
        out: list[dict[str, Any]] = []
        after = 0
        log = events_log(stack_id)
        while True:
            rows = await self.store.read(functools.partial(_read_events, log=log, after=after))
            if not rows:
                break
            out.extend(orjson.loads(v) for _, v in rows)
            after = rows[-1][0]
        out.reverse()
        return out

    # -- exports ----------------------------------------------------------------

    async def exports(self, region: str) -> dict[str, dict[str, Any]]:
        """Export name → {StackId, StackName, Value} for a region."""
        rows = await self.store.read(lambda txn: txn.scan(EXPORTS, prefix=pack(region)))
        out: dict[str, dict[str, Any]] = {}
        for _, raw in rows:
            item = orjson.loads(raw)
            out[item["Name"]] = item
        return out

    async def set_exports(self, record: dict[str, Any], exports: dict[str, Any]) -> None:
        """Replace the stack's exports; a name exported by another stack is an error."""
        region = region_of(record["StackId"])
        stack_id = record["StackId"]

        def write(txn: Txn) -> None:
            for name in exports:
                raw = txn.get(EXPORTS, pack(region, name))
                if raw is not None and orjson.loads(raw)["StackId"] != stack_id:
                    owner = orjson.loads(raw)["StackName"]
                    raise validation(f"Export with name {name} is already exported by stack {owner}")
            mine = {orjson.loads(raw)["Name"]: (key, orjson.loads(raw)) for key, raw in txn.scan(EXPORTS, prefix=pack(region))
                    if orjson.loads(raw)["StackId"] == stack_id}
            changing = {n for n, (_, item) in mine.items() if n not in exports or exports[n] != item["Value"]}
            if changing:
                _check_not_imported(txn, region, stack_id, changing, exports)
            for key, _ in mine.values():
                txn.delete(EXPORTS, key)
            for name, value in exports.items():
                item = {"Name": name, "Value": value, "StackId": stack_id, "StackName": record["StackName"]}
                txn.put(EXPORTS, pack(region, name), orjson.dumps(item))

        await self.store.write(write)

    # -- change sets ------------------------------------------------------------

    async def put_change_set(self, change_set: dict[str, Any]) -> None:
        """Insert or replace a change set record."""
        region = region_of(change_set["ChangeSetId"])
        raw = orjson.dumps(change_set)
        await self.store.write(lambda txn: txn.put(CHANGESETS, pack(region, change_set["ChangeSetId"]), raw))

    async def delete_change_set(self, change_set_id: str) -> None:
        """Remove a change set record."""
        key = pack(region_of(change_set_id), change_set_id)
        await self.store.write(lambda txn: txn.delete(CHANGESETS, key))

    async def change_sets(self, region: str, stack_id: str | None = None) -> list[dict[str, Any]]:
        """Change sets of a region (of one stack when ``stack_id``), oldest first."""
        rows = await self.store.read(lambda txn: txn.scan(CHANGESETS, prefix=pack(region)))
        items = [orjson.loads(v) for _, v in rows]
        if stack_id is not None:
            items = [c for c in items if c["StackId"] == stack_id]
        return sorted(items, key=lambda c: c["CreationTime"])

    async def find_change_set(self, region: str, name_or_id: str, stack: str | None) -> dict[str, Any]:
        """A change set by ARN, or by name within a stack (name or id)."""
        if name_or_id.startswith("arn:"):
            key = pack(region_of(name_or_id), name_or_id)
            raw = await self.store.read(lambda txn: txn.get(CHANGESETS, key))
            if raw is not None:
                found: dict[str, Any] = orjson.loads(raw)
                return found
        elif stack:
            record = await self.find(region, stack, deleted=True)
            if record is not None:
                for item in await self.change_sets(region, record["StackId"]):
                    if item["ChangeSetName"] == name_or_id:
                        return item
        else:
            raise validation("StackName must be specified if ChangeSetName is not specified as an ARN.")
        raise AwsError("ChangeSetNotFound", f"ChangeSet [{name_or_id}] does not exist", 404)
