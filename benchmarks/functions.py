"""Function benchmarks: warm latency, cold start, throughput, memory, burst, scale to zero.

``python -m benchmarks.functions [--quick] [--skip-ministack] [--skip-direct]`` prints one
JSON object per line: ``{"bench", "metric", "value", "unit", "baseline", "ratio"}`` (some
lines add ``target``, ``speedup``, ``error``...). Baselines are measured in the same run,
because this machine is noisy (about 90 s in all; ``--quick`` about 35 s):

1. Over HTTP (``functions_suite``/``functions_http``), the way users reach it: signed raw
   ``Invoke`` requests on keep-alive connections against ``nubes up``, against a bare
   uvicorn echo app with the same client, and against MiniStack (the same functions
   created with boto3); fresh ``python`` processes (``import boto3``, and one process per
   invocation running the same handler) are the cold-start and throughput baselines.
2. In-process (``direct_*`` metrics, skipped by ``--quick``): :class:`RuntimeManager`
   driven without HTTP, against a socketpair round trip to a forked echo process (the
   IPC floor every invocation pays). The difference to 1. is what the gateway and the
   Lambda service add.

``--warm-only [--against OTHER/src]`` measures only the warm numbers (about 15 s), and
with ``--against`` another checkout in the same run, alternating: the way to tell
whether a change to the invoke path helps on a noisy machine.

``--storm`` measures only cold starts under CPU pressure: steady load on a function whose
init is CPU-heavy while CPU hogs load the machine, with the runtime's start limit
(``max_starting``) and, as the same-run baseline, without it (about 20 s).

``benchmarks.functions_profile`` shows where a warm HTTP invoke spends its time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import functions_suite, harness
from nubes.runtime import FunctionSpec, RuntimeManager
from nubes.settings import Settings

ECHO = "def handler(event, context):\n    return event\n"
BOTO = "import boto3\nimport os\n\ndef handler(event, context):\n    return os.getpid()\n"
SLEEP = "import time\n\ndef handler(event, context):\n    time.sleep(1)\n    return 1\n"
#: init burns 150 ms of CPU (like building SDK clients at module level), each call 4 ms
CPU_INIT = """import os, time
def burn(seconds):
    t = time.process_time()
    while time.process_time() - t < seconds:
        pass
burn(0.15)
def handler(event, context):
    burn(0.004)
    time.sleep(0.02)
    return os.getpid()
"""


def emit(metric: str, value: float, unit: str, baseline: float | None = None, **extra: Any) -> None:
    """Print one result line (the shared benchmark format)."""
    harness.emit("functions", metric, value, unit, baseline, **extra)


def direct_emit(metric: str, value: float, unit: str, baseline: float | None = None) -> None:
    """A result of the runtime manager driven in-process (no HTTP, no gateway)."""
    emit(f"direct_{metric}", value, unit, baseline)


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))]


def spec_for(root: Path, name: str, source: str, **kw: Any) -> FunctionSpec:
    """Write ``source`` as app.py under ``root/name`` and describe it."""
    code = root / name
    code.mkdir(parents=True, exist_ok=True)
    (code / "app.py").write_text(source)
    return FunctionSpec(
        name=name,
        version="$LATEST",
        arn=f"arn:aws:lambda:us-east-1:000000000000:function:{name}",
        runtime="python3.12",
        handler="app.handler",
        code_dir=code,
        revision="1",
        **kw,
    )


def ipc_floor_ms(n: int) -> list[float]:
    """Round trips to a forked echo process over a socketpair."""
    a, b = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        a.close()
        while data := b.recv(65536):
            b.sendall(data)
        os._exit(0)
    b.close()
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        a.sendall(b'{"hello": "world"}')
        a.recv(65536)
        samples.append((time.perf_counter() - t) * 1000)
    a.close()
    os.waitpid(pid, 0)
    return samples


def process_per_invoke_ms(code_dir: Path, n: int) -> list[float]:
    """A fresh interpreter per invocation, importing and calling the handler."""
    script = "import sys, app; app.handler({}, None)"
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", script], cwd=code_dir, check=True)
        samples.append((time.perf_counter() - t) * 1000)
    return samples


async def warm_latency(m: RuntimeManager, root: Path, n: int) -> None:
    """p50/p99 of warm echo invocations, one at a time."""
    spec = spec_for(root, "echo", ECHO)
    payload = b'{"hello": "world"}'
    for _ in range(50):
        await m.invoke(spec, payload, request_id="warmup")
    samples = []
    for i in range(n):
        t = time.perf_counter()
        await m.invoke(spec, payload, request_id=f"r{i}")
        samples.append((time.perf_counter() - t) * 1000)
    floor = ipc_floor_ms(n)
    direct_emit("warm_invoke_p50", pct(samples, 50), "ms", pct(floor, 50))
    direct_emit("warm_invoke_p99", pct(samples, 99), "ms", pct(floor, 99))


async def cold_start(m: RuntimeManager, root: Path, n: int) -> None:
    """A new instance per invocation of a function that imports boto3 at module level."""
    samples = []
    for i in range(n):
        spec = spec_for(root, f"cold{i}", BOTO)
        t = time.perf_counter()
        await m.invoke(spec, b"{}", request_id=f"c{i}")
        samples.append((time.perf_counter() - t) * 1000)
        m.retire(spec.name)
    boto = []
    for _ in range(max(3, n // 4)):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import boto3"], check=True)
        boto.append((time.perf_counter() - t) * 1000)
    per_process = process_per_invoke_ms(root / "cold0", max(3, n // 4))
    direct_emit("cold_start_boto3_p50", statistics.median(samples), "ms", statistics.median(boto))
    direct_emit(
        "cold_start_boto3_p50_vs_process_per_invoke",
        statistics.median(samples),
        "ms",
        statistics.median(per_process),
    )


async def throughput(m: RuntimeManager, root: Path, seconds: float, clients: int) -> None:
    """Invocations per second of the echo function with concurrent clients."""
    spec = spec_for(root, "echo", ECHO)
    deadline = time.perf_counter() + seconds
    count = 0

    async def client() -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            await m.invoke(spec, b"{}", request_id="t")
            count += 1

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    rate = count / (time.perf_counter() - started)
    per_process = process_per_invoke_ms(spec.code_dir, 5)
    direct_emit(
        f"throughput_{clients}_clients",
        rate,
        "invocations/s",
        1000 / statistics.median(per_process),
    )


def uss_kb(pid: int) -> int:
    """Unique set size of a process."""
    total = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean", "Private_Dirty")):
                total += int(line.split()[1])
    return total


async def idle_memory(m: RuntimeManager, root: Path) -> None:
    """USS of an idle warm instance that imported boto3."""
    spec = spec_for(root, "idle", BOTO)
    pid = json.loads((await m.invoke(spec, b"{}", request_id="i")).payload)
    for _ in range(20):
        await m.invoke(spec, b"{}", request_id="i")
    direct_emit("idle_instance_uss", uss_kb(pid) / 1024, "MB")


async def loop_lag(lags: list[float], tick: float = 0.005) -> None:
    """Record how late each ``tick`` of the event loop came (ms) until cancelled."""
    loop = asyncio.get_running_loop()
    while True:
        t = loop.time()
        await asyncio.sleep(tick)
        lags.append((loop.time() - t - tick) * 1000)


async def burst(m: RuntimeManager, root: Path, n: int, keepalive: float) -> None:
    """n concurrent 1-second invocations all succeed; then the pool scales to zero."""
    spec = spec_for(root, "sleeper", SLEEP, timeout_s=30)
    lags: list[float] = []
    watchdog = asyncio.ensure_future(loop_lag(lags))
    started = time.perf_counter()
    results = await asyncio.gather(
        *(m.invoke(spec, b"{}", request_id=f"b{i}") for i in range(n)), return_exceptions=True
    )
    elapsed = time.perf_counter() - started
    watchdog.cancel()
    # how long the event loop was busy without a break: what every other request waited
    direct_emit(f"burst_{n}_loop_stall_max", max(lags, default=0.0), "ms")
    ok = sum(1 for r in results if not isinstance(r, BaseException) and r.function_error is None)
    direct_emit(f"burst_{n}_sleep_1s_succeeded", ok, "invocations", n)
    direct_emit(f"burst_{n}_sleep_1s_wall", elapsed, "s", 1.0)
    await asyncio.sleep(keepalive * 2 + 1)
    direct_emit("instances_after_keepalive", m.stats()["sleeper"]["instances"], "instances")


def _hog() -> None:
    while True:
        pass


async def _steady_load(
    spec: FunctionSpec, max_starting: int, rps: int, seconds: float
) -> dict[str, Any]:
    """``rps`` invocations a second for ``seconds`` on a fresh manager: latency and cold starts."""
    with tempfile.TemporaryDirectory() as tmp:
        m = RuntimeManager(
            Settings(data_dir=Path(tmp) / "data", lambda_keepalive=30.0),
            platform_env={},
            max_starting=max_starting,
        )
        await m.start()
        await m.zygote.ensure_started()
        latencies: list[float] = []

        async def call(i: int) -> Any:
            t = time.perf_counter()
            result = await m.invoke(spec, b"{}", request_id=f"s{i}")
            latencies.append((time.perf_counter() - t) * 1000)
            return result

        calls: list[asyncio.Future[Any]] = []
        began = time.perf_counter()
        try:
            while time.perf_counter() - began < seconds:
                calls.append(asyncio.ensure_future(call(len(calls))))
                await asyncio.sleep(1 / rps)
            results = await asyncio.gather(*calls, return_exceptions=True)
        finally:
            await m.stop()
    good = [r for r in results if not isinstance(r, BaseException)]
    return {
        "sent": len(calls),
        "errors": len(results) - sum(1 for r in good if r.function_error is None),
        "cold_starts": sum(1 for r in good if r.init_duration_ms is not None),
        "p50_ms": round(pct(latencies, 50), 1),
        "p99_ms": round(pct(latencies, 99), 1),
    }


async def start_storm(root: Path, seconds: float, rps: int = 200, hogs: int = 4) -> None:
    """Steady load on a function with a CPU-heavy init while CPU hogs load the machine.

    The same run with the start limit off (every request that finds no idle instance
    starts one, as before the limit) is the baseline: under CPU pressure requests
    queue, more instances start, and their inits take the CPU the requests need.
    """
    import multiprocessing

    spec = spec_for(root, "storm", CPU_INIT, timeout_s=3)
    procs = [multiprocessing.Process(target=_hog, daemon=True) for _ in range(hogs)]
    for proc in procs:
        proc.start()
    try:
        unlimited = await _steady_load(spec, 1_000_000, rps, seconds)
        limited = await _steady_load(spec, 0, rps, seconds)  # 0: the default limit
    finally:
        for proc in procs:
            proc.kill()
    extra = {"rps": rps, "seconds": seconds, "cpu_hogs": hogs}
    emit("direct_storm_p99", limited["p99_ms"], "ms", unlimited["p99_ms"], **extra,
         limited=limited, unlimited=unlimited)  # fmt: skip
    emit("direct_storm_cold_starts", limited["cold_starts"], "starts", unlimited["cold_starts"])


async def direct_suite(quick: bool) -> None:
    """The runtime manager in-process: what the runtime costs without the gateway."""
    keepalive = 1.0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        m = RuntimeManager(
            Settings(data_dir=root / "data", lambda_keepalive=keepalive), platform_env={}
        )
        await m.start()
        try:
            await warm_latency(m, root, 500 if quick else 3000)
            await cold_start(m, root, 5 if quick else 20)
            await throughput(m, root, 1.0 if quick else 2.0, 16)
            await idle_memory(m, root)
            await burst(m, root, 100 if quick else 500, keepalive)
        finally:
            await m.stop()
        await start_storm(root, 8.0)


def main() -> None:
    """Run every benchmark once: over HTTP against nubes, a bare echo app and MiniStack, then in-process."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="shorter runs (under a minute)")
    parser.add_argument("--skip-ministack", action="store_true")
    parser.add_argument(
        "--skip-direct", action="store_true", help="skip the in-process runtime manager runs"
    )
    parser.add_argument(
        "--warm-only", action="store_true",
        help="only warm latency, 16-client throughput and server CPU over HTTP (with the bare echo)",
    )  # fmt: skip
    parser.add_argument(
        "--storm", action="store_true",
        help="only steady load on a CPU-heavy-init function under CPU hogs, start limit on/off",
    )  # fmt: skip
    parser.add_argument(
        "--against", metavar="SRC",
        help="with --warm-only: also measure another checkout's src directory in the same run",
    )  # fmt: skip
    args = parser.parse_args()
    began = time.perf_counter()
    if args.storm:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(start_storm(Path(tmp), 8.0))
        return
    if args.warm_only:
        functions_suite.warm_suite(args.quick, emit, args.against)
        emit("benchmark_wall_time", time.perf_counter() - began, "s", None)
        return
    functions_suite.http_suite(args.quick, not args.skip_ministack, emit)
    if not args.skip_direct and not args.quick:
        asyncio.run(direct_suite(args.quick))
    emit("benchmark_wall_time", time.perf_counter() - began, "s", 60.0 if args.quick else 180.0)


if __name__ == "__main__":
    main()
