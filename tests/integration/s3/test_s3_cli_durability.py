"""The aws CLI against S3 (``aws s3 cp/ls/sync/rm``, ``aws s3api``), lifecycle
expiration, and crash safety: a killed upload leaves no visible object and no
blob behind; committed objects survive ``kill -9``."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from nubes.testing.server import NubesServer


def _name(prefix: str = "bkt") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _aws(nubes: NubesServer, *args: str, cwd: Path | None = None) -> str:
    env = {**os.environ, **nubes.env_vars()}
    out = subprocess.run(
        [sys.executable, "-m", "awscli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=cwd,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_aws_cli(nubes: NubesServer, tmp_path: Path) -> None:
    bucket = _name()
    _aws(nubes, "s3", "mb", f"s3://{bucket}")
    src = tmp_path / "src"
    (src / "nested").mkdir(parents=True)
    (src / "a.txt").write_text("alpha")
    (src / "nested" / "b.txt").write_text("beta")
    big = os.urandom(9 * 1024 * 1024)  # above the CLI's 8 MB multipart threshold
    (src / "big.bin").write_bytes(big)
    _aws(nubes, "s3", "sync", str(src), f"s3://{bucket}/data")
    listing = _aws(nubes, "s3", "ls", f"s3://{bucket}/data/", "--recursive")
    assert all(k in listing for k in ("data/a.txt", "data/nested/b.txt", "data/big.bin"))
    top = _aws(nubes, "s3", "ls", f"s3://{bucket}/data/")
    assert "PRE nested/" in top
    _aws(nubes, "s3", "cp", f"s3://{bucket}/data/big.bin", str(tmp_path / "big.out"))
    assert (tmp_path / "big.out").read_bytes() == big
    # a second sync copies nothing; a changed file is copied again
    assert _aws(nubes, "s3", "sync", str(src), f"s3://{bucket}/data").strip() == ""
    (src / "a.txt").write_text("alpha two")
    assert "a.txt" in _aws(nubes, "s3", "sync", str(src), f"s3://{bucket}/data")
    head = json.loads(
        _aws(nubes, "s3api", "head-object", "--bucket", bucket, "--key", "data/big.bin")
    )
    assert head["ContentLength"] == len(big) and head["ETag"].endswith('-2"')
    objects = json.loads(
        _aws(nubes, "s3api", "list-objects-v2", "--bucket", bucket, "--prefix", "data/nested/")
    )
    assert [o["Key"] for o in objects["Contents"]] == ["data/nested/b.txt"]
    _aws(nubes, "s3", "rm", f"s3://{bucket}", "--recursive")
    _aws(nubes, "s3", "rb", f"s3://{bucket}")
    assert bucket not in _aws(nubes, "s3", "ls")


def test_lifecycle_expiration(nubes: NubesServer) -> None:
    s3 = nubes.client("s3")
    bucket = _name()
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="tmp/old", Body=b"x")
    s3.put_object(Bucket=bucket, Key="keep/me", Body=b"x")
    past = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
        {"ID": "tmp", "Status": "Enabled", "Filter": {"Prefix": "tmp/"}, "Expiration": {"Date": past}},
        {"ID": "off", "Status": "Disabled", "Filter": {"Prefix": "keep/"}, "Expiration": {"Date": past}},
    ]})  # fmt: skip
    request = urllib.request.Request(
        nubes.endpoint + "/_nubes/s3/lifecycle", method="POST", data=b""
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert json.loads(resp.read())["expired"] >= 1
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["keep/me"]


def _blob_files(data_dir: Path) -> list[Path]:
    return [p for p in (data_dir / "blobs" / "s3").glob("*/*") if p.is_file()]


def test_killed_upload_leaves_nothing(tmp_path: Path) -> None:
    server = NubesServer(tmp_path / "data").start()
    try:
        s3: Any = server.client("s3")
        bucket = _name()
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="committed", Body=b"durable")
        blobs_before = _blob_files(server.data_dir)
        # start a 64 MB upload, send 8 MB of it, then kill the server mid-stream
        sock = socket.create_connection(("127.0.0.1", server.port))
        head = (f"PUT /{bucket}/partial HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Length: {64 << 20}\r\n"
                "x-amz-content-sha256: UNSIGNED-PAYLOAD\r\n\r\n")  # fmt: skip
        sock.sendall(head.encode())
        for _ in range(8):
            sock.sendall(b"\0" * (1 << 20))
        time.sleep(0.5)
        server.kill()
        sock.close()
        # a committed blob no record names (as a crash between blob and metadata leaves)
        orphan = server.data_dir / "blobs" / "s3" / "ab" / ("ab" + "0" * 30)
        orphan.parent.mkdir(parents=True, exist_ok=True)
        orphan.write_bytes(b"orphan")
        os.utime(orphan, (time.time() - 3600, time.time() - 3600))
        server.start()
        s3 = server.client("s3")
        assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["committed"]
        assert s3.get_object(Bucket=bucket, Key="committed")["Body"].read() == b"durable"
        assert not list((server.data_dir / "blobs" / "s3").glob("*/.tmp-*"))
        deadline = time.monotonic() + 10
        while orphan.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not orphan.exists()
        assert sorted(_blob_files(server.data_dir)) == sorted(blobs_before)
    finally:
        server.close()


PG_URL = os.environ.get("NUBES_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.mark.postgres
def test_on_postgresql(tmp_path: Path) -> None:
    """The same metadata layout on the scale-out backend: objects, versions, multipart."""
    server = NubesServer(tmp_path / "pg", extra_args=["--store", PG_URL]).start()
    try:
        s3: Any = server.client("s3")
        bucket = _name("pg")
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"small")["VersionId"]
        big = os.urandom(200_000)
        s3.put_object(Bucket=bucket, Key="k", Body=big)
        assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == big
        assert s3.get_object(Bucket=bucket, Key="k", VersionId=v1)["Body"].read() == b"small"
        uid = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
        etag = s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=1, Body=b"part")["ETag"]
        s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=uid, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
        assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["k", "mp"]
        versions = s3.list_object_versions(Bucket=bucket)["Versions"]
        assert len(versions) == 3
        # leave the shared database as we found it
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in versions]})
        s3.delete_bucket(Bucket=bucket)
    finally:
        server.close()


@pytest.mark.parametrize("durability", ["normal", "full"])
def test_acknowledged_objects_survive_kill_in_each_durability_mode(
    tmp_path: Path, durability: str
) -> None:
    """``normal`` skips fsync (the bytes are in the kernel when PutObject answers, which a
    killed process needs); ``full`` fsyncs. Either way an acknowledged object, small
    (inline) or large (streamed through the blob pipeline), reads back whole after
    ``kill -9``, and overwriting a small object leaves no stale inline bytes behind."""
    server = NubesServer(tmp_path / "data", extra_args=["--durability", durability]).start()
    try:
        s3: Any = server.client("s3")
        bucket = _name()
        s3.create_bucket(Bucket=bucket)
        large = os.urandom(5 * 1024 * 1024 + 3)
        for n in range(4):
            s3.put_object(Bucket=bucket, Key="small", Body=f"version {n}".encode())
        put = s3.put_object(Bucket=bucket, Key="large", Body=large)
        assert put["ETag"] == f'"{hashlib.md5(large).hexdigest()}"'
        server.kill()
        server.start()
        s3 = server.client("s3")
        assert s3.get_object(Bucket=bucket, Key="small")["Body"].read() == b"version 3"
        got = s3.get_object(Bucket=bucket, Key="large")
        assert got["Body"].read() == large and got["ETag"] == put["ETag"]
        db = sqlite3.connect(f"file:{server.data_dir / 'nubes.db'}?mode=ro", uri=True)
        try:
            inline = db.execute("SELECT COUNT(*) FROM kv WHERE tbl = 's3.inline'").fetchone()[0]
        finally:
            db.close()
        assert inline == 1  # only the current version of "small"
    finally:
        server.close()
