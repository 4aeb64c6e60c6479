"""SigV4 verification against signatures botocore makes."""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qsl, urlsplit

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth, SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from nubes.aws import sigv4

CREDS = Credentials("AKIDEXAMPLE", "secret")


def _verify(request: AWSRequest, secret: str = "secret", s3: bool = False, now: dt.datetime | None = None) -> None:
    prepared = request.prepare()
    url = urlsplit(prepared.url)
    headers = {k.lower(): v for k, v in prepared.headers.items()}
    headers.setdefault("host", url.netloc)  # the HTTP client adds it when sending
    query: dict[str, list[str]] = {}
    for k, v in parse_qsl(url.query, keep_blank_values=True):
        query.setdefault(k, []).append(v)
    sig = sigv4.from_header(headers["authorization"], headers) if "authorization" in headers else sigv4.from_query(query)
    assert sig is not None
    body = prepared.body or b""
    payload = headers.get("x-amz-content-sha256") or __import__("hashlib").sha256(body if isinstance(body, bytes) else body.encode()).hexdigest()
    if sig.presigned and s3:
        payload = "UNSIGNED-PAYLOAD"
    sigv4.verify(sig, secret, method=prepared.method, raw_path=url.path, raw_query=url.query,
                 headers=headers, payload_hash=payload, s3=s3, now=now)  # fmt: skip


@pytest.mark.parametrize("path", ["/", "/a/b", "/with%20space/%C3%A9", "/2015-03-31/functions/my-fn/invocations"])
def test_header_signature_verifies(path: str) -> None:
    request = AWSRequest("POST", f"http://127.0.0.1:4566{path}?b=2&a=1&e=%C3%A9", data=b'{"x": 1}', headers={"Content-Type": "application/json"})
    SigV4Auth(CREDS, "lambda", "us-east-1").add_auth(request)
    _verify(request)


def test_wrong_secret_is_a_mismatch() -> None:
    request = AWSRequest("POST", "http://127.0.0.1:4566/", data=b"{}")
    SigV4Auth(CREDS, "ssm", "us-east-1").add_auth(request)
    with pytest.raises(sigv4.SignatureProblem) as problem:
        _verify(request, secret="other")
    assert problem.value.kind == "mismatch"


def test_tampered_body_is_a_mismatch() -> None:
    request = AWSRequest("POST", "http://127.0.0.1:4566/", data=b'{"a": 1}')
    SigV4Auth(CREDS, "ssm", "us-east-1").add_auth(request)
    request.data = b'{"a": 2}'
    with pytest.raises(sigv4.SignatureProblem):
        _verify(request)


def test_s3_header_signature_with_unescaped_key() -> None:
    request = AWSRequest("PUT", "http://127.0.0.1:4566/bucket/dir/k%C3%A9y%20x.txt", data=b"data")
    S3SigV4Auth(CREDS, "s3", "us-east-1").add_auth(request)
    _verify(request, s3=True)


def test_presigned_url_and_expiry() -> None:
    request = AWSRequest("GET", "http://127.0.0.1:4566/bucket/key.txt")
    S3SigV4QueryAuth(CREDS, "s3", "us-east-1", expires=60).add_auth(request)
    _verify(request, s3=True)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=120)
    with pytest.raises(sigv4.SignatureProblem) as problem:
        _verify(request, s3=True, now=later)
    assert problem.value.kind == "expired"


def test_presigned_non_s3() -> None:
    request = AWSRequest("GET", "http://127.0.0.1:4566/?Action=GetCallerIdentity&Version=2011-06-15")
    SigV4QueryAuth(CREDS, "sts", "us-east-1", expires=60).add_auth(request)
    _verify(request)


def test_clock_skew() -> None:
    request = AWSRequest("POST", "http://127.0.0.1:4566/", data=b"{}")
    SigV4Auth(CREDS, "ssm", "us-east-1").add_auth(request)
    with pytest.raises(sigv4.SignatureProblem) as problem:
        _verify(request, now=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=16))
    assert problem.value.kind == "skew"


def test_scope_for_routing() -> None:
    auth = "AWS4-HMAC-SHA256 Credential=test/20240101/eu-west-1/dynamodb/aws4_request, SignedHeaders=host, Signature=x"
    assert sigv4.scope_of(auth, "") == ("dynamodb", "eu-west-1")
    assert sigv4.scope_of(None, "X-Amz-Credential=test%2F20240101%2Fus-east-2%2Fs3%2Faws4_request&x=1") == ("s3", "us-east-2")
    assert sigv4.scope_of(None, "") is None


def test_malformed_header() -> None:
    with pytest.raises(sigv4.SignatureProblem) as problem:
        sigv4.from_header("AWS4-HMAC-SHA256 Credential=onlykey, SignedHeaders=host, Signature=x", {})
    assert problem.value.kind == "malformed"
