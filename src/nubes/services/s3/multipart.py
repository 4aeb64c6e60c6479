"""Multipart uploads: each part is its own blob; completing writes one record that
names the parts' blobs in order (no bytes are copied), ETag ``"<md5 of md5s>-N"``."""

from __future__ import annotations

import base64
import hashlib
import os
import time
from typing import Any

from nubes.aws.errors import AwsError
from nubes.services.base import RequestContext
from nubes.services.s3.body import checksum_of, drain, put_inline, receive_upload
from nubes.services.s3.models import (
    MAX_PART_NUMBER,
    MIN_PART_SIZE,
    OWNER,
    PARTS,
    UPLOADS,
    Record,
    check_key,
    dump,
    invalid_argument,
    load,
    malformed_xml,
    new_version_id,
    no_such_upload,
    now,
    object_key,
    part_key,
    upload_key,
)
from nubes.services.s3.notify import Change, events_for
from nubes.services.s3.objects import ObjectOps, new_record, parse_copy_source, set_status
from nubes.services.s3.reads import parse_range, stream
from nubes.services.s3.versions import make_current
from nubes.storage.base import Txn


def multipart_etag(md5s: list[str]) -> str:
    """S3's multipart ETag: MD5 of the parts' binary MD5s, dash, part count."""
    digest = hashlib.md5(b"".join(bytes.fromhex(m) for m in md5s), usedforsecurity=False).hexdigest()
    return f'"{digest}-{len(md5s)}"'


def _invalid_part() -> AwsError:
    return AwsError(
        "InvalidPart",
        "One or more of the specified parts could not be found.  The part may not have been uploaded, "
        "or the specified entity tag may not match the part's entity tag.",
        400,
    )


def _check_part_number(number: int) -> None:
    if not 1 <= number <= MAX_PART_NUMBER:
        raise invalid_argument("Part number must be an integer between 1 and 10000, inclusive", "partNumber", str(number))


class MultipartOps(ObjectOps):
    """Multipart upload operations."""

    async def _upload(self, ctx: RequestContext, params: dict[str, Any], action: str) -> tuple[Record, Record]:
        bucket = await self.bucket(ctx, params["Bucket"], action, params["Key"])
        upload_id = str(params["UploadId"])
        raw = await self.app.store.read(lambda txn: txn.get(UPLOADS, upload_key(bucket["name"], params["Key"], upload_id)))
        if raw is None:
            raise no_such_upload(upload_id)
        return bucket, load(raw)

    async def create_multipart_upload(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        key: str = params["Key"]
        bucket = await self.bucket(ctx, params["Bucket"], "s3:PutObject", key)
        check_key(key)
        upload_id = base64.urlsafe_b64encode(time.time_ns().to_bytes(8, "big") + os.urandom(24)).decode().rstrip("=")
        template = new_record(key, params, False)
        algorithm = params.get("ChecksumAlgorithm")
        upload: Record = {"id": upload_id, "k": key, "initiated": now(), "template": template,
                          "alg": algorithm, "cst": params.get("ChecksumType") or ("COMPOSITE" if algorithm else None)}  # fmt: skip
        await self.app.store.write(lambda txn: txn.put(UPLOADS, upload_key(bucket["name"], key, upload_id), dump(upload)))
        out: dict[str, Any] = {"Bucket": bucket["name"], "Key": key, "UploadId": upload_id, "ServerSideEncryption": "AES256"}
        if algorithm:
            out["ChecksumAlgorithm"] = algorithm
            out["ChecksumType"] = upload["cst"]
        return out

    async def _store_part(self, bucket: Record, upload: Record, number: int, part: Record, inline: dict[str, bytes]) -> None:
        name, key, upload_id = bucket["name"], upload["k"], upload["id"]

        def write(txn: Txn) -> str | None:
            if txn.get(UPLOADS, upload_key(name, key, upload_id)) is None:
                raise no_such_upload(upload_id)
            put_inline(txn, inline)
            old = txn.get(PARTS, part_key(upload_id, number))
            txn.put(PARTS, part_key(upload_id, number), dump(part))
            return str(load(old)["blob"]) if old is not None else None

        try:
            replaced = await self.app.store.write(write)
        except BaseException:
            if not inline:
                await self.discard([part["blob"]])
            raise
        if replaced is not None:
            await self.discard([replaced])

    async def upload_part(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Stream one part into its own blob."""
        try:
            return await self._upload_part(ctx, params)
        except BaseException:
            await drain(params.get("Body"))
            raise

    async def _upload_part(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        headers = ctx.http.headers if ctx.http is not None else {}
        if "x-amz-copy-source" in headers:
            copy = {"CopySource": headers["x-amz-copy-source"], "CopySourceRange": headers.get("x-amz-copy-source-range")}
            return await self.upload_part_copy(ctx, {**params, **copy})
        number = int(params["PartNumber"])
        _check_part_number(number)
        bucket, upload = await self._upload(ctx, params, "s3:PutObject")
        if upload.get("alg") and not params.get("ChecksumAlgorithm"):
            params = {**params, "ChecksumAlgorithm": upload["alg"]}  # parts carry the upload's checksum
        received = await receive_upload(self.blobs, params.get("Body"), headers, params, self.app.store, await self.chunk_signing(ctx))
        part = {"n": number, "blob": received.blob.id, "size": received.blob.size, "md5": received.blob.md5,
                "mtime": now(), "cs": received.checksums}  # fmt: skip
        await self._store_part(bucket, upload, number, part, received.inline_rows())
        out: dict[str, Any] = {"ETag": received.etag, "ServerSideEncryption": "AES256"}
        for alg, value in received.checksums.items():
            out[f"Checksum{alg}"] = value
        return out

    async def upload_part_copy(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Copy (a range of) an existing object into a part."""
        number = int(params["PartNumber"])
        _check_part_number(number)
        bucket, upload = await self._upload(ctx, params, "s3:PutObject")
        src_bucket, src_key, src_version = parse_copy_source(str(params.get("CopySource", "")))
        _, source = await self._version(ctx, {"Bucket": src_bucket, "Key": src_key, "VersionId": src_version}, "s3:GetObject")
        start, end = 0, source["size"]
        if params.get("CopySourceRange"):
            span = parse_range(params["CopySourceRange"], source["size"])
            if span is None:
                raise invalid_argument("The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy",
                                       "x-amz-copy-source-range", params["CopySourceRange"])  # fmt: skip
            start, end = span
        wanted = {"ChecksumAlgorithm": upload["alg"]} if upload.get("alg") else {}
        copied = await receive_upload(self.blobs, stream(self.blobs, source, start, end, self.app.store), {}, wanted, self.app.store)
        info, cs = copied.blob, copied.checksums
        part = {"n": number, "blob": info.id, "size": info.size, "md5": info.md5, "mtime": now(), "cs": cs}
        await self._store_part(bucket, upload, number, part, copied.inline_rows())
        out: dict[str, Any] = {"CopyPartResult": {"ETag": f'"{info.md5}"', "LastModified": part["mtime"]}}
        if source.get("v") and source["v"] != "null":
            out["CopySourceVersionId"] = source["v"]
        return out

    async def complete_multipart_upload(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Check the part list and make the object current in one store write."""
        bucket, upload = await self._upload(ctx, params, "s3:PutObject")
        listed = (params.get("MultipartUpload") or {}).get("Parts") or []
        if not listed:
            raise malformed_xml()
        numbers = [int(p["PartNumber"]) for p in listed]
        if numbers != sorted(numbers) or len(set(numbers)) != len(numbers):
            raise AwsError("InvalidPartOrder", "The list of parts was not in ascending order. Parts must be ordered by part number.", 400)
        upload_id = upload["id"]
        rows = await self.app.store.read(lambda txn: txn.scan(PARTS, prefix=upload_id.encode() + b"\x00"))
        stored = {p["n"]: p for p in (load(v) for _, v in rows)}
        chosen: list[Record] = []
        for i, item in enumerate(listed):
            part = stored.get(int(item["PartNumber"]))
            if part is None or str(item.get("ETag", "")).strip('"') != part["md5"]:
                raise _invalid_part()
            if i < len(listed) - 1 and part["size"] < MIN_PART_SIZE:
                raise AwsError("EntityTooSmall", "Your proposed upload is smaller than the minimum allowed object size.", 400,
                               fields={"ProposedSize": part["size"], "MinSizeAllowed": MIN_PART_SIZE, "PartNumber": part["n"], "ETag": part["md5"]})  # fmt: skip
            chosen.append(part)
        record = self._completed_record(bucket, upload, chosen)
        if params.get("MpuObjectSize") is not None and int(params["MpuObjectSize"]) != record["size"]:
            raise invalid_argument("The provided 'x-amz-mp-object-size' header does not match what was computed.", "x-amz-mp-object-size", str(params["MpuObjectSize"]))
        events = events_for(bucket, Change(ctx, "s3:ObjectCreated:CompleteMultipartUpload", upload["k"], record, "CompleteMultipartUpload"))
        used = {p["blob"] for p in chosen}
        name, key = bucket["name"], upload["k"]

        def write(txn: Txn) -> list[str]:
            if not txn.delete(UPLOADS, upload_key(name, key, upload_id)):
                raise no_such_upload(upload_id)
            leftovers = [str(load(v)["blob"]) for _, v in txn.scan(PARTS, prefix=upload_id.encode() + b"\x00")]
            if not used.issubset(leftovers):
                raise _invalid_part()  # a part was uploaded again since we read the list
            txn.delete_prefix(PARTS, upload_id.encode() + b"\x00")
            dropped = make_current(txn, bucket, record, events, (params.get("IfMatch"), params.get("IfNoneMatch")))
            return dropped + [b for b in leftovers if b not in used]

        await self.discard(await self.app.store.write(write))
        if events:
            self.app.bus.wake("s3:notifications")
        out: dict[str, Any] = {"Location": f"{ctx.endpoint}/{name}/{key}", "Bucket": name, "Key": key, "ETag": record["etag"],
                               "ServerSideEncryption": "AES256"}  # fmt: skip
        if bucket.get("versioning"):
            out["VersionId"] = record["v"]
        for alg, value in record["cs"].items():
            out[f"Checksum{alg}"] = value
        if record["cs"]:
            out["ChecksumType"] = record["cst"]
        return out

    def _completed_record(self, bucket: Record, upload: Record, parts: list[Record]) -> Record:
        record = dict(upload["template"])
        record.update(
            v=new_version_id() if bucket.get("versioning") == "Enabled" else "null", seq=time.time_ns(), mtime=now(),
            size=sum(p["size"] for p in parts), etag=multipart_etag([p["md5"] for p in parts]),
            blobs=[[p["blob"], p["size"]] for p in parts], parts=[p["size"] for p in parts], cs={},
            cst=upload.get("cst") or "COMPOSITE",
        )  # fmt: skip
        alg = upload.get("alg")
        if alg and all(alg in (p.get("cs") or {}) for p in parts) and record["cst"] == "COMPOSITE":
            joined = b"".join(base64.b64decode(p["cs"][alg]) for p in parts)
            record["cs"] = {alg: f"{checksum_of(alg, joined)}-{len(parts)}"}
        return record

    async def abort_multipart_upload(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bucket, upload = await self._upload(ctx, params, "s3:AbortMultipartUpload")
        upload_id = upload["id"]

        def write(txn: Txn) -> list[str]:
            if not txn.delete(UPLOADS, upload_key(bucket["name"], upload["k"], upload_id)):
                raise no_such_upload(upload_id)
            blobs = [str(load(v)["blob"]) for _, v in txn.scan(PARTS, prefix=upload_id.encode() + b"\x00")]
            txn.delete_prefix(PARTS, upload_id.encode() + b"\x00")
            return blobs

        await self.discard(await self.app.store.write(write))
        set_status(ctx, 204)
        return {}

    async def list_parts(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bucket, upload = await self._upload(ctx, params, "s3:ListMultipartUploadParts")
        upload_id = upload["id"]
        marker = int(params.get("PartNumberMarker") or 0)
        max_parts = min(int(params.get("MaxParts") or 1000), 1000)
        rows = await self.app.store.read(
            lambda txn: txn.scan(PARTS, start=part_key(upload_id, marker + 1), end=upload_id.encode() + b"\x01", limit=max_parts + 1)
        )
        parts = [load(v) for _, v in rows]
        page = parts[:max_parts]
        out: dict[str, Any] = {
            "Bucket": bucket["name"], "Key": upload["k"], "UploadId": upload_id, "PartNumberMarker": marker,
            "MaxParts": max_parts, "IsTruncated": len(parts) > max_parts, "StorageClass": upload["template"].get("sc", "STANDARD"),
            "Owner": dict(OWNER), "Initiator": {"ID": OWNER["ID"], "DisplayName": OWNER["DisplayName"]},
            "Parts": [{"PartNumber": p["n"], "LastModified": p["mtime"], "ETag": f'"{p["md5"]}"', "Size": p["size"],
                       **{f"Checksum{a}": v for a, v in (p.get("cs") or {}).items()}} for p in page] or None,
        }  # fmt: skip
        if page:
            out["NextPartNumberMarker"] = page[-1]["n"]
        if upload.get("alg"):
            out["ChecksumAlgorithm"] = upload["alg"]
            out["ChecksumType"] = upload.get("cst")
        return out

    async def list_multipart_uploads(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        bucket = await self.bucket(ctx, params["Bucket"], "s3:ListBucketMultipartUploads")
        name = bucket["name"]
        prefix, delimiter = params.get("Prefix") or "", params.get("Delimiter") or ""
        key_marker, id_marker = params.get("KeyMarker") or "", params.get("UploadIdMarker") or ""
        max_uploads = min(int(params.get("MaxUploads") or 1000), 1000)
        rows = await self.app.store.read(lambda txn: txn.scan(UPLOADS, prefix=object_key(name, prefix)))
        uploads: list[Record] = []
        commons: list[str] = []
        truncated = False
        for _, raw in rows:
            upload = load(raw)
            key = upload["k"]
            if key_marker and (key < key_marker or (key == key_marker and (not id_marker or upload["id"] <= id_marker))):
                continue
            if delimiter and (cut := key.find(delimiter, len(prefix))) >= 0:
                common = key[: cut + len(delimiter)]
                if common not in commons:
                    if len(uploads) + len(commons) >= max_uploads:
                        truncated = True
                        break
                    commons.append(common)
                continue
            if len(uploads) + len(commons) >= max_uploads:
                truncated = True
                break
            uploads.append(upload)
        out: dict[str, Any] = {
            "Bucket": name, "KeyMarker": key_marker, "UploadIdMarker": id_marker, "Prefix": prefix,
            "MaxUploads": max_uploads, "IsTruncated": truncated,
            "Uploads": [{"UploadId": u["id"], "Key": u["k"], "Initiated": u["initiated"],
                         "StorageClass": u["template"].get("sc", "STANDARD"), "Owner": dict(OWNER),
                         "Initiator": {"ID": OWNER["ID"], "DisplayName": OWNER["DisplayName"]}} for u in uploads] or None,
            "CommonPrefixes": [{"Prefix": c} for c in commons] or None,
        }  # fmt: skip
        if delimiter:
            out["Delimiter"] = delimiter
        if truncated and uploads:
            out["NextKeyMarker"], out["NextUploadIdMarker"] = uploads[-1]["k"], uploads[-1]["id"]
        return out

