"""The blob writer S3 streams object bytes through: the pipeline that writes and
hashes large uploads in parallel threads, its clean-up on errors and cancellation,
and its fsync policy under each durability mode."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nubes.aws.errors import AwsError
from nubes.services.s3.body import receive_upload
from nubes.storage import blobs as blobs_module
from nubes.storage.blobs import BlobInfo, BlobStore, BlobWriterSync

MB = 1024 * 1024


def _pieces(data: bytes) -> list[Any]:
    """``data`` in uneven pieces of every type a body iterator may yield."""
    out: list[Any] = []
    at, n = 0, 0
    while at < len(data):
        size = (1, 7, 65_536, 300_001, 1_500_000)[n % 5]
        piece = data[at : at + size]
        out.append((bytes, bytearray, memoryview)[n % 3](piece))
        at, n = at + size, n + 1
    return out


def _write(blobs: BlobStore, pieces: list[Any], *, sha256: bool = True) -> BlobInfo:
    async def run() -> BlobInfo:
        async with blobs.writer(sha256=sha256) as writer:
            for piece in pieces:
                await writer.write(piece)
            assert not blobs.path(writer.id).exists()  # invisible until committed
        assert writer.info is not None
        return writer.info

    return asyncio.run(run())


def _temp_files(root: Path) -> list[Path]:
    return list(root.glob("*/.tmp-*"))


@pytest.mark.parametrize("durability", ["normal", "full"])
def test_large_blob_through_the_pipeline(tmp_path: Path, durability: str) -> None:
    data = os.urandom(5 * MB + 12_345)
    blobs = BlobStore(tmp_path, durability=durability)
    info = _write(blobs, _pieces(data))
    assert info.size == len(data)
    assert info.md5 == hashlib.md5(data).hexdigest()
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert blobs.read_sync(info.id) == data
    assert _temp_files(tmp_path) == []


def test_sha256_is_skipped_when_not_wanted(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path, durability="normal")
    for data in (b"small", os.urandom(3 * MB)):  # the one-hop path and the pipeline
        info = _write(blobs, _pieces(data), sha256=False)
        assert info.sha256 is None and info.md5 == hashlib.md5(data).hexdigest()
        assert blobs.read_sync(info.id) == data


def test_a_caller_reusing_its_buffer_does_not_change_the_blob(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path, durability="normal")
    buffer = bytearray(b"a" * (2 * MB))

    async def run() -> BlobInfo:
        async with blobs.writer() as writer:
            await writer.write(buffer)
            buffer[:] = b"b" * len(buffer)  # reused for the next read, as a socket would
            await writer.write(buffer)
        assert writer.info is not None
        return writer.info

    info = asyncio.run(run())
    assert blobs.read_sync(info.id) == b"a" * (2 * MB) + b"b" * (2 * MB)


class _Syncs:
    """Counts fsync and fdatasync calls (the durability policy under test)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.fsync = 0
        self.fdatasync = 0
        real_fsync, real_fdatasync = os.fsync, os.fdatasync

        def fsync(fd: int) -> None:
            self.fsync += 1
            real_fsync(fd)

        def fdatasync(fd: int) -> None:
            self.fdatasync += 1
            real_fdatasync(fd)

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "fdatasync", fdatasync)


def test_full_durability_fsyncs_file_and_directory_before_commit_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    syncs = _Syncs(monkeypatch)
    monkeypatch.setattr(blobs_module, "_SYNC_EVERY", 2 * MB)
    blobs = BlobStore(tmp_path, durability="full")
    _write(blobs, [b"x" * 100])
    assert syncs.fsync == 2  # the file, then the directory holding its new name
    _write(blobs, _pieces(os.urandom(6 * MB)))
    assert syncs.fsync == 4
    assert syncs.fdatasync >= 1  # dirty data flushed while the upload streamed in
    with blobs.writer_sync() as writer:
        writer.write(b"sync")
    assert syncs.fsync == 6


def test_normal_durability_never_fsyncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``normal`` promises to survive a killed process: once commit returns the bytes
    are in the kernel (the file is flushed and closed), and no fsync is paid for."""
    syncs = _Syncs(monkeypatch)
    blobs = BlobStore(tmp_path, durability="normal")
    small = _write(blobs, [b"x" * 100])
    large = _write(blobs, _pieces(os.urandom(6 * MB)))
    with blobs.writer_sync() as writer:
        writer.write(b"sync")
    assert (syncs.fsync, syncs.fdatasync) == (0, 0)
    # what another process (the restarted server) reads: the committed bytes
    assert blobs.path(small.id).read_bytes() == b"x" * 100
    assert blobs.path(large.id).stat().st_size == large.size


def test_blob_store_refuses_an_unknown_durability(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="durability"):
        BlobStore(tmp_path, durability="sometimes")


def _failing_after(calls: int) -> Callable[[BlobWriterSync, Any], None]:
    real = BlobWriterSync.write_pieces
    seen = [0]

    def write_pieces(self: BlobWriterSync, pieces: Any) -> None:
        seen[0] += 1
        if seen[0] > calls:
            raise OSError(28, "No space left on device")
        real(self, pieces)

    return write_pieces


def test_a_failed_write_in_the_pipeline_fails_the_upload_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(BlobWriterSync, "write_pieces", _failing_after(3))
    blobs = BlobStore(tmp_path, durability="normal")
    with pytest.raises(OSError, match="No space left"):
        _write(blobs, [os.urandom(MB)] * 24)
    assert _temp_files(tmp_path) == [] and list(blobs.ids()) == []


def test_a_cancelled_upload_leaves_nothing(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path, durability="full")
    started = asyncio.Event()

    async def upload() -> None:
        async with blobs.writer() as writer:
            for _ in range(10_000):
                await writer.write(b"z" * MB)
                started.set()
                await asyncio.sleep(0)

    async def run() -> None:
        task = asyncio.create_task(upload())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    assert _temp_files(tmp_path) == [] and list(blobs.ids()) == []


def test_signed_payload_hash_of_a_large_upload_is_checked(tmp_path: Path) -> None:
    """The SHA-256 is computed only when the request signs its payload hash, and then
    a mismatch still refuses the upload and leaves no blob behind."""
    data = os.urandom(3 * MB)
    blobs = BlobStore(tmp_path, durability="normal")

    async def run() -> None:
        good = {"x-amz-content-sha256": hashlib.sha256(data).hexdigest()}
        upload = await receive_upload(blobs, data, good, {})
        assert upload.blob.sha256 == good["x-amz-content-sha256"]
        unsigned = await receive_upload(
            blobs, data, {"x-amz-content-sha256": "UNSIGNED-PAYLOAD"}, {}
        )
        assert unsigned.blob.sha256 is None and unsigned.blob.md5 == upload.blob.md5
        bad = {"x-amz-content-sha256": hashlib.sha256(b"other").hexdigest()}
        with pytest.raises(AwsError) as err:
            await receive_upload(blobs, data, bad, {})
        assert err.value.code == "XAmzContentSHA256Mismatch"
        assert sorted(blobs.ids()) == sorted([upload.blob.id, unsigned.blob.id])

    asyncio.run(run())


def test_partial_writes_are_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``writev`` may write less than asked (a signal, a full pipe of dirty pages):
    the rest is written, from the right offset, before the chunk counts as written."""
    real = os.writev

    def short_writev(fd: int, buffers: Any) -> int:
        first = bytes(buffers[0])
        return real(fd, [first[: max(1, len(first) // 3)]])

    monkeypatch.setattr(os, "writev", short_writev)
    data = os.urandom(5 * MB + 7)
    blobs = BlobStore(tmp_path, durability="normal")
    info = _write(blobs, _pieces(data))
    assert blobs.read_sync(info.id) == data and info.size == len(data)
