"""ListObjects, ListObjectsV2 and ListObjectVersions: prefix, delimiter (common
prefixes), markers, continuation tokens, max-keys and ``encoding-type=url``."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from nubes.aws.errors import AwsError
from nubes.services.base import RequestContext
from nubes.services.s3.base import S3Base
from nubes.services.s3.models import (
    OBJECTS,
    OWNER,
    VERSIONS,
    Record,
    invalid_argument,
    load,
    object_key,
)
from nubes.storage.base import Txn
from nubes.storage.keys import prefix_end

_PAGE = 1000


@dataclass
class Listing:
    """One page of keys: entries (records, or (record, is_latest) for versions)
    and common prefixes, in key order."""

    entries: list[Any] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    truncated: bool = False
    #: the last key or common prefix returned (the next page starts after it)
    last: str | None = None
    last_version: str | None = None


def collect(txn: Txn, bucket: str, prefix: str, delimiter: str, marker: str, max_keys: int, *, versions: bool = False,
            version_marker: str | None = None) -> Listing:  # fmt: skip
    """Walk keys after ``marker`` grouping by ``delimiter`` until ``max_keys`` entries."""
    walk = _Walk(txn, bucket, prefix, delimiter, marker, max_keys, versions, version_marker)
    cursor: bytes | None = object_key(bucket, prefix)
    if marker:
        # with a version marker the marker key itself still has versions to list
        after = object_key(bucket, marker) + (b"" if versions and version_marker else b"\x00")
        cursor = max(object_key(bucket, prefix), after)
    end = prefix_end(object_key(bucket, prefix) if prefix else bucket.encode() + b"\x00")
    while cursor is not None:
        rows = txn.scan(OBJECTS, start=cursor, end=end, limit=_PAGE)
        next_cursor: bytes | None = rows[-1][0] + b"\x00" if len(rows) == _PAGE else None
        for raw_key, raw in rows:
            action = walk.visit(raw_key, load(raw))
            if action == "stop":
                return walk.listing
            if action == "end":
                return walk.listing
            if isinstance(action, bytes):
                next_cursor = action
                break
        cursor = next_cursor
    return walk.listing


class _Walk:
    """The state of one listing walk; ``visit`` says how to go on."""

    def __init__(self, txn: Txn, bucket: str, prefix: str, delimiter: str, marker: str, max_keys: int,
                 versions: bool, version_marker: str | None) -> None:  # fmt: skip
        self.txn, self.bucket, self.prefix, self.delimiter = txn, bucket, prefix, delimiter
        self.marker, self.max_keys, self.versions, self.version_marker = marker, max_keys, versions, version_marker
        self.base = len(bucket.encode()) + 1
        self.listing = Listing()
        self.count = 0

    def visit(self, raw_key: bytes, record: Record) -> str | bytes:
        """``"next"``, ``"stop"`` (page full), ``"end"`` (nothing after), or a key to jump to."""
        key = raw_key[self.base :].decode()
        if self.delimiter:
            cut = key.find(self.delimiter, len(self.prefix))
            if cut >= 0:
                return self._common(key[: cut + len(self.delimiter)])
        if self.versions:
            room = self.max_keys - self.count
            after = self.version_marker if key == self.marker else None
            full = _add_versions(self.txn, self.bucket, key, record, self.listing, room, after)
            self.count = len(self.listing.entries) + len(self.listing.prefixes)
            return "stop" if full else "next"
        if record.get("dm"):
            return "next"
        if self.count >= self.max_keys:
            self.listing.truncated = True
            return "stop"
        self.listing.entries.append(record)
        self.listing.last = key
        self.count += 1
        return "next"

    def _common(self, common: str) -> str | bytes:
        jump = prefix_end(object_key(self.bucket, common))
        if not (self.marker and common <= self.marker):
            if self.count >= self.max_keys:
                self.listing.truncated = True
                return "stop"
            self.listing.prefixes.append(common)
            self.listing.last, self.listing.last_version = common, None
            self.count += 1
        return "end" if jump is None else jump


def _add_versions(txn: Txn, bucket: str, key: str, current: Record, listing: Listing, room: int, after_version: str | None) -> bool:
    """Append a key's versions, newest first; True when the page filled up."""
    rows = txn.scan(VERSIONS, prefix=object_key(bucket, key) + b"\x00")
    older = sorted((load(v) for _, v in rows), key=lambda r: r.get("seq", 0), reverse=True)
    chain = [(current, True), *((r, False) for r in older)]
    if after_version is not None:
        ids = [r["v"] for r, _ in chain]
        if after_version in ids:
            chain = chain[ids.index(after_version) + 1 :]
    for record, latest in chain:
        if room <= 0:
            listing.truncated = True
            return True
        listing.entries.append((record, latest))
        listing.last, listing.last_version = key, record["v"]
        room -= 1
    return False


def _enc(value: str | None, url: bool) -> str | None:
    if value is None or not url:
        return value
    return quote(value, safe="/")


def _max_keys(params: dict[str, Any]) -> int:
    value = params.get("MaxKeys")
    if value is None:
        return 1000
    if int(value) < 0:
        raise invalid_argument("Argument maxKeys must be an integer between 0 and 2147483647", "maxKeys", str(value))
    return min(int(value), 1000)


def _entry(record: Record, url: bool, owner: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "Key": _enc(record["k"], url), "LastModified": record["mtime"], "ETag": record["etag"],
        "Size": record["size"], "StorageClass": record.get("sc") or "STANDARD",
    }  # fmt: skip
    if record.get("cs"):
        out["ChecksumAlgorithm"] = list(record["cs"])
        out["ChecksumType"] = record.get("cst", "FULL_OBJECT")
    if owner:
        out["Owner"] = dict(OWNER)
    return out


def _check_encoding(params: dict[str, Any]) -> bool:
    encoding = params.get("EncodingType")
    if encoding is not None and encoding != "url":
        raise invalid_argument("Invalid Encoding Method specified in Request", "encoding-type", str(encoding))
    return encoding == "url"


class ListingOps(S3Base):
    """Listing operations."""

    async def _collect(self, ctx: RequestContext, params: dict[str, Any], marker: str, **kw: Any) -> tuple[Listing, int]:
        bucket = await self.bucket(ctx, params["Bucket"], "s3:ListBucket")
        max_keys = _max_keys(params)
        prefix, delimiter = params.get("Prefix") or "", params.get("Delimiter") or ""
        listing = await self.app.store.read(lambda txn: collect(txn, bucket["name"], prefix, delimiter, marker, max_keys, **kw))
        return listing, max_keys

    async def list_objects_v2(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        url = _check_encoding(params)
        token = params.get("ContinuationToken")
        marker = params.get("StartAfter") or ""
        if token is not None:
            try:
                after = base64.urlsafe_b64decode(token.encode()).decode()
            except (binascii.Error, UnicodeDecodeError, ValueError):
                raise invalid_argument("The continuation token provided is incorrect", "continuation-token", token) from None
            marker = max(marker, after)
        listing, max_keys = await self._collect(ctx, params, marker)
        out: dict[str, Any] = {
            "Name": params["Bucket"], "Prefix": _enc(params.get("Prefix") or "", url), "MaxKeys": max_keys,
            "KeyCount": len(listing.entries) + len(listing.prefixes), "IsTruncated": listing.truncated,
            "Contents": [_entry(r, url, bool(params.get("FetchOwner"))) for r in listing.entries] or None,
            "CommonPrefixes": [{"Prefix": _enc(p, url)} for p in listing.prefixes] or None,
        }  # fmt: skip
        if params.get("Delimiter"):
            out["Delimiter"] = _enc(params["Delimiter"], url)
        if url:
            out["EncodingType"] = "url"
        if token is not None:
            out["ContinuationToken"] = token
        if params.get("StartAfter"):
            out["StartAfter"] = _enc(params["StartAfter"], url)
        if listing.truncated and listing.last is not None:
            out["NextContinuationToken"] = base64.urlsafe_b64encode(listing.last.encode()).decode()
        return out

    async def list_objects(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        url = _check_encoding(params)
        marker = params.get("Marker") or ""
        listing, max_keys = await self._collect(ctx, params, marker)
        out: dict[str, Any] = {
            "Name": params["Bucket"], "Prefix": _enc(params.get("Prefix") or "", url), "Marker": _enc(marker, url),
            "MaxKeys": max_keys, "IsTruncated": listing.truncated,
            "Contents": [_entry(r, url, True) for r in listing.entries] or None,
            "CommonPrefixes": [{"Prefix": _enc(p, url)} for p in listing.prefixes] or None,
        }  # fmt: skip
        if params.get("Delimiter"):
            out["Delimiter"] = _enc(params["Delimiter"], url)
            if listing.truncated:
                out["NextMarker"] = _enc(listing.last, url)
        if url:
            out["EncodingType"] = "url"
        return out

    async def list_object_versions(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        url = _check_encoding(params)
        key_marker = params.get("KeyMarker") or ""
        version_marker = params.get("VersionIdMarker")
        if version_marker and not key_marker:
            raise AwsError("InvalidArgument", "A version-id marker cannot be specified without a key marker.", 400)
        listing, max_keys = await self._collect(ctx, params, key_marker, versions=True, version_marker=version_marker)
        versions, markers = [], []
        for record, latest in listing.entries:
            entry: dict[str, Any] = {"Key": _enc(record["k"], url), "VersionId": record["v"], "IsLatest": latest,
                                     "LastModified": record["mtime"], "Owner": dict(OWNER)}  # fmt: skip
            if record.get("dm"):
                markers.append(entry)
            else:
                entry.update(ETag=record["etag"], Size=record["size"], StorageClass=record.get("sc") or "STANDARD")
                if record.get("cs"):
                    entry["ChecksumAlgorithm"] = list(record["cs"])
                versions.append(entry)
        out: dict[str, Any] = {
            "Name": params["Bucket"], "Prefix": _enc(params.get("Prefix") or "", url), "KeyMarker": _enc(key_marker, url),
            "MaxKeys": max_keys, "IsTruncated": listing.truncated, "Versions": versions or None,
            "DeleteMarkers": markers or None,
            "CommonPrefixes": [{"Prefix": _enc(p, url)} for p in listing.prefixes] or None,
        }  # fmt: skip
        if version_marker:
            out["VersionIdMarker"] = version_marker
        if params.get("Delimiter"):
            out["Delimiter"] = _enc(params["Delimiter"], url)
        if url:
            out["EncodingType"] = "url"
        if listing.truncated:
            out["NextKeyMarker"] = _enc(listing.last, url)
            if listing.last_version:
                out["NextVersionIdMarker"] = listing.last_version
        return out
