"""Browser-facing S3: presigned POST form uploads (policy and conditions checked)
and CORS preflights, served as raw HTTP routes."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import re
from email.parser import BytesParser
from email.policy import HTTP
from hashlib import sha256
from typing import Any
from urllib.parse import quote, urlencode
from xml.sax.saxutils import escape

import orjson

from nubes.aws.errors import AwsError
from nubes.aws.protocol.rest import rest_xml_error_body
from nubes.aws.protocol.types import WireResponse
from nubes.aws.sigv4 import signing_key
from nubes.services.base import HttpRequest, RequestContext
from nubes.services.s3.base import cors_headers, cors_rule_for
from nubes.services.s3.body import receive_upload
from nubes.services.s3.models import BUCKETS, Record, check_key, load, no_such_bucket
from nubes.services.s3.objects import ObjectOps, new_record, with_data

_VIRTUAL = re.compile(r"^(?P<bucket>[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])\.s3(?:[.-][a-z0-9-]+)?\.(?:localhost|amazonaws\.com)$")
#: form fields a POST policy need not mention
_EXEMPT = {"x-amz-signature", "file", "policy", "awsaccesskeyid", "signature", "x-amz-security-token"}


def bucket_of(request: HttpRequest, match: re.Match[str]) -> tuple[str, str]:
    """(bucket, key) from a virtual-host or path-style request."""
    host = request.headers.get("host", "").rsplit(":", 1)[0]
    path = request.path
    m = _VIRTUAL.match(host)
    if m is not None:
        return m.group("bucket"), path.lstrip("/")
    bucket, _, key = path.lstrip("/").partition("/")
    return bucket, key


def _error(error: AwsError, request_id: str) -> WireResponse:
    return WireResponse(error.status or 400, {"Content-Type": "application/xml", **error.headers}, rest_xml_error_body(error, request_id))


def _policy_failed(detail: str) -> AwsError:
    return AwsError("AccessDenied", f"Invalid according to Policy: {detail}", 403)


def parse_form(request: HttpRequest) -> tuple[dict[str, str], bytes | None, str | None]:
    """multipart/form-data → (fields with lower-cased names, file bytes, file name)."""
    head = f"Content-Type: {request.headers.get('content-type', '')}\r\n\r\n".encode("latin-1")
    message = BytesParser(policy=HTTP).parsebytes(head + request.body)
    if not message.is_multipart():
        raise AwsError("MalformedPOSTRequest", "The body of your POST request is not well-formed multipart/form-data.", 400)
    fields: dict[str, str] = {}
    data: bytes | None = None
    filename: str | None = None
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        raw = payload if isinstance(payload, bytes) else b""
        if name.lower() == "file":
            data, filename = raw, part.get_filename()
            if part.get_content_type() and "content-type" not in fields and part.get("content-type"):
                fields.setdefault("content-type", part.get_content_type())
            break  # fields after the file are ignored, as S3 does
        fields[name.lower()] = raw.decode("utf-8", "replace")
    return fields, data, filename


def check_policy(fields: dict[str, str], bucket: str, size: int, now: dt.datetime) -> None:
    """Expiration and every condition of a POST policy, and no unlisted fields."""
    try:
        doc = orjson.loads(base64.b64decode(fields["policy"], validate=True))
    except (binascii.Error, orjson.JSONDecodeError, ValueError):
        raise AwsError("InvalidPolicyDocument", "Invalid Policy: Invalid JSON.", 400) from None
    expiration = str(doc.get("expiration", ""))
    try:
        expires = dt.datetime.fromisoformat(expiration.replace("Z", "+00:00"))
    except ValueError:
        raise AwsError("InvalidPolicyDocument", "Invalid Policy: Invalid 'expiration' value: '" + expiration + "'", 400) from None
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=dt.UTC)
    if expires < now:
        raise _policy_failed("Policy expired.")
    values = {**fields, "bucket": bucket}
    covered = {"bucket"}
    for cond in doc.get("conditions") or []:
        covered.update(_check_condition(cond, values, size))
    extra = [name for name in fields if name not in covered and name not in _EXEMPT and not name.startswith("x-ignore-")]
    if extra:
        raise _policy_failed(f"Extra input fields: {extra[0]}")


def _check_condition(cond: Any, values: dict[str, str], size: int) -> set[str]:
    if isinstance(cond, dict):
        names = set()
        for name, want in cond.items():
            if values.get(name.lower()) != str(want):
                raise _policy_failed(f'Policy Condition failed: ["eq", "${name}", "{want}"]')
            names.add(name.lower())
        return names
    if not isinstance(cond, list) or len(cond) != 3:
        raise AwsError("InvalidPolicyDocument", "Invalid Policy: Invalid Condition", 400)
    op = str(cond[0]).lower()
    if op == "content-length-range":
        low, high = int(cond[1]), int(cond[2])
        if size > high:
            raise AwsError("EntityTooLarge", "Your proposed upload exceeds the maximum allowed size", 400, fields={"ProposedSize": size, "MaxSizeAllowed": high})
        if size < low:
            raise AwsError("EntityTooSmall", "Your proposed upload is smaller than the minimum allowed size", 400, fields={"ProposedSize": size, "MinSizeAllowed": low})
        return set()
    name = str(cond[1]).lstrip("$").lower()
    have, want = values.get(name, ""), str(cond[2])
    ok = have == want if op == "eq" else op == "starts-with" and have.startswith(want)
    if not ok:
        raise _policy_failed(f'Policy Condition failed: ["{op}", "${name}", "{want}"]')
    return {name}


class WebOps(ObjectOps):
    """Raw HTTP routes: POST uploads and CORS preflights."""

    def _check_post_signature(self, fields: dict[str, str], now: dt.datetime) -> str:
        """SigV4 (or V2) signature over the base64 policy; returns the access key."""
        if "x-amz-credential" in fields:
            parts = fields["x-amz-credential"].split("/")
            if len(parts) != 5:
                raise AwsError("InvalidArgument", "Invalid credential", 400)
            access_key, date, region, service = parts[:4]
            secret = self._secret(access_key)
            expected = hmac.new(signing_key(secret, date, region, service), fields["policy"].encode(), sha256).hexdigest()
            given = fields.get("x-amz-signature", "")
        else:
            access_key = fields.get("awsaccesskeyid", "")
            import hashlib

            secret = self._secret(access_key)
            expected = base64.b64encode(hmac.new(secret.encode(), fields["policy"].encode(), hashlib.sha1).digest()).decode()
            given = fields.get("signature", "")
        if not hmac.compare_digest(expected, given):
            raise AwsError("SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your key and signing method.", 403)
        return access_key

    def _secret(self, access_key: str) -> str:
        secret = dict(self.app.settings.credentials).get(access_key)
        if secret is None:
            raise AwsError("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.", 403)
        return str(secret)

    async def http_post_object(self, request: HttpRequest, match: re.Match[str]) -> WireResponse:
        """A browser form upload (``POST /bucket`` with policy, signature and file)."""
        ctx = self.app.context("s3", "PostObject", access_key=None)
        ctx.http = request
        try:
            return await self._post_object(ctx, request, match)
        except AwsError as error:
            return _error(error, ctx.request_id)

    async def _post_object(self, ctx: RequestContext, request: HttpRequest, match: re.Match[str]) -> WireResponse:
        bucket_name, _ = bucket_of(request, match)
        fields, data, filename = parse_form(request)
        if data is None:
            raise AwsError("InvalidArgument", "POST requires exactly one file upload per request.", 400, fields={"ArgumentName": "file", "ArgumentValue": "0"})
        key = fields.get("key")
        if key is None:
            raise AwsError("InvalidArgument", "Bucket POST must contain a field named 'key'.  If it is specified, please check the order of the fields.",
                           400, fields={"ArgumentName": "key", "ArgumentValue": ""})  # fmt: skip
        key = key.replace("${filename}", filename or "")
        raw = await self.app.store.read(lambda txn: txn.get(BUCKETS, bucket_name.encode()))
        if raw is None:
            raise no_such_bucket(bucket_name)
        bucket = load(raw)
        now = dt.datetime.now(dt.UTC)
        if "policy" in fields:
            ctx.access_key = self._check_post_signature(fields, now)
            check_policy(fields, bucket_name, len(data), now)
        self.authorize(ctx, bucket, "s3:PutObject", key)
        check_key(key)
        record = await self._store_post(ctx, bucket, key, fields, data)
        return self._post_response(request, bucket, key, record, fields)

    async def _store_post(self, ctx: RequestContext, bucket: Record, key: str, fields: dict[str, str], data: bytes) -> Record:
        params: dict[str, Any] = {
            "ContentType": fields.get("content-type"), "ACL": fields.get("acl"), "Tagging": _tagging_xml(fields.get("tagging")),
            "Metadata": {k[len("x-amz-meta-"):]: v for k, v in fields.items() if k.startswith("x-amz-meta-")},
        }  # fmt: skip
        for name, member in (("cache-control", "CacheControl"), ("content-disposition", "ContentDisposition"),
                             ("content-encoding", "ContentEncoding"), ("expires", None)):  # fmt: skip
            if member and fields.get(name):
                params[member] = fields[name]
        record = new_record(key, params, bucket.get("versioning") == "Enabled")
        checksum_params = {f"Checksum{a}": fields[f"x-amz-checksum-{a.lower()}"] for a in ("CRC32", "CRC32C", "SHA1", "SHA256") if f"x-amz-checksum-{a.lower()}" in fields}
        upload = await receive_upload(self.blobs, data, {}, {**checksum_params, "ContentMD5": fields.get("content-md5")}, self.app.store)
        with_data(record, upload)
        await self.commit_object(ctx, bucket, record, "s3:ObjectCreated:Post", "PostObject", inline=upload.inline_rows())
        return record

    def _post_response(self, request: HttpRequest, bucket: Record, key: str, record: Record, fields: dict[str, str]) -> WireResponse:
        headers: dict[str, str] = {"ETag": record["etag"], "Location": f"/{bucket['name']}/{quote(key)}"}
        if bucket.get("versioning"):
            headers["x-amz-version-id"] = record["v"]
        origin = request.headers.get("origin")
        if origin:
            rule = cors_rule_for(bucket, origin, "POST", [])
            if rule is not None:
                headers.update(cors_headers(rule, origin))
        redirect = fields.get("success_action_redirect") or fields.get("redirect")
        if redirect:
            sep = "&" if "?" in redirect else "?"
            query = urlencode({"bucket": bucket["name"], "key": key, "etag": record["etag"]})
            return WireResponse(303, {**headers, "Location": f"{redirect}{sep}{query}"}, b"")
        status = fields.get("success_action_status", "204")
        if status == "201":
            body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<PostResponse><Location>{escape(headers["Location"])}</Location>'
                    f"<Bucket>{escape(bucket['name'])}</Bucket><Key>{escape(key)}</Key><ETag>{escape(record['etag'])}</ETag></PostResponse>")  # fmt: skip
            return WireResponse(201, {**headers, "Content-Type": "application/xml"}, body.encode())
        return WireResponse(200 if status == "200" else 204, headers, b"")

    async def http_preflight(self, request: HttpRequest, match: re.Match[str]) -> WireResponse:
        """A CORS preflight (``OPTIONS``) checked against the bucket's CORS rules."""
        request_id = self.app.context("s3", "Preflight").request_id
        bucket_name, key = bucket_of(request, match)
        origin = request.headers.get("origin")
        method = request.headers.get("access-control-request-method")
        try:
            if not origin or not method:
                raise AwsError("BadRequest", "Insufficient information. Origin request header needed.", 400)
            raw = await self.app.store.read(lambda txn: txn.get(BUCKETS, bucket_name.encode()))
            if raw is None:
                raise no_such_bucket(bucket_name)
            bucket = load(raw)
            wanted = [h.strip() for h in request.headers.get("access-control-request-headers", "").split(",") if h.strip()]
            rule = cors_rule_for(bucket, origin, method, wanted) if bucket.get("cors") else None
            if rule is None:
                raise AwsError("AccessForbidden", "CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, "
                               "request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.", 403,
                               fields={"Method": method, "ResourceType": "OBJECT" if key else "BUCKET"})  # fmt: skip
        except AwsError as error:
            return _error(error, request_id)
        return WireResponse(200, cors_headers(rule, origin, wanted), b"")


def _tagging_xml(text: str | None) -> str | None:
    """The POST ``tagging`` field is an XML Tagging document; x-amz-tagging is a query string."""
    if not text:
        return None
    keys = re.findall(r"<Key>(.*?)</Key>\s*<Value>(.*?)</Value>", text, re.S)
    return urlencode(keys)
