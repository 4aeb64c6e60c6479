"""S3 records, store layout, names and errors.

Store layout (keys are raw bytes; ``\\x00`` separates parts because neither bucket
names nor object keys may contain NUL, so bytewise order is S3's UTF-8 key order):

* ``s3.buckets``   ``bucket`` → bucket record (config, versioning state, ...)
* ``s3.objects``   ``bucket \\0 key`` → the *current* version of a key (may be a
  delete marker); one record per key, so unversioned buckets cost one write per put
* ``s3.versions``  ``bucket \\0 key \\0 version_id`` → non-current versions
* ``s3.uploads``   ``bucket \\0 key \\0 upload_id`` → multipart uploads in progress
* ``s3.parts``     ``upload_id \\0 part-number (5 digits)`` → uploaded parts
* ``s3.inline``    ``i<time><random>`` → the bytes of a small object or part
* queue ``s3/notifications`` → event notifications waiting for delivery

Object bytes live in the BlobStore; a record names its blobs (one for a plain
upload, one per part for a completed multipart upload) and is written only after
the blobs are committed, so a crash never leaves a half-visible object.
"""

from __future__ import annotations

import ipaddress
import random
import re
import time
from typing import Any

import orjson

from nubes.aws.errors import AwsError

BUCKETS = "s3.buckets"
OBJECTS = "s3.objects"
VERSIONS = "s3.versions"
UPLOADS = "s3.uploads"
PARTS = "s3.parts"
#: small objects and parts: bytes kept in the store, not in a file
INLINE = "s3.inline"
NOTIFY_QUEUE = "s3/notifications"
#: bodies up to this size are stored inline (no file, no fsync, atomic delete)
INLINE_MAX = 64 * 1024

MAX_KEY_BYTES = 1024
MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PART_NUMBER = 10000
OWNER = {"ID": "75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a", "DisplayName": "nubes"}

Record = dict[str, Any]
_RANDOM = random.Random()  # seeded from os.urandom once


# -- keys -----------------------------------------------------------------------


def object_key(bucket: str, key: str) -> bytes:
    """Store key of a key's current version."""
    return bucket.encode() + b"\x00" + key.encode()


def version_key(bucket: str, key: str, version_id: str) -> bytes:
    """Store key of a non-current version."""
    return object_key(bucket, key) + b"\x00" + version_id.encode()


def upload_key(bucket: str, key: str, upload_id: str) -> bytes:
    """Store key of a multipart upload."""
    return object_key(bucket, key) + b"\x00" + upload_id.encode()


def part_key(upload_id: str, number: int) -> bytes:
    """Store key of one uploaded part (zero-padded, so parts scan in order)."""
    return f"{upload_id}\x00{number:05d}".encode()


def dump(record: Record) -> bytes:
    """Encode a record for the store."""
    return orjson.dumps(record)


def load(raw: bytes) -> Record:
    """Decode a stored record."""
    value: Record = orjson.loads(raw)
    return value


def now() -> float:
    """Unix seconds, rounded to milliseconds as S3 reports times."""
    return round(time.time(), 3)


# -- names ------------------------------------------------------------------------

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


def check_bucket_name(name: str) -> None:
    """S3's general purpose bucket naming rules; InvalidBucketName otherwise."""
    ok = bool(_BUCKET.match(name)) and ".." not in name and ".-" not in name and "-." not in name
    if ok:
        with_prefix = name.startswith(("xn--", "sthree-", "amzn-s3-demo-"))
        with_suffix = name.endswith(("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"))
        ok = not (with_prefix or with_suffix or _is_ip(name))
    if not ok:
        raise AwsError(
            "InvalidBucketName", "The specified bucket is not valid.", 400, fields={"BucketName": name}
        )


def _is_ip(name: str) -> bool:
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return False
    return True


def check_key(key: str) -> None:
    """Object keys: 1..1024 UTF-8 bytes, no NUL (which nubes uses as a separator)."""
    encoded = key.encode("utf-8", "surrogatepass")
    if len(encoded) > MAX_KEY_BYTES:
        raise AwsError("KeyTooLongError", "Your key is too long", 400, fields={"Size": len(encoded), "MaxSizeAllowed": MAX_KEY_BYTES})
    if not key:
        raise AwsError("InvalidArgument", "Key must not be empty", 400)
    if "\x00" in key:
        raise AwsError("InvalidArgument", "Object key contains an invalid character (NUL)", 400, fields={"ArgumentName": "key"})


# -- errors -----------------------------------------------------------------------


def no_such_bucket(name: str) -> AwsError:
    return AwsError("NoSuchBucket", "The specified bucket does not exist", 404, fields={"BucketName": name})


def no_such_key(key: str, headers: dict[str, str] | None = None) -> AwsError:
    return AwsError("NoSuchKey", "The specified key does not exist.", 404, fields={"Key": key}, headers=headers)


def no_such_version(key: str, version_id: str) -> AwsError:
    return AwsError(
        "NoSuchVersion",
        "The specified version does not exist.",
        404,
        fields={"Key": key, "VersionId": version_id},
    )


def no_such_upload(upload_id: str) -> AwsError:
    return AwsError(
        "NoSuchUpload",
        "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.",
        404,
        fields={"UploadId": upload_id},
    )


def invalid_argument(message: str, name: str | None = None, value: str | None = None) -> AwsError:
    fields = {}
    if name is not None:
        fields["ArgumentName"] = name
        fields["ArgumentValue"] = value or ""
    return AwsError("InvalidArgument", message, 400, fields=fields)


def malformed_xml() -> AwsError:
    return AwsError(
        "MalformedXML",
        "The XML you provided was not well-formed or did not validate against our published schema",
        400,
    )


def config_missing(code: str, message: str, bucket: str) -> AwsError:
    """The 404 a Get*Configuration returns when nothing is configured."""
    return AwsError(code, message, 404, fields={"BucketName": bucket})


def new_inline_id() -> str:
    """Id of inline bytes: ``i`` + creation time (ns, hex) + randomness; never a blob id.
    Unique, not secret: a seeded PRNG, since os.urandom costs tens of µs here."""
    return f"i{time.time_ns():016x}{_RANDOM.getrandbits(64):016x}"


def inline_created(inline_id: str) -> float:
    """Unix seconds an inline id was made."""
    return int(inline_id[1:17], 16) / 1e9


def new_version_id() -> str:
    """A version id shaped like S3's (32 URL-safe characters), ordered by time."""
    import base64

    stamp = time.time_ns().to_bytes(8, "big")
    return base64.urlsafe_b64encode(stamp + _RANDOM.getrandbits(128).to_bytes(16, "big")).decode().rstrip("=")[:32].replace("-", ".")


def http_date(ts: float) -> str:
    """RFC 7231 date (Last-Modified headers)."""
    from email.utils import formatdate

    return formatdate(ts, usegmt=True)


def iso_time(ts: float) -> str:
    """``2024-05-06T07:08:09.123Z`` as event records carry it."""
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts))
    return f"{whole}.{round((ts % 1) * 1000) % 1000:03d}Z"
