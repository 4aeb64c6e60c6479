"""Versioning inside one store transaction: which version becomes current, which
moves aside, which blobs are no longer referenced (deleted after the commit).

Every function here runs inside ``store.write`` and so may run more than once:
it only touches the store and returns what the caller should do afterwards.
"""

from __future__ import annotations

import time
from typing import Any

from nubes.aws.errors import AwsError
from nubes.services.s3.models import (
    BUCKETS,
    INLINE,
    NOTIFY_QUEUE,
    OBJECTS,
    VERSIONS,
    Record,
    dump,
    load,
    new_version_id,
    no_such_bucket,
    object_key,
    version_key,
)
from nubes.storage.base import Txn


def blob_ids(record: Record | None) -> list[str]:
    """The blobs a version's bytes live in."""
    if record is None or record.get("dm"):
        return []
    return [b[0] for b in record.get("blobs") or []]


def current(txn: Txn, bucket: str, key: str) -> Record | None:
    """The current version of a key (possibly a delete marker), or None."""
    raw = txn.get(OBJECTS, object_key(bucket, key))
    return load(raw) if raw is not None else None


def find_version(txn: Txn, bucket: str, key: str, version_id: str | None, *, with_inline: bool = False) -> Record | None:
    """A key's version by id (None: the current one). ``with_inline`` also reads the
    bytes of an inline object into ``record["_data"]`` (one store round trip per GET)."""
    cur = current(txn, bucket, key)
    if version_id is None or (cur is not None and cur["v"] == version_id):
        found = cur
    else:
        raw = txn.get(VERSIONS, version_key(bucket, key, version_id))
        found = load(raw) if raw is not None else None
    if with_inline and found is not None:
        pieces = found.get("blobs") or []
        if pieces and all(b[0].startswith("i") for b in pieces):
            found["_data"] = b"".join(txn.get(INLINE, b[0].encode()) or b"" for b in pieces)
    return found


def check_write_conditions(cur: Record | None, if_match: str | None, if_none_match: str | None, key: str) -> None:
    """Conditional writes (PutObject/CompleteMultipartUpload If-Match/If-None-Match)."""
    live = cur if cur is not None and not cur.get("dm") else None
    if if_none_match is not None and live is not None and if_none_match.strip() in ("*", live["etag"]):
        raise AwsError("PreconditionFailed", "At least one of the pre-conditions you specified did not hold", 412, fields={"Condition": "If-None-Match"})
    if if_match is not None:
        if live is None:
            raise AwsError("NoSuchKey", "The specified key does not exist.", 404, fields={"Key": key})
        if if_match.strip() not in ("*", live["etag"], live["etag"].strip('"')):
            raise AwsError("PreconditionFailed", "At least one of the pre-conditions you specified did not hold", 412, fields={"Condition": "If-Match"})


def _set_aside(txn: Txn, bucket: str, key: str, record: Record, successor: str, dropped: list[str]) -> None:
    """Move a version out of ``current``: kept, unless a new null version replaces it."""
    if record["v"] == "null" and successor == "null":
        dropped.extend(blob_ids(record))
    else:
        txn.put(VERSIONS, version_key(bucket, key, record["v"]), dump(record))


def _drop_null(txn: Txn, bucket: str, key: str, dropped: list[str]) -> None:
    vk = version_key(bucket, key, "null")
    raw = txn.get(VERSIONS, vk)
    if raw is not None:
        dropped.extend(blob_ids(load(raw)))
        txn.delete(VERSIONS, vk)


def versioning_state(txn: Txn, bucket: Record, record: Record) -> str | None:
    """The bucket's versioning state as stored now (the caller's copy may be a second
    old, or the bucket gone), with ``record``'s version id made to fit it."""
    raw = txn.get(BUCKETS, bucket["name"].encode())
    if raw is None:
        raise no_such_bucket(bucket["name"])
    state: str | None = load(raw).get("versioning")
    if state == "Enabled" and record["v"] == "null":
        record["v"] = new_version_id()
    elif state != "Enabled":
        record["v"] = "null"
    return state


def make_current(txn: Txn, bucket: Record, record: Record, events: list[bytes], conditions: tuple[str | None, str | None] = (None, None)) -> list[str]:
    """Store ``record`` as its key's current version under the bucket's versioning
    state, enqueue ``events``; returns blob ids no version references any more."""
    name, key = bucket["name"], record["k"]
    state = versioning_state(txn, bucket, record)
    cur = current(txn, name, key)
    check_write_conditions(cur, conditions[0], conditions[1], key)
    dropped: list[str] = []
    if state is None:
        dropped.extend(blob_ids(cur))
    else:
        if cur is not None:
            _set_aside(txn, name, key, cur, record["v"], dropped)
        if record["v"] == "null":
            _drop_null(txn, name, key, dropped)
    txn.put(OBJECTS, object_key(name, key), dump(record))
    enqueue_events(txn, events)
    return dropped


def enqueue_events(txn: Txn, events: list[bytes]) -> None:
    """Queue notifications with the change they describe (durable together)."""
    for event in events:
        txn.enqueue(NOTIFY_QUEUE, event, now=time.time())


def remove_version(txn: Txn, bucket: Record, key: str, version_id: str, events: list[bytes]) -> tuple[Record | None, list[str]]:
    """Permanently delete one version; the newest remaining one becomes current."""
    name = bucket["name"]
    cur = current(txn, name, key)
    if cur is not None and cur["v"] == version_id:
        txn.delete(OBJECTS, object_key(name, key))
        rows = txn.scan(VERSIONS, prefix=object_key(name, key) + b"\x00")
        if rows:
            newest_key, newest = max(((k, load(v)) for k, v in rows), key=lambda kv: kv[1].get("seq", 0))
            txn.delete(VERSIONS, newest_key)
            txn.put(OBJECTS, object_key(name, key), dump(newest))
        enqueue_events(txn, events)
        return cur, blob_ids(cur)
    vk = version_key(name, key, version_id)
    raw = txn.get(VERSIONS, vk)
    if raw is None:
        return None, []
    txn.delete(VERSIONS, vk)
    enqueue_events(txn, events)
    old = load(raw)
    return old, blob_ids(old)


def delete_current(txn: Txn, bucket: Record, key: str, marker: Record, events: list[bytes]) -> tuple[dict[str, Any], list[str]]:
    """DeleteObject without a version id: remove (unversioned) or add a delete marker."""
    name = bucket["name"]
    state = versioning_state(txn, bucket, marker)
    cur = current(txn, name, key)
    dropped: list[str] = []
    if state is None:
        if cur is not None:
            txn.delete(OBJECTS, object_key(name, key))
            dropped.extend(blob_ids(cur))
            enqueue_events(txn, events)
        return {}, dropped
    if cur is not None:
        _set_aside(txn, name, key, cur, marker["v"], dropped)
    if marker["v"] == "null":
        _drop_null(txn, name, key, dropped)
    txn.put(OBJECTS, object_key(name, key), dump(marker))
    enqueue_events(txn, events)
    return {"DeleteMarker": True, "VersionId": marker["v"]}, dropped
