"""S3 pieces in-process: aws-chunked framing, checksums, ranges, conditions, names,
POST policies, multipart ETags, listings and versioning on a real SQLite store."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import zlib
from pathlib import Path
from typing import Any

import orjson
import pytest

from nubes.aws.errors import AwsError
from nubes.services.s3.base import anonymous_allowed, cors_rule_for
from nubes.services.s3.body import AwsChunkedDecoder, checksum_of, receive_upload
from nubes.services.s3.listing import collect
from nubes.services.s3.models import INLINE_MAX, check_bucket_name, check_key, dump, object_key
from nubes.services.s3.multipart import multipart_etag
from nubes.services.s3.reads import check_read_conditions, parse_range
from nubes.services.s3.versions import delete_current, find_version, make_current, remove_version
from nubes.services.s3.web import check_policy
from nubes.settings import Settings
from nubes.storage import open_store_sync
from nubes.storage.base import Store
from nubes.storage.blobs import BlobStore


def test_chunked_decoder_any_split() -> None:
    payload = b"hello world, " * 1000
    framed = b"2000;chunk-signature=abc\r\n" + payload[:0x2000] + b"\r\n"
    framed += f"{len(payload) - 0x2000:x};chunk-signature=def\r\n".encode() + payload[0x2000:] + b"\r\n"
    framed += b"0;chunk-signature=0\r\nx-amz-checksum-crc32:AAAA\r\n\r\n"
    for step in (1, 7, 4096, len(framed)):
        decoder = AwsChunkedDecoder()
        out = b"".join(b"".join(decoder.feed(framed[i : i + step])) for i in range(0, len(framed), step))
        decoder.finish()
        assert out == payload
        assert decoder.trailers == {"x-amz-checksum-crc32": "AAAA"}


@pytest.mark.parametrize("bad", [b"zz\r\nab\r\n0\r\n\r\n", b"5\r\nabcdeXX0\r\n\r\n", b"5\r\nabc"])
def test_chunked_decoder_rejects_bad_framing(bad: bytes) -> None:
    decoder = AwsChunkedDecoder()
    with pytest.raises(AwsError) as err:
        decoder.feed(bad)
        decoder.finish()
    assert err.value.code == "IncompleteBody"


def test_checksums() -> None:
    assert checksum_of("CRC32", b"abc") == base64.b64encode(zlib.crc32(b"abc").to_bytes(4, "big")).decode()
    assert checksum_of("SHA256", b"abc") == base64.b64encode(hashlib.sha256(b"abc").digest()).decode()
    assert checksum_of("CRC32C", b"123456789") == base64.b64encode(0xE3069283.to_bytes(4, "big")).decode()
    # CRC-64/NVME check value of "123456789"
    assert checksum_of("CRC64NVME", b"123456789") == base64.b64encode(0xAE8B14860A799888.to_bytes(8, "big")).decode()
    with pytest.raises(AwsError):
        checksum_of("MD4", b"")


@pytest.mark.parametrize(
    ("header", "size", "want"),
    [("bytes=0-9", 100, (0, 10)), ("bytes=90-", 100, (90, 100)), ("bytes=-10", 100, (90, 100)), ("bytes=95-200", 100, (95, 100)),
     ("bytes=-200", 100, (0, 100)), ("bytes=9-3", 100, None), ("items=0-1", 100, None), ("bytes=0-1,3-4", 100, None), (None, 100, None)],
)  # fmt: skip
def test_parse_range(header: str | None, size: int, want: tuple[int, int] | None) -> None:
    assert parse_range(header, size) == want


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=150-160", "bytes=-0"])
def test_unsatisfiable_range(header: str) -> None:
    with pytest.raises(AwsError) as err:
        parse_range(header, 100)
    assert err.value.status == 416


def test_read_conditions() -> None:
    record = {"etag": '"abc"', "mtime": 1_700_000_000.5}
    at = dt.datetime.fromtimestamp(1_700_000_000, dt.UTC)
    assert check_read_conditions(record, {"IfNoneMatch": '"abc"'}) is True
    assert check_read_conditions(record, {"IfModifiedSince": at}) is True
    assert check_read_conditions(record, {"IfModifiedSince": at - dt.timedelta(seconds=1)}) is False
    # If-None-Match wins over If-Modified-Since
    assert check_read_conditions(record, {"IfNoneMatch": '"x"', "IfModifiedSince": at}) is False
    with pytest.raises(AwsError) as err:
        check_read_conditions(record, {"IfMatch": '"x"'})
    assert err.value.status == 412
    # If-Match true overrides If-Unmodified-Since false
    assert check_read_conditions(record, {"IfMatch": "abc", "IfUnmodifiedSince": at - dt.timedelta(days=1)}) is False
    with pytest.raises(AwsError):
        check_read_conditions(record, {"CopySourceIfNoneMatch": '"abc"'}, "CopySource")


@pytest.mark.parametrize("name", ["abc", "my-bucket.example", "a" * 63, "1-2-3"])
def test_good_bucket_names(name: str) -> None:
    check_bucket_name(name)


@pytest.mark.parametrize("name", ["ab", "a" * 64, "ABC", "a_b", ".abc", "abc-", "a..b", "10.0.0.1", "xn--abc", "abc-s3alias", "a.-b"])
def test_bad_bucket_names(name: str) -> None:
    with pytest.raises(AwsError) as err:
        check_bucket_name(name)
    assert err.value.code == "InvalidBucketName"


def test_keys() -> None:
    check_key("../../etc/passwd")  # a name, never a path: allowed as on S3
    check_key("é" * 512)
    with pytest.raises(AwsError):
        check_key("é" * 513)
    with pytest.raises(AwsError):
        check_key("a\x00b")


def _policy(conditions: list[Any], expires: str = "2999-01-01T00:00:00Z") -> dict[str, str]:
    return {"policy": base64.b64encode(orjson.dumps({"expiration": expires, "conditions": conditions})).decode()}


def test_post_policy() -> None:
    now = dt.datetime.now(dt.UTC)
    fields = {**_policy([{"bucket": "b"}, ["starts-with", "$key", "up/"], ["content-length-range", 0, 10]]), "key": "up/x"}
    check_policy(fields, "b", 5, now)
    with pytest.raises(AwsError, match="Policy Condition failed"):
        check_policy({**fields, "key": "down/x"}, "b", 5, now)
    with pytest.raises(AwsError) as err:
        check_policy(fields, "b", 11, now)
    assert err.value.code == "EntityTooLarge"
    with pytest.raises(AwsError, match="Extra input fields"):
        check_policy({**fields, "acl": "public-read"}, "b", 5, now)
    with pytest.raises(AwsError, match="Policy expired"):
        check_policy({**_policy([], "2000-01-01T00:00:00Z"), "key": "k"}, "b", 1, now)
    with pytest.raises(AwsError) as err:
        check_policy({"policy": "!!!", "key": "k"}, "b", 1, now)
    assert err.value.code == "InvalidPolicyDocument"


def test_multipart_etag() -> None:
    parts = [hashlib.md5(b"a").hexdigest(), hashlib.md5(b"b").hexdigest()]
    digest = hashlib.md5(hashlib.md5(b"a").digest() + hashlib.md5(b"b").digest()).hexdigest()
    assert multipart_etag(parts) == f'"{digest}-2"'


def test_anonymous_policy_and_cors_rules() -> None:
    policy = orjson.dumps({"Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::b/public/*"},
        {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "arn:aws:s3:::b/public/secret*"},
    ]}).decode()  # fmt: skip
    bucket = {"name": "b", "policy": policy}
    assert anonymous_allowed(bucket, "s3:GetObject", "public/a")
    assert not anonymous_allowed(bucket, "s3:GetObject", "public/secret.txt")
    assert not anonymous_allowed(bucket, "s3:PutObject", "public/a")
    assert not anonymous_allowed({**bucket, "pab": {"RestrictPublicBuckets": True}}, "s3:GetObject", "public/a")
    assert anonymous_allowed({"name": "b"}, "s3:GetObject", "k", "public-read")
    rules = {"cors": [{"AllowedOrigins": ["https://*.example"], "AllowedMethods": ["GET"], "AllowedHeaders": ["x-*"]}]}
    assert cors_rule_for(rules, "https://app.example", "GET", ["x-amz-date"]) is not None
    assert cors_rule_for(rules, "https://app.example", "GET", ["authorization"]) is None
    assert cors_rule_for(rules, "https://app.other", "GET", []) is None


# -- store-backed: uploads, versions, listings -----------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Any:
    store = open_store_sync(Settings(data_dir=tmp_path))
    yield store
    asyncio.run(store.close())


def _save(store: Store, bucket: dict[str, Any]) -> None:
    store.write_sync(lambda txn: txn.put("s3.buckets", bucket["name"].encode(), dump(bucket)))


def _put(store: Store, bucket: dict[str, Any], key: str, data: bytes = b"x") -> dict[str, Any]:
    _save(store, bucket)
    record = {"k": key, "v": "null", "seq": len(key), "mtime": 1.0, "etag": '"e"', "size": len(data), "blobs": []}
    store.write_sync(lambda txn: make_current(txn, bucket, record, []))
    return record


def test_listing_with_delimiter_and_markers(store: Store) -> None:
    bucket = {"name": "b"}
    store.write_sync(lambda txn: txn.put("s3.buckets", b"b", dump(bucket)))
    for key in ["a", "d/1", "d/2", "d/e/3", "f", "z/9"]:
        _put(store, bucket, key)
    _put(store, {"name": "b2"}, "a")  # another bucket's keys never leak in
    listing = store.read_sync(lambda txn: collect(txn, "b", "", "/", "", 1000))
    assert [r["k"] for r in listing.entries] == ["a", "f"] and listing.prefixes == ["d/", "z/"]
    page = store.read_sync(lambda txn: collect(txn, "b", "", "/", "", 2))
    assert [r["k"] for r in page.entries] == ["a"] and page.prefixes == ["d/"] and page.truncated and page.last == "d/"
    rest = store.read_sync(lambda txn: collect(txn, "b", "", "/", "d/", 10))
    assert [r["k"] for r in rest.entries] == ["f"] and rest.prefixes == ["z/"] and not rest.truncated
    inner = store.read_sync(lambda txn: collect(txn, "b", "d/", "/", "", 10))
    assert [r["k"] for r in inner.entries] == ["d/1", "d/2"] and inner.prefixes == ["d/e/"]


def test_writes_follow_the_stored_bucket(store: Store) -> None:
    """A stale copy of the bucket (another node's cache) cannot pick the wrong
    versioning state, nor write into a bucket deleted meanwhile."""
    stale: dict[str, Any] = {"name": "s", "versioning": None}
    _save(store, {"name": "s", "versioning": "Enabled"})
    record = {"k": "k", "v": "null", "seq": 1, "mtime": 1.0, "etag": '"e"', "size": 1, "blobs": []}
    store.write_sync(lambda txn: make_current(txn, stale, record, []))
    assert record["v"] != "null"
    with pytest.raises(AwsError) as err:
        store.write_sync(lambda txn: make_current(txn, {"name": "gone"}, dict(record), []))
    assert err.value.code == "NoSuchBucket"


def test_versioning_transitions(store: Store) -> None:
    bucket: dict[str, Any] = {"name": "v", "versioning": None}
    first = _put(store, bucket, "k")
    bucket["versioning"] = "Enabled"
    _save(store, bucket)
    second = {**first, "v": "v2" * 8, "seq": 10, "blobs": [["blob-2", 1]]}
    dropped = store.write_sync(lambda txn: make_current(txn, bucket, second, []))
    assert dropped == []  # the null version is kept as a non-current version
    marker = {"k": "k", "v": "m" * 16, "dm": True, "seq": 20, "mtime": 2.0, "etag": ""}
    out, dropped = store.write_sync(lambda txn: delete_current(txn, bucket, "k", marker, []))
    assert out == {"DeleteMarker": True, "VersionId": "m" * 16} and dropped == []
    assert store.read_sync(lambda txn: find_version(txn, "v", "k", None))["dm"] is True
    old, dropped = store.write_sync(lambda txn: remove_version(txn, bucket, "k", "m" * 16, []))
    assert old is not None and old["dm"] and dropped == []
    assert store.read_sync(lambda txn: find_version(txn, "v", "k", None))["v"] == "v2" * 8
    _, dropped = store.write_sync(lambda txn: remove_version(txn, bucket, "k", "v2" * 8, []))
    assert dropped == ["blob-2"]
    assert store.read_sync(lambda txn: find_version(txn, "v", "k", None))["v"] == "null"
    assert store.read_sync(lambda txn: txn.get("s3.objects", object_key("v", "k"))) is not None


def test_small_uploads_are_inline_large_ones_are_blobs(store: Store, tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")

    async def run() -> None:
        small = await receive_upload(blobs, b"tiny", {}, {}, store)
        assert small.blob.id.startswith("i") and small.etag == f'"{hashlib.md5(b"tiny").hexdigest()}"'
        assert list(blobs.ids()) == []
        big = await receive_upload(blobs, b"x" * (INLINE_MAX + 1), {}, {"ChecksumAlgorithm": "CRC32"}, store)
        assert list(blobs.ids()) == [big.blob.id]
        assert big.checksums["CRC32"] == checksum_of("CRC32", b"x" * (INLINE_MAX + 1))
        with pytest.raises(AwsError):
            await receive_upload(blobs, b"y" * (INLINE_MAX + 1), {}, {"ChecksumCRC32": "AAAAAA=="}, store)
        assert list(blobs.ids()) == [big.blob.id]  # the rejected upload left nothing

    asyncio.run(run())


def test_listing_pages_beyond_one_store_page(store: Store) -> None:
    bucket = {"name": "many"}
    _save(store, bucket)

    def fill(txn: Any) -> None:
        for i in range(2500):
            key = f"d{i % 3}/k{i:05d}"
            record = {"k": key, "v": "null", "seq": i, "mtime": 1.0, "etag": '"e"', "size": 1, "blobs": []}
            txn.put("s3.objects", object_key("many", key), dump(record))

    store.write_sync(fill)
    seen: list[str] = []
    marker = ""
    while True:
        page = store.read_sync(lambda txn, m=marker: collect(txn, "many", "", "", m, 1000))
        seen += [r["k"] for r in page.entries]
        if not page.truncated:
            break
        assert page.last is not None
        marker = page.last
    assert len(seen) == 2500 and seen == sorted(seen)
    grouped = store.read_sync(lambda txn: collect(txn, "many", "", "/", "", 1000))
    assert grouped.prefixes == ["d0/", "d1/", "d2/"] and not grouped.entries
