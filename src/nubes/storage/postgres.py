"""The scale-out backend: PostgreSQL through psycopg 3.

Every node of a cluster runs write functions in SERIALIZABLE transactions on a
few worker threads, each with its own connection; a function that loses a
serialization race (or a deadlock) is run again, which is why write functions
must do nothing but store operations. Reads run in REPEATABLE READ READ ONLY
transactions: one consistent snapshot, never a serialization failure.

Where the tables live: the schema named by ``search_path`` in the URL's
``options`` (``postgresql://host/db?options=-csearch_path%3Dmyschema``), else
the ``schema`` argument, else ``nubes``. It and the tables are created if
missing, under an advisory lock so nodes starting together do not race.
Connections show up as ``application_name=nubes`` unless the URL names another.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
import psycopg.errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from nubes.storage._pgtxn import PostgresTxn
from nubes.storage._workers import Workers
from nubes.storage.base import StoreError, Txn

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_SCHEMA = "nubes"
POOL_SIZE = 8
#: attempts of one write function before its caller gets a StoreError
MAX_ATTEMPTS = 60
_RETRYABLE = (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)
_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_SEARCH_PATH = re.compile(r"-c\s*search_path\s*=\s*\"?([^\s,\"]+)")

SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    tbl text COLLATE "C" NOT NULL, k bytea NOT NULL, v bytea NOT NULL, PRIMARY KEY (tbl, k)
);
CREATE TABLE IF NOT EXISTS logs (
    log text COLLATE "C" NOT NULL, seq bigint NOT NULL, v bytea NOT NULL, PRIMARY KEY (log, seq)
);
CREATE TABLE IF NOT EXISTS log_heads (
    log text COLLATE "C" NOT NULL PRIMARY KEY, last bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS queue_messages (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue text COLLATE "C" NOT NULL,
    grp text COLLATE "C",
    value bytea NOT NULL,
    enqueued_at double precision NOT NULL,
    visible_at double precision NOT NULL,
    receive_count integer NOT NULL DEFAULT 0,
    first_received_at double precision,
    lease_token text NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS queue_messages_lease ON queue_messages (queue, visible_at, id);
CREATE INDEX IF NOT EXISTS queue_messages_order ON queue_messages (queue, id);
CREATE INDEX IF NOT EXISTS queue_messages_group ON queue_messages (queue, grp, id);
"""


def resolve_schema(url: str, schema: str | None) -> tuple[str, str]:
    """The conninfo to connect with (``search_path`` set) and the schema's name."""
    params = conninfo_to_dict(url)
    options = str(params.get("options") or "")
    found = _SEARCH_PATH.search(options)
    if found is not None and schema is None:
        schema = found.group(1)
    schema = schema or DEFAULT_SCHEMA
    if not _SCHEMA_NAME.match(schema):
        raise StoreError(f"PostgreSQL schema name {schema!r} must be a plain identifier")
    if found is None or found.group(1) != schema:
        options = _SEARCH_PATH.sub("", options).strip()
        options = f"{options} -c search_path={schema}".strip()
    extra = {} if params.get("application_name") else {"application_name": "nubes"}
    return make_conninfo(url, options=options, **extra), schema


class _Connection:
    """One worker's connection, replaced when it breaks."""

    __slots__ = ("_conninfo", "conn")

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self.conn: psycopg.Connection[Any] | None = None

    def get(self) -> psycopg.Connection[Any]:
        if self.conn is None or self.conn.closed:
            try:
                self.conn = psycopg.connect(self._conninfo, autocommit=True)
            except psycopg.OperationalError as exc:
                raise StoreError(f"cannot reach PostgreSQL: {exc}") from exc
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _bootstrap(conninfo: str, schema: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn, conn.transaction():
        # hashtext of a fixed name: one lock for every node creating this schema
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"nubes.schema.{schema}",))
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)


def _rollback(conn: psycopg.Connection[Any]) -> None:
    if not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.execute("ROLLBACK")


def _run_read(holder: _Connection, fn: Callable[[Txn], T]) -> T:
    for attempt in range(2):
        conn = holder.get()
        try:
            txn = PostgresTxn(conn, False, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            result = fn(txn)
            if txn.begun:
                conn.execute("COMMIT")
        except psycopg.OperationalError:
            if conn.closed and attempt == 0:  # the server dropped us: reads can just rerun
                holder.close()
                continue
            _rollback(conn)
            raise
        except BaseException:
            _rollback(conn)
            raise
        return result
    raise AssertionError("unreachable")


def _run_write(holder: _Connection, fn: Callable[[Txn], T]) -> T:
    for attempt in range(MAX_ATTEMPTS):
        conn = holder.get()
        try:
            txn = PostgresTxn(conn, True, "BEGIN ISOLATION LEVEL SERIALIZABLE")
            result = fn(txn)
        except _RETRYABLE:
            _rollback(conn)
            _backoff(attempt)
            continue
        except psycopg.OperationalError as exc:
            if not conn.closed:
                _rollback(conn)
                raise
            # The connection died before COMMIT: nothing was committed, run again.
            log.warning("PostgreSQL connection lost, reconnecting: %s", exc)
            holder.close()
            _backoff(attempt)
            continue
        except BaseException:
            _rollback(conn)
            raise
        try:
            if txn.begun:
                conn.execute("COMMIT")
        except _RETRYABLE:
            _rollback(conn)
            _backoff(attempt)
            continue
        except psycopg.OperationalError as exc:
            holder.close()
            raise StoreError(f"lost the PostgreSQL connection during COMMIT: {exc}") from exc
        return result
    raise StoreError(f"write still conflicting after {MAX_ATTEMPTS} attempts")


def _backoff(attempt: int) -> None:
    # jitter so that the transactions that collided do not collide again
    time.sleep(random.uniform(0, min(0.0005 * (2**attempt), 0.05)))


class PostgresStore:
    """``Store`` over a PostgreSQL database (see the module docstring for the schema)."""

    backend = "postgresql"

    def __init__(self, url: str, *, schema: str | None = None, pool_size: int = POOL_SIZE) -> None:
        """Connect and create the schema if needed. Blocking: call off the event loop."""
        self.conninfo, self.schema = resolve_schema(url, schema)
        try:
            _bootstrap(self.conninfo, self.schema)
        except psycopg.Error as exc:
            raise StoreError(f"cannot open the PostgreSQL store: {exc}") from exc
        conninfo = self.conninfo
        self._workers: Workers[_Connection] = Workers(
            "nubes-pg",
            pool_size,
            lambda: _Connection(conninfo),
            lambda h: h.close(),
            max_batch=1,
        )

    async def read(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn`` in a read-only snapshot on a worker thread."""
        result: T = await self._workers.submit(lambda holder: _run_read(holder, fn))
        return result

    async def write(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn`` in a SERIALIZABLE transaction (again on conflicts), committed."""
        result: T = await self._workers.submit(lambda holder: _run_write(holder, fn))
        return result

    def read_sync(self, fn: Callable[[Txn], T]) -> T:
        """Blocking ``read``; not on the event loop."""
        result: T = self._workers.call(lambda holder: _run_read(holder, fn))
        return result

    def write_sync(self, fn: Callable[[Txn], T]) -> T:
        """Blocking ``write``; not on the event loop."""
        result: T = self._workers.call(lambda holder: _run_write(holder, fn))
        return result

    async def close(self) -> None:
        """Finish queued work and close the connections."""
        await asyncio.to_thread(self.close_sync)

    def close_sync(self) -> None:
        """Blocking ``close``."""
        self._workers.stop()
