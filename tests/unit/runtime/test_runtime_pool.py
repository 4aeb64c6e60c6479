"""Pools: one instance per concurrent request, throttling, keep-alive, revisions."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from typing import Any

import pytest

from nubes.runtime import RuntimeManager, TooManyRequests

SLEEPER = """
import os, time
def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return os.getpid()
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_one_instance_per_concurrent_request(harness: Any, new_rid: Callable[[], str]) -> None:
    spec = harness.spec(harness.code(SLEEPER))

    async def scenario(m: RuntimeManager) -> Any:
        started = time.monotonic()
        results = await asyncio.gather(
            *(m.invoke(spec, b'{"sleep": 0.5}', request_id=new_rid()) for _ in range(5))
        )
        elapsed = time.monotonic() - started
        busy_stats = m.stats()
        warm = await asyncio.gather(
            *(m.invoke(spec, b"{}", request_id=new_rid()) for _ in range(5))
        )
        return results, elapsed, busy_stats, warm

    results, elapsed, stats, warm = harness.run(scenario)
    pids = {json.loads(r.payload) for r in results}
    assert len(pids) == 5
    assert elapsed < 2.0  # in parallel, not 5 × 0.5 s one after another
    assert stats["fn"]["instances"] == 5 and stats["fn"]["busy"] == 0
    assert stats["fn"]["invocations"] == 5
    # the same five instances serve the next burst warm
    assert {json.loads(r.payload) for r in warm} == pids
    assert all(r.init_duration_ms is None for r in warm)


def test_reserved_concurrency_throttles(harness: Any, new_rid: Callable[[], str]) -> None:
    spec = harness.spec(harness.code(SLEEPER), reserved_concurrency=2)
    zero = harness.spec(harness.code(SLEEPER, name="z"), name="z", reserved_concurrency=0)

    async def scenario(m: RuntimeManager) -> Any:
        outcomes = await asyncio.gather(
            *(m.invoke(spec, b'{"sleep": 0.4}', request_id=new_rid()) for _ in range(3)),
            return_exceptions=True,
        )
        with pytest.raises(TooManyRequests) as blocked:
            await m.invoke(zero, b"{}", request_id=new_rid())
        return outcomes, blocked.value, m.stats()

    outcomes, blocked, stats = harness.run(scenario)
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], TooManyRequests)
    assert errors[0].code == "TooManyRequestsException" and errors[0].status == 429
    assert errors[0].fields["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    assert errors[0].message == "Rate Exceeded."
    assert blocked.fields["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    assert stats["fn"]["instances"] == 2


def test_account_concurrency_throttles(harness: Any, new_rid: Callable[[], str]) -> None:
    a = harness.spec(harness.code(SLEEPER, name="a"), name="a")
    b = harness.spec(harness.code(SLEEPER, name="b"), name="b")

    async def scenario(m: RuntimeManager) -> Any:
        return await asyncio.gather(
            m.invoke(a, b'{"sleep": 0.4}', request_id=new_rid()),
            m.invoke(b, b'{"sleep": 0.4}', request_id=new_rid()),
            m.invoke(a, b'{"sleep": 0.4}', request_id=new_rid()),
            return_exceptions=True,
        )

    outcomes = harness.run(scenario, lambda_concurrency=2)
    assert not isinstance(outcomes[0], BaseException)
    assert not isinstance(outcomes[1], BaseException)
    assert isinstance(outcomes[2], TooManyRequests)
    assert outcomes[2].fields["Reason"] == "ConcurrentInvocationLimitExceeded"


def test_scale_to_zero_after_keepalive(harness: Any, new_rid: Callable[[], str]) -> None:
    spec = harness.spec(harness.code(SLEEPER))

    async def scenario(m: RuntimeManager) -> Any:
        first = await m.invoke(spec, b"{}", request_id=new_rid())
        pid = json.loads(first.payload)
        warm_stats = m.stats()
        await asyncio.sleep(1.0)
        cold_stats = m.stats()
        alive_after = _alive(pid)
        again = await m.invoke(spec, b"{}", request_id=new_rid())
        return warm_stats, cold_stats, alive_after, again

    warm_stats, cold_stats, alive_after, again = harness.run(scenario, lambda_keepalive=0.3)
    assert warm_stats["fn"]["instances"] == 1
    assert cold_stats["fn"]["instances"] == 0
    assert cold_stats["fn"]["invocations"] == 1
    assert not alive_after
    assert again.init_duration_ms is not None  # a cold start again


COUNTER = """
import os
CALLS = 0
VERSION = open("version.txt").read()
def handler(event, context):
    global CALLS
    CALLS += 1
    return [VERSION, CALLS, os.getpid()]
"""


def test_revision_change_replaces_instances(harness: Any, new_rid: Callable[[], str]) -> None:
    code = harness.code(COUNTER)
    (code / "version.txt").write_text("one")
    v1 = harness.spec(code, revision="r1")
    v2 = harness.spec(code, revision="r2")

    async def scenario(m: RuntimeManager) -> Any:
        a = json.loads((await m.invoke(v1, b"{}", request_id=new_rid())).payload)
        b = json.loads((await m.invoke(v1, b"{}", request_id=new_rid())).payload)
        (code / "version.txt").write_text("two")
        c = json.loads((await m.invoke(v2, b"{}", request_id=new_rid())).payload)
        await asyncio.sleep(0.2)
        return a, b, c, _alive(a[2])

    a, b, c, old_alive = harness.run(scenario)
    assert a[:2] == ["one", 1] and b[:2] == ["one", 2]
    assert c[:2] == ["two", 1] and c[2] != a[2]
    assert not old_alive


def test_retire_drains_busy_and_idle(harness: Any, new_rid: Callable[[], str]) -> None:
    spec = harness.spec(harness.code(SLEEPER))

    async def scenario(m: RuntimeManager) -> Any:
        idle_pid = json.loads((await m.invoke(spec, b"{}", request_id=new_rid())).payload)
        busy = asyncio.ensure_future(m.invoke(spec, b'{"sleep": 0.3}', request_id=new_rid()))
        second = asyncio.ensure_future(m.invoke(spec, b'{"sleep": 0.3}', request_id=new_rid()))
        await asyncio.sleep(0.1)
        m.retire("fn")
        done = await asyncio.gather(busy, second)
        await asyncio.sleep(0.2)
        pids = [json.loads(r.payload) for r in done]
        return idle_pid, pids, m.stats(), [_alive(p) for p in [idle_pid, *pids]]

    _, pids, stats, alive = harness.run(scenario)
    assert len(set(pids)) == 2
    assert stats["fn"]["instances"] == 0
    assert alive == [False, False, False]


def test_unsupported_runtime(harness: Any, new_rid: Callable[[], str]) -> None:
    spec = harness.spec(harness.code(SLEEPER), runtime="nodejs20.x")

    async def scenario(m: RuntimeManager) -> Any:
        return await m.invoke(spec, b"{}", request_id=new_rid())

    with pytest.raises(Exception) as err:
        harness.run(scenario)
    assert getattr(err.value, "code", None) == "InvalidRuntimeException"


def test_stop_kills_instances(harness: Any, new_rid: Callable[[], str]) -> None:
    spec = harness.spec(harness.code(SLEEPER))

    async def scenario(m: RuntimeManager) -> Any:
        return json.loads((await m.invoke(spec, b"{}", request_id=new_rid())).payload), m.zygote.pid

    pid, zygote_pid = harness.run(scenario)
    time.sleep(0.2)
    assert not _alive(pid)
    assert zygote_pid is not None and not _alive(zygote_pid)
    assert os.listdir(harness.tmp_path / "data" / "runtime" / "tmp") == []


def test_zygote_restarts_after_dying(harness: Any, new_rid: Callable[[], str]) -> None:
    spec = harness.spec(harness.code(SLEEPER))

    async def scenario(m: RuntimeManager) -> Any:
        first = await m.invoke(spec, b"{}", request_id=new_rid())
        old_zygote = m.zygote.pid
        assert old_zygote is not None
        os.kill(old_zygote, 9)
        await asyncio.sleep(0.3)
        second = await m.invoke(spec, b"{}", request_id=new_rid())
        return first, second, old_zygote, m.zygote.pid

    first, second, old_zygote, new_zygote = harness.run(scenario)
    assert new_zygote != old_zygote
    assert second.function_error is None and second.init_duration_ms is not None
    assert not _alive(json.loads(first.payload))  # instances die with their zygote


def test_client_context_forms() -> None:
    import base64

    from nubes.runtime.manager import parse_client_context

    raw = {"custom": {"a": 1}}
    assert parse_client_context(base64.b64encode(json.dumps(raw).encode()).decode()) == raw
    assert parse_client_context(json.dumps(raw)) == raw
    assert parse_client_context("") is None
    assert parse_client_context("not json at all") is None


def test_cancelled_invocation_discards_its_instance(
    harness: Any, new_rid: Callable[[], str]
) -> None:
    spec = harness.spec(harness.code(SLEEPER), timeout_s=10)

    async def scenario(m: RuntimeManager) -> Any:
        warm = json.loads((await m.invoke(spec, b"{}", request_id=new_rid())).payload)
        task = asyncio.ensure_future(m.invoke(spec, b'{"sleep": 5}', request_id=new_rid()))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.2)
        stats = m.stats()
        after = await m.invoke(spec, b"{}", request_id=new_rid())
        return warm, stats, after

    warm, stats, after = harness.run(scenario)
    assert stats["fn"]["instances"] == 0 and stats["fn"]["busy"] == 0
    assert not _alive(warm)
    assert after.function_error is None and after.init_duration_ms is not None


def test_reservations_are_carved_out_of_the_account_limit(
    harness: Any, new_rid: Callable[[], str]
) -> None:
    reserved = harness.spec(harness.code(SLEEPER, name="r"), name="r", reserved_concurrency=2)
    shared = harness.spec(harness.code(SLEEPER, name="s"), name="s")

    async def scenario(m: RuntimeManager) -> Any:
        await m.invoke(reserved, b"{}", request_id=new_rid())  # the manager learns the reservation
        assert m.unreserved_concurrency == 1
        outcomes = await asyncio.gather(
            m.invoke(reserved, b'{"sleep": 0.4}', request_id=new_rid()),
            m.invoke(reserved, b'{"sleep": 0.4}', request_id=new_rid()),
            m.invoke(shared, b'{"sleep": 0.4}', request_id=new_rid()),
            m.invoke(shared, b'{"sleep": 0.4}', request_id=new_rid()),
            return_exceptions=True,
        )
        m.set_reserved_concurrency("r", None)
        return outcomes, m.unreserved_concurrency

    outcomes, after = harness.run(scenario, lambda_concurrency=3)
    assert [isinstance(o, TooManyRequests) for o in outcomes] == [False, False, False, True]
    assert outcomes[3].fields["Reason"] == "ConcurrentInvocationLimitExceeded"
    assert after == 3


def test_relative_code_and_data_dirs(
    harness: Any, new_rid: Callable[[], str], monkeypatch: Any
) -> None:
    from pathlib import Path

    from nubes.settings import Settings

    code = harness.code(
        "import os, tempfile\n"
        "def handler(event, context):\n"
        "    return [os.getcwd(), tempfile.gettempdir()]\n"
    )
    monkeypatch.chdir(harness.tmp_path)
    spec = harness.spec(code.relative_to(harness.tmp_path))

    async def main() -> Any:
        m = RuntimeManager(Settings(data_dir=Path("data")), platform_env={})
        await m.start()
        try:
            return await m.invoke(spec, b"{}", request_id=new_rid())
        finally:
            await m.stop()

    result = asyncio.run(main())
    assert result.function_error is None, result.payload
    cwd, tmp = json.loads(result.payload)
    assert cwd == str(code)
    assert Path(tmp).is_absolute() and Path(tmp).is_relative_to(harness.tmp_path / "data")
