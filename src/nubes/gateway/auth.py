"""Signature checking in the gateway: find the secret, verify, map failures to
the error each protocol's services return."""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING

import orjson

from nubes.aws import sigv4
from nubes.aws.errors import AwsError
from nubes.aws.protocol.types import WireRequest
from nubes.storage.base import Store, Txn

if TYPE_CHECKING:
    from nubes.app import App

#: how long a credential read from the store is trusted before it is read again
CACHE_SECONDS = 30.0
#: bus topic whose message (an access key id) makes every node's gateway forget it
REVOKED_TOPIC = "auth:revoked"
#: the store table STS writes temporary credentials to (key: access key id)
STS_CREDENTIALS_TABLE = "sts.credentials"

_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
)


def _error(kind: str, protocol: str, detail: str = "") -> AwsError:
    """The error a service speaking ``protocol`` returns for a failed signature."""
    if kind == "unknown-key":
        if protocol == "rest-xml":
            return AwsError("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.", 403)
        if protocol == "query":
            return AwsError("InvalidClientTokenId", "The security token included in the request is invalid.", 403)
        status = 400 if protocol in ("json", "smithy-rpc-v2-cbor") else 403
        return AwsError("UnrecognizedClientException", "The security token included in the request is invalid.", status)
    if kind == "expired-token":
        return AwsError("ExpiredToken" if protocol in ("query", "rest-xml") else "ExpiredTokenException",
                        "The security token included in the request is expired", 403 if protocol != "json" else 400)  # fmt: skip
    if kind == "missing":
        if protocol in ("json", "smithy-rpc-v2-cbor"):
            return AwsError("MissingAuthenticationTokenException", "Missing Authentication Token", 400)
        return AwsError("MissingAuthenticationToken", "Request is missing Authentication Token", 403)
    if kind == "expired":
        return AwsError("AccessDenied", "Request has expired", 403)
    if kind == "skew":
        if protocol == "rest-xml":
            return AwsError("RequestTimeTooSkewed", "The difference between the request time and the current time is too large.", 403)
        code = "InvalidSignatureException" if protocol in ("json", "rest-json", "smithy-rpc-v2-cbor") else "SignatureDoesNotMatch"
        return AwsError(code, f"Signature expired: {detail} is now earlier or later than the allowed 15 minutes.", 403 if protocol != "json" else 400)  # fmt: skip
    if kind == "malformed":
        code = "IncompleteSignatureException" if protocol != "rest-xml" else "AuthorizationHeaderMalformed"
        return AwsError(code, detail or "Authorization header is malformed", 400)
    if protocol in ("json", "rest-json", "smithy-rpc-v2-cbor"):
        return AwsError("InvalidSignatureException", _MISMATCH, 400 if protocol == "json" else 403)
    return AwsError("SignatureDoesNotMatch", _MISMATCH, 403)


class Authenticator:
    """Resolves access keys (settings, then STS temporary credentials) and verifies."""

    def __init__(self, credentials: dict[str, str], store_getter: object) -> None:
        self._static = dict(credentials)
        self._store_getter = store_getter
        self._temporary: dict[str, tuple[str, str | None, float]] = {}
        #: when each cached temporary credential was loaded (re-read after CACHE_SECONDS,
        #: so a key deleted on another node stops working there too)
        self._loaded: dict[str, float] = {}

    @classmethod
    def for_app(cls, app: App) -> Authenticator:
        """An authenticator for ``app``'s credentials and store that forgets a key as
        soon as any node revokes it (the ``auth:revoked`` bus topic)."""
        auth = cls(dict(app.settings.credentials), lambda: app.store)
        app.bus.subscribe(REVOKED_TOPIC, lambda key: auth.forget(str(key)))
        return auth

    def forget(self, access_key: str) -> None:
        """Drop a cached credential (its key was deleted or revoked)."""
        self._temporary.pop(access_key, None)
        self._loaded.pop(access_key, None)

    async def secret(self, access_key: str, token: str | None, protocol: str = "json") -> str:
        """The current secret of ``access_key`` (configured, then STS temporary
        credentials with their session ``token``); the ``protocol``'s AwsError when
        the key is unknown, the token wrong or the credentials expired."""
        secret = self._static.get(access_key)
        if secret is not None:
            return secret
        cached = self._temporary.get(access_key)
        if cached is not None and time.monotonic() - self._loaded.get(access_key, 0.0) > CACHE_SECONDS:
            cached = None
        if cached is None:
            store: Store = self._store_getter()  # type: ignore[operator]

            def load(txn: Txn) -> bytes | None:
                return txn.get(STS_CREDENTIALS_TABLE, access_key.encode())

            raw = await store.read(load)
            if raw is None:
                raise _error("unknown-key", protocol)
            doc = orjson.loads(raw)
            cached = (str(doc["SecretAccessKey"]), doc.get("SessionToken"), float(doc["Expiration"]))
            self._temporary[access_key] = cached
            self._loaded[access_key] = time.monotonic()
        secret, session_token, expiration = cached
        if session_token is not None and token != session_token:
            raise _error("unknown-key", protocol)
        if expiration < time.time():
            raise _error("expired-token", protocol)
        return secret

    async def verify(
        self, request: WireRequest, raw_path: str, raw_query: str, protocol: str, *, s3: bool
    ) -> str | None:
        """Verify the request's signature; returns the access key id (None if unsigned)."""
        try:
            auth = request.headers.get("authorization")
            sig = sigv4.from_header(auth, request.headers) if auth else sigv4.from_query(request.query)
        except sigv4.SignatureProblem as problem:
            raise _error("malformed", protocol, problem.detail) from None
        if sig is None:
            return None
        # configured keys need no store read: skip the coroutine for them
        secret = self._static.get(sig.access_key)
        if secret is None:
            secret = await self.secret(sig.access_key, sig.session_token, protocol)
        if s3:
            payload_hash = request.headers.get("x-amz-content-sha256") or "UNSIGNED-PAYLOAD"
            if sig.presigned:
                payload_hash = "UNSIGNED-PAYLOAD"
        else:
            payload_hash = request.headers.get("x-amz-content-sha256") or (
                hashlib.sha256(request.body).hexdigest() if request.body else sigv4.EMPTY_SHA256
            )
        try:
            sigv4.verify(
                sig, secret, method=request.method, raw_path=raw_path, raw_query=raw_query,
                headers=request.headers, payload_hash=payload_hash, s3=s3,
            )  # fmt: skip
        except sigv4.SignatureProblem as problem:
            raise _error(problem.kind, protocol, problem.detail) from None
        return sig.access_key

    def missing(self, protocol: str) -> AwsError:
        return _error("missing", protocol)
