"""Where EventBridge keeps its records (the only module that knows the tables).

* ``events.buses``   — ``(region, bus)`` → bus record; ``Generation`` changes with
  every rule or target change on the bus, so each node knows when its in-memory
  pattern index is stale
* ``events.rules``   — ``(region, bus, rule)`` → rule record
* ``events.targets`` — ``(region, bus, rule, target id)`` → target (API shape)
* ``events.tags``    — ``(arn,)`` → ``{key: value}``
* ``events.archives`` / ``events.replays`` / ``events.connections`` /
  ``events.destinations`` — ``(region, name)`` → record
* log ``events.archive:<region>:<name>`` — archived events in arrival order
* ``events.archive_sizes`` — ``(region, archive)`` → bytes archived (decimal text)
* queue ``events.deliveries`` — one message per (event, target) still to deliver
"""

from __future__ import annotations

from typing import Any

import orjson

from nubes.storage.base import Txn
from nubes.storage.keys import pack, unpack

BUSES = "events.buses"
RULES = "events.rules"
TARGETS = "events.targets"
TAGS = "events.tags"
ARCHIVES = "events.archives"
REPLAYS = "events.replays"
CONNECTIONS = "events.connections"
DESTINATIONS = "events.destinations"
DELIVERIES = "events.deliveries"
ARCHIVE_SIZES = "events.archive_sizes"


def archive_log(region: str, name: str) -> str:
    """Name of the log holding an archive's events."""
    return f"events.archive:{region}:{name}"


def add_archive_bytes(txn: Txn, region: str, name: str, delta: int) -> None:
    """Keep an archive's SizeBytes as events are archived and trimmed."""
    key = pack(region, name)
    raw = txn.get(ARCHIVE_SIZES, key)
    txn.put(ARCHIVE_SIZES, key, str(max(0, int(raw or b"0") + delta)).encode())


def archive_bytes(txn: Txn, region: str, name: str) -> int:
    return int(txn.get(ARCHIVE_SIZES, pack(region, name)) or b"0")


def get_json(txn: Txn, table: str, key: bytes) -> dict[str, Any] | None:
    """A JSON record, or None."""
    raw = txn.get(table, key)
    return None if raw is None else orjson.loads(raw)


def put_json(txn: Txn, table: str, key: bytes, doc: dict[str, Any]) -> None:
    """Store a JSON record."""
    txn.put(table, key, orjson.dumps(doc))


def scan_json(txn: Txn, table: str, *parts: str) -> list[dict[str, Any]]:
    """Every record under the key prefix ``parts``, in key order."""
    return [orjson.loads(v) for _, v in txn.scan(table, prefix=pack(*parts))]


def default_bus(region: str, account: str) -> dict[str, Any]:
    """The ``default`` bus every account has in every region."""
    return {
        "Name": "default",
        "Arn": f"arn:aws:events:{region}:{account}:event-bus/default",
        "CreationTime": 0.0,
        "LastModifiedTime": 0.0,
        "Generation": 0,
    }


def get_bus(txn: Txn, region: str, account: str, name: str) -> dict[str, Any] | None:
    """A bus record; ``default`` always exists."""
    doc = get_json(txn, BUSES, pack(region, name))
    if doc is None and name == "default":
        return default_bus(region, account)
    return doc


def bump_generation(txn: Txn, region: str, account: str, bus: str) -> None:
    """Mark the bus's rules as changed (stales every node's index of it)."""
    doc = get_bus(txn, region, account, bus)
    if doc is None:
        return
    doc["Generation"] = int(doc.get("Generation", 0)) + 1
    put_json(txn, BUSES, pack(region, bus), doc)


def rules_of_bus(txn: Txn, region: str, bus: str) -> list[dict[str, Any]]:
    """Every rule of a bus, in name order."""
    return scan_json(txn, RULES, region, bus)


def targets_of_rule(txn: Txn, region: str, bus: str, rule: str) -> list[dict[str, Any]]:
    """Every target of a rule, in id order."""
    return scan_json(txn, TARGETS, region, bus, rule)


def bus_snapshot(
    txn: Txn, region: str, bus: str
) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each rule of a bus with its targets (what the in-memory index is built from)."""
    targets: dict[str, list[dict[str, Any]]] = {}
    for key, raw in txn.scan(TARGETS, prefix=pack(region, bus)):
        rule_name = str(unpack(key)[2])
        targets.setdefault(rule_name, []).append(orjson.loads(raw))
    return [(rule, targets.get(rule["Name"], [])) for rule in rules_of_bus(txn, region, bus)]


def get_tags(txn: Txn, arn: str) -> dict[str, str]:
    """The tags of a resource."""
    doc = get_json(txn, TAGS, pack(arn))
    return {str(k): str(v) for k, v in (doc or {}).items()}


def put_tags(txn: Txn, arn: str, tags: dict[str, str]) -> None:
    """Replace the tags of a resource (none: forget them)."""
    if tags:
        put_json(txn, TAGS, pack(arn), tags)
    else:
        txn.delete(TAGS, pack(arn))
