"""Static website hosting: a bucket with a website configuration served at
``http://{bucket}.s3-website.localhost:4566/`` (also ``{bucket}.s3-website-{region}
.amazonaws.com`` through the HTTPS/host routing, and
``/_nubes/s3-website/{bucket}/...``): index documents, error documents,
redirect-all, and only what anonymous readers may see, as on AWS."""

from __future__ import annotations

import re
from html import escape
from typing import Any
from urllib.parse import unquote

from nubes.aws.protocol.types import WireResponse
from nubes.services.base import HttpRequest
from nubes.services.s3.base import anonymous_allowed
from nubes.services.s3.models import Record, http_date
from nubes.services.s3.objects import ObjectOps
from nubes.services.s3.reads import stream
from nubes.services.s3.versions import find_version

WEBSITE_HOST = r"(?P<bucket>[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])\.s3-website(?:[.-][a-z0-9-]+)?\.(?:localhost|amazonaws\.com)"
WEBSITE_PATH = r"^/_nubes/s3-website/(?P<pbucket>[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])(?P<rest>/.*)?$"


def _page(status: int, code: str, message: str, request_id: str) -> WireResponse:
    body = (f"<html><head><title>{status} {escape(code)}</title></head><body><h1>{status} {escape(code)}</h1>"
            f"<ul><li>Code: {escape(code)}</li><li>Message: {escape(message)}</li><li>RequestId: {request_id}</li></ul></body></html>")  # fmt: skip
    return WireResponse(status, {"Content-Type": "text/html; charset=utf-8"}, body.encode())


class WebsiteOps(ObjectOps):
    """GET/HEAD on website endpoints."""

    async def http_website(self, request: HttpRequest, match: re.Match[str]) -> WireResponse:
        """Serve one website request."""
        groups = match.groupdict()
        name = groups.get("bucket") or groups.get("pbucket") or ""
        path = groups.get("rest") if groups.get("pbucket") else request.path
        request_id = self.app.context("s3", "Website").request_id
        bucket = await self._bucket_record(name)
        if bucket is None:
            return _page(404, "NoSuchBucket", "The specified bucket does not exist", request_id)
        config: dict[str, Any] | None = bucket.get("website")
        if not config:
            return _page(404, "NoSuchWebsiteConfiguration", "The specified bucket does not have a website configuration", request_id)
        redirect = config.get("RedirectAllRequestsTo")
        if redirect:
            target = f"{redirect.get('Protocol', 'http')}://{redirect['HostName']}{path or '/'}"
            return WireResponse(301, {"Location": target}, b"")
        key = unquote((path or "/").lstrip("/"))
        suffix = (config.get("IndexDocument") or {}).get("Suffix", "index.html")
        if not key or key.endswith("/"):
            key += suffix
        found = await self._public(bucket, key)
        # a "folder" without its slash: S3 redirects to the slash form when its index exists
        if found is None and not key.endswith(suffix) and await self._public(bucket, f"{key}/{suffix}") is not None:
            return WireResponse(302, {"Location": "/" + key + "/"}, b"")
        if found is not None:
            return self._serve(found, 200, request.method)
        error_key = (config.get("ErrorDocument") or {}).get("Key")
        error_doc = await self._public(bucket, error_key) if error_key else None
        if error_doc is not None:
            return self._serve(error_doc, 404, request.method)
        return _page(404, "NoSuchKey", "The specified key does not exist.", request_id)

    async def _public(self, bucket: Record, key: str) -> Record | None:
        """A live version anonymous readers may get, else None (S3 answers 403 as 404 here)."""
        record = await self.app.store.read(lambda txn: find_version(txn, bucket["name"], key, None, with_inline=True))
        if record is None or record.get("dm"):
            return None
        if not anonymous_allowed(bucket, "s3:GetObject", key, record.get("acl")):
            return None
        return record

    def _serve(self, record: Record, status: int, method: str) -> WireResponse:
        headers = {
            "Content-Type": record.get("ct") or "binary/octet-stream", "ETag": record["etag"],
            "Last-Modified": http_date(record["mtime"]), "Content-Length": str(record["size"]),
        }  # fmt: skip
        for name, header in (("CacheControl", "Cache-Control"), ("ContentEncoding", "Content-Encoding")):
            value = (record.get("hdr") or {}).get(name)
            if value:
                headers[header] = value
        if method == "HEAD":
            return WireResponse(status, headers, b"")
        return WireResponse(status, headers, stream(self.blobs, record, 0, record["size"], self.app.store))

