"""What browsers and plain HTTP clients do with S3: presigned GET/PUT URLs,
presigned POST forms, CORS, anonymous access by bucket policy, virtual-host
addressing, and aws-chunked uploads as current SDKs stream them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import time
import urllib.request
import uuid
import zlib
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
import requests
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from nubes.aws.sigv4 import signing_key
from nubes.testing.server import NubesServer


def _name(prefix: str = "bkt") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def s3(nubes: NubesServer) -> Any:
    return nubes.client("s3")


@pytest.fixture
def bucket(s3: Any) -> str:
    name = _name()
    s3.create_bucket(Bucket=name)
    return name


def _error_code(response: requests.Response) -> str:
    return response.text.split("<Code>", 1)[1].split("</Code>", 1)[0]


def test_presigned_get_and_put(s3: Any, bucket: str) -> None:
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "up.txt"}, ExpiresIn=60)
    assert requests.put(put_url, data=b"from a browser", timeout=10).status_code == 200
    get_url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "up.txt"}, ExpiresIn=60)
    got = requests.get(get_url, timeout=10)
    assert got.status_code == 200 and got.content == b"from a browser"
    ranged = requests.get(get_url, headers={"Range": "bytes=5-6"}, timeout=10)
    assert ranged.status_code == 206 and ranged.content == b"a " and ranged.headers["Content-Range"] == "bytes 5-6/14"
    tampered = get_url.replace("up.txt", "up2.txt")
    bad = requests.get(tampered, timeout=10)
    assert bad.status_code == 403 and _error_code(bad) == "SignatureDoesNotMatch"
    short = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "up.txt"}, ExpiresIn=1)
    time.sleep(2.1)
    expired = requests.get(short, timeout=10)
    assert expired.status_code == 403 and _error_code(expired) == "AccessDenied"
    assert "Request has expired" in expired.text


def test_anonymous_access_needs_a_policy(s3: Any, bucket: str, nubes: NubesServer) -> None:
    s3.put_object(Bucket=bucket, Key="pub/a.txt", Body=b"public")
    s3.put_object(Bucket=bucket, Key="private.txt", Body=b"secret")
    url = f"{nubes.endpoint}/{bucket}/pub/a.txt"
    denied = requests.get(url, timeout=10)
    assert denied.status_code == 403 and _error_code(denied) == "AccessDenied"
    s3.delete_public_access_block(Bucket=bucket)
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/pub/*"}]}
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    assert requests.get(url, timeout=10).content == b"public"
    assert requests.get(f"{nubes.endpoint}/{bucket}/private.txt", timeout=10).status_code == 403
    assert requests.put(url, data=b"overwrite", timeout=10).status_code == 403
    # virtual-host style: the bucket in the Host header
    port = urlsplit(nubes.endpoint).port
    vhost = requests.get(f"{nubes.endpoint}/pub/a.txt", headers={"Host": f"{bucket}.s3.localhost:{port}"}, timeout=10)
    assert vhost.status_code == 200 and vhost.content == b"public"


def test_virtual_host_signed(nubes: NubesServer) -> None:
    port = urlsplit(nubes.endpoint).port
    name = _name()
    s3 = nubes.client("s3")
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="k", Body=b"vh")
    # sign for the virtual host name, send to 127.0.0.1 with that Host header
    creds = Credentials("test", "test")
    req = AWSRequest(method="GET", url=f"http://{name}.s3.localhost:{port}/k")
    S3SigV4Auth(creds, "s3", "us-east-1").add_auth(req)
    headers = dict(req.headers.items())
    got = requests.get(f"{nubes.endpoint}/k", headers={**headers, "Host": f"{name}.s3.localhost:{port}"}, timeout=10)
    assert got.status_code == 200 and got.content == b"vh"


def test_presigned_post(s3: Any, bucket: str) -> None:
    post = s3.generate_presigned_post(
        bucket, "uploads/${filename}", Fields={"Content-Type": "image/png"},
        Conditions=[["starts-with", "$key", "uploads/"], {"Content-Type": "image/png"}, ["content-length-range", 1, 1000]],
        ExpiresIn=60,
    )  # fmt: skip
    sent = requests.post(post["url"], data=post["fields"], files={"file": ("pic.png", b"\x89PNG...")}, timeout=10)
    assert sent.status_code == 204, sent.text
    got = s3.get_object(Bucket=bucket, Key="uploads/pic.png")
    assert got["Body"].read() == b"\x89PNG..." and got["ContentType"] == "image/png"
    too_big = requests.post(post["url"], data=post["fields"], files={"file": ("big.png", b"x" * 2000)}, timeout=10)
    assert too_big.status_code == 400 and _error_code(too_big) == "EntityTooLarge"
    wrong_type = requests.post(post["url"], data={**post["fields"], "Content-Type": "text/html"}, files={"file": ("a.png", b"x")}, timeout=10)
    assert wrong_type.status_code == 403 and "Policy Condition failed" in wrong_type.text
    extra = requests.post(post["url"], data={**post["fields"], "x-amz-meta-extra": "1"}, files={"file": ("a.png", b"x")}, timeout=10)
    assert extra.status_code == 403 and "Extra input fields" in extra.text
    forged = requests.post(post["url"], data={**post["fields"], "signature": "AAAA"}, files={"file": ("a.png", b"x")}, timeout=10)
    assert forged.status_code == 403 and _error_code(forged) == "SignatureDoesNotMatch"


def test_presigned_post_sigv4(nubes: NubesServer, bucket: str) -> None:
    s3v4 = nubes.client("s3", config=Config(signature_version="s3v4", retries={"max_attempts": 1}))
    post = s3v4.generate_presigned_post(bucket, "v4.txt", ExpiresIn=60)
    assert "x-amz-signature" in post["fields"]
    assert requests.post(post["url"], data=post["fields"], files={"file": ("v4.txt", b"v4")}, timeout=10).status_code == 204
    assert s3v4.get_object(Bucket=bucket, Key="v4.txt")["Body"].read() == b"v4"
    forged = requests.post(post["url"], data={**post["fields"], "x-amz-signature": "0" * 64}, files={"file": ("v4.txt", b"x")}, timeout=10)
    assert forged.status_code == 403 and _error_code(forged) == "SignatureDoesNotMatch"
    url = s3v4.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "v4.txt"}, ExpiresIn=60)
    assert "X-Amz-Signature" in url and requests.get(url, timeout=10).content == b"v4"


def test_presigned_post_status_and_expiry(s3: Any, bucket: str) -> None:
    post = s3.generate_presigned_post(bucket, "k.txt", Fields={"success_action_status": "201"},
                                      Conditions=[{"success_action_status": "201"}], ExpiresIn=60)  # fmt: skip
    sent = requests.post(post["url"], data=post["fields"], files={"file": ("k.txt", b"hi")}, timeout=10)
    assert sent.status_code == 201 and "<Key>k.txt</Key>" in sent.text
    old = s3.generate_presigned_post(bucket, "late.txt", ExpiresIn=1)
    time.sleep(2.1)
    late = requests.post(old["url"], data=old["fields"], files={"file": ("late.txt", b"x")}, timeout=10)
    assert late.status_code == 403 and "Policy expired" in late.text


def test_cors(s3: Any, bucket: str, nubes: NubesServer) -> None:
    url = f"{nubes.endpoint}/{bucket}/obj"
    pre = {"Origin": "https://app.example", "Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "content-type"}
    assert requests.options(url, headers=pre, timeout=10).status_code == 403
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [{
        "AllowedOrigins": ["https://app.example"], "AllowedMethods": ["GET", "PUT"], "AllowedHeaders": ["content-type"],
        "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 600,
    }]})  # fmt: skip
    ok = requests.options(url, headers=pre, timeout=10)
    assert ok.status_code == 200
    assert ok.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "PUT" in ok.headers["Access-Control-Allow-Methods"]
    assert ok.headers["Access-Control-Max-Age"] == "600"
    assert requests.options(url, headers={**pre, "Origin": "https://evil.example"}, timeout=10).status_code == 403
    assert requests.options(url, headers={**pre, "Access-Control-Request-Method": "DELETE"}, timeout=10).status_code == 403
    assert requests.options(url, headers={**pre, "Access-Control-Request-Headers": "x-other"}, timeout=10).status_code == 403
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "obj"}, ExpiresIn=60)
    put = requests.put(put_url, data=b"x", headers={"Origin": "https://app.example"}, timeout=10)
    assert put.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert put.headers["Access-Control-Expose-Headers"] == "ETag"
    plain = requests.put(put_url, data=b"x", timeout=10)
    assert "Access-Control-Allow-Origin" not in plain.headers
    missing = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "missing"}, ExpiresIn=60)
    error = requests.get(missing, headers={"Origin": "https://app.example"}, timeout=10)
    assert error.status_code == 404 and error.headers["Access-Control-Allow-Origin"] == "https://app.example"


def _chunked(data: bytes, chunk: int, trailer: str | None) -> bytes:
    out = b""
    for i in range(0, len(data), chunk):
        piece = data[i : i + chunk]
        out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    out += b"0\r\n"
    if trailer:
        out += trailer.encode() + b"\r\n"
    return out + b"\r\n"


class _DeclaredPayload(S3SigV4Auth):
    """Signs with a given x-amz-content-sha256 (streaming modes, wrong hashes)."""

    def __init__(self, declared: str) -> None:
        super().__init__(Credentials("test", "test"), "s3", "us-east-1")
        self.declared = declared

    def payload(self, request: AWSRequest) -> str:
        return self.declared


def _signed(url: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
    req = AWSRequest(method="PUT", url=url, headers=headers, data=body)
    _DeclaredPayload(headers["X-Amz-Content-SHA256"]).add_auth(req)
    return dict(req.headers.items())


def test_aws_chunked_unsigned_trailer(s3: Any, bucket: str, nubes: NubesServer) -> None:
    data = b"streamed payload " * 5000
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    body = _chunked(data, 8192, f"x-amz-checksum-crc32:{crc}")
    url = f"{nubes.endpoint}/{bucket}/chunked"
    headers = {
        "X-Amz-Content-SHA256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "Content-Encoding": "aws-chunked",
        "x-amz-trailer": "x-amz-checksum-crc32", "x-amz-decoded-content-length": str(len(data)),
    }  # fmt: skip
    sent = requests.put(url, data=body, headers=_signed(url, headers, body), timeout=10)
    assert sent.status_code == 200, sent.text
    assert sent.headers["x-amz-checksum-crc32"] == crc
    got = s3.get_object(Bucket=bucket, Key="chunked", ChecksumMode="ENABLED")
    assert got["Body"].read() == data and got["ChecksumCRC32"] == crc
    assert "ContentEncoding" not in got
    bad = _chunked(data, 8192, "x-amz-checksum-crc32:AAAAAA==")
    refused = requests.put(url + "2", data=bad, headers=_signed(url + "2", headers, bad), timeout=10)
    assert refused.status_code == 400 and _error_code(refused) == "BadDigest"
    cut = body[:-40]
    short = requests.put(url + "3", data=cut, headers=_signed(url + "3", headers, cut), timeout=10)
    assert short.status_code == 400
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="chunked2")


def _signed_chunks(data: bytes, headers: dict[str, str], tamper: bool = False) -> bytes:
    """aws-chunked body whose chunks are signed as SigV4 streaming defines it."""
    amz_date = headers["X-Amz-Date"]
    scope = f"{amz_date[:8]}/us-east-1/s3/aws4_request"
    key = signing_key("test", amz_date[:8], "us-east-1", "s3")
    previous = headers["Authorization"].rsplit("Signature=", 1)[1]
    body = b""
    pieces = [data[i : i + 65536] for i in range(0, len(data), 65536)] + [b""]
    for n, piece in enumerate(pieces):
        text = f"AWS4-HMAC-SHA256-PAYLOAD\n{amz_date}\n{scope}\n{previous}\n{hashlib.sha256(b'').hexdigest()}\n{hashlib.sha256(piece).hexdigest()}"
        previous = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
        sent = piece[:-1] + b"!" if tamper and n == 1 else piece
        body += f"{len(piece):x};chunk-signature={previous}\r\n".encode() + sent + b"\r\n"
    return body + b"\r\n"


def test_aws_chunked_signed_chunks(s3: Any, bucket: str, nubes: NubesServer) -> None:
    data = b"0123456789" * 10000
    for key, tamper in (("signed-chunks", False), ("tampered-chunks", True)):
        url = f"{nubes.endpoint}/{bucket}/{key}"
        headers = {"X-Amz-Content-SHA256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "Content-Encoding": "aws-chunked",
                   "x-amz-decoded-content-length": str(len(data))}  # fmt: skip
        signed = _signed(url, headers, b"")
        body = _signed_chunks(data, signed, tamper)
        sent = requests.put(url, data=body, headers=signed, timeout=10)
        if tamper:
            assert sent.status_code == 403 and _error_code(sent) == "SignatureDoesNotMatch"
        else:
            assert sent.status_code == 200, sent.text
    assert s3.get_object(Bucket=bucket, Key="signed-chunks")["Body"].read() == data
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["signed-chunks"]


def test_payload_hash_mismatch(bucket: str, nubes: NubesServer) -> None:
    url = f"{nubes.endpoint}/{bucket}/hash"
    headers = {"X-Amz-Content-SHA256": "0" * 64}
    sent = requests.put(url, data=b"abc", headers=_signed(url, headers, b"abc"), timeout=10)
    assert sent.status_code == 400 and _error_code(sent) == "XAmzContentSHA256Mismatch"


def test_boto3_defaults_over_https(nubes: NubesServer) -> None:
    """Over HTTPS current botocore streams PutObject/UploadPart as aws-chunked with an
    unsigned payload and a CRC32 trailer: the bytes and checksum must come out intact."""
    with urllib.request.urlopen(nubes.endpoint + "/_nubes/health") as resp:
        health = json.loads(resp.read())
    s3 = boto3.client("s3", endpoint_url=health["tls_endpoint"], verify=health["ca_bundle"], region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")  # fmt: skip
    seen: list[str] = []
    def remember(request: Any, **_: Any) -> None:
        value = request.headers.get("X-Amz-Content-SHA256")
        seen.append(value.decode() if isinstance(value, bytes) else str(value))

    s3.meta.events.register("before-send.s3.PutObject", remember)
    bucket = _name()
    s3.create_bucket(Bucket=bucket)
    data = b"over tls " * 20000
    put = s3.put_object(Bucket=bucket, Key="tls", Body=io.BytesIO(data))
    assert seen == ["STREAMING-UNSIGNED-PAYLOAD-TRAILER"]
    got = s3.get_object(Bucket=bucket, Key="tls", ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert got["ChecksumCRC32"] == put["ChecksumCRC32"] == base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def test_static_website(s3: Any, bucket: str, nubes: NubesServer) -> None:
    s3.put_object(Bucket=bucket, Key="index.html", Body=b"<h1>home</h1>", ContentType="text/html")
    s3.put_object(Bucket=bucket, Key="docs/index.html", Body=b"docs", ContentType="text/html")
    s3.put_object(Bucket=bucket, Key="404.html", Body=b"not here", ContentType="text/html")
    s3.put_object(Bucket=bucket, Key="app.js", Body=b"console.log(1)", ContentType="application/javascript")
    port = urlsplit(nubes.endpoint).port
    host = {"Host": f"{bucket}.s3-website.localhost:{port}"}
    assert requests.get(f"{nubes.endpoint}/", headers=host, timeout=10).status_code == 404  # no website configuration yet
    s3.put_bucket_website(Bucket=bucket, WebsiteConfiguration={"IndexDocument": {"Suffix": "index.html"}, "ErrorDocument": {"Key": "404.html"}})
    assert requests.get(f"{nubes.endpoint}/", headers=host, timeout=10).status_code == 404  # not public yet
    s3.delete_public_access_block(Bucket=bucket)
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}]}
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    home = requests.get(f"{nubes.endpoint}/", headers=host, timeout=10)
    assert home.status_code == 200 and home.content == b"<h1>home</h1>" and home.headers["Content-Type"] == "text/html"
    assert requests.get(f"{nubes.endpoint}/app.js", headers=host, timeout=10).content == b"console.log(1)"
    assert requests.get(f"{nubes.endpoint}/docs/", headers=host, timeout=10).content == b"docs"
    folder = requests.get(f"{nubes.endpoint}/docs", headers=host, allow_redirects=False, timeout=10)
    assert folder.status_code == 302 and folder.headers["Location"] == "/docs/"
    missing = requests.get(f"{nubes.endpoint}/nope", headers=host, timeout=10)
    assert missing.status_code == 404 and missing.content == b"not here"
    by_path = requests.get(f"{nubes.endpoint}/_nubes/s3-website/{bucket}/app.js", timeout=10)
    assert by_path.status_code == 200 and by_path.content == b"console.log(1)"
