"""S3 objects through boto3 against a real server: put/get/head/delete, ranges,
conditional requests, metadata, checksums, copy, batch delete, tagging, bad input."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import crc32c
import pytest
from botocore.exceptions import ClientError

from nubes.testing.server import NubesServer


def _name(prefix: str = "bkt") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def s3(nubes: NubesServer) -> Any:
    return nubes.client("s3")


@pytest.fixture
def bucket(s3: Any) -> Iterator[str]:
    name = _name()
    s3.create_bucket(Bucket=name)
    yield name


def _code(err: pytest.ExceptionInfo[ClientError]) -> str:
    return str(err.value.response["Error"]["Code"])


def test_put_get_head_delete_with_metadata(s3: Any, bucket: str) -> None:
    body = b"hello nubes" * 100
    put = s3.put_object(
        Bucket=bucket, Key="docs/a.txt", Body=body, ContentType="text/plain", Metadata={"Owner": "ann"},
        CacheControl="max-age=60", ContentDisposition="inline", ContentLanguage="en",
    )  # fmt: skip
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    got = s3.get_object(Bucket=bucket, Key="docs/a.txt")
    assert got["Body"].read() == body
    assert got["ContentType"] == "text/plain"
    assert got["Metadata"] == {"owner": "ann"}
    assert got["CacheControl"] == "max-age=60"
    assert got["ContentDisposition"] == "inline"
    assert got["ContentLanguage"] == "en"
    assert got["ContentLength"] == len(body)
    assert got["ETag"] == put["ETag"]
    head = s3.head_object(Bucket=bucket, Key="docs/a.txt")
    assert head["ContentLength"] == len(body)
    assert head["Metadata"] == {"owner": "ann"}
    s3.delete_object(Bucket=bucket, Key="docs/a.txt")
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="docs/a.txt")
    assert _code(err) == "NoSuchKey"
    with pytest.raises(ClientError) as err:
        s3.head_object(Bucket=bucket, Key="docs/a.txt")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_overwrite_replaces_and_empty_object(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"one")
    s3.put_object(Bucket=bucket, Key="k", Body=b"")
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["Body"].read() == b""
    assert got["ContentLength"] == 0
    assert got["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"'
    assert got["ContentType"] == "binary/octet-stream"


def test_unicode_and_odd_keys(s3: Any, bucket: str) -> None:
    keys = ["ünïcødé/ファイル.txt", "with space+plus&amp.txt", "a/../b/./c", "trailing/", "%41%2F"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    for key in keys:
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode()
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert sorted(listed, key=lambda k: k.encode()) == listed
    assert set(listed) == set(keys)


def test_ranges(s3: Any, bucket: str) -> None:
    body = bytes(range(256)) * 4
    s3.put_object(Bucket=bucket, Key="r", Body=body)
    cases = {"bytes=0-9": body[:10], "bytes=1000-": body[1000:], "bytes=-5": body[-5:], "bytes=10-99999": body[10:]}
    for header, want in cases.items():
        got = s3.get_object(Bucket=bucket, Key="r", Range=header)
        assert got["Body"].read() == want
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        start = len(body) - len(want)
        assert got["ContentRange"] == f"bytes {start}-{len(body) - 1}/{len(body)}" or header == "bytes=0-9"
    assert s3.get_object(Bucket=bucket, Key="r", Range="bytes=0-9")["ContentRange"] == "bytes 0-9/1024"
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="r", Range="bytes=5000-")
    assert _code(err) == "InvalidRange"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416
    # a malformed range is ignored: the whole object, 200
    got = s3.get_object(Bucket=bucket, Key="r", Range="bytes=abc")
    assert got["Body"].read() == body
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_conditional_requests(s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="c", Body=b"data")["ETag"]
    modified = s3.head_object(Bucket=bucket, Key="c")["LastModified"]
    assert s3.get_object(Bucket=bucket, Key="c", IfMatch=etag)["Body"].read() == b"data"
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="c", IfMatch='"nope"')
    assert _code(err) == "PreconditionFailed"
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="c", IfNoneMatch=etag)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    with pytest.raises(ClientError) as err:
        s3.head_object(Bucket=bucket, Key="c", IfModifiedSince=modified)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="c", IfUnmodifiedSince=modified.replace(year=2000))
    assert _code(err) == "PreconditionFailed"
    # conditional writes
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="c", Body=b"x", IfNoneMatch="*")
    assert _code(err) == "PreconditionFailed"
    s3.put_object(Bucket=bucket, Key="c", Body=b"y", IfMatch=etag)
    assert s3.get_object(Bucket=bucket, Key="c")["Body"].read() == b"y"


def test_checksums_sent_by_the_sdk(s3: Any, bucket: str) -> None:
    body = b"checksum me" * 1000
    expected = {
        "CRC32": base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode(),
        "CRC32C": base64.b64encode(crc32c.crc32c(body).to_bytes(4, "big")).decode(),
        "SHA1": base64.b64encode(hashlib.sha1(body).digest()).decode(),
        "SHA256": base64.b64encode(hashlib.sha256(body).digest()).decode(),
    }
    for alg, value in expected.items():
        # botocore computes CRC32C only with awscrt, so that one is sent precomputed
        extra = {"ChecksumCRC32C": value} if alg == "CRC32C" else {"ChecksumAlgorithm": alg}
        put = s3.put_object(Bucket=bucket, Key=f"cs-{alg}", Body=body, **extra)
        assert put[f"Checksum{alg}"] == value
        got = s3.get_object(Bucket=bucket, Key=f"cs-{alg}", ChecksumMode="ENABLED")
        assert got[f"Checksum{alg}"] == value
        assert got["Body"].read() == body
    # the default (no algorithm named): current botocore still sends CRC32
    s3.put_object(Bucket=bucket, Key="cs-default", Body=body)
    head = s3.head_object(Bucket=bucket, Key="cs-default", ChecksumMode="ENABLED")
    assert head.get("ChecksumCRC32") == expected["CRC32"]


def test_wrong_checksums_are_rejected(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="bad", Body=b"abc", ContentMD5=base64.b64encode(hashlib.md5(b"xyz").digest()).decode())
    assert _code(err) == "BadDigest"
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="bad", Body=b"abc", ContentMD5="not-base64!")
    assert _code(err) == "InvalidDigest"
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="bad", Body=b"abc", ChecksumSHA256=base64.b64encode(b"0" * 32).decode())
    assert _code(err) == "BadDigest"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="bad")
    good = base64.b64encode(hashlib.md5(b"abc").digest()).decode()
    s3.put_object(Bucket=bucket, Key="good", Body=b"abc", ContentMD5=good)


def test_bad_keys(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="k" * 1025, Body=b"x")
    assert _code(err) == "KeyTooLongError"
    s3.put_object(Bucket=bucket, Key="k" * 1024, Body=b"x")
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="nul\x00key", Body=b"x")
    assert _code(err) == "InvalidArgument"


def test_copy_object(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"copy me", Metadata={"a": "1"}, ContentType="text/x", Tagging="t=1")
    other = _name()
    s3.create_bucket(Bucket=other)
    out = s3.copy_object(Bucket=other, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    assert out["CopyObjectResult"]["ETag"] == f'"{hashlib.md5(b"copy me").hexdigest()}"'
    got = s3.get_object(Bucket=other, Key="dst")
    assert got["Body"].read() == b"copy me"
    assert got["Metadata"] == {"a": "1"}
    assert got["ContentType"] == "text/x"
    assert s3.get_object_tagging(Bucket=other, Key="dst")["TagSet"] == [{"Key": "t", "Value": "1"}]
    s3.copy_object(Bucket=bucket, Key="src", CopySource=f"{bucket}/src", MetadataDirective="REPLACE", Metadata={"b": "2"})
    assert s3.head_object(Bucket=bucket, Key="src")["Metadata"] == {"b": "2"}
    with pytest.raises(ClientError) as err:
        s3.copy_object(Bucket=bucket, Key="src", CopySource=f"{bucket}/src")
    assert _code(err) == "InvalidRequest"
    with pytest.raises(ClientError) as err:
        s3.copy_object(Bucket=bucket, Key="x", CopySource=f"{bucket}/missing")
    assert _code(err) == "NoSuchKey"
    with pytest.raises(ClientError) as err:
        s3.copy_object(Bucket=bucket, Key="x", CopySource=f"{bucket}/src", CopySourceIfMatch='"other"')
    assert _code(err) == "PreconditionFailed"


def test_delete_objects(s3: Any, bucket: str) -> None:
    for i in range(5):
        s3.put_object(Bucket=bucket, Key=f"d/{i}", Body=b"x")
    out = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": f"d/{i}"} for i in range(3)] + [{"Key": "never"}]})
    assert sorted(d["Key"] for d in out["Deleted"]) == ["d/0", "d/1", "d/2", "never"]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["d/3", "d/4"]
    quiet = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "d/3"}], "Quiet": True})
    assert "Deleted" not in quiet


def test_object_tagging_and_acl(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="t", Body=b"x", Tagging="a=1&b=two")
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == [{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "two"}]
    assert s3.get_object(Bucket=bucket, Key="t")["TagCount"] == 2
    s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={"TagSet": [{"Key": "c", "Value": "3"}]})
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == [{"Key": "c", "Value": "3"}]
    s3.delete_object_tagging(Bucket=bucket, Key="t")
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == []
    acl = s3.get_object_acl(Bucket=bucket, Key="t")
    assert acl["Grants"][0]["Permission"] == "FULL_CONTROL"
    with pytest.raises(ClientError) as err:
        s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={"TagSet": [{"Key": "a", "Value": "1"}, {"Key": "a", "Value": "2"}]})
    assert _code(err) == "InvalidTag"


def test_retention_and_legal_hold_stored(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="locked", Body=b"x")
    with pytest.raises(ClientError) as err:
        s3.get_object_retention(Bucket=bucket, Key="locked")
    assert _code(err) == "NoSuchObjectLockConfiguration"
    until = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    s3.put_object_retention(Bucket=bucket, Key="locked", Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until})
    got = s3.get_object_retention(Bucket=bucket, Key="locked")["Retention"]
    assert got["Mode"] == "GOVERNANCE" and got["RetainUntilDate"] == until
    s3.put_object_legal_hold(Bucket=bucket, Key="locked", LegalHold={"Status": "ON"})
    assert s3.get_object_legal_hold(Bucket=bucket, Key="locked")["LegalHold"]["Status"] == "ON"


def test_missing_bucket(s3: Any) -> None:
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=_name("missing"), Key="k", Body=b"x")
    assert _code(err) == "NoSuchBucket"
    assert err.value.response["Error"]["BucketName"].startswith("missing-")
