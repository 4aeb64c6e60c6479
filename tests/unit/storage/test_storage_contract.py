"""The store contract (``nubes.storage.base``), run against every backend.

PostgreSQL tests use the server on 127.0.0.1:5432 (database ``test``) with a
fresh schema per test, dropped afterwards. They skip when it is unreachable,
except with ``CI=true``, where they fail: CI must prove both backends.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nubes.storage.base import Store, StoreError, Txn
from nubes.storage.sqlite import SqliteStore

PG_URL = os.environ.get("NUBES_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_admin() -> Any:
    """A connection to the test database, or skip/fail as the environment demands."""
    try:
        import psycopg

        return psycopg.connect(PG_URL, autocommit=True, connect_timeout=3)
    except Exception as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {PG_URL} is required with CI=true: {exc}")
        pytest.skip(f"PostgreSQL at {PG_URL} is not reachable: {exc}")


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh schema name, dropped (with everything in it) after the test."""
    admin = _pg_admin()
    schema = f"nubes_test_{uuid.uuid4().hex[:12]}"
    try:
        yield schema
    finally:
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.close()


def _open(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    if backend == "sqlite":
        return SqliteStore(tmp_path / "nubes.db")
    from nubes.storage.postgres import PostgresStore

    schema = request.getfixturevalue("pg_schema")
    return PostgresStore(PG_URL, schema=schema)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """An empty store of each backend."""
    s = _open(request.param, tmp_path, request)
    try:
        yield s
    finally:
        s.close_sync()


def w(store: Store, fn: Callable[[Txn], Any]) -> Any:
    return store.write_sync(fn)


def r(store: Store, fn: Callable[[Txn], Any]) -> Any:
    return store.read_sync(fn)


# -- tables -------------------------------------------------------------------


def test_put_get_overwrite_delete(store: Store) -> None:
    w(store, lambda t: t.put("t", b"k", b"v1"))
    assert r(store, lambda t: t.get("t", b"k")) == b"v1"
    w(store, lambda t: t.put("t", b"k", b"v2"))
    assert r(store, lambda t: t.get("t", b"k")) == b"v2"
    assert r(store, lambda t: t.get("t", b"missing")) is None
    assert r(store, lambda t: t.get("other", b"k")) is None  # tables are separate
    assert w(store, lambda t: t.delete("t", b"k")) is True
    assert w(store, lambda t: t.delete("t", b"k")) is False
    assert r(store, lambda t: t.get("t", b"k")) is None


def test_insert_only_if_absent(store: Store) -> None:
    assert w(store, lambda t: t.insert("t", b"k", b"first")) is True
    assert w(store, lambda t: t.insert("t", b"k", b"second")) is False
    assert r(store, lambda t: t.get("t", b"k")) == b"first"


def test_values_are_binary_safe(store: Store) -> None:
    value = bytes(range(256)) * 100
    w(store, lambda t: t.put("t", b"\x00\xff", value))
    assert r(store, lambda t: t.get("t", b"\x00\xff")) == value
    w(store, lambda t: t.put("t", b"", b""))
    assert r(store, lambda t: t.get("t", b"")) == b""


KEYS = [b"", b"\x00", b"\x00\x00", b"\x01", b"\x7f", b"\x80", b"\x80\x00", b"\xfe\xff",
        b"\xff", b"\xff\x00", b"\xff\xff", b"a", b"ab", b"b"]  # fmt: skip


def _fill(store: Store, keys: list[bytes] = KEYS) -> None:
    def fill(t: Txn) -> None:
        for k in keys:
            t.put("t", k, b"v" + k)

    w(store, fill)


def test_scan_orders_bytewise_like_memcmp(store: Store) -> None:
    _fill(store)
    got = r(store, lambda t: t.scan("t"))
    assert [k for k, _ in got] == sorted(KEYS)
    assert all(v == b"v" + k for k, v in got)
    back = r(store, lambda t: t.scan("t", reverse=True))
    assert [k for k, _ in back] == sorted(KEYS, reverse=True)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"prefix": b"\xff"},
        {"prefix": b"\x80"},
        {"prefix": b"\x00"},
        {"prefix": b"a"},
        {"start": b"\x7f", "end": b"\xff"},
        {"start": b"\x80"},
        {"end": b"\x01"},
        {"prefix": b"\xff", "start": b"\xff\x00"},
        {"prefix": b"\xff", "end": b"\xff\xff"},
        {"prefix": b"a", "start": b"0", "end": b"z"},
        {"start": b"b", "end": b"a"},
        {"prefix": b"a", "limit": 1},
        {"limit": 3, "reverse": True},
        {"prefix": b"\xff", "reverse": True, "limit": 2},
        {"start": b"\x01", "end": b"b", "reverse": True},
        {"limit": 0},
    ],
)
def test_scan_prefix_range_reverse_limit(store: Store, kwargs: dict[str, Any]) -> None:
    _fill(store)
    got = [k for k, _ in r(store, lambda t: t.scan("t", **kwargs))]
    assert got == _model_scan(sorted(KEYS), **kwargs)


def _model_scan(
    keys: list[bytes],
    prefix: bytes = b"",
    start: bytes | None = None,
    end: bytes | None = None,
    reverse: bool = False,
    limit: int | None = None,
) -> list[bytes]:
    sel = [
        k
        for k in keys
        if k.startswith(prefix) and (start is None or k >= start) and (end is None or k < end)
    ]
    if reverse:
        sel.reverse()
    return sel if limit is None else sel[:limit]


def test_count_and_delete_prefix(store: Store) -> None:
    _fill(store)
    w(store, lambda t: t.put("other", b"\xff", b"x"))
    assert r(store, lambda t: t.count("t")) == len(KEYS)
    assert r(store, lambda t: t.count("t", prefix=b"\xff")) == 3
    assert w(store, lambda t: t.delete_prefix("t", b"\xff")) == 3
    assert r(store, lambda t: t.count("t", prefix=b"\xff")) == 0
    assert r(store, lambda t: t.get("other", b"\xff")) == b"x"
    assert w(store, lambda t: t.delete_prefix("t")) == len(KEYS) - 3
    assert r(store, lambda t: t.scan("t")) == []
    assert r(store, lambda t: t.count("other")) == 1


def test_random_operations_match_a_model(store: Store) -> None:
    rng = random.Random(7)
    model: dict[bytes, bytes] = {}
    alphabet = [b"\x00", b"\x01", b"\x7f", b"\x80", b"\xfe", b"\xff", b"a"]

    def key() -> bytes:
        return b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 3)))

    for _ in range(30):
        ops = [(rng.choice("pid"), key(), key()) for _ in range(10)]

        def apply(t: Txn, ops: list[tuple[str, bytes, bytes]] = ops) -> None:
            for op, k, v in ops:
                if op == "p":
                    t.put("m", k, v)
                elif op == "i":
                    t.insert("m", k, v)
                else:
                    t.delete("m", k)

        w(store, apply)
        for op, k, v in ops:
            if op == "p":
                model[k] = v
            elif op == "i":
                model.setdefault(k, v)
            else:
                model.pop(k, None)
        kw: dict[str, Any] = {
            "prefix": key()[:1],
            "start": rng.choice([None, key()]),
            "end": rng.choice([None, key()]),
            "reverse": rng.random() < 0.5,
            "limit": rng.choice([None, 1, 5]),
        }
        got = r(store, lambda t, kw=kw: t.scan("m", **kw))
        assert [k for k, _ in got] == _model_scan(sorted(model), **kw), kw
        assert all(model[k] == v for k, v in got)
        assert r(store, lambda t, p=kw["prefix"]: t.count("m", prefix=p)) == sum(
            1 for k in model if k.startswith(kw["prefix"])
        )


def test_read_view_refuses_writes(store: Store) -> None:
    with pytest.raises(StoreError):
        r(store, lambda t: t.put("t", b"k", b"v"))
    with pytest.raises(StoreError):
        r(store, lambda t: t.append("log", b"v"))
    with pytest.raises(StoreError):
        r(store, lambda t: t.enqueue("q", b"v", now=0))
    assert r(store, lambda t: t.get("t", b"k")) is None


def test_non_bytes_key_is_rejected(store: Store) -> None:
    with pytest.raises(TypeError):
        w(store, lambda t: t.put("t", "k", b"v"))  # type: ignore[arg-type]


def test_write_returns_value_and_raises_callers_exception(store: Store) -> None:
    assert w(store, lambda t: (t.put("t", b"a", b"1"), 42)[1]) == 42

    class Boom(Exception):
        pass

    def failing(t: Txn) -> None:
        t.put("t", b"b", b"2")
        t.append("log", b"x")
        raise Boom("no")

    with pytest.raises(Boom):
        w(store, failing)
    assert r(store, lambda t: t.get("t", b"b")) is None
    assert r(store, lambda t: t.log_bounds("log")) == (0, 0)
    assert r(store, lambda t: t.get("t", b"a")) == b"1"


# -- group commit: a failing function in a batch -----------------------------


def test_failing_function_in_a_batch_rolls_back_only_itself(store: Store) -> None:
    gate = threading.Event()

    def blocker(t: Txn) -> str:
        t.put("t", b"blocker", b"1")
        gate.wait(5)  # holds the writer so the writes below queue up into one batch
        return "blocked"

    def ok(i: int) -> Callable[[Txn], int]:
        def fn(t: Txn) -> int:
            t.put("t", b"ok%d" % i, b"%d" % i)
            return i

        return fn

    def bad(t: Txn) -> None:
        t.put("t", b"bad", b"x")
        t.put("t", b"ok0", b"overwritten")
        t.append("log", b"bad")
        raise ValueError("bad write")

    async def main() -> list[Any]:
        first = asyncio.ensure_future(store.write(blocker))
        await asyncio.sleep(0.05)
        rest = [store.write(ok(0)), store.write(bad), store.write(ok(1)), store.write(ok(2))]
        tasks = [asyncio.ensure_future(c) for c in rest]
        await asyncio.sleep(0.05)
        gate.set()
        return await asyncio.gather(first, *tasks, return_exceptions=True)

    results = asyncio.run(main())
    assert results[0] == "blocked"
    assert results[1] == 0 and results[3] == 1 and results[4] == 2
    assert isinstance(results[2], ValueError) and str(results[2]) == "bad write"
    keys = dict(r(store, lambda t: t.scan("t")))
    assert keys == {b"blocker": b"1", b"ok0": b"0", b"ok1": b"1", b"ok2": b"2"}
    assert r(store, lambda t: t.log_bounds("log")) == (0, 0)


# -- logs -----------------------------------------------------------------------


def test_log_append_read_bounds(store: Store) -> None:
    assert r(store, lambda t: t.log_bounds("a")) == (0, 0)
    assert w(store, lambda t: [t.append("a", b"%d" % i) for i in range(1, 6)]) == [1, 2, 3, 4, 5]
    assert w(store, lambda t: t.append("b", b"other")) == 1  # numbering is per log
    assert r(store, lambda t: t.read_log("a")) == [(i, b"%d" % i) for i in range(1, 6)]
    assert r(store, lambda t: t.read_log("a", after=2, limit=2)) == [(3, b"3"), (4, b"4")]
    assert r(store, lambda t: t.read_log("a", after=5)) == []
    assert r(store, lambda t: t.log_bounds("a")) == (1, 5)
    assert r(store, lambda t: t.log_bounds("b")) == (1, 1)


def test_log_trim_never_reuses_sequence_numbers(store: Store) -> None:
    w(store, lambda t: [t.append("a", b"x") for _ in range(5)])
    assert w(store, lambda t: t.trim_log("a", before=3)) == 2
    assert r(store, lambda t: t.log_bounds("a")) == (3, 5)
    assert [s for s, _ in r(store, lambda t: t.read_log("a"))] == [3, 4, 5]
    assert w(store, lambda t: t.trim_log("a", before=100)) == 3
    assert r(store, lambda t: t.log_bounds("a")) == (0, 0)
    assert w(store, lambda t: t.append("a", b"y")) == 6
    w(store, lambda t: t.drop_log("a"))
    assert r(store, lambda t: t.read_log("a")) == []
    assert w(store, lambda t: t.append("a", b"z")) == 7
    assert w(store, lambda t: t.append("b", b"z")) == 1


def test_log_failed_append_does_not_burn_visible_numbers(store: Store) -> None:
    def fail(t: Txn) -> None:
        t.append("a", b"x")
        raise RuntimeError("rollback")

    with pytest.raises(RuntimeError):
        w(store, fail)
    assert w(store, lambda t: t.append("a", b"y")) == 1
    assert r(store, lambda t: t.read_log("a")) == [(1, b"y")]


# -- queues ---------------------------------------------------------------------


def _enqueue(store: Store, queue: str, n: int, now: float = 100.0, **kw: Any) -> list[int]:
    return w(  # type: ignore[no-any-return]
        store, lambda t: [t.enqueue(queue, b"m%d" % i, now=now, **kw) for i in range(n)]
    )


def test_enqueue_lease_in_id_order_with_visibility(store: Store) -> None:
    ids = _enqueue(store, "q", 3)
    assert ids == sorted(ids) and len(set(ids)) == 3
    got = w(store, lambda t: t.lease("q", now=100.0, visibility=30.0, limit=2))
    assert [m.id for m in got] == ids[:2]
    first = got[0]
    assert first.queue == "q" and first.value == b"m0" and first.group is None
    assert first.receive_count == 1 and first.first_received_at == 100.0
    assert first.enqueued_at == 100.0 and first.visible_at == 130.0
    assert first.lease_token and first.lease_token != got[1].lease_token
    # leased messages are invisible until the lease runs out
    again = w(store, lambda t: t.lease("q", now=110.0, visibility=30.0, limit=10))
    assert [m.id for m in again] == ids[2:]
    assert w(store, lambda t: t.lease("q", now=129.0, visibility=30.0, limit=10)) == []
    expired = w(store, lambda t: t.lease("q", now=131.0, visibility=30.0, limit=10))
    assert [m.id for m in expired] == ids[:2]
    m0 = expired[0]
    assert m0.receive_count == 2 and m0.first_received_at == 100.0
    assert m0.lease_token != first.lease_token and m0.visible_at == 161.0


def test_ack_with_stale_token_fails(store: Store) -> None:
    (mid,) = _enqueue(store, "q", 1)
    (old,) = w(store, lambda t: t.lease("q", now=100.0, visibility=10.0))
    (new,) = w(store, lambda t: t.lease("q", now=111.0, visibility=10.0))
    assert new.id == mid and new.lease_token != old.lease_token
    assert w(store, lambda t: t.ack("q", mid, old.lease_token)) is False
    assert w(store, lambda t: t.ack("other", mid, new.lease_token)) is False
    assert r(store, lambda t: t.get_message("q", mid)) is not None
    assert w(store, lambda t: t.ack("q", mid, new.lease_token)) is True
    assert r(store, lambda t: t.get_message("q", mid)) is None
    assert w(store, lambda t: t.ack("q", mid)) is False
    (other,) = _enqueue(store, "q", 1)
    assert w(store, lambda t: t.ack("q", other)) is True  # no token: unconditional


def test_set_visible_at_extends_or_ends_a_lease(store: Store) -> None:
    (mid,) = _enqueue(store, "q", 1)
    (m,) = w(store, lambda t: t.lease("q", now=100.0, visibility=10.0))
    assert w(store, lambda t: t.set_visible_at("q", mid, 200.0, "stale")) is False
    assert w(store, lambda t: t.set_visible_at("q", mid, 200.0, m.lease_token)) is True
    assert w(store, lambda t: t.lease("q", now=150.0, visibility=10.0)) == []
    assert r(store, lambda t: t.get_message("q", mid)).visible_at == 200.0
    assert w(store, lambda t: t.set_visible_at("q", mid, 150.0)) is True
    (again,) = w(store, lambda t: t.lease("q", now=150.0, visibility=10.0))
    assert again.receive_count == 2
    assert w(store, lambda t: t.set_visible_at("q", 10**9, 1.0)) is False


def test_delay_stats_next_visible_at(store: Store) -> None:
    assert r(store, lambda t: t.next_visible_at("q")) is None
    assert r(store, lambda t: t.queue_stats("q", now=100.0)) == (0, 0, 0)
    _enqueue(store, "q", 2)
    _enqueue(store, "q", 1, delay=50.0)
    _enqueue(store, "other", 4)
    assert r(store, lambda t: t.queue_stats("q", now=100.0)) == (2, 0, 1)
    assert r(store, lambda t: t.next_visible_at("q")) == 100.0
    w(store, lambda t: t.lease("q", now=100.0, visibility=20.0, limit=10))
    assert r(store, lambda t: t.queue_stats("q", now=100.0)) == (0, 2, 1)
    assert r(store, lambda t: t.next_visible_at("q")) == 120.0
    assert r(store, lambda t: t.queue_stats("q", now=125.0)) == (2, 0, 1)
    assert w(store, lambda t: t.lease("q", now=149.0, visibility=100.0, limit=10)) != []
    (late,) = w(store, lambda t: t.lease("q", now=150.0, visibility=1.0, limit=10))
    assert late.value == b"m0" and late.visible_at == 151.0 and late.receive_count == 1
    assert r(store, lambda t: t.queue_stats("other", now=100.0)) == (4, 0, 0)


def test_peek_get_message_purge(store: Store) -> None:
    ids = _enqueue(store, "q", 5)
    _enqueue(store, "other", 2)
    peeked = r(store, lambda t: t.peek("q"))
    assert [m.id for m in peeked] == ids
    assert all(m.receive_count == 0 and m.lease_token == "" for m in peeked)
    assert [m.id for m in r(store, lambda t: t.peek("q", after_id=ids[1], limit=2))] == ids[2:4]
    assert r(store, lambda t: t.get_message("other", ids[0])) is None
    assert r(store, lambda t: t.get_message("q", ids[0])).value == b"m0"
    w(store, lambda t: t.lease("q", now=100.0, visibility=30.0))
    assert len(r(store, lambda t: t.peek("q"))) == 5  # leased ones too
    assert w(store, lambda t: t.purge("q")) == 5
    assert r(store, lambda t: t.peek("q")) == []
    assert r(store, lambda t: t.queue_stats("other", now=100.0)) == (2, 0, 0)


def test_exclusive_groups_hand_out_each_group_in_order(store: Store) -> None:
    def fill(t: Txn) -> list[int]:
        return [
            t.enqueue("f", b"a1", now=100.0, group="a"),
            t.enqueue("f", b"a2", now=100.0, group="a"),
            t.enqueue("f", b"b1", now=100.0, group="b"),
            t.enqueue("f", b"a3", now=100.0, group="a"),
            t.enqueue("f", b"n1", now=100.0),
        ]

    a1, a2, b1, a3, n1 = w(store, fill)
    (m,) = w(store, lambda t: t.lease("f", now=100.0, visibility=30.0, exclusive_groups=True))
    assert m.id == a1
    # group a has a message in flight: none of its later messages may be handed out
    got = w(store, lambda t: t.lease("f", now=101.0, visibility=30.0, limit=10,
                                     exclusive_groups=True))  # fmt: skip
    assert [x.id for x in got] == [b1, n1]
    assert w(store, lambda t: t.lease("f", now=102.0, visibility=30.0, limit=10,
                                      exclusive_groups=True)) == []  # fmt: skip
    assert w(store, lambda t: t.ack("f", a1, m.lease_token)) is True
    got = w(store, lambda t: t.lease("f", now=103.0, visibility=30.0, limit=10,
                                     exclusive_groups=True))  # fmt: skip
    assert [x.id for x in got] == [a2, a3]  # the oldest of the group, in order
    # without exclusive groups, everything visible is fair game
    (x,) = _enqueue(store, "f", 1, group="b")
    assert [m.id for m in w(store, lambda t: t.lease("f", now=104.0, visibility=1.0, limit=9))] == [
        x
    ]


def test_exclusive_groups_wait_for_an_older_delayed_message(store: Store) -> None:
    def fill(t: Txn) -> list[int]:
        return [
            t.enqueue("f", b"late", now=100.0, delay=10.0, group="g"),
            t.enqueue("f", b"next", now=100.0, group="g"),
        ]

    late, nxt = w(store, fill)
    assert w(store, lambda t: t.lease("f", now=100.0, visibility=5.0, limit=10,
                                      exclusive_groups=True)) == []  # fmt: skip
    got = w(store, lambda t: t.lease("f", now=110.0, visibility=5.0, limit=10,
                                     exclusive_groups=True))  # fmt: skip
    assert [m.id for m in got] == [late, nxt]


# -- concurrency --------------------------------------------------------------------


def test_200_concurrent_writes_all_commit(store: Store) -> None:
    def writer(i: int) -> Callable[[Txn], int]:
        def fn(t: Txn) -> int:
            t.put("c", b"%03d" % i, b"%d" % i)
            t.enqueue("cq", b"%d" % i, now=1.0)
            return t.append("clog", b"%d" % i)

        return fn

    async def main() -> list[int]:
        async def one(i: int) -> int:
            seq = await store.write(writer(i))
            # every acknowledged write is visible to the next read
            assert await store.read(lambda t: t.get("c", b"%03d" % i)) == b"%d" % i
            return seq

        return await asyncio.gather(*(one(i) for i in range(200)))

    seqs = asyncio.run(main())
    assert sorted(seqs) == list(range(1, 201))
    assert r(store, lambda t: t.count("c")) == 200
    assert r(store, lambda t: t.queue_stats("cq", now=1.0)) == (200, 0, 0)
    log = r(store, lambda t: t.read_log("clog", limit=1000))
    assert sorted(v for _, v in log) == sorted(b"%d" % i for i in range(200))


def test_concurrent_leases_never_hand_out_a_message_twice(store: Store) -> None:
    ids = _enqueue(store, "q", 60)

    async def main() -> list[int]:
        async def lease() -> list[int]:
            msgs = await store.write(lambda t: t.lease("q", now=100.0, visibility=60.0, limit=3))
            return [m.id for m in msgs]

        batches = await asyncio.gather(*(lease() for _ in range(30)))
        return [i for b in batches for i in b]

    got = asyncio.run(main())
    assert sorted(got) == ids


# -- opening the store --------------------------------------------------------------


def test_open_store_sqlite_creates_the_data_dir(tmp_path: Path) -> None:
    from nubes.settings import Settings
    from nubes.storage import open_store

    settings = Settings(data_dir=tmp_path / "a" / "b")

    async def main() -> bytes | None:
        store = await open_store(settings)
        try:
            assert store.backend == "sqlite"
            await store.write(lambda t: t.put("t", b"k", b"v"))
            return await store.read(lambda t: t.get("t", b"k"))
        finally:
            await store.close()

    assert asyncio.run(main()) == b"v"
    assert (tmp_path / "a" / "b" / "nubes.db").exists()


def test_open_store_postgres_uses_the_urls_search_path(pg_schema: str) -> None:
    from nubes.settings import Settings
    from nubes.storage import open_store

    url = f"{PG_URL}?options=-csearch_path%3D{pg_schema}"

    async def main() -> bytes | None:
        store = await open_store(Settings(store=url))
        try:
            assert store.backend == "postgresql"
            await store.write(lambda t: t.put("t", b"k", b"v"))
            return await store.read(lambda t: t.get("t", b"k"))
        finally:
            await store.close()

    assert asyncio.run(main()) == b"v"
    admin = _pg_admin()
    try:
        row = admin.execute(f'SELECT count(*) FROM "{pg_schema}".kv').fetchone()
    finally:
        admin.close()
    assert row[0] == 1


@pytest.mark.parametrize(
    ("url", "schema", "expected"),
    [
        ("postgresql://u@h/db", None, "nubes"),
        ("postgresql://u@h/db", "mine", "mine"),
        ("postgresql://u@h/db?options=-csearch_path%3Dfrom_url", None, "from_url"),
        ("postgresql://u@h/db?options=-c%20search_path%3Dx%20-c%20work_mem%3D4MB", "y", "y"),
    ],
)
def test_schema_resolution(url: str, schema: str | None, expected: str) -> None:
    from psycopg.conninfo import conninfo_to_dict

    from nubes.storage.postgres import resolve_schema

    conninfo, name = resolve_schema(url, schema)
    assert name == expected
    options = conninfo_to_dict(conninfo)["options"]
    assert f"search_path={expected}" in str(options)
    if "work_mem" in url:
        assert "work_mem=4MB" in str(options)


def test_schema_names_must_be_plain_identifiers() -> None:
    from nubes.storage.postgres import resolve_schema

    with pytest.raises(StoreError):
        resolve_schema("postgresql://u@h/db", 'x"; DROP TABLE y; --')


# -- SQLite: reads start inline under a budget, slow ones move to the reader thread --


def test_sqlite_slow_inline_read_moves_to_the_reader_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nubes.storage import sqlite

    store = SqliteStore(tmp_path / "nubes.db")
    threaded: list[int] = []
    submit = store._readers.submit
    monkeypatch.setattr(store._readers, "submit", lambda job: (threaded.append(1), submit(job))[1])
    try:
        w(store, lambda t: [t.put("t", b"%05d" % i, b"v") for i in range(3000)])

        def swallowing(t: Txn) -> int:
            try:
                return len(t.scan("t"))
            except Exception:
                return -1  # a function that hides errors must not hide the interruption

        async def main() -> tuple[int | None, int, int]:
            point = await store.read(lambda t: t.get("t", b"00001"))
            assert threaded == []  # a point read stays inline
            assert point == b"v"
            monkeypatch.setattr(sqlite, "INLINE_READ_BUDGET", 0.0)
            full = await store.read(lambda t: len(t.scan("t")))
            hidden = await store.read(swallowing)
            return len(threaded), full, hidden

        moved, full, hidden = asyncio.run(main())
        assert (moved, full, hidden) == (2, 3000, 3000)
    finally:
        store.close_sync()


def test_sqlite_threaded_reads_see_acknowledged_writes(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "nubes.db", inline_reads=False)

    async def main() -> list[bytes | None]:
        async def one(i: int) -> bytes | None:
            await store.write(lambda t: t.put("t", b"%d" % i, b"%d" % i))
            return await store.read(lambda t: t.get("t", b"%d" % i))

        return await asyncio.gather(*(one(i) for i in range(100)))

    try:
        assert asyncio.run(main()) == [b"%d" % i for i in range(100)]
    finally:
        store.close_sync()


def test_concurrent_fifo_leases_keep_each_group_with_one_consumer(store: Store) -> None:
    def fill(t: Txn) -> dict[str, list[int]]:
        groups: dict[str, list[int]] = {}
        for i in range(10):
            for g in "abcde":
                groups.setdefault(g, []).append(t.enqueue("f", b"%s%d" % (g.encode(), i),
                                                          now=1.0, group=g))  # fmt: skip
        return groups

    groups = w(store, fill)

    async def main() -> list[list[Any]]:
        async def lease() -> list[Any]:
            return await store.write(  # type: ignore[no-any-return]
                lambda t: t.lease("f", now=1.0, visibility=600.0, limit=3, exclusive_groups=True)
            )

        return await asyncio.gather(*(lease() for _ in range(40)))

    calls = asyncio.run(main())
    for g, ids in groups.items():
        leased_in = [c for c in calls if any(m.group == g for m in c)]
        # the first lease of a group takes its oldest messages; then the group is busy
        assert len(leased_in) == 1, (g, leased_in)
        got = [m.id for m in leased_in[0] if m.group == g]
        assert got == ids[: len(got)]


def test_concurrent_read_modify_write_loses_no_update(store: Store) -> None:
    """Write functions are serializable: 60 concurrent increments make 60."""

    def increment(t: Txn) -> None:
        current = int(t.get("counter", b"n") or b"0")
        t.put("counter", b"n", b"%d" % (current + 1))

    async def main() -> None:
        await asyncio.gather(*(store.write(increment) for _ in range(60)))

    asyncio.run(main())
    assert r(store, lambda t: t.get("counter", b"n")) == b"60"


def test_closed_store_refuses_work(store: Store) -> None:
    w(store, lambda t: t.put("t", b"k", b"v"))
    store.close_sync()  # type: ignore[attr-defined]
    with pytest.raises(StoreError):
        w(store, lambda t: t.put("t", b"k2", b"v"))
    with pytest.raises(StoreError):
        r(store, lambda t: t.get("t", b"k"))

    async def main() -> None:
        await store.write(lambda t: t.put("t", b"k3", b"v"))

    with pytest.raises(StoreError):
        asyncio.run(main())


def test_sqlite_batch_survives_a_function_that_aborts_the_transaction(tmp_path: Path) -> None:
    """If a failure ends the whole transaction (as a full disk would), the batch's
    other functions run again and commit; only the failing one reports an error."""
    # group commit is the writer thread's: no write may run inline on the loop here
    store = SqliteStore(tmp_path / "nubes.db", inline_writes=False)
    gate = threading.Event()
    runs: list[str] = []

    def blocker(t: Txn) -> None:
        gate.wait(5)

    def ok(name: str) -> Callable[[Txn], str]:
        def fn(t: Txn) -> str:
            runs.append(name)
            t.put("t", name.encode(), b"1")
            return name

        return fn

    def aborting(t: Txn) -> None:
        t.put("t", b"aborting", b"1")
        t._c.execute("ROLLBACK")  # type: ignore[attr-defined]
        raise OSError("disk full")

    async def main() -> list[Any]:
        first = asyncio.ensure_future(store.write(blocker))
        await asyncio.sleep(0.05)
        tasks = [asyncio.ensure_future(store.write(f)) for f in (ok("a"), aborting, ok("b"))]
        await asyncio.sleep(0.05)
        gate.set()
        await first
        return await asyncio.gather(*tasks, return_exceptions=True)

    try:
        a, err, b = asyncio.run(main())
        assert (a, b) == ("a", "b") and isinstance(err, OSError)
        assert runs.count("a") == 2 and runs.count("b") == 1  # "a" ran again
        assert dict(r(store, lambda t: t.scan("t"))) == {b"a": b"1", b"b": b"1"}
    finally:
        store.close_sync()


def test_postgres_reconnects_after_losing_its_connections(pg_schema: str) -> None:
    from nubes.storage.postgres import PostgresStore

    # a private application_name: only this store's connections get killed
    store = PostgresStore(f"{PG_URL}?application_name={pg_schema}", schema=pg_schema, pool_size=2)
    try:
        w(store, lambda t: t.put("t", b"a", b"1"))
        admin = _pg_admin()
        try:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (pg_schema,),
            ).fetchone()
            assert killed[0] >= 1
        finally:
            admin.close()
        assert r(store, lambda t: t.count("t")) == 1  # a read reconnects too
        for i in range(4):  # every worker meets its dead connection and reconnects
            w(store, lambda t, i=i: t.put("t", b"b%d" % i, b"2"))
        assert r(store, lambda t: t.count("t")) == 5
    finally:
        store.close_sync()


def test_sqlite_inline_read_moves_to_a_thread_when_the_file_is_busy(tmp_path: Path) -> None:
    import sqlite3

    store = SqliteStore(tmp_path / "nubes.db")
    loop_thread = threading.current_thread()
    ran_on: list[threading.Thread] = []

    def read(t: Txn) -> bytes | None:
        ran_on.append(threading.current_thread())
        if threading.current_thread() is loop_thread:
            # what SQLite says when another process holds the file (busy_timeout 0 inline)
            raise sqlite3.OperationalError("database is locked")
        return t.get("t", b"k")

    try:
        w(store, lambda t: t.put("t", b"k", b"v"))
        assert asyncio.run(store.read(read)) == b"v"
        assert ran_on[0] is loop_thread and ran_on[1] is not loop_thread
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            asyncio.run(store.read(lambda t: t._c.execute("SELECT * FROM nope")))  # type: ignore[attr-defined]
    finally:
        store.close_sync()


def test_sqlite_inline_writes_keep_the_wal_checkpointed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writes that run on the event loop never checkpoint there: the writer thread
    does, so the WAL is reused instead of growing with every commit."""
    from nubes.storage import sqlite

    monkeypatch.setattr(sqlite, "CHECKPOINT_WRITES", 256)
    store = SqliteStore(tmp_path / "nubes.db")
    assert store.inline_writes

    async def main() -> None:
        for i in range(3000):
            await store.write(lambda t, i=i: t.put("t", b"k%d" % i, b"v" * 200))
        await asyncio.sleep(0.2)  # the writer thread's last checkpoint

    try:
        asyncio.run(main())
        assert len(r(store, lambda t: t.scan("t"))) == 3000
        wal = tmp_path / "nubes.db-wal"
        # ~3000 commits of a page or two each would be >12 MB without checkpoints
        assert wal.stat().st_size < 6 * 1024 * 1024, wal.stat().st_size
    finally:
        store.close_sync()


def test_sqlite_write_waits_for_another_process_holding_the_lock(tmp_path: Path) -> None:
    """Another connection's write lock sends a write to the writer thread, which
    waits for it (the event loop never does), and the write then lands."""
    store = SqliteStore(tmp_path / "nubes.db")
    other = sqlite3.connect(tmp_path / "nubes.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    released = threading.Timer(0.3, lambda: other.execute("COMMIT"))

    async def main() -> str:
        released.start()
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.ensure_future(tick())
        value: str = await store.write(lambda t: (t.put("t", b"k", b"v"), "done")[1])
        ticker.cancel()
        assert ticks >= 10  # the loop kept running while the write waited
        return value

    try:
        assert asyncio.run(main()) == "done"
        assert r(store, lambda t: t.get("t", b"k")) == b"v"
    finally:
        released.join()
        other.close()
        store.close_sync()


def test_sqlite_full_durability_never_writes_on_the_event_loop(tmp_path: Path) -> None:
    """With durability="full" a COMMIT waits for the disk: it stays on the writer thread."""
    store = SqliteStore(tmp_path / "nubes.db", durability="full")
    try:
        assert store.inline_writes is False
    finally:
        store.close_sync()


def test_sqlite_new_database_uses_8k_pages_and_old_ones_keep_theirs(tmp_path: Path) -> None:
    """A 1 KB record fits one 8 KiB page; a data dir made with 4 KiB pages still opens
    and keeps what it holds (SQLite cannot change a WAL database's page size)."""
    value = b"v" * 1100
    store = SqliteStore(tmp_path / "new.db")
    try:
        store.write_sync(lambda txn: txn.put("t", b"k", value))
    finally:
        store.close_sync()
    with sqlite3.connect(tmp_path / "new.db") as conn:
        assert conn.execute("PRAGMA page_size").fetchone()[0] == 8192
    old = tmp_path / "old.db"
    with sqlite3.connect(old) as conn:
        conn.execute("PRAGMA page_size = 4096")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE kv (tbl TEXT NOT NULL, k BLOB NOT NULL, v BLOB NOT NULL, PRIMARY KEY (tbl, k)) WITHOUT ROWID")
        conn.execute("INSERT INTO kv VALUES ('t', x'6b', ?)", (value,))
    store = SqliteStore(old)
    try:
        assert store.read_sync(lambda txn: txn.get("t", b"k")) == value
        store.write_sync(lambda txn: txn.put("t", b"k2", value))
        assert store.read_sync(lambda txn: txn.get("t", b"k2")) == value
    finally:
        store.close_sync()
    with sqlite3.connect(old) as conn:
        assert conn.execute("PRAGMA page_size").fetchone()[0] == 4096
