"""Blob store: atomic commit, hashes, byte ranges, safe ids, crash clean-up."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

from nubes.storage.blobs import BlobInfo, BlobStore


def _temp_files(root: Path) -> list[Path]:
    return list(root.glob("*/.tmp-*"))


def test_put_and_read_back_with_hashes(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    data = os.urandom(300_000)
    info = blobs.put_sync(data)
    assert info.size == len(data)
    assert info.md5 == hashlib.md5(data).hexdigest()
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert blobs.read_sync(info.id) == data
    assert blobs.size(info.id) == len(data)
    assert blobs.path(info.id).read_bytes() == data
    assert _temp_files(blobs.root) == []
    assert blobs.put_sync(data).id != info.id  # every blob gets a fresh id


def test_async_streaming_writer(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    chunks = [b"a" * 10, os.urandom(700_000), b"", b"tail"]

    async def main() -> BlobInfo:
        async with blobs.writer() as w:
            for chunk in chunks:
                await w.write(chunk)
            # not visible before commit
            assert not blobs.path(w.id).exists()
        assert w.info is not None
        return w.info

    info = asyncio.run(main())
    data = b"".join(chunks)
    assert info.size == len(data) and info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.md5 == hashlib.md5(data).hexdigest()
    assert blobs.read_sync(info.id) == data

    async def stream() -> list[bytes]:
        return [c async for c in blobs.read(info.id, 5, 600_005, chunk_size=100_000)]

    got = asyncio.run(stream())
    assert b"".join(got) == data[5:600_005] and max(len(c) for c in got) <= 100_000


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    ids: list[str] = []

    async def main() -> None:
        async with blobs.writer() as w:
            ids.append(w.id)
            await w.write(os.urandom(400_000))
            raise RuntimeError("client went away")

    with pytest.raises(RuntimeError):
        asyncio.run(main())
    assert not blobs.path(ids[0]).exists()
    assert _temp_files(tmp_path) == []

    with pytest.raises(ValueError), blobs.writer_sync() as sw:
        sw.write(b"partial")
        raise ValueError("bad checksum")
    assert not blobs.path(sw.id).exists() and _temp_files(tmp_path) == []


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (0, None, b"0123456789"),
        (2, 5, b"234"),
        (9, None, b"9"),
        (3, 100, b"3456789"),
        (10, None, b""),
        (50, 60, b""),
        (4, 4, b""),
    ],
)
def test_byte_ranges(tmp_path: Path, start: int, end: int | None, expected: bytes) -> None:
    blobs = BlobStore(tmp_path)
    info = blobs.put_sync(b"0123456789")
    assert blobs.read_sync(info.id, start, end) == expected


def test_bad_ranges_and_ids_are_refused(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    info = blobs.put_sync(b"x")
    with pytest.raises(ValueError):
        blobs.read_sync(info.id, -1)
    with pytest.raises(ValueError):
        blobs.read_sync(info.id, 5, 2)
    for bad in ["../../etc/passwd", "/etc/passwd", info.id.upper(), info.id + "/..", "", "ab"]:
        with pytest.raises(ValueError):
            blobs.path(bad)
        with pytest.raises(ValueError):
            blobs.delete_sync(bad)
    with pytest.raises(FileNotFoundError):
        blobs.read_sync("0" * 32)


def test_delete(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    info = blobs.put_sync(b"bye")
    assert asyncio.run(blobs.delete(info.id)) is True
    assert blobs.delete_sync(info.id) is False
    assert not blobs.path(info.id).exists()


def test_temp_files_of_a_crashed_write_are_removed_at_start_up(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    kept = blobs.put_sync(b"committed")
    crashed = blobs.writer_sync()
    crashed.write(b"half of it")
    crashed._file.close()  # type: ignore[union-attr]  # the process died here
    assert len(_temp_files(tmp_path)) == 1
    again = BlobStore(tmp_path)
    assert again.removed_temp_files == 1
    assert _temp_files(tmp_path) == []
    assert not again.path(crashed.id).exists()
    assert again.read_sync(kept.id) == b"committed"
    assert list(again.ids()) == [kept.id]  # a crashed write never shows up
