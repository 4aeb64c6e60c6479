"""S3 listings (v1, v2, versions) and object versioning through boto3."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from nubes.testing.server import NubesServer

KEYS = ["a.txt", "dir/1.txt", "dir/2.txt", "dir/sub/3.txt", "other/x", "other/y", "z"]


def _name(prefix: str = "bkt") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def s3(nubes: NubesServer) -> Any:
    return nubes.client("s3")


@pytest.fixture
def filled(s3: Any) -> str:
    name = _name()
    s3.create_bucket(Bucket=name)
    for key in KEYS:
        s3.put_object(Bucket=name, Key=key, Body=key.encode())
    return name


def test_list_v2_prefix_delimiter(s3: Any, filled: str) -> None:
    out = s3.list_objects_v2(Bucket=filled, Delimiter="/")
    assert [o["Key"] for o in out["Contents"]] == ["a.txt", "z"]
    assert [p["Prefix"] for p in out["CommonPrefixes"]] == ["dir/", "other/"]
    assert out["KeyCount"] == 4
    out = s3.list_objects_v2(Bucket=filled, Prefix="dir/", Delimiter="/")
    assert [o["Key"] for o in out["Contents"]] == ["dir/1.txt", "dir/2.txt"]
    assert [p["Prefix"] for p in out["CommonPrefixes"]] == ["dir/sub/"]
    out = s3.list_objects_v2(Bucket=filled, Prefix="nothing")
    assert "Contents" not in out and out["KeyCount"] == 0
    first = s3.list_objects_v2(Bucket=filled)["Contents"][0]
    assert first["Size"] == len(b"a.txt") and first["StorageClass"] == "STANDARD" and first["ETag"].startswith('"')


def test_list_v2_pagination(s3: Any, filled: str) -> None:
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        kwargs: dict[str, Any] = {"Bucket": filled, "MaxKeys": 2}
        if token:
            kwargs["ContinuationToken"] = token
        out = s3.list_objects_v2(**kwargs)
        pages += 1
        seen += [o["Key"] for o in out.get("Contents", [])]
        if not out["IsTruncated"]:
            break
        token = out["NextContinuationToken"]
    assert seen == KEYS and pages == 4
    out = s3.list_objects_v2(Bucket=filled, StartAfter="dir/2.txt")
    assert [o["Key"] for o in out["Contents"]] == KEYS[3:]
    paginator = s3.get_paginator("list_objects_v2")
    prefixes = [p["Prefix"] for page in paginator.paginate(Bucket=filled, Delimiter="/", PaginationConfig={"PageSize": 1}) for p in page.get("CommonPrefixes", [])]
    assert prefixes == ["dir/", "other/"]


def test_list_v1_markers(s3: Any, filled: str) -> None:
    out = s3.list_objects(Bucket=filled, MaxKeys=3)
    assert [o["Key"] for o in out["Contents"]] == KEYS[:3]
    assert out["IsTruncated"] is True
    out = s3.list_objects(Bucket=filled, Marker="dir/2.txt")
    assert [o["Key"] for o in out["Contents"]] == KEYS[3:]
    assert out["Contents"][0]["Owner"]["ID"]
    out = s3.list_objects(Bucket=filled, Delimiter="/", MaxKeys=2)
    assert out["NextMarker"] == "dir/"
    out = s3.list_objects(Bucket=filled, Delimiter="/", Marker="dir/")
    assert [p["Prefix"] for p in out["CommonPrefixes"]] == ["other/"]
    assert [o["Key"] for o in out["Contents"]] == ["z"]


def test_encoding_type_url(s3: Any) -> None:
    name = _name()
    s3.create_bucket(Bucket=name)
    key = "sp ace/plus+é\x01.txt"
    s3.put_object(Bucket=name, Key=key, Body=b"x")
    # botocore asks for encoding-type=url and decodes what comes back
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=name)["Contents"]] == [key]
    assert [o["Key"] for o in s3.list_objects(Bucket=name)["Contents"]] == [key]
    assert s3.list_objects_v2(Bucket=name, Delimiter="/")["CommonPrefixes"] == [{"Prefix": "sp ace/"}]
    with pytest.raises(ClientError):
        s3.list_objects_v2(Bucket=name, EncodingType="base64")


def test_versions(s3: Any) -> None:
    name = _name()
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="k", Body=b"before")  # the null version
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket=name, Key="k", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=name, Key="k", Body=b"two")["VersionId"]
    assert v1 != v2 and "null" not in (v1, v2)
    assert s3.get_object(Bucket=name, Key="k")["Body"].read() == b"two"
    assert s3.get_object(Bucket=name, Key="k", VersionId=v1)["Body"].read() == b"one"
    assert s3.get_object(Bucket=name, Key="k", VersionId="null")["Body"].read() == b"before"
    deleted = s3.delete_object(Bucket=name, Key="k")
    assert deleted["DeleteMarker"] is True
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=name, Key="k")
    assert err.value.response["Error"]["Code"] == "NoSuchKey"
    assert err.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-delete-marker"] == "true"
    listed = s3.list_object_versions(Bucket=name)
    assert [(v["VersionId"], v["IsLatest"]) for v in listed["Versions"]] == [(v2, False), (v1, False), ("null", False)]
    assert [(m["VersionId"], m["IsLatest"]) for m in listed["DeleteMarkers"]] == [(deleted["VersionId"], True)]
    assert "Contents" not in s3.list_objects_v2(Bucket=name)
    # removing the marker brings v2 back
    s3.delete_object(Bucket=name, Key="k", VersionId=deleted["VersionId"])
    assert s3.get_object(Bucket=name, Key="k")["Body"].read() == b"two"
    s3.delete_object(Bucket=name, Key="k", VersionId=v2)
    assert s3.get_object(Bucket=name, Key="k")["Body"].read() == b"one"
    page = s3.list_object_versions(Bucket=name, MaxKeys=1)
    assert page["IsTruncated"] and page["NextVersionIdMarker"] == v1
    rest = s3.list_object_versions(Bucket=name, KeyMarker="k", VersionIdMarker=v1)
    assert [v["VersionId"] for v in rest["Versions"]] == ["null"]
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=name, Key="k", VersionId=v2)
    assert err.value.response["Error"]["Code"] == "NoSuchVersion"


def test_suspended_versioning_replaces_null(s3: Any) -> None:
    name = _name()
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    kept = s3.put_object(Bucket=name, Key="k", Body=b"kept")["VersionId"]
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Suspended"})
    assert s3.put_object(Bucket=name, Key="k", Body=b"n1").get("VersionId") == "null"
    s3.put_object(Bucket=name, Key="k", Body=b"n2")
    versions = s3.list_object_versions(Bucket=name)["Versions"]
    assert [(v["VersionId"], v["IsLatest"]) for v in versions] == [("null", True), (kept, False)]
    assert s3.get_object(Bucket=name, Key="k")["Body"].read() == b"n2"
