"""Memory is sampled in rounds for every busy instance, off the event loop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from nubes.runtime import RuntimeManager

HOG = """
import time
def handler(event, context):
    hog = b"x" * (event["mb"] * 1024 * 1024)
    time.sleep(event["sleep"])
    return len(hog)
"""


def test_one_instance_over_its_limit_among_many_busy(
    harness: Any, new_rid: Callable[[], str]
) -> None:
    spec = harness.spec(harness.code(HOG), memory_mb=128, timeout_s=10)

    async def scenario(m: RuntimeManager) -> Any:
        calm = [m.invoke(spec, b'{"mb": 1, "sleep": 1.0}', request_id=new_rid()) for _ in range(8)]
        hog = m.invoke(spec, b'{"mb": 300, "sleep": 1.0}', request_id=new_rid())
        results = await asyncio.gather(hog, *calm)
        busy_after = len(m.memory_watch._busy)
        return results, busy_after

    (hog, *calm), busy_after = harness.run(scenario)
    assert json.loads(hog.payload)["errorType"] == "Runtime.OutOfMemory"
    assert hog.max_memory_used_mb == 128
    assert all(r.function_error is None and r.max_memory_used_mb < 128 for r in calm)
    assert busy_after == 0  # finished invocations are no longer sampled


def test_instances_share_the_managers_watch(harness: Any, new_rid: Callable[[], str]) -> None:
    spec = harness.spec(harness.code(HOG))

    async def scenario(m: RuntimeManager) -> Any:
        await asyncio.gather(
            *(m.invoke(spec, b'{"mb": 1, "sleep": 0.2}', request_id=new_rid()) for _ in range(3))
        )
        instances = [i for pool in m._pools.values() for i in pool.instances]
        return [i.memory_watch is m.memory_watch for i in instances]

    shared = harness.run(scenario)
    assert shared == [True, True, True]
