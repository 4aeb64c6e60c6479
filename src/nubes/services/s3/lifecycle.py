"""Background housekeeping: lifecycle expiration and orphan blob cleanup."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any

from nubes.services.s3.models import (
    BUCKETS,
    INLINE,
    OBJECTS,
    PARTS,
    UPLOADS,
    VERSIONS,
    Record,
    inline_created,
    load,
    new_version_id,
    now,
    object_key,
    upload_key,
)
from nubes.services.s3.notify import Change, events_for
from nubes.services.s3.objects import ObjectOps
from nubes.services.s3.versions import current, delete_current, remove_version
from nubes.storage.base import Txn

log = logging.getLogger(__name__)

SWEEP_SECONDS = 3600.0
_DAY = 86400.0


def _rule_prefix_and_tags(rule: dict[str, Any]) -> tuple[str, list[dict[str, str]]]:
    flt = rule.get("Filter") or {}
    if "And" in flt:
        return str(flt["And"].get("Prefix") or ""), list(flt["And"].get("Tags") or [])
    if "Tag" in flt:
        return "", [flt["Tag"]]
    return str(flt.get("Prefix") if "Prefix" in flt else rule.get("Prefix") or ""), []


def _has_tags(record: Record, tags: list[dict[str, str]]) -> bool:
    have = {(t["Key"], t["Value"]) for t in record.get("tags") or []}
    return all((t["Key"], t["Value"]) in have for t in tags)


def _expired(rule: dict[str, Any], mtime: float, at: float) -> bool:
    expiration = rule.get("Expiration") or {}
    if expiration.get("Days") is not None:
        return at >= mtime + int(expiration["Days"]) * _DAY
    if expiration.get("Date") is not None:
        date = expiration["Date"]  # stored as ISO 8601 text (orjson), or a datetime
        if isinstance(date, str):
            date = dt.datetime.fromisoformat(date.replace("Z", "+00:00"))
        when = date.timestamp() if hasattr(date, "timestamp") else float(date)
        return bool(at >= when)
    return False


class LifecycleOps(ObjectOps):
    """The lifecycle sweep and the orphan blob cleanup."""

    async def lifecycle_forever(self) -> None:
        """Sweep once an hour (and once shortly after start)."""
        await asyncio.sleep(5.0)
        while True:
            try:
                await self.sweep_lifecycle()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("S3 lifecycle sweep failed")
            await asyncio.sleep(SWEEP_SECONDS)

    async def sweep_lifecycle(self, at: float | None = None) -> int:
        """Apply every bucket's enabled expiration rules once; returns how many
        versions expired or uploads were aborted."""
        at = time.time() if at is None else at
        rows = await self.app.store.read(lambda txn: txn.scan(BUCKETS))
        done = 0
        for _, raw in rows:
            bucket = load(raw)
            for rule in bucket.get("lifecycle") or []:
                if rule.get("Status") == "Enabled":
                    done += await self._apply_rule(bucket, rule, at)
        return done

    async def _apply_rule(self, bucket: Record, rule: dict[str, Any], at: float) -> int:
        name = bucket["name"]
        prefix, tags = _rule_prefix_and_tags(rule)
        rows = await self.app.store.read(lambda txn: txn.scan(OBJECTS, prefix=object_key(name, prefix)))
        done = 0
        for _, raw in rows:
            record = load(raw)
            if record.get("dm") or not _has_tags(record, tags) or not _expired(rule, record["mtime"], at):
                continue
            await self._expire(bucket, record["k"], record)
            done += 1
        noncurrent = (rule.get("NoncurrentVersionExpiration") or {}).get("NoncurrentDays")
        if noncurrent is not None:
            done += await self._expire_noncurrent(bucket, prefix, int(noncurrent), at)
        abort = (rule.get("AbortIncompleteMultipartUpload") or {}).get("DaysAfterInitiation")
        if abort is not None:
            done += await self._abort_old_uploads(bucket, prefix, int(abort), at)
        return done

    async def _expire(self, bucket: Record, key: str, seen: Record) -> None:
        state = bucket.get("versioning")
        marker: Record = {"k": key, "v": new_version_id() if state == "Enabled" else "null", "dm": True,
                          "seq": time.time_ns(), "mtime": now(), "etag": ""}  # fmt: skip
        event = "s3:LifecycleExpiration:DeleteMarkerCreated" if state else "s3:LifecycleExpiration:Delete"
        events = events_for(bucket, Change(None, event, key, marker if state else {}, "Lifecycle Expiration"))

        def write(txn: Txn) -> list[str]:
            # only the version the sweep saw: not one written since, nor twice (another node)
            cur = current(txn, bucket["name"], key)
            if cur is None or cur.get("seq") != seen.get("seq") or cur["v"] != seen["v"]:
                return []
            return delete_current(txn, bucket, key, marker, events)[1]

        await self.discard(await self.app.store.write(write))

    async def _expire_noncurrent(self, bucket: Record, prefix: str, days: int, at: float) -> int:
        name = bucket["name"]
        rows = await self.app.store.read(lambda txn: txn.scan(VERSIONS, prefix=object_key(name, prefix)))
        done = 0
        for _, raw in rows:
            record = load(raw)
            # a version becomes non-current when the next one is written; its own
            # seq is a lower bound for that moment, which errs on keeping it longer
            if at < record.get("seq", 0) / 1e9 + days * _DAY:
                continue
            def drop(txn: Txn, r: Record = record) -> tuple[Record | None, list[str]]:
                return remove_version(txn, bucket, r["k"], r["v"], [])

            _, dropped = await self.app.store.write(drop)
            await self.discard(dropped)
            done += 1
        return done

    async def _abort_old_uploads(self, bucket: Record, prefix: str, days: int, at: float) -> int:
        name = bucket["name"]
        rows = await self.app.store.read(lambda txn: txn.scan(UPLOADS, prefix=object_key(name, prefix)))
        done = 0
        for _, raw in rows:
            upload = load(raw)
            if at < upload["initiated"] + days * _DAY:
                continue

            def abort(txn: Txn, u: Record = upload) -> list[str]:
                if not txn.delete(UPLOADS, upload_key(name, u["k"], u["id"])):
                    return []
                blobs = [str(load(v)["blob"]) for _, v in txn.scan(PARTS, prefix=u["id"].encode() + b"\x00")]
                txn.delete_prefix(PARTS, u["id"].encode() + b"\x00")
                return blobs

            await self.discard(await self.app.store.write(abort))
            done += 1
        return done

    async def clean_orphans(self, older_than: float = 60.0) -> int:
        """Delete blobs no record names (left by a crash between the blob commit and
        the metadata write, or between a metadata delete and the blob delete)."""
        cutoff = time.time() - older_than

        def referenced(txn: Txn) -> set[str]:
            ids: set[str] = set()
            for table in (OBJECTS, VERSIONS):
                for _, raw in txn.scan(table):
                    ids.update(b[0] for b in load(raw).get("blobs") or [])
            ids.update(str(load(raw)["blob"]) for _, raw in txn.scan(PARTS))
            return ids

        keep = await self.app.store.read(referenced)
        inline = await self.app.store.read(lambda txn: [k.decode() for k, _ in txn.scan(INLINE)])
        await self.discard([i for i in inline if i not in keep and inline_created(i) < cutoff])

        def sweep() -> int:
            removed = 0
            for blob_id in self.blobs.ids():
                if blob_id in keep:
                    continue
                try:
                    if self.blobs.path(blob_id).stat().st_mtime < cutoff:
                        removed += int(self.blobs.delete_sync(blob_id))
                except FileNotFoundError:
                    continue
            return removed

        removed = await asyncio.to_thread(sweep)
        if removed:
            log.info("removed %d orphaned S3 blobs", removed)
        return removed
