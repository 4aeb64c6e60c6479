"""Object data on disk: write-once blobs with server-chosen names.

A blob is written to a temp file next to its final place, hashed (MD5 for S3
ETags, SHA-256 for checksums) while it streams in, and renamed into place only on
commit, so a reader never sees a partial blob and a crash leaves at most a temp
file, which the next start-up deletes. Names are random hex ids chosen here;
callers store the id (with the object's metadata, *after* the blob is committed)
and never pass a path.

Durability follows the store's modes (``Settings.durability``): with ``full``
(survives power loss) commit fsyncs the file and its directory before it
returns; with ``normal`` (survives a killed process) the bytes are in the
kernel once commit returns, which is what a killed process needs, and the
kernel writes them back on its own schedule, like SQLite's ``synchronous=NORMAL``.

A large blob streams through a pipeline: the event loop gathers 1 MB chunks and
hands each to a writing thread and to one thread per hash, which run in parallel
(file writes and hashlib release the GIL), with a bounded number of chunks in
flight, so a 5 GB upload holds a few megabytes at most.

Layout: ``root/<id[:2]>/<id>``; temp files are ``root/<id[:2]>/.tmp-<id>``.
Ranges are half-open: ``start`` inclusive, ``end`` exclusive.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import os
import re
import uuid
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

_ID = re.compile(r"^[0-9a-f]{32}$")
_TMP_PREFIX = ".tmp-"
#: small writes are gathered up to this size before threads write and hash them
_FLUSH_AT = 2 * 1024 * 1024
#: chunks handed to the threads and not yet written and hashed, per writer
_IN_FLIGHT = 6
#: in ``full`` mode, dirty data is flushed in the background every this many bytes,
#: so the fsync at commit has little left to wait for
_SYNC_EVERY = 64 * 1024 * 1024
CHUNK_SIZE = 256 * 1024
#: buffers per writev call (Linux's IOV_MAX)
_IOV_MAX = 1024
DURABILITY_MODES = ("normal", "full")


@dataclass(frozen=True)
class BlobInfo:
    """A committed blob."""

    id: str
    size: int
    md5: str
    #: None when the writer was told it is not needed (``sha256=False``)
    sha256: str | None


def _fsync_dir(path: Path) -> None:
    # the rename is durable only once the directory entry is on disk
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobWriterSync:
    """Streams one blob into a temp file; ``commit`` makes it visible.

    ``fsync``: commit flushes the file and its directory to disk (``full``
    durability); ``sha256``: compute the SHA-256 as well as the MD5.
    """

    def __init__(self, root: Path, *, fsync: bool = True, sha256: bool = True) -> None:
        self.id = uuid.uuid4().hex
        self._dir = root / self.id[:2]
        self._dir.mkdir(exist_ok=True)
        self._tmp = self._dir / f"{_TMP_PREFIX}{self.id}"
        # unbuffered: every write goes straight to the kernel (writev for a chunk's pieces)
        self._file: BinaryIO | None = open(self._tmp, "xb", buffering=0)  # noqa: SIM115 - closed in commit/abort
        self._fsync = fsync
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._sha256 = hashlib.sha256() if sha256 else None
        self._size = 0
        self.info: BlobInfo | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` and feed the hashes."""
        self.write_file(data)
        self.update_md5(data)
        self.update_sha256(data)

    def write_file(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` to the file only (the pipeline hashes it in other threads)."""
        self.write_pieces([data])

    def write_pieces(self, pieces: Sequence[bytes | bytearray | memoryview]) -> None:
        """Append ``pieces`` to the file with as few system calls as the kernel allows
        (one ``writev`` for a chunk: the GIL is released and taken back once)."""
        if self._file is None:
            raise ValueError("blob writer is closed")
        fd = self._file.fileno()
        views = [memoryview(piece).cast("B") for piece in pieces if len(piece)]
        while views:
            written = os.writev(fd, views[:_IOV_MAX])
            self._size += written
            while views and written >= len(views[0]):
                written -= len(views[0])
                views.pop(0)
            if written:
                views[0] = views[0][written:]

    def update_md5(self, data: bytes | bytearray | memoryview) -> None:
        """Feed ``data`` to the MD5."""
        self._md5.update(data)

    def update_sha256(self, data: bytes | bytearray | memoryview) -> None:
        """Feed ``data`` to the SHA-256, when it is computed."""
        if self._sha256 is not None:
            self._sha256.update(data)

    def sync_data(self) -> None:
        """Flush what is written so far to disk (a head start for commit's fsync);
        may run in a thread while another writes."""
        file = self._file
        if file is not None:
            os.fdatasync(file.fileno())

    def commit(self) -> BlobInfo:
        """Flush (and fsync, with ``fsync``), rename into place and return the blob's
        id, size and hashes."""
        if self._file is None:
            raise ValueError("blob writer is closed")
        file, self._file = self._file, None
        try:
            if self._fsync:
                os.fsync(file.fileno())
        finally:
            file.close()
        os.rename(self._tmp, self._dir / self.id)
        if self._fsync:
            _fsync_dir(self._dir)
        sha256 = self._sha256.hexdigest() if self._sha256 is not None else None
        self.info = BlobInfo(self.id, self._size, self._md5.hexdigest(), sha256)
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
    """Async face of :class:`BlobWriterSync`: file I/O and hashing run in threads.

    Up to ``_FLUSH_AT`` bytes are gathered on the event loop; a blob that stays
    that small is written, hashed and committed in one thread hop. Past it, each
    chunk goes to a writing thread and to one thread per hash at once (see the
    module docstring); ``_IN_FLIGHT`` chunks at most are held.
    """

    def __init__(self, root: Path, *, fsync: bool = True, sha256: bool = True) -> None:
        self._root = root
        self._fsync = fsync
        self._want_sha256 = sha256
        self._sync: BlobWriterSync | None = None
        self._pieces: list[bytes] = []
        self._buffered = 0
        #: one single-thread executor per lane: writing, MD5, SHA-256, background fsync
        self._executors: list[ThreadPoolExecutor] = []
        self._lanes: list[tuple[ThreadPoolExecutor, Callable[[list[bytes]], None]]] = []
        self._in_flight: collections.deque[asyncio.Future[None]] = collections.deque()
        self._written = 0
        self._synced = 0
        self._syncing: asyncio.Future[None] | None = None
        self.info: BlobInfo | None = None

    async def __aenter__(self) -> BlobWriter:
        self._sync = await asyncio.to_thread(
            BlobWriterSync, self._root, fsync=self._fsync, sha256=self._want_sha256
        )
        return self

    @property
    def id(self) -> str:
        """The id the blob will have once committed."""
        if self._sync is None:
            raise ValueError("use the writer as 'async with'")
        return self._sync.id

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` (gathered: small chunks cost no thread hop each)."""
        if self._sync is None:
            raise ValueError("use the writer as 'async with'")
        if not data:
            return
        # bytes are immutable and kept as they are; anything else the caller may reuse
        self._pieces.append(data if isinstance(data, bytes) else bytes(data))
        self._buffered += len(data)
        if self._buffered >= _FLUSH_AT:
            await self._submit(self._take())

    def _take(self) -> list[bytes]:
        # the pieces go to the lanes as they are: joining them would copy every byte
        # once more on the event loop, which is what bounds a large upload's speed
        pieces, self._pieces, self._buffered = self._pieces, [], 0
        return pieces

    def _start_lanes(self, sync: BlobWriterSync) -> None:
        def lane(fn: Callable[[list[bytes]], None]) -> None:
            executor = ThreadPoolExecutor(1, thread_name_prefix="nubes-blob")
            self._executors.append(executor)
            self._lanes.append((executor, fn))

        def hashing(update: Callable[[bytes], None]) -> Callable[[list[bytes]], None]:
            # one update per chunk: the thread gives the GIL up and takes it back once
            # (waiting for it behind a busy event loop costs up to the switch interval)
            def run(pieces: list[bytes]) -> None:
                update(pieces[0] if len(pieces) == 1 else b"".join(pieces))

            return run

        lane(sync.write_pieces)
        lane(hashing(sync.update_md5))
        if self._want_sha256:
            lane(hashing(sync.update_sha256))
        if self._fsync:
            self._executors.append(ThreadPoolExecutor(1, thread_name_prefix="nubes-blob-sync"))

    async def _submit(self, chunk: list[bytes]) -> None:
        """Hand one chunk to every lane; wait while too many are in flight."""
        assert self._sync is not None
        if not self._lanes:
            self._start_lanes(self._sync)
        for executor, fn in self._lanes:
            self._in_flight.append(asyncio.wrap_future(executor.submit(fn, chunk)))
        self._written += sum(map(len, chunk))
        if (
            self._fsync
            and self._written - self._synced >= _SYNC_EVERY
            and (self._syncing is None or self._syncing.done())
        ):
            if self._syncing is not None:
                self._syncing.result()  # a failed background flush fails the upload
            self._synced = self._written
            self._syncing = asyncio.wrap_future(self._executors[-1].submit(self._sync.sync_data))
        while len(self._in_flight) > _IN_FLIGHT * len(self._lanes):
            await self._in_flight.popleft()

    async def commit(self) -> BlobInfo:
        """Write what is gathered, wait for every lane, (fsync and) rename into place."""
        if self._sync is None:
            raise ValueError("use the writer as 'async with'")
        sync = self._sync
        chunk = self._take()
        if not self._lanes:

            def finish() -> BlobInfo:
                sync.write_pieces(chunk)
                for piece in chunk:
                    sync.update_md5(piece)
                    sync.update_sha256(piece)
                return sync.commit()

            self.info = await asyncio.to_thread(finish)
            return self.info
        if chunk:
            await self._submit(chunk)
        while self._in_flight:
            await self._in_flight.popleft()
        if self._syncing is not None:
            await self._syncing
        self.info = await asyncio.wrap_future(self._lanes[0][0].submit(sync.commit))
        for executor in self._executors:
            executor.shutdown(wait=False)
        return self.info

    def _abort_sync(self) -> None:
        # wait for the lanes' running jobs (cancelling queued ones) before the file goes
        for executor in self._executors:
            executor.shutdown(wait=True, cancel_futures=True)
        if self._sync is not None:
            self._sync.abort()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._sync is None or self.info is not None:
            return
        if exc_type is None:
            try:
                await self.commit()
                return
            except BaseException:
                await asyncio.shield(asyncio.to_thread(self._abort_sync))
                self._forget_in_flight()
                raise
        # also on cancellation: the partial blob must go, whatever interrupted us
        await asyncio.shield(asyncio.to_thread(self._abort_sync))
        self._forget_in_flight()

    def _forget_in_flight(self) -> None:
        # the error that failed the upload has been raised; the lanes' others are moot
        for future in (*self._in_flight, self._syncing):
            if future is not None and future.done() and not future.cancelled():
                future.exception()
        self._in_flight.clear()


class BlobStore:
    """Blobs under ``root`` (usually ``data_dir / "blobs"``)."""

    def __init__(self, root: Path | str, *, durability: str = "full") -> None:
        """Create ``root`` if needed and delete temp files left by a crash.
        ``durability`` is the store's mode (``normal`` or ``full``, see the module
        docstring): with ``full`` a commit fsyncs."""
        if durability not in DURABILITY_MODES:
            raise ValueError(f"durability must be 'normal' or 'full', not {durability!r}")
        self.root = Path(root)
        self.durability = durability
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

    def writer(self, *, sha256: bool = True) -> BlobWriter:
        """``async with store.writer() as w: await w.write(chunk)``; then ``w.info``.
        ``sha256=False`` skips the SHA-256 (``info.sha256`` is None)."""
        return BlobWriter(self.root, fsync=self.durability == "full", sha256=sha256)

    def writer_sync(self, *, sha256: bool = True) -> BlobWriterSync:
        """Blocking writer (``with store.writer_sync() as w: w.write(chunk)``)."""
        return BlobWriterSync(self.root, fsync=self.durability == "full", sha256=sha256)

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
