"""Reading objects: conditional requests, byte ranges, part numbers, and the
response members S3 derives from a stored version."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import AsyncIterator
from typing import Any

from nubes.aws.errors import AwsError
from nubes.services.s3.models import INLINE, Record
from nubes.storage.base import Store, Txn
from nubes.storage.blobs import BlobStore

CONTENT_FIELDS = ("CacheControl", "ContentDisposition", "ContentEncoding", "ContentLanguage")


def _seconds(value: Any) -> float:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return float(value)


def precondition_failed(condition: str) -> AwsError:
    return AwsError(
        "PreconditionFailed",
        "At least one of the pre-conditions you specified did not hold",
        412,
        fields={"Condition": condition},
    )


def _etag_in(header: str, etag: str) -> bool:
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or etag in tags or etag.strip('"') in tags


def check_read_conditions(record: Record, params: dict[str, Any], prefix: str = "") -> bool:
    """RFC 7232 as S3 applies it. Raises 412; returns True for 304 Not Modified.
    ``prefix`` is ``CopySource`` for the copy-source variants (which never 304 but 412)."""
    etag = record["etag"]
    modified = math.floor(record["mtime"])
    if_match = params.get(f"{prefix}IfMatch")
    if_none = params.get(f"{prefix}IfNoneMatch")
    since = params.get(f"{prefix}IfModifiedSince")
    unmodified = params.get(f"{prefix}IfUnmodifiedSince")
    if if_match is not None and not _etag_in(if_match, etag):
        raise precondition_failed("If-Match")
    if if_match is None and unmodified is not None and modified > _seconds(unmodified):
        raise precondition_failed("If-Unmodified-Since")
    not_modified = False
    if (if_none is not None and _etag_in(if_none, etag)) or (if_none is None and since is not None and modified <= _seconds(since)):
        not_modified = True
    if not_modified and prefix:
        raise precondition_failed("If-None-Match" if if_none is not None else "If-Modified-Since")
    return not_modified


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``bytes=a-b`` / ``a-`` / ``-n`` → half-open [start, end); None for no (or an
    ignorable, malformed) range; InvalidRange when it cannot be satisfied."""
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if first == "":
            if not last:
                return None
            suffix = int(last)
            if suffix == 0:
                raise _invalid_range(header, size)
            return max(0, size - suffix), size
        start = int(first)
        end = int(last) + 1 if last else None
    except ValueError:
        return None
    if end is not None and end <= start:
        return None  # first > last: not a valid range, so S3 ignores it
    if end is None:
        end = size
    if start >= size:
        raise _invalid_range(header, size)
    return start, min(end, size)


def _invalid_range(header: str, size: int) -> AwsError:
    return AwsError(
        "InvalidRange",
        "The requested range is not satisfiable",
        416,
        fields={"RangeRequested": header, "ActualObjectSize": size},
        headers={"Content-Range": f"bytes */{size}"},
    )


def part_range(record: Record, number: int) -> tuple[int, int]:
    """Bytes of one part of a (multipart) object; a plain object is one part."""
    sizes: list[int] = record.get("parts") or [record["size"]]
    if number < 1 or number > len(sizes):
        raise AwsError("InvalidPartNumber", "The requested partnumber is not satisfiable", 416, fields={"PartNumberRequested": number, "ActualPartCount": len(sizes)})
    start = sum(sizes[: number - 1])
    return start, start + sizes[number - 1]


async def stream(blobs: BlobStore, record: Record, start: int, end: int, store: Store) -> AsyncIterator[bytes]:
    """Bytes [start, end) of a version whose data spans one or more blobs (or
    inline pieces kept in the store)."""
    if record.get("_data") is not None:  # read with the record already
        if end > start:
            yield record["_data"][start:end]
        return
    offset = 0
    for blob_id, size in record.get("blobs") or []:
        lo, hi = max(start, offset), min(end, offset + size)
        if lo < hi and blob_id.startswith("i"):
            name = blob_id.encode()

            def get(txn: Txn, name: bytes = name) -> bytes | None:
                return txn.get(INLINE, name)

            data = await store.read(get)
            yield (data or b"")[lo - offset : hi - offset]
        elif lo < hi:
            async for chunk in blobs.read(blob_id, lo - offset, hi - offset):
                yield chunk
        offset += size
        if offset >= end:
            return


def object_headers(record: Record, checksum_mode: bool = False) -> dict[str, Any]:
    """Output members shared by GetObject and HeadObject."""
    out: dict[str, Any] = {
        "ETag": record["etag"],
        "LastModified": record["mtime"],
        "ContentType": record.get("ct") or "binary/octet-stream",
        "AcceptRanges": "bytes",
    }
    headers = record.get("hdr") or {}
    for name in CONTENT_FIELDS:
        if headers.get(name):
            out[name] = headers[name]
    if headers.get("Expires") is not None:
        out["Expires"] = headers["Expires"]
    if record.get("meta"):
        out["Metadata"] = dict(record["meta"])
    if record.get("v") and record["v"] != "null":
        out["VersionId"] = record["v"]
    for name in ("WebsiteRedirectLocation", "ServerSideEncryption", "SSEKMSKeyId"):
        if headers.get(name):
            out[name] = headers[name]
    out.setdefault("ServerSideEncryption", "AES256")
    if record.get("sc") and record["sc"] != "STANDARD":
        out["StorageClass"] = record["sc"]
    if record.get("tags"):
        out["TagCount"] = len(record["tags"])
    if checksum_mode and record.get("cs"):
        for alg, value in record["cs"].items():
            out[f"Checksum{alg}"] = value
        out["ChecksumType"] = record.get("cst", "FULL_OBJECT")
    return out
