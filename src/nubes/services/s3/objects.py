"""Objects: Put/Get/Head/Delete/DeleteObjects/Copy, tagging, ACLs, attributes."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qsl, unquote

from nubes.aws.errors import AwsError
from nubes.services.base import RequestContext
from nubes.services.s3.base import S3Base
from nubes.services.s3.body import Upload, drain, drop_inline, put_inline, receive_upload
from nubes.services.s3.buckets import (
    acl_from_policy,
    acl_grants,
    check_acls_allowed,
    check_canned_acl,
)
from nubes.services.s3.models import (
    OBJECTS,
    OWNER,
    VERSIONS,
    Record,
    check_key,
    dump,
    invalid_argument,
    load,
    malformed_xml,
    new_version_id,
    no_such_key,
    no_such_version,
    now,
    object_key,
    version_key,
)
from nubes.services.s3.notify import Change, events_for
from nubes.services.s3.reads import (
    CONTENT_FIELDS,
    check_read_conditions,
    object_headers,
    parse_range,
    part_range,
    stream,
)
from nubes.services.s3.versions import (
    delete_current,
    enqueue_events,
    find_version,
    make_current,
    remove_version,
)
from nubes.storage.base import Txn

_HEADER_FIELDS = (*CONTENT_FIELDS, "WebsiteRedirectLocation", "ServerSideEncryption", "SSEKMSKeyId")


def set_status(ctx: RequestContext, status: int) -> None:
    """Answer with another success status (206, 304); the gateway applies it."""
    setattr(ctx, "response_status", status)  # noqa: B010 - optional gateway hook


def parse_tagging(text: str | None) -> list[dict[str, str]]:
    """``k=v&k2=v2`` (x-amz-tagging) → TagSet, validated as S3 does."""
    if not text:
        return []
    pairs = parse_qsl(text, keep_blank_values=True)
    return validate_tags([{"Key": k, "Value": v} for k, v in pairs])


def validate_tags(tags: list[dict[str, str]]) -> list[dict[str, str]]:
    if len(tags) > 10:
        raise AwsError("BadRequest", "Object tags cannot be greater than 10", 400)
    keys = [t["Key"] for t in tags]
    if len(set(keys)) != len(keys):
        raise AwsError("InvalidTag", "Cannot provide multiple Tags with the same key", 400)
    for tag in tags:
        if not 1 <= len(tag["Key"]) <= 128 or len(tag.get("Value", "")) > 256:
            raise AwsError("InvalidTag", "The TagKey you have provided is invalid", 400)
    return tags


def new_record(key: str, params: dict[str, Any], versioned: bool) -> Record:
    """A version record from PutObject-like parameters (without data yet)."""
    headers = {name: params[name] for name in _HEADER_FIELDS if params.get(name)}
    encoding = [e.strip() for e in str(headers.get("ContentEncoding", "")).split(",") if e.strip() and e.strip() != "aws-chunked"]
    if encoding:
        headers["ContentEncoding"] = ",".join(encoding)
    else:
        headers.pop("ContentEncoding", None)
    if params.get("Expires") is not None:
        expires = params["Expires"]
        headers["Expires"] = expires.timestamp() if hasattr(expires, "timestamp") else expires
    record: Record = {
        "k": key, "v": new_version_id() if versioned else "null", "seq": time.time_ns(),
        "mtime": now(), "ct": params.get("ContentType") or "binary/octet-stream", "hdr": headers,
        "meta": {k.lower(): v for k, v in (params.get("Metadata") or {}).items()},
        "tags": parse_tagging(params.get("Tagging")), "acl": params.get("ACL") or "private",
        "sc": params.get("StorageClass") or "STANDARD",
    }  # fmt: skip
    check_canned_acl(params.get("ACL"))
    return record


def with_data(record: Record, upload: Upload) -> Record:
    record.update(size=upload.blob.size, etag=upload.etag, blobs=[[upload.blob.id, upload.blob.size]], cs=upload.checksums, cst="FULL_OBJECT")
    return record


class ObjectOps(S3Base):
    """Object operations."""

    async def commit_object(self, ctx: RequestContext, bucket: Record, record: Record, event: str, reason: str,
                            conditions: tuple[str | None, str | None] = (None, None), inline: dict[str, bytes] | None = None) -> None:  # fmt: skip
        """Make a fully written version current (with its inline bytes, and its
        notifications queued) in one store write; on failure the new blobs go, on
        success the replaced ones."""
        events = events_for(bucket, Change(ctx, event, record["k"], record, reason))
        rows = inline or {}

        def write(txn: Txn) -> list[str]:
            put_inline(txn, rows)
            # replaced inline bytes go in this same write (one commit per PUT, not two)
            return drop_inline(txn, make_current(txn, bucket, record, events, conditions))

        try:
            dropped = await self.app.store.write(write)
        except BaseException:
            await self.discard([b[0] for b in record.get("blobs") or [] if b[0] not in rows])
            raise
        await self.discard(dropped)
        if events:
            self.app.bus.wake("s3:notifications")

    async def put_object(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Stream the body to a blob, then make it the key's current version."""
        try:
            return await self._put_object(ctx, params)
        except BaseException:
            await drain(params.get("Body"))
            raise

    async def _put_object(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        headers = ctx.http.headers if ctx.http is not None else {}
        if "x-amz-copy-source" in headers:
            return await self.copy_object(ctx, {**params, **copy_params(headers)})
        key: str = params["Key"]
        bucket = await self.bucket(ctx, params["Bucket"], "s3:PutObject", key)
        check_key(key)
        if params.get("ACL"):
            check_acls_allowed(bucket, params["ACL"])
        record = new_record(key, params, bucket.get("versioning") == "Enabled")
        upload = await receive_upload(self.blobs, params.get("Body"), headers, params, self.app.store, await self.chunk_signing(ctx))
        with_data(record, upload)
        await self.commit_object(ctx, bucket, record, "s3:ObjectCreated:Put", "PutObject",
                                 (params.get("IfMatch"), params.get("IfNoneMatch")), upload.inline_rows())  # fmt: skip
        out: dict[str, Any] = {"ETag": record["etag"], "ServerSideEncryption": "AES256"}
        if bucket.get("versioning") or record["v"] != "null":
            out["VersionId"] = record["v"]
        for alg, value in upload.checksums.items():
            out[f"Checksum{alg}"] = value
        if upload.checksums:
            out["ChecksumType"] = "FULL_OBJECT"
        return out

    async def _version(self, ctx: RequestContext, params: dict[str, Any], action: str) -> tuple[Record, Record]:
        """The bucket and the requested live version of a key (S3's errors otherwise)."""
        key: str = params["Key"]
        bucket = await self.bucket(ctx, params["Bucket"], "", key)
        version_id = params.get("VersionId")
        record = await self.app.store.read(lambda txn: find_version(txn, bucket["name"], key, version_id, with_inline=True))
        if record is None:
            if version_id is not None:
                if version_id != "null" and len(version_id) < 8:
                    raise invalid_argument("Invalid version id specified", "versionId", version_id)
                raise no_such_version(key, version_id)
            self.authorize(ctx, bucket, action, key)
            raise no_such_key(key)
        self.authorize(ctx, bucket, action, key, record.get("acl"))
        if record.get("dm"):
            marker_headers = {"x-amz-delete-marker": "true", "x-amz-version-id": record["v"]}
            if version_id is not None:
                raise AwsError("MethodNotAllowed", "The specified method is not allowed against this resource.", 405,
                               fields={"Method": ctx.http.method if ctx.http else "GET", "ResourceType": "DeleteMarker"},
                               headers={**marker_headers, "Last-Modified": _http_date(record["mtime"])})  # fmt: skip
            raise no_such_key(key, marker_headers)
        return bucket, record

    async def get_object(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Stream a version (or a range or part of it), honouring conditional headers."""
        _, record = await self._version(ctx, params, "s3:GetObject")
        out = object_headers(record, params.get("ChecksumMode") == "ENABLED")
        if check_read_conditions(record, params):
            set_status(ctx, 304)
            return {k: out[k] for k in ("ETag", "LastModified", "VersionId") if k in out}
        size = record["size"]
        span = None
        if params.get("PartNumber") is not None:
            span = part_range(record, int(params["PartNumber"]))
            out["PartsCount"] = len(record.get("parts") or [size])
        elif params.get("Range"):
            span = parse_range(params["Range"], size)
        start, end = span if span is not None else (0, size)
        if span is not None and (params.get("Range") or len(record.get("parts") or []) > 1):
            set_status(ctx, 206)
            out["ContentRange"] = f"bytes {start}-{end - 1}/{size}" if end > start else f"bytes */{size}"
            for name in [k for k in out if k.startswith("Checksum")]:
                out.pop(name)  # whole-object checksums do not describe a range
        for name in ("CacheControl", "ContentDisposition", "ContentEncoding", "ContentLanguage", "ContentType", "Expires"):
            override = params.get(f"Response{name}")
            if override is not None:
                out[name] = override
        out["ContentLength"] = end - start
        out["Body"] = stream(self.blobs, record, start, end, self.app.store)
        return out

    async def head_object(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Metadata of a version, honouring conditional headers."""
        _, record = await self._version(ctx, params, "s3:GetObject")
        out = object_headers(record, params.get("ChecksumMode") == "ENABLED")
        if check_read_conditions(record, params):
            set_status(ctx, 304)
            return {k: out[k] for k in ("ETag", "LastModified", "VersionId") if k in out}
        size = record["size"]
        if params.get("PartNumber") is not None:
            start, end = part_range(record, int(params["PartNumber"]))
            out["PartsCount"] = len(record.get("parts") or [size])
            if record.get("parts"):
                set_status(ctx, 206)
                out["ContentRange"] = f"bytes {start}-{end - 1}/{size}"
            out["ContentLength"] = end - start
        elif params.get("Range") and (span := parse_range(params["Range"], size)) is not None:
            set_status(ctx, 206)
            out["ContentRange"] = f"bytes {span[0]}-{span[1] - 1}/{size}"
            out["ContentLength"] = span[1] - span[0]
        else:
            out["ContentLength"] = size
        return out

    async def delete_object(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Delete a version, or the key (a delete marker in versioned buckets)."""
        key: str = params["Key"]
        bucket = await self.bucket(ctx, params["Bucket"], "s3:DeleteObject", key)
        out, dropped = await self._delete(ctx, bucket, key, params.get("VersionId"), params)
        await self.discard(dropped)
        return out

    async def _delete(self, ctx: RequestContext, bucket: Record, key: str, version_id: str | None,
                      params: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:  # fmt: skip
        if version_id is not None:
            if version_id != "null" and len(version_id) < 8:
                raise invalid_argument("Invalid version id specified", "versionId", version_id)
            probe = await self.app.store.read(lambda txn: find_version(txn, bucket["name"], key, version_id))
            events = events_for(bucket, Change(ctx, "s3:ObjectRemoved:Delete", key, probe, "DeleteObject")) if probe else []
            old, dropped = await self.app.store.write(lambda txn: remove_version(txn, bucket, key, version_id, events))
            self._wake(events)
            out: dict[str, Any] = {"VersionId": version_id}
            if old is not None and old.get("dm"):
                out["DeleteMarker"] = True
            return out, dropped
        if params.get("IfMatch") is not None:
            cur = await self.app.store.read(lambda txn: find_version(txn, bucket["name"], key, None))
            if cur is None or cur.get("dm"):
                raise no_such_key(key)
            check_read_conditions(cur, {"IfMatch": params["IfMatch"]})
        state = bucket.get("versioning")
        marker: Record = {"k": key, "v": new_version_id() if state == "Enabled" else "null", "dm": True,
                          "seq": time.time_ns(), "mtime": now(), "etag": ""}  # fmt: skip
        event = "s3:ObjectRemoved:DeleteMarkerCreated" if state else "s3:ObjectRemoved:Delete"
        events = events_for(bucket, Change(ctx, event, key, marker if state else {"v": "null"}, "DeleteObject"))
        result, dropped = await self.app.store.write(lambda txn: delete_current(txn, bucket, key, marker, events))
        self._wake(events)
        return result, dropped

    def _wake(self, events: list[bytes]) -> None:
        if events:
            self.app.bus.wake("s3:notifications")

    async def delete_objects(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Delete up to 1000 keys; per-key errors are reported, not raised."""
        bucket = await self.bucket(ctx, params["Bucket"], "s3:DeleteObject")
        delete = params.get("Delete") or {}
        objects = delete.get("Objects") or []
        if not objects or len(objects) > 1000:
            raise malformed_xml()
        quiet = bool(delete.get("Quiet"))
        deleted: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for item in objects:
            key = item["Key"]
            try:
                check_key(key)
                out, dropped = await self._delete(ctx, bucket, key, item.get("VersionId"), {})
            except AwsError as error:
                errors.append({"Key": key, "Code": error.code, "Message": error.message, **({"VersionId": item["VersionId"]} if item.get("VersionId") else {})})
                continue
            await self.discard(dropped)
            if not quiet:
                entry: dict[str, Any] = {"Key": key}
                if item.get("VersionId"):
                    entry["VersionId"] = item["VersionId"]
                if out.get("DeleteMarker"):
                    entry["DeleteMarker"] = True
                    entry["DeleteMarkerVersionId"] = out["VersionId"]
                deleted.append(entry)
        result: dict[str, Any] = {}
        if deleted:
            result["Deleted"] = deleted
        if errors:
            result["Errors"] = errors
        return result

    # -- copy --------------------------------------------------------------------

    async def copy_object(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Copy a version (bytes streamed blob to blob), with metadata and tagging directives."""
        key: str = params["Key"]
        bucket = await self.bucket(ctx, params["Bucket"], "s3:PutObject", key)
        check_key(key)
        src_bucket_name, src_key, src_version = parse_copy_source(str(params.get("CopySource", "")))
        src = await self._version(ctx, {"Bucket": src_bucket_name, "Key": src_key, "VersionId": src_version}, "s3:GetObject")
        source = src[1]
        check_read_conditions(source, params, "CopySource")
        directive = params.get("MetadataDirective") or "COPY"
        same = (src_bucket_name, src_key) == (bucket["name"], key)
        if same and directive == "COPY" and not params.get("StorageClass") and not params.get("ServerSideEncryption") and not params.get("WebsiteRedirectLocation"):
            raise AwsError("InvalidRequest", "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.", 400)
        record = new_record(key, params, bucket.get("versioning") == "Enabled")
        if directive == "COPY":
            record.update(ct=source.get("ct"), hdr=dict(source.get("hdr") or {}), meta=dict(source.get("meta") or {}))
        if (params.get("TaggingDirective") or "COPY") == "COPY":
            record["tags"] = list(source.get("tags") or [])
        copied = await receive_upload(self.blobs, stream(self.blobs, source, 0, source["size"], self.app.store), {}, {}, self.app.store)
        info = copied.blob
        record.update(size=info.size, etag=f'"{info.md5}"' if not source.get("parts") else source["etag"], blobs=[[info.id, info.size]],
                      cs=dict(source.get("cs") or {}), cst=source.get("cst", "FULL_OBJECT"))  # fmt: skip
        if source.get("parts"):
            record["etag"] = f'"{info.md5}"'
        await self.commit_object(ctx, bucket, record, "s3:ObjectCreated:Copy", "CopyObject",
                                 (params.get("IfMatch"), params.get("IfNoneMatch")), copied.inline_rows())  # fmt: skip
        out: dict[str, Any] = {"CopyObjectResult": {"ETag": record["etag"], "LastModified": record["mtime"]}}
        for alg, value in record["cs"].items():
            out["CopyObjectResult"][f"Checksum{alg}"] = value
        if bucket.get("versioning"):
            out["VersionId"] = record["v"]
        if source.get("v") and source["v"] != "null":
            out["CopySourceVersionId"] = source["v"]
        return out

    # -- tagging, ACLs, attributes ------------------------------------------------------

    async def _update_version(self, ctx: RequestContext, params: dict[str, Any], action: str, change: Any, event: str | None = None) -> Record:
        """Change one version's record in place; ``event`` (``s3:ObjectTagging:Put``)
        is queued for notification in the same write."""
        bucket, record = await self._version(ctx, params, action)
        name, key, vid = bucket["name"], params["Key"], record["v"]
        events = events_for(bucket, Change(ctx, event, key, record, action.split(":", 1)[1])) if event else []

        def write(txn: Txn) -> Record:
            enqueue_events(txn, events)
            cur_raw = txn.get(OBJECTS, object_key(name, key))
            cur = load(cur_raw) if cur_raw else None
            if cur is not None and cur["v"] == vid:
                change(cur)
                txn.put(OBJECTS, object_key(name, key), dump(cur))
                return cur
            raw = txn.get(VERSIONS, version_key(name, key, vid))
            if raw is None:
                raise no_such_key(key)
            old = load(raw)
            change(old)
            txn.put(VERSIONS, version_key(name, key, vid), dump(old))
            return old

        result: Record = await self.app.store.write(write)
        self._wake(events)
        return result

    async def put_object_tagging(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        tags = validate_tags((params.get("Tagging") or {}).get("TagSet") or [])
        record = await self._update_version(ctx, params, "s3:PutObjectTagging", lambda r: r.__setitem__("tags", tags), "s3:ObjectTagging:Put")
        return {"VersionId": record["v"]} if record["v"] != "null" else {}

    async def get_object_tagging(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        _, record = await self._version(ctx, params, "s3:GetObjectTagging")
        out: dict[str, Any] = {"TagSet": list(record.get("tags") or [])}
        if record["v"] != "null":
            out["VersionId"] = record["v"]
        return out

    async def delete_object_tagging(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        record = await self._update_version(ctx, params, "s3:DeleteObjectTagging", lambda r: r.__setitem__("tags", []), "s3:ObjectTagging:Delete")
        return {"VersionId": record["v"]} if record["v"] != "null" else {}

    async def put_object_acl(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        acl = params.get("ACL")
        check_canned_acl(acl)
        if acl is None:
            acl = acl_from_policy(params.get("AccessControlPolicy"))
        bucket = await self.bucket(ctx, params["Bucket"], "s3:PutObjectAcl")
        check_acls_allowed(bucket, acl)
        await self._update_version(ctx, params, "s3:PutObjectAcl", lambda r: r.__setitem__("acl", acl), "s3:ObjectAcl:Put")
        return {}

    async def get_object_acl(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        _, record = await self._version(ctx, params, "s3:GetObjectAcl")
        return {"Owner": dict(OWNER), "Grants": acl_grants(record.get("acl"))}

    async def put_object_retention(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Stored and returned; nubes does not block deletes under retention."""
        retention = params.get("Retention") or {}
        if retention.get("Mode") not in ("GOVERNANCE", "COMPLIANCE"):
            raise malformed_xml()
        until: Any = retention.get("RetainUntilDate")
        if until is None:
            raise malformed_xml()
        stored = {"Mode": retention["Mode"], "RetainUntilDate": until.timestamp() if hasattr(until, "timestamp") else until}
        await self._update_version(ctx, params, "s3:PutObjectRetention", lambda r: r.__setitem__("retention", stored))
        return {}

    async def get_object_retention(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        _, record = await self._version(ctx, params, "s3:GetObjectRetention")
        if not record.get("retention"):
            raise AwsError("NoSuchObjectLockConfiguration", "The specified object does not have a ObjectLock configuration", 404)
        return {"Retention": record["retention"]}

    async def put_object_legal_hold(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        status = (params.get("LegalHold") or {}).get("Status")
        if status not in ("ON", "OFF"):
            raise malformed_xml()
        await self._update_version(ctx, params, "s3:PutObjectLegalHold", lambda r: r.__setitem__("legal_hold", status))
        return {}

    async def get_object_legal_hold(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        _, record = await self._version(ctx, params, "s3:GetObjectLegalHold")
        if not record.get("legal_hold"):
            raise AwsError("NoSuchObjectLockConfiguration", "The specified object does not have a ObjectLock configuration", 404)
        return {"LegalHold": {"Status": record["legal_hold"]}}

    async def get_object_attributes(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """ETag, checksum, parts, storage class and size of a version."""
        _, record = await self._version(ctx, params, "s3:GetObject")
        wanted = set(params.get("ObjectAttributes") or [])
        out: dict[str, Any] = {"LastModified": record["mtime"]}
        if record["v"] != "null":
            out["VersionId"] = record["v"]
        if "ETag" in wanted:
            out["ETag"] = record["etag"].strip('"')
        if "StorageClass" in wanted:
            out["StorageClass"] = record.get("sc") or "STANDARD"
        if "ObjectSize" in wanted:
            out["ObjectSize"] = record["size"]
        if "Checksum" in wanted and record.get("cs"):
            out["Checksum"] = {**{f"Checksum{a}": v for a, v in record["cs"].items()}, "ChecksumType": record.get("cst", "FULL_OBJECT")}
        if "ObjectParts" in wanted and record.get("parts"):
            out["ObjectParts"] = {"TotalPartsCount": len(record["parts"])}
        return out


def parse_copy_source(source: str) -> tuple[str, str, str | None]:
    """``/bucket/key?versionId=...`` (URL-encoded) → bucket, key, version id."""
    path, _, query = source.partition("?")
    path = unquote(path).lstrip("/")
    bucket, _, key = path.partition("/")
    if not bucket or not key:
        raise invalid_argument("Invalid copy source object key", "x-amz-copy-source", source)
    version = dict(parse_qsl(query)).get("versionId") if query else None
    return bucket, key, version


def copy_params(headers: Any) -> dict[str, Any]:
    """CopyObject members from headers, for a copy that was routed as PutObject."""
    from email.utils import parsedate_to_datetime

    out: dict[str, Any] = {"CopySource": headers["x-amz-copy-source"]}
    names = {
        "x-amz-metadata-directive": "MetadataDirective",
        "x-amz-tagging-directive": "TaggingDirective",
        "x-amz-copy-source-if-match": "CopySourceIfMatch",
        "x-amz-copy-source-if-none-match": "CopySourceIfNoneMatch",
    }
    for header, name in names.items():
        if header in headers:
            out[name] = headers[header]
    for header, name in (("x-amz-copy-source-if-modified-since", "CopySourceIfModifiedSince"),
                         ("x-amz-copy-source-if-unmodified-since", "CopySourceIfUnmodifiedSince")):  # fmt: skip
        if header in headers:
            try:
                out[name] = parsedate_to_datetime(headers[header])
            except (TypeError, ValueError):
                pass
    return out


def _http_date(ts: float) -> str:
    from nubes.services.s3.models import http_date

    return http_date(ts)
