"""Object data on disk: write-once blobs with server-chosen names.

A blob is written to a temp file next to its final place, hashed (MD5 for S3
ETags, SHA-256 for checksums) while it streams in, fsynced, and renamed into
place only on commit, so a reader never sees a partial blob and a crash leaves
at most a temp file, which the next start-up deletes. Names are random hex ids
chosen here; callers store the id (with the object's metadata, *after* the
blob is committed) and never pass a path.

Layout: ``root/<id[:2]>/<id>``; temp files are ``root/<id[:2]>/.tmp-<id>``.
Ranges are half-open: ``start`` inclusive, ``end`` exclusive.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import uuid
from collections.abc import AsyncIterator, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

_ID = re.compile(r"^[0-9a-f]{32}$")
_TMP_PREFIX = ".tmp-"
#: small writes are gathered up to this size before a thread writes them out
_FLUSH_AT = 256 * 1024
CHUNK_SIZE = 256 * 1024


@dataclass(frozen=True)
class BlobInfo:
    """A committed blob."""

    id: str
    size: int
    md5: str
    sha256: str


def _fsync_dir(path: Path) -> None:
    # the rename is durable only once the directory entry is on disk
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobWriterSync:
    """Streams one blob into a temp file; ``commit`` makes it visible."""

    def __init__(self, root: Path) -> None:
        self.id = uuid.uuid4().hex
        self._dir = root / self.id[:2]
        self._dir.mkdir(exist_ok=True)
        self._tmp = self._dir / f"{_TMP_PREFIX}{self.id}"
        self._file: BinaryIO | None = open(self._tmp, "xb")  # noqa: SIM115 - closed in commit/abort
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._sha256 = hashlib.sha256()
        self._size = 0
        self.info: BlobInfo | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` and feed the hashes."""
        if self._file is None:
            raise ValueError("blob writer is closed")
        self._file.write(data)
        self._md5.update(data)
        self._sha256.update(data)
        self._size += len(data)

    def commit(self) -> BlobInfo:
        """fsync, rename into place and return the blob's id, size and hashes."""
        if self._file is None:
            raise ValueError("blob writer is closed")
        file, self._file = self._file, None
        try:
            file.flush()
            os.fsync(file.fileno())
        finally:
            file.close()
        os.rename(self._tmp, self._dir / self.id)
        _fsync_dir(self._dir)
        self.info = BlobInfo(self.id, self._size, self._md5.hexdigest(), self._sha256.hexdigest())
        return self.info

    def abort(self) -> None:
        """Throw the partial blob away."""
        if self._file is not None:
            self._file.close()
            self._file = None
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()

    def __enter__(self) -> BlobWriterSync:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None and self._file is not None:
            self.commit()
        else:
            self.abort()


class BlobWriter:
    """Async face of :class:`BlobWriterSync`: file I/O and hashing run in a thread."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._sync: BlobWriterSync | None = None
        self._buffer = bytearray()
        self.info: BlobInfo | None = None

    async def __aenter__(self) -> BlobWriter:
        self._sync = await asyncio.to_thread(BlobWriterSync, self._root)
        return self

    @property
    def id(self) -> str:
        """The id the blob will have once committed."""
        if self._sync is None:
            raise ValueError("use the writer as 'async with'")
        return self._sync.id

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` (buffered: small chunks cost no thread hop each)."""
        if self._sync is None:
            raise ValueError("use the writer as 'async with'")
        self._buffer += data
        if len(self._buffer) >= _FLUSH_AT:
            chunk, self._buffer = bytes(self._buffer), bytearray()
            await asyncio.to_thread(self._sync.write, chunk)

    async def commit(self) -> BlobInfo:
        """Write what is buffered, fsync and rename into place."""
        if self._sync is None:
            raise ValueError("use the writer as 'async with'")
        sync = self._sync
        chunk, self._buffer = bytes(self._buffer), bytearray()

        def finish() -> BlobInfo:
            sync.write(chunk)
            return sync.commit()

        self.info = await asyncio.to_thread(finish)
        return self.info

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._sync is None:
            return
        if exc_type is None and self.info is None:
            await self.commit()
        elif self.info is None:
            # also on cancellation: the partial blob must go, whatever interrupted us
            await asyncio.shield(asyncio.to_thread(self._sync.abort))


class BlobStore:
    """Blobs under ``root`` (usually ``data_dir / "blobs"``)."""

    def __init__(self, root: Path | str) -> None:
        """Create ``root`` if needed and delete temp files left by a crash."""
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.removed_temp_files = self._clean_temp_files()

    def _clean_temp_files(self) -> int:
        removed = 0
        for tmp in self.root.glob(f"*/{_TMP_PREFIX}*"):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                removed += 1
        return removed

    def path(self, blob_id: str) -> Path:
        """Where a blob lives; ValueError for anything but an id this store made."""
        if not isinstance(blob_id, str) or not _ID.match(blob_id):
            raise ValueError(f"not a blob id: {blob_id!r}")
        return self.root / blob_id[:2] / blob_id

    def writer(self) -> BlobWriter:
        """``async with store.writer() as w: await w.write(chunk)``; then ``w.info``."""
        return BlobWriter(self.root)

    def writer_sync(self) -> BlobWriterSync:
        """Blocking writer (``with store.writer_sync() as w: w.write(chunk)``)."""
        return BlobWriterSync(self.root)

    def put_sync(self, data: bytes) -> BlobInfo:
        """Store ``data`` as a new blob (blocking)."""
        with self.writer_sync() as w:
            w.write(data)
        assert w.info is not None
        return w.info

    async def put(self, data: bytes) -> BlobInfo:
        """Store ``data`` as a new blob."""
        return await asyncio.to_thread(self.put_sync, data)

    def size(self, blob_id: str) -> int:
        """The blob's size in bytes; FileNotFoundError if there is no such blob."""
        return self.path(blob_id).stat().st_size

    def read_sync(self, blob_id: str, start: int = 0, end: int | None = None) -> bytes:
        """Bytes ``[start, end)`` of a blob (blocking; for small blobs and ranges)."""
        return b"".join(self.iter_sync(blob_id, start, end, chunk_size=1 << 30))

    def iter_sync(
        self, blob_id: str, start: int = 0, end: int | None = None, *, chunk_size: int = CHUNK_SIZE
    ) -> Generator[bytes, None, None]:
        """Chunks of bytes ``[start, end)`` of a blob (blocking)."""
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"bad byte range [{start}, {end})")
        with open(self.path(blob_id), "rb") as f:
            f.seek(start)
            left = None if end is None else end - start
            while left is None or left > 0:
                chunk = f.read(chunk_size if left is None else min(chunk_size, left))
                if not chunk:
                    return
                if left is not None:
                    left -= len(chunk)
                yield chunk

    async def read(
        self, blob_id: str, start: int = 0, end: int | None = None, *, chunk_size: int = CHUNK_SIZE
    ) -> AsyncIterator[bytes]:
        """Stream bytes ``[start, end)`` of a blob, reading in a thread."""
        chunks = await asyncio.to_thread(self.iter_sync, blob_id, start, end, chunk_size=chunk_size)
        done = object()
        try:
            while True:
                chunk = await asyncio.to_thread(next, chunks, done)
                if chunk is done:
                    return
                assert isinstance(chunk, bytes)
                yield chunk
        finally:
            await asyncio.to_thread(chunks.close)

    def ids(self) -> Iterator[str]:
        """Every committed blob's id (blocking), e.g. to find blobs no record points to."""
        for path in self.root.glob("??/*"):
            if _ID.match(path.name) and path.parent.name == path.name[:2]:
                yield path.name

    def delete_sync(self, blob_id: str) -> bool:
        """Remove a blob; True if it existed."""
        try:
            self.path(blob_id).unlink()
        except FileNotFoundError:
            return False
        return True

    async def delete(self, blob_id: str) -> bool:
        """Remove a blob; True if it existed."""
        return await asyncio.to_thread(self.delete_sync, blob_id)
