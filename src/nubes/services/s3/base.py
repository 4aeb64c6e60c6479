"""What every S3 operation shares: the blob store, bucket lookup, anonymous
access (bucket policies, public ACLs) and CORS headers on responses."""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import time
from typing import Any
from urllib.parse import parse_qsl, quote

import orjson

from nubes.aws.errors import AwsError
from nubes.aws.sigv4 import signing_key
from nubes.gateway.auth import STS_CREDENTIALS_TABLE
from nubes.services.base import HttpRequest, Provider, RequestContext
from nubes.services.s3.body import ChunkSigning, discard
from nubes.services.s3.models import BUCKETS, Record, dump, load, no_such_bucket
from nubes.storage.base import Txn
from nubes.storage.blobs import BlobStore

_PUBLIC_READ_ACLS = ("public-read", "public-read-write")
BUCKET_CACHE_SECONDS = 1.0


def access_denied() -> AwsError:
    return AwsError("AccessDenied", "Access Denied", 403)


class S3Base(Provider):
    """Shared state and helpers of the S3 provider's mixins."""

    _blobs: BlobStore | None = None
    #: bucket name → (monotonic expiry, record): saves a store read per request; a
    #: change made on another node shows here within BUCKET_CACHE_SECONDS
    _bucket_cache: dict[str, tuple[float, Record]] | None = None

    def forget_bucket(self, name: str) -> None:
        """Drop a cached bucket record (after changing it)."""
        if self._bucket_cache is not None:
            self._bucket_cache.pop(name, None)

    async def _bucket_record(self, name: str) -> Record | None:
        if self._bucket_cache is None:
            self._bucket_cache = {}
        cached = self._bucket_cache.get(name)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        raw = await self.app.store.read(lambda txn: txn.get(BUCKETS, name.encode()))
        if raw is None:
            self._bucket_cache.pop(name, None)
            return None
        record = load(raw)
        if len(self._bucket_cache) > 10000:
            self._bucket_cache.clear()
        self._bucket_cache[name] = (time.monotonic() + BUCKET_CACHE_SECONDS, record)
        return record

    @property
    def blobs(self) -> BlobStore:
        """Object bytes, under ``data_dir/blobs/s3`` (opened on first use): a directory
        of S3's own, so the orphan sweep can never touch another service's blobs."""
        if self._blobs is None:
            self._blobs = BlobStore(
                self.app.settings.data_dir / "blobs" / "s3", durability=self.app.settings.durability
            )
        return self._blobs

    async def chunk_signing(self, ctx: RequestContext) -> ChunkSigning | None:
        """How to check the chunk signatures of a signed streaming upload (None for
        any other body). The gateway has verified the seed signature already."""
        headers = ctx.http.headers if ctx.http is not None else {}
        if not headers.get("x-amz-content-sha256", "").startswith("STREAMING-AWS4-HMAC-SHA256-PAYLOAD"):
            return None
        auth = headers.get("authorization", "")
        fields = dict(part.strip().split("=", 1) for part in auth.partition(" ")[2].split(",") if "=" in part)
        credential = fields.get("Credential", "").split("/")
        if len(credential) != 5 or "Signature" not in fields:
            return None
        access_key, date, region, service, _ = credential
        secret = dict(self.app.settings.credentials).get(access_key)
        if secret is None:
            raw = await self.app.store.read(lambda txn: txn.get(STS_CREDENTIALS_TABLE, access_key.encode()))
            secret = orjson.loads(raw)["SecretAccessKey"] if raw is not None else None
        if secret is None:
            return None
        scope = f"{date}/{region}/{service}/aws4_request"
        return ChunkSigning(signing_key(str(secret), date, region, service), headers.get("x-amz-date", ""), scope, fields["Signature"])

    async def discard(self, ids: list[str]) -> None:
        """Delete object data (blob files or inline rows) nothing references any more."""
        if ids:
            await discard(self.blobs, self.app.store, ids)

    async def bucket(self, ctx: RequestContext, name: str, action: str = "", key: str = "") -> Record:
        """The bucket record, after checking the caller may run ``action`` on it;
        adds CORS headers when the request comes from a matching browser origin."""
        record = await self._bucket_record(name)
        if record is None:
            raise no_such_bucket(name)
        add_cors_headers(ctx, record)
        expected = ctx.http.headers.get("x-amz-expected-bucket-owner") if ctx.http is not None else None
        if expected is not None and expected != ctx.account_id:
            raise access_denied()  # every bucket here belongs to the one account
        if action:  # callers passing no action authorize once they know the object
            self.authorize(ctx, record, action, key)
        return record

    def authorize(self, ctx: RequestContext, bucket: Record, action: str, key: str = "", object_acl: str | None = None) -> None:
        """Signed callers own everything (one account), and so do other services
        calling in-process (no HTTP request); anonymous callers need a bucket policy
        allowing ``action`` or a public-read ACL."""
        if ctx.access_key is not None or ctx.http is None or self.app.settings.no_auth:
            return
        if ctx.http is not None and b"Signature=" in ctx.http.query_string:
            ctx.access_key = verify_v2_query(ctx.http, dict(self.app.settings.credentials))
            return
        if not anonymous_allowed(bucket, action, key, object_acl):
            raise access_denied()

    async def update_bucket(self, ctx: RequestContext, name: str, change: Any, action: str = "") -> Record:
        """Apply ``change(record)`` to a bucket's record in one write."""
        await self.bucket(ctx, name, action)

        def write(txn: Txn) -> Record:
            raw = txn.get(BUCKETS, name.encode())
            if raw is None:
                raise no_such_bucket(name)
            record = load(raw)
            change(record)
            txn.put(BUCKETS, name.encode(), dump(record))
            return record

        try:
            result: Record = await self.app.store.write(write)
        finally:
            self.forget_bucket(name)
        return result


#: query parameters SigV2 signs as part of the resource
_V2_SUBRESOURCES = frozenset((
    "acl", "cors", "delete", "lifecycle", "location", "logging", "notification", "partNumber", "policy",
    "requestPayment", "tagging", "torrent", "uploadId", "uploads", "versionId", "versioning", "versions",
    "website", "response-content-type", "response-content-language", "response-expires",
    "response-cache-control", "response-content-disposition", "response-content-encoding",
))  # fmt: skip


def verify_v2_query(request: HttpRequest, credentials: dict[str, str]) -> str:
    """Check a SigV2 presigned URL (``AWSAccessKeyId``/``Expires``/``Signature``, what
    boto3 makes for S3 unless told ``s3v4``); returns the access key."""
    query = dict(parse_qsl(request.query_string.decode("latin-1"), keep_blank_values=True))
    access_key, expires, signature = query.get("AWSAccessKeyId"), query.get("Expires", ""), query.get("Signature", "")
    secret = credentials.get(access_key or "")
    if secret is None:
        raise AwsError("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.", 403)
    if not expires.isdigit() or int(expires) < time.time():
        raise AwsError("AccessDenied", "Request has expired", 403)
    signed = sorted((k, v) for k, v in query.items() if k in _V2_SUBRESOURCES)
    resource = quote(request.path, safe="/~")
    if signed:
        resource += "?" + "&".join(f"{k}={v}" if v else k for k, v in signed)
    amz = "".join(f"{k}:{v.strip()}\n" for k, v in sorted(request.headers.items()) if k.startswith("x-amz-"))
    headers = request.headers
    text = f"{request.method}\n{headers.get('content-md5', '')}\n{headers.get('content-type', '')}\n{expires}\n{amz}{resource}"
    expected = base64.b64encode(hmac.new(secret.encode(), text.encode(), hashlib.sha1).digest()).decode()
    if not hmac.compare_digest(expected, signature):
        raise AwsError("SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. "
                       "Check your key and signing method.", 403, fields={"StringToSign": text})  # fmt: skip
    return str(access_key)


def anonymous_allowed(bucket: Record, action: str, key: str, object_acl: str | None = None) -> bool:
    """Does the bucket let anyone run ``action`` (``s3:GetObject``) on ``key``?"""
    pab = bucket.get("pab") or {}
    policy = bucket.get("policy")
    if policy and not pab.get("RestrictPublicBuckets"):
        verdict = _policy_verdict(policy, bucket["name"], action, key)
        if verdict is not None:
            return verdict
    if pab.get("IgnorePublicAcls"):
        return False
    if action in ("s3:GetObject", "s3:GetObjectVersion") and object_acl in _PUBLIC_READ_ACLS:
        return True
    bucket_acl = bucket.get("acl")
    if action == "s3:ListBucket" and bucket_acl in _PUBLIC_READ_ACLS:
        return True
    return action == "s3:PutObject" and bucket_acl == "public-read-write"


def _policy_verdict(policy: str, bucket: str, action: str, key: str) -> bool | None:
    try:
        doc = orjson.loads(policy)
    except orjson.JSONDecodeError:
        return None
    statements = doc.get("Statement") or []
    if isinstance(statements, dict):
        statements = [statements]
    resource = f"arn:aws:s3:::{bucket}/{key}" if key else f"arn:aws:s3:::{bucket}"
    allowed: bool | None = None
    for st in statements:
        if not isinstance(st, dict) or not _public_principal(st.get("Principal")):
            continue
        if not _matches(st.get("Action"), action) or not _matches(st.get("Resource"), resource):
            continue
        if st.get("Effect") == "Deny":
            return False
        if st.get("Effect") == "Allow":
            allowed = True
    return allowed


def _public_principal(principal: Any) -> bool:
    if principal == "*":
        return True
    if isinstance(principal, dict):
        aws = principal.get("AWS")
        return aws == "*" or (isinstance(aws, list) and "*" in aws)
    return False


def _matches(patterns: Any, value: str) -> bool:
    if isinstance(patterns, str):
        patterns = [patterns]
    if not isinstance(patterns, list):
        return False
    return any(isinstance(p, str) and fnmatch.fnmatchcase(value, p) for p in patterns)


# -- CORS -------------------------------------------------------------------------


def cors_rule_for(bucket: Record, origin: str, method: str, request_headers: list[str]) -> dict[str, Any] | None:
    """The first CORS rule allowing ``origin`` to send ``method`` with these headers."""
    for rule in bucket.get("cors") or []:
        if not any(fnmatch.fnmatchcase(origin, o) for o in rule.get("AllowedOrigins", [])):
            continue
        if method not in rule.get("AllowedMethods", []):
            continue
        allowed = [h.lower() for h in rule.get("AllowedHeaders", [])]
        if all(any(fnmatch.fnmatchcase(h.lower(), a) for a in allowed) for h in request_headers if h):
            return dict(rule)
    return None


def cors_headers(rule: dict[str, Any], origin: str, request_headers: list[str] | None = None) -> dict[str, str]:
    """The Access-Control-* headers S3 answers a matching rule with."""
    wildcard = rule.get("AllowedOrigins") == ["*"]
    headers = {
        "Access-Control-Allow-Origin": "*" if wildcard else origin,
        "Access-Control-Allow-Methods": ", ".join(rule.get("AllowedMethods", [])),
        "Vary": "Origin, Access-Control-Request-Headers, Access-Control-Request-Method",
    }
    if not wildcard:
        headers["Access-Control-Allow-Credentials"] = "true"
    if request_headers:
        headers["Access-Control-Allow-Headers"] = ", ".join(request_headers)
    if rule.get("ExposeHeaders"):
        headers["Access-Control-Expose-Headers"] = ", ".join(rule["ExposeHeaders"])
    if rule.get("MaxAgeSeconds") is not None:
        headers["Access-Control-Max-Age"] = str(rule["MaxAgeSeconds"])
    return headers


def add_cors_headers(ctx: RequestContext, bucket: Record) -> None:
    """On a browser request (``Origin`` header) matching the bucket's CORS rules."""
    if ctx.http is None or not bucket.get("cors"):
        return
    origin = ctx.http.headers.get("origin")
    if not origin:
        return
    rule = cors_rule_for(bucket, origin, ctx.http.method, [])
    if rule is not None:
        ctx.response_headers.update(cors_headers(rule, origin))
