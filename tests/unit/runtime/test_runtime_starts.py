"""Cold starts: a limit on instances starting at once, waiting for a turn, start-up."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nubes.runtime import RuntimeManager, TooManyRequests

#: a function whose init takes a while; it reports when its init ran, and in which process
SLOW_INIT = """
import os, time
INIT_START = time.time()
time.sleep(float(os.environ.get("INIT_SLEEP", "0.3")))
INIT_END = time.time()
def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"pid": os.getpid(), "init": [INIT_START, INIT_END]}
"""


def _most_overlapping(intervals: list[tuple[float, float]]) -> int:
    """The most intervals that were open at the same moment."""
    edges = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def _slow(harness: Any, *, init_s: float = 0.3, **kw: Any) -> Any:
    env = {"INIT_SLEEP": str(init_s)}
    return harness.spec(harness.code(SLOW_INIT), environment=env, timeout_s=60, **kw)


def test_burst_never_starts_more_than_the_limit(harness: Any, new_rid: Callable[[], str]) -> None:
    harness.manager_options = {"max_starting": 2}
    spec = _slow(harness)

    async def scenario(m: RuntimeManager) -> Any:
        results = await asyncio.gather(
            *(m.invoke(spec, b'{"sleep": 0.2}', request_id=new_rid()) for _ in range(12))
        )
        pool = m._pools[(spec.name, spec.version)]
        return results, pool.peak_starting, pool.starting, len(pool.waiters)

    results, peak, starting, waiting = harness.run(scenario)
    assert all(r.function_error is None for r in results)
    bodies = [json.loads(r.payload) for r in results]
    inits = {b["pid"]: tuple(b["init"]) for b in bodies}
    # the functions' own clocks: never more than two inits ran at the same time
    assert _most_overlapping(list(inits.values())) <= 2
    assert peak == 2 and starting == 0 and waiting == 0
    # fewer instances than requests: some waited and were handed a warm instance
    assert len(inits) < 12
    assert sum(r.init_duration_ms is None for r in results) == 12 - len(inits)


def test_unlimited_burst_starts_in_parallel(harness: Any, new_rid: Callable[[], str]) -> None:
    """The control for the test above: without the limit the same burst overlaps."""
    harness.manager_options = {"max_starting": 1000}
    spec = _slow(harness)

    async def scenario(m: RuntimeManager) -> Any:
        return await asyncio.gather(
            *(m.invoke(spec, b'{"sleep": 0.2}', request_id=new_rid()) for _ in range(6))
        )

    results = harness.run(scenario)
    inits = {json.loads(r.payload)["pid"]: tuple(json.loads(r.payload)["init"]) for r in results}
    assert len(inits) == 6 and _most_overlapping(list(inits.values())) > 2


def test_waiting_request_takes_an_idle_instance(harness: Any, new_rid: Callable[[], str]) -> None:
    harness.manager_options = {"max_starting": 1}
    spec = _slow(harness, init_s=0.5)

    async def scenario(m: RuntimeManager) -> Any:
        first = await m.invoke(spec, b"{}", request_id=new_rid())  # one warm instance
        # a long invocation keeps it busy; a cold start takes its slot for 0.5 s
        slow = asyncio.ensure_future(m.invoke(spec, b'{"sleep": 0.2}', request_id=new_rid()))
        await asyncio.sleep(0.05)
        cold = asyncio.ensure_future(m.invoke(spec, b"{}", request_id=new_rid()))
        await asyncio.sleep(0.05)
        # no idle instance, no start slot: this one waits; the busy instance frees first
        waiter = await m.invoke(spec, b"{}", request_id=new_rid())
        return first, await slow, await cold, waiter

    first, slow, cold, waiter = harness.run(scenario)
    pid = json.loads(first.payload)["pid"]
    assert json.loads(slow.payload)["pid"] == pid
    assert json.loads(waiter.payload)["pid"] == pid and waiter.init_duration_ms is None
    assert json.loads(cold.payload)["pid"] != pid and cold.init_duration_ms is not None


def test_waiting_past_the_timeout_starts_anyway(harness: Any, new_rid: Callable[[], str]) -> None:
    harness.manager_options = {"max_starting": 1}
    spec = harness.spec(harness.code(SLOW_INIT), environment={"INIT_SLEEP": "1.5"}, timeout_s=0.3)

    async def scenario(m: RuntimeManager) -> Any:
        results = await asyncio.gather(
            *(m.invoke(spec, b"{}", request_id=new_rid()) for _ in range(3))
        )
        return results, m._pools[(spec.name, spec.version)].peak_starting

    results, peak = harness.run(scenario)
    # init does not count against the timeout; waiting for a slot only lasts that long
    assert all(r.function_error is None for r in results)
    assert len({json.loads(r.payload)["pid"] for r in results}) == 3
    assert peak == 3


def test_cancelled_waiter_passes_its_turn_on(harness: Any, new_rid: Callable[[], str]) -> None:
    harness.manager_options = {"max_starting": 1}
    spec = _slow(harness)

    async def scenario(m: RuntimeManager) -> Any:
        calls = [
            asyncio.ensure_future(m.invoke(spec, b"{}", request_id=new_rid())) for _ in range(4)
        ]
        await asyncio.sleep(0.1)
        pool = m._pools[(spec.name, spec.version)]
        waiting = len(pool.waiters)
        during = m.stats()[spec.name]
        calls[1].cancel()
        done = await asyncio.gather(*calls, return_exceptions=True)
        return waiting, during, done, pool.starting, len(pool.waiters), m.stats()[spec.name]["busy"]

    waiting, during, done, starting, waiters, busy = harness.run(scenario)
    assert waiting == 3
    assert (during["starting"], during["waiting"], during["busy"]) == (1, 3, 4)
    assert isinstance(done[1], asyncio.CancelledError)
    assert all(d.function_error is None for i, d in enumerate(done) if i != 1)
    assert starting == 0 and waiters == 0 and busy == 0


@pytest.mark.parametrize("max_starting", [1, 1000])
def test_waiting_requests_count_against_reserved_concurrency(
    harness: Any, new_rid: Callable[[], str], max_starting: int
) -> None:
    harness.manager_options = {"max_starting": max_starting}
    spec = _slow(harness, reserved_concurrency=2)

    async def scenario(m: RuntimeManager) -> Any:
        return await asyncio.gather(
            *(m.invoke(spec, b"{}", request_id=new_rid()) for _ in range(3)),
            return_exceptions=True,
        )

    outcomes = harness.run(scenario)
    throttled = [o for o in outcomes if isinstance(o, TooManyRequests)]
    assert len(throttled) == 1
    assert throttled[0].fields["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    assert sum(1 for o in outcomes if not isinstance(o, BaseException)) == 2


def test_start_does_not_wait_for_the_zygote(harness: Any, new_rid: Callable[[], str]) -> None:
    spec = harness.spec(harness.code("def handler(event, context):\n    return 7\n"))

    async def scenario(m: RuntimeManager) -> Any:
        running_after_start = m.zygote.running
        result = await m.invoke(spec, b"{}", request_id=new_rid())
        return running_after_start, result, m.zygote.running

    running_after_start, result, running = harness.run(scenario)
    assert running_after_start is False
    assert result.payload == b"7" and running is True


def test_stop_while_the_zygote_starts_leaves_no_process(harness: Any) -> None:
    async def scenario(m: RuntimeManager) -> Any:
        for _ in range(200):  # until the zygote's process exists, but before it is ready
            if m.zygote._popen is not None:
                break
            await asyncio.sleep(0.001)
        return m.zygote._popen, m.zygote.running

    popen, running = harness.run(scenario)
    assert popen is not None and running is False
    assert popen.poll() is not None  # stop() killed and reaped it


def test_stop_fails_waiting_requests(harness: Any, new_rid: Callable[[], str]) -> None:
    harness.manager_options = {"max_starting": 1}
    spec = _slow(harness, init_s=1.0)

    async def scenario(m: RuntimeManager) -> Any:
        calls = [
            asyncio.ensure_future(m.invoke(spec, b"{}", request_id=new_rid())) for _ in range(3)
        ]
        await asyncio.sleep(0.2)
        await m.stop()
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        return outcomes, m.zygote.running

    (_, *waiting), running = harness.run(scenario)
    assert [getattr(o, "code", o) for o in waiting] == ["ServiceException"] * 2
    assert running is False  # nobody started the zygote again after the stop


def test_start_limit_from_the_settings(tmp_path: Path) -> None:
    from nubes.runtime.manager import default_max_starting
    from nubes.settings import Settings

    env = {"NUBES_DATA_DIR": str(tmp_path), "NUBES_LAMBDA_MAX_STARTING": "3"}
    assert RuntimeManager(Settings.load(env=env), platform_env={}).max_starting == 3
    default = RuntimeManager(Settings.load(env={"NUBES_DATA_DIR": str(tmp_path)}), platform_env={})
    assert default.max_starting == default_max_starting() >= 1
