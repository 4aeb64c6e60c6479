"""The embedded backend: one SQLite file in WAL mode.

One writer thread owns the only write connection and commits concurrent writes
together (group commit): it drains every write queued while the previous
commit ran, runs each function inside its own SAVEPOINT — so a function that
raises undoes only its own changes — then issues one COMMIT and only then
answers every caller. Readers use their own connections; in WAL mode they never
block the writer and always see every committed write. A read starts on the
caller's thread (a thread hop costs more than a point read) under a small time
budget, and moves to a reader thread if it needs longer or would have to wait.

Writes that find the writer idle run on the event loop's thread instead: the
writes made during one pass of the loop are committed together at its end, each
in its own savepoint (concurrent requests share one BEGIN/COMMIT, and pages they
both change, such as a queue's newest leaf, go to the WAL once). Handing them to
the writer thread and waking the event loop with the answer costs more than the
writes themselves (~40 us at the median, over a millisecond at the tail, in GIL
hand-offs). Only with ``durability="normal"``, whose COMMIT does not wait for
the disk; the WAL is checkpointed by the writer thread, never on the loop's. A
write is never interrupted and run again, so store functions keep the contract
they have: run once, unless the database itself fails.

``synchronous=NORMAL`` survives a killed process (the WAL is written before
COMMIT returns); ``durability="full"`` also survives power loss.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from nubes.storage._sqlitetxn import SqliteTxn
from nubes.storage._workers import Item, Workers, as_deliverable, deliver_all, settle
from nubes.storage.base import StoreError, Txn

log = logging.getLogger(__name__)

T = TypeVar("T")

#: writes committed together at most; bounds the latency one batch adds
MAX_BATCH = 256
#: reads that outgrew the inline budget; few, since the GIL serialises most of their work
READER_THREADS = 2
#: seconds a read may run on the event loop before it is moved to the reader thread
INLINE_READ_BUDGET = 0.0002
#: writes after which the writer thread checkpoints the WAL (each writes a page or
#: two; SQLite's own automatic checkpoint is at 1000 pages). Counted in writes, not
#: commits, so the WAL between checkpoints does not grow with the batch size. A
#: checkpoint copies each page once however often it changed, and syncs the database
#: file: every 2048 writes instead of 256 took a 1 KB write from 44 to 35 us of CPU.
CHECKPOINT_WRITES = 2048
#: bytes per page of a new database. An index b-tree page keeps a record of up to
#: about a quarter of the page inline; a longer one spills into overflow pages, each
#: a further page to allocate, write to the WAL and free again. With 8 KiB pages a
#: record of up to ~2 KB (a typical DynamoDB item, an SQS message) stays in one page:
#: a 1 KB PutItem's write went from 59 to 34 us of CPU (4 KiB pages made it 3 pages).
PAGE_SIZE = 8192

SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    tbl TEXT NOT NULL, k BLOB NOT NULL, v BLOB NOT NULL, PRIMARY KEY (tbl, k)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS logs (
    log TEXT NOT NULL, seq INTEGER NOT NULL, v BLOB NOT NULL, PRIMARY KEY (log, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log_heads (
    log TEXT NOT NULL PRIMARY KEY, last INTEGER NOT NULL
) WITHOUT ROWID;
-- Queue messages live in queue_items. Its ids are chosen by enqueue, not by
-- AUTOINCREMENT, whose sqlite_sequence row was one more b-tree page written to
-- the WAL by every send (and a lookup of it in every INSERT): the id is one past
-- both the largest id present and queue_high_water, the largest id deleted while
-- it was the largest present, so an id is never issued twice.
CREATE TABLE IF NOT EXISTS queue_items (
    id INTEGER PRIMARY KEY,
    queue TEXT NOT NULL,
    grp TEXT,
    value BLOB NOT NULL,
    enqueued_at REAL NOT NULL,
    visible_at REAL NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    first_received_at REAL,
    lease_token TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS queue_high_water (
    name TEXT NOT NULL PRIMARY KEY, last INTEGER NOT NULL
) WITHOUT ROWID;
-- leases range-scan (queue, visible_at) (the rowid id is in every index);
-- receive_count makes queue_stats an index-only count
CREATE INDEX IF NOT EXISTS queue_items_visible ON queue_items (queue, visible_at, receive_count);
CREATE INDEX IF NOT EXISTS queue_items_order ON queue_items (queue, id);
-- only FIFO messages have a group: a partial index costs a standard queue's send
-- nothing (a full one was one more b-tree page written to the WAL per commit)
CREATE INDEX IF NOT EXISTS queue_items_fifo ON queue_items (queue, grp, id)
    WHERE grp IS NOT NULL;
"""


#: Data dirs from before queue_items kept messages in queue_messages (AUTOINCREMENT):
#: moved over with their ids and their high-water mark, in one transaction, on the
#: first start that finds that table (see ``_migrate_queue_messages``)
_MIGRATE_QUEUE_MESSAGES = (
    "INSERT INTO queue_high_water (name, last)"
    " SELECT 'queue_items', seq FROM sqlite_sequence WHERE name = 'queue_messages'"
    " ON CONFLICT (name) DO UPDATE SET last = max(last, excluded.last)",
    "INSERT OR IGNORE INTO queue_items (id, queue, grp, value, enqueued_at, visible_at,"
    " receive_count, first_received_at, lease_token)"
    " SELECT id, queue, grp, value, enqueued_at, visible_at, receive_count, first_received_at,"
    " lease_token FROM queue_messages",
    "DROP TABLE queue_messages",
)
_HAS_QUEUE_MESSAGES = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'queue_messages'"


def _migrate_queue_messages(conn: sqlite3.Connection) -> None:
    """Move an old data dir's queue messages into queue_items. An ordinary start
    only looks (no schema change, no write); the look is repeated under the write
    lock, so two processes opening one old data dir migrate it once."""
    if conn.execute(_HAS_QUEUE_MESSAGES).fetchone() is None:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute(_HAS_QUEUE_MESSAGES).fetchone() is not None:
            for statement in _MIGRATE_QUEUE_MESSAGES:
                conn.execute(statement)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _connect(path: Path, synchronous: str, *, read_only: bool) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/SAVEPOINT/COMMIT ourselves.
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, cached_statements=256, timeout=30.0
    )
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA cache_size = -8192")
    conn.execute("PRAGMA temp_store = MEMORY")
    if read_only:
        conn.execute("PRAGMA query_only = ON")
    return conn


def _run_read(conn: sqlite3.Connection, fn: Callable[[Txn], T]) -> T:
    # BEGIN pins one snapshot for all the statements fn issues.
    conn.execute("BEGIN")
    try:
        return fn(SqliteTxn(conn, False))
    finally:
        if conn.in_transaction:  # an interrupted statement may have ended it already
            conn.execute("COMMIT")


class _Budget:
    """Progress handler that interrupts an inline read once its time is up."""

    __slots__ = ("deadline", "hit")

    def __init__(self) -> None:
        self.deadline = 0.0
        self.hit = False

    def __call__(self) -> int:
        if time.perf_counter() > self.deadline:
            self.hit = True
            return 1  # non-zero makes SQLite stop the statement ("interrupted")
        return 0


class _InlineReader:
    """A read connection for the calling thread, with its time budget."""

    __slots__ = ("budget", "conn")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.budget = _Budget()
        # called every 1000 VM instructions: a few microseconds of work apart
        conn.set_progress_handler(self.budget, 1000)

    def try_read(self, fn: Callable[[Txn], T]) -> tuple[bool, T | None]:
        """(True, result), or (False, None) if the read ran out of budget."""
        budget = self.budget
        budget.hit = False
        budget.deadline = time.perf_counter() + INLINE_READ_BUDGET
        try:
            result = _run_read(self.conn, fn)
        except sqlite3.OperationalError as exc:
            # busy: another process is recovering or checkpointing the file; the
            # reader thread may wait for it, the event loop may not
            if budget.hit or "locked" in str(exc) or "busy" in str(exc):
                self._end_transaction()
                return False, None
            raise
        except BaseException:
            if budget.hit:  # the interruption, or what fn made of it
                self._end_transaction()
                return False, None
            raise
        # fn may have swallowed the interruption: only an untouched budget is trusted
        return (False, None) if budget.hit else (True, result)

    def _end_transaction(self) -> None:
        # The interruption can also hit the COMMIT that ends the read (the budget
        # ran out while fn was in Python), leaving the snapshot open: every later
        # BEGIN on this connection would then fail. End it with the budget lifted.
        self.budget.deadline = float("inf")
        if self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass


class SqliteStore:
    """``Store`` over one SQLite database file."""

    backend = "sqlite"

    def __init__(
        self,
        path: Path | str,
        *,
        durability: str = "normal",
        inline_reads: bool = True,
        inline_writes: bool = True,
        max_batch: int = MAX_BATCH,
    ) -> None:
        """Open (creating if needed) the database at ``path``. Blocking: call off-loop.

        ``inline_reads=False`` sends every ``read`` to the reader thread,
        ``inline_writes=False`` every ``write`` to the writer thread;
        ``max_batch=1`` turns group commit off (a benchmark's baseline).
        """
        if durability not in ("normal", "full"):
            raise StoreError(f"durability must be 'normal' or 'full', not {durability!r}")
        self.path = Path(path)
        self.max_batch = max(1, max_batch)
        self.inline_reads = inline_reads
        self._local = threading.local()
        self._inline_readers: list[_InlineReader] = []
        self._inline_lock = threading.Lock()
        self._synchronous = "FULL" if durability == "full" else "NORMAL"
        self._writer_conn = _connect(self.path, self._synchronous, read_only=False)
        try:
            # before the first table exists (a no-op on an existing database): see PAGE_SIZE
            self._writer_conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            if self._writer_conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
                raise StoreError(f"{self.path}: cannot switch to WAL mode")
            self._writer_conn.execute("PRAGMA journal_size_limit = 67108864")
            self._writer_conn.executescript(SCHEMA)
            _migrate_queue_messages(self._writer_conn)
            # the writer thread checkpoints (see _maybe_checkpoint): a COMMIT made on the
            # event loop must never be the one that copies the WAL back and syncs
            self._writer_conn.execute("PRAGMA wal_autocheckpoint = 0")
        except BaseException:
            self._writer_conn.close()
            raise
        self.inline_writes = inline_writes and durability == "normal"
        #: held by whoever uses the write connection: the writer thread for a batch,
        #: or an inline write on the caller's thread
        self._conn_lock = threading.Lock()
        self._busy_wait = True  # the write connection's busy_timeout is its 30 s
        self._writes_since_checkpoint = 0
        #: each event loop's writes of its current pass, committed at its end
        self._pass_batches: dict[asyncio.AbstractEventLoop, list[Item]] = {}
        self._writes: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        self._closed = False
        self._gate = threading.Lock()
        self._writer = threading.Thread(target=self._write_loop, name="nubes-sqlite-writer")
        self._writer.daemon = True
        self._writer.start()
        self._readers: Workers[sqlite3.Connection] = Workers(
            "nubes-sqlite-reader",
            READER_THREADS,
            lambda: _connect(self.path, self._synchronous, read_only=True),
            lambda c: c.close(),
        )

    # -- the Store API --------------------------------------------------------
    async def read(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn`` in a read snapshot; sees every write that has returned.

        A point read costs a few microseconds while a hop to a thread and back
        costs ~100 (measured), so reads start on the calling thread under a
        time budget of ``INLINE_READ_BUDGET``; one that needs longer is
        interrupted and run again on a reader thread, so SQL never holds the
        event loop much longer than the budget. WAL readers never wait for the writer.
        """
        if self.inline_reads:
            done, result = self._inline().try_read(fn)
            if done:
                return result  # type: ignore[return-value]
        threaded: T = await self._readers.submit(lambda conn: _run_read(conn, fn))
        return threaded

    def _inline(self) -> _InlineReader:
        if self._closed:
            raise StoreError("the store is closed")
        reader: _InlineReader | None = getattr(self._local, "reader", None)
        if reader is None:
            conn = _connect(self.path, self._synchronous, read_only=True)
            conn.execute("PRAGMA busy_timeout = 0")  # never wait on the event loop
            reader = _InlineReader(conn)
            self._local.reader = reader
            with self._inline_lock:
                self._inline_readers.append(reader)
        return reader

    async def write(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn`` in the next group commit; returns after that commit.

        When the writer is idle, the writes made during one pass of the event loop
        are committed together on this thread at the end of the pass (see the
        module's notes); if another process holds the database's write lock they
        go to the writer thread, which may wait for it."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        if self.inline_writes and self._writes.empty():
            batch = self._pass_batches.get(loop)
            if batch is None:
                batch = self._pass_batches[loop] = []
                loop.call_soon(self._commit_pass, loop)
            batch.append((fn, loop, fut))
        else:
            self._put_write((fn, loop, fut))
        result: T = await fut
        return result

    def _commit_pass(self, loop: asyncio.AbstractEventLoop) -> None:
        """Commit the writes this loop's pass made, in one transaction (each in its
        own savepoint); hand them to the writer thread if the connection is busy."""
        batch = self._pass_batches.pop(loop, None)
        if not batch:
            return
        outcomes: list[tuple[bool, Any]] | None = None
        if self._closed:
            outcomes = [(False, StoreError("the store is closed"))] * len(batch)
        elif self._writes.empty() and self._conn_lock.acquire(blocking=False):
            try:
                outcomes = self._commit_inline(batch)
            finally:
                self._conn_lock.release()
        if outcomes is None:  # the writer thread is busy, or another process's lock
            try:
                for item in batch:
                    self._put_write(item)
            except StoreError as exc:
                outcomes = [(False, exc)] * len(batch)
            else:
                return
        # on the loop's own thread: settled directly, not through call_soon_threadsafe
        settle([(fut, ok, value) for (_fn, _loop, fut), (ok, value) in zip(batch, outcomes, strict=True)])

    def _commit_inline(self, batch: list[Item]) -> list[tuple[bool, Any]] | None:
        """Per-function outcomes once committed; None when the database is busy
        (nothing ran: the writer thread takes the batch). The caller holds _conn_lock."""
        conn = self._writer_conn
        if self._busy_wait:  # never wait for another process's lock on the event loop
            conn.execute("PRAGMA busy_timeout = 0")
            self._busy_wait = False
        ran = False
        first = batch[0][0]

        def once(txn: Txn) -> Any:
            nonlocal ran
            ran = True
            return first(txn)

        work: list[Item] = [(once, None, None), *((fn, None, None) for fn, _, _ in batch[1:])]
        try:
            outcomes = self._commit(conn, work)
        except sqlite3.OperationalError as exc:
            # BEGIN IMMEDIATE found another process's lock before anything ran: the
            # writer thread, which may wait, takes the batch; what ran never runs again
            if not ran and ("locked" in str(exc) or "busy" in str(exc)):
                return None
            return self._failed(conn, exc, len(batch))
        except Exception as exc:  # the database itself failed (I/O error, ...)
            return self._failed(conn, exc, len(batch))
        before = self._writes_since_checkpoint
        self._writes_since_checkpoint = before + len(batch)
        if before < CHECKPOINT_WRITES <= self._writes_since_checkpoint:
            self._request_checkpoint()
        return outcomes

    @staticmethod
    def _failed(conn: sqlite3.Connection, exc: Exception, count: int) -> list[tuple[bool, Any]]:
        """Every function's outcome after the transaction itself failed (rolled back)."""
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            log.exception("rollback after a failed write failed")
        return [(False, StoreError(f"write failed: {exc}"))] * count

    def _request_checkpoint(self) -> None:
        """Ask the writer thread to checkpoint the WAL (a no-op write item)."""
        try:
            self._put_write((_CHECKPOINT, None, concurrent.futures.Future()))
        except StoreError:
            pass  # closing: the last checkpoint happens as the writer stops

    def _put_write(self, item: Item) -> None:
        # Under the gate, so nothing is queued behind the writer's stop sentinel
        # (it would wait forever).
        with self._gate:
            if self._closed:
                raise StoreError("the store is closed")
            self._writes.put(item)

    def read_sync(self, fn: Callable[[Txn], T]) -> T:
        """Blocking ``read``; not on the event loop."""
        result: T = self._readers.call(lambda conn: _run_read(conn, fn))
        return result

    def write_sync(self, fn: Callable[[Txn], T]) -> T:
        """Blocking ``write``; not on the event loop."""
        if threading.current_thread() is self._writer:
            raise StoreError("blocking store call from inside a store function")
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._put_write((fn, None, fut))
        return fut.result()

    async def close(self) -> None:
        """Finish pending writes and release connections."""
        await asyncio.to_thread(self.close_sync)

    def close_sync(self) -> None:
        """Blocking ``close``."""
        with self._gate:
            if self._closed:
                return
            self._closed = True
            self._writes.put(None)
        self._readers.stop()
        self._writer.join()
        with self._inline_lock:
            for reader in self._inline_readers:
                reader.conn.close()
            self._inline_readers.clear()

    # -- the writer thread ----------------------------------------------------
    def _maybe_checkpoint(self, conn: sqlite3.Connection, force: bool = False) -> None:
        """Copy the WAL back into the database every ``CHECKPOINT_WRITES`` commits
        (PASSIVE: never waits for readers). The writer thread, with _conn_lock held."""
        if not force and self._writes_since_checkpoint < CHECKPOINT_WRITES:
            return
        self._writes_since_checkpoint = 0
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            log.warning("WAL checkpoint failed", exc_info=True)

    def _write_loop(self) -> None:
        conn = self._writer_conn
        try:
            while True:
                item = self._writes.get()
                if item is None:
                    break
                batch = [item]
                stop = False
                while len(batch) < self.max_batch:
                    try:
                        nxt = self._writes.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    batch.append(nxt)
                with self._conn_lock:
                    if not self._busy_wait:
                        conn.execute("PRAGMA busy_timeout = 30000")
                        self._busy_wait = True
                    work = [item for item in batch if item[0] is not _CHECKPOINT]
                    self._writes_since_checkpoint += len(work)
                    try:
                        outcomes = self._commit(conn, work) if work else []
                    except Exception as exc:  # the database itself failed (I/O error, ...)
                        outcomes = self._failed(conn, exc, len(work))
                    self._maybe_checkpoint(conn)
                if work:
                    deliver_all(work, outcomes)
                if stop:
                    break
        except BaseException:
            log.exception("the SQLite writer stopped")
            with self._gate:
                self._closed = True
            raise
        finally:
            self._fail_pending()
            with self._conn_lock:
                self._maybe_checkpoint(conn, force=True)
                conn.close()

    def _fail_pending(self) -> None:
        leftover: list[Item] = []
        while True:
            try:
                item = self._writes.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                leftover.append(item)
        if leftover:
            error = StoreError("the store is closed")
            deliver_all(leftover, [(False, error)] * len(leftover))

    def _commit(self, conn: sqlite3.Connection, batch: list[Item]) -> list[tuple[bool, Any]]:
        """Run a batch in one transaction; per-function outcomes, valid once committed."""
        failed: dict[int, BaseException] = {}
        while True:
            outcomes = self._run_batch(conn, batch, failed)
            if outcomes is not None:
                break
            # A failure aborted the whole transaction (e.g. disk full): the functions
            # that had succeeded are run again without the ones that failed.
        try:
            if conn.in_transaction:  # a lone function that failed was rolled back already
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            error = StoreError(f"commit failed: {exc}")
            return [(False, error) for _ in batch]
        return outcomes

    def _run_batch(
        self, conn: sqlite3.Connection, batch: list[Item], failed: dict[int, BaseException]
    ) -> list[tuple[bool, Any]] | None:
        """One attempt; None if the transaction was lost and must be retried."""
        txn = SqliteTxn(conn, True)
        conn.execute("BEGIN IMMEDIATE")
        single = len(batch) == 1
        outcomes: list[tuple[bool, Any]] = []
        for index, (fn, _loop, _fut) in enumerate(batch):
            if index in failed:
                outcomes.append((False, failed[index]))
                continue
            if not single:
                conn.execute("SAVEPOINT w")
            try:
                value = fn(txn)
            except BaseException as exc:
                failed[index] = as_deliverable(exc)
                outcomes.append((False, failed[index]))
                if not conn.in_transaction:
                    return None
                conn.execute("ROLLBACK" if single else "ROLLBACK TO w")
                if not single:
                    conn.execute("RELEASE w")
                continue
            if not single:
                conn.execute("RELEASE w")
            outcomes.append((True, value))
        return outcomes


def _CHECKPOINT(txn: Txn) -> None:
    """Queued by inline writes: makes the writer thread look at the WAL's size."""


def open_sqlite(path: Path, *, durability: str = "normal") -> SqliteStore:
    """Open the SQLite store at ``path`` (blocking)."""
    return SqliteStore(path, durability=durability)
