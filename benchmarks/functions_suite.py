"""The over-HTTP half of ``benchmarks.functions``: nubes, a bare echo app and MiniStack,
measured in one run so every ratio compares numbers taken under the same machine load."""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import functions_http as fh

Emit = Callable[..., None]
KEEPALIVE = 2.0


@dataclass(frozen=True)
class Sizes:
    """How long / how many, full run or ``--quick``."""

    warm_s: float
    load_s: float
    cold_n: int
    peer_cold_n: int
    baseline_n: int
    burst_n: int

    @classmethod
    def of(cls, quick: bool) -> Sizes:
        """The sizes for a full or a quick run."""
        if quick:
            return cls(warm_s=1.5, load_s=1.5, cold_n=5, peer_cold_n=3, baseline_n=3, burst_n=500)
        return cls(warm_s=4.0, load_s=4.0, cold_n=15, peer_cold_n=8, baseline_n=8, burst_n=500)


def median(values: list[float]) -> float:
    """The median (0 for no values)."""
    return statistics.median(values) if values else 0.0


def bare_echo(work: Path, sizes: Sizes, emit: Emit) -> dict[str, float]:
    """The bare uvicorn echo app with the same one-connection client."""
    server = fh.start_bare(work)
    try:
        request = fh.Target("bare", server).invoke_request("echo")
        res = fh.warm(server.port, server, request, sizes.warm_s, 1)
    finally:
        server.stop()
    emit(
        "bare_echo_p50",
        res.p50_ms,
        "ms",
        None,
        p99_ms=round(res.p99_ms, 3),
        requests=res.requests,
        errors=res.errors,
    )
    return {"p50": res.p50_ms, "p99": res.p99_ms}


def baselines(work: Path, sizes: Sizes, emit: Emit) -> dict[str, float]:
    """Fresh interpreters: ``import boto3``, and one process per invocation of the handlers."""
    boto_dir, echo_dir = work / "pp_boto", work / "pp_echo"
    for d, src in ((boto_dir, fh.BOTO), (echo_dir, fh.ECHO)):
        d.mkdir(exist_ok=True)
        (d / "app.py").write_text(src)
    out = {
        "import_boto3": median(fh.fresh_python_ms(sizes.baseline_n, "import boto3")),
        "pp_boto": median(
            fh.fresh_python_ms(
                sizes.baseline_n, fh.PER_PROCESS.replace("sys.argv[1]", "'{}'"), boto_dir
            )
        ),
        "pp_echo": median(
            fh.fresh_python_ms(
                sizes.baseline_n, fh.PER_PROCESS.replace("sys.argv[1]", "'{}'"), echo_dir
            )
        ),
        "pp_rate_16": asyncio.run(fh.process_per_invoke_rate(echo_dir, 16, sizes.load_s)),
    }
    emit("baseline_python_import_boto3_p50", out["import_boto3"], "ms", None)
    emit("baseline_process_per_invoke_boto3_p50", out["pp_boto"], "ms", None)
    emit("baseline_process_per_invoke_echo_p50", out["pp_echo"], "ms", None)
    emit(
        "baseline_process_per_invoke_throughput_16_clients",
        out["pp_rate_16"],
        "invocations/s",
        None,
    )
    return out


def create_all(target: fh.Target, names: dict[str, str]) -> None:
    """Create each function and check that echo answers with its payload."""
    for name, source in names.items():
        fh.create_function(target, name, source)
    body, _ = fh.invoke_ok(target, "echo")
    if json.loads(body) != json.loads(fh.PAYLOAD):
        raise RuntimeError(f"{target.name}: echo answered {body!r}")


def latency_and_load(target: fh.Target, sizes: Sizes, clients: tuple[int, ...]) -> dict[str, Any]:
    """Warm p50/p99 with one client, then invocations/s with each client count."""
    request = target.invoke_request("echo")
    one = fh.warm(target.port, target.server, request, sizes.warm_s, 1)
    out: dict[str, Any] = {
        "p50": one.p50_ms,
        "p99": one.p99_ms,
        "warm_errors": one.errors,
        "warm_n": one.requests,
    }
    for n in clients:
        res = fh.warm(target.port, target.server, request, sizes.load_s, n)
        out[f"rps_{n}"] = res.rps
        out[f"rps_{n}_detail"] = {"p50_ms": round(res.p50_ms, 3), "p99_ms": round(res.p99_ms, 3),
                                  "cpu_us_per_request": round(res.cpu_per_request_us, 1), "errors": res.errors}  # fmt: skip
    return out


def nubes_http(
    nubes: fh.Target, sizes: Sizes, base: dict[str, float], bare: dict[str, float], emit: Emit
) -> dict[str, Any]:
    """Warm latency, throughput and cold starts of nubes over HTTP."""
    create_all(
        nubes,
        {
            "echo": fh.ECHO,
            "cold_echo": fh.ECHO,
            "cold_boto": fh.BOTO,
            "idle": fh.BOTO,
            "sleeper": fh.SLEEP,
        },
    )
    r = latency_and_load(nubes, sizes, (16, 8))
    emit(
        "http_warm_invoke_p50",
        r["p50"],
        "ms",
        bare["p50"],
        target="<= 2 ms and <= 1.5x bare echo",
        errors=r["warm_errors"],
    )
    emit("http_warm_invoke_p99", r["p99"], "ms", bare["p99"], target="<= 10 ms")
    for n in (16, 8):
        emit(f"http_throughput_{n}_clients", r[f"rps_{n}"], "invocations/s", base["pp_rate_16"] if n == 16 else None,
             target=">= 2000/s" if n == 16 else None, **r[f"rps_{n}_detail"])  # fmt: skip
    r["cold_boto"] = median(fh.cold_starts(nubes, "cold_boto", sizes.cold_n))
    r["cold_echo"] = median(fh.cold_starts(nubes, "cold_echo", sizes.cold_n))
    emit("http_cold_start_boto3_p50", r["cold_boto"], "ms", base["import_boto3"], target="<= 20 ms", n=sizes.cold_n,
         baseline_is="fresh python -c 'import boto3'")  # fmt: skip
    emit("http_cold_start_boto3_p50_vs_process_per_invoke", r["cold_boto"], "ms", base["pp_boto"])
    emit("http_cold_start_echo_p50_vs_process_per_invoke", r["cold_echo"], "ms", base["pp_echo"])
    return r


def nubes_memory(nubes: fh.Target, sizes: Sizes, emit: Emit) -> float:
    """USS of an idle warm instance; a burst of 1-second invocations. Returns when it ended."""
    pid = 0
    for _ in range(20):
        body, _ = fh.invoke_ok(nubes, "idle", b"{}")
        pid = int(body)
    time.sleep(0.3)
    emit(
        "idle_instance_uss", fh.uss_mb(pid), "MB", 12.0, target="<= 12 MB", function_imports="boto3"
    )
    ok, failures, wall = asyncio.run(fh.burst(nubes, "sleeper", sizes.burst_n))
    emit(
        f"burst_{sizes.burst_n}_sleep_1s_succeeded",
        ok,
        "invocations",
        sizes.burst_n,
        failures=failures,
    )
    emit(f"burst_{sizes.burst_n}_sleep_1s_wall", wall, "s", 1.0)
    return time.monotonic()


def ministack(sizes: Sizes, emit: Emit) -> dict[str, Any]:
    """The same functions in MiniStack: warm latency, 8-client throughput, cold starts."""
    try:
        peer = fh.start_ministack()
    except Exception as exc:
        emit("ministack_warm_invoke_p50", 0, "ms", None, error=f"MiniStack did not start: {exc}")
        return {}
    try:
        create_all(peer, {"echo": fh.ECHO, "cold_echo": fh.ECHO, "cold_boto": fh.BOTO})
        r = latency_and_load(peer, sizes, (8,))
        r["cold_boto"] = median(fh.cold_starts(peer, "cold_boto", sizes.peer_cold_n))
        r["cold_echo"] = median(fh.cold_starts(peer, "cold_echo", sizes.peer_cold_n))
    except Exception as exc:
        emit(
            "ministack_warm_invoke_p50",
            0,
            "ms",
            None,
            error=f"MiniStack could not run a Python Lambda: {exc!r}",
        )
        return {}
    finally:
        peer.server.stop()
    emit(
        "ministack_warm_invoke_p50",
        r["p50"],
        "ms",
        None,
        p99_ms=round(r["p99"], 3),
        errors=r["warm_errors"],
    )
    emit("ministack_throughput_8_clients", r["rps_8"], "invocations/s", None, **r["rps_8_detail"])
    emit("ministack_cold_start_echo_p50", r["cold_echo"], "ms", None, n=sizes.peer_cold_n)
    emit("ministack_cold_start_boto3_p50", r["cold_boto"], "ms", None, n=sizes.peer_cold_n)
    return r


def compare(ours: dict[str, Any], peer: dict[str, Any], emit: Emit) -> None:
    """nubes against MiniStack: value and baseline as measured, speedup = baseline / value."""
    rows = (("warm_invoke_p50", "p50", ">= 20x faster"), ("cold_start_boto3_p50", "cold_boto", ">= 8x faster"),
            ("cold_start_echo_p50", "cold_echo", ">= 8x faster"))  # fmt: skip
    for metric, key, target in rows:
        emit(
            f"{metric}_vs_ministack",
            ours[key],
            "ms",
            peer[key],
            speedup=round(peer[key] / ours[key], 1),
            target=target,
        )
    emit("throughput_8_clients_vs_ministack", ours["rps_8"], "invocations/s", peer["rps_8"])


async def _wait_and_read(nubes: fh.Target, since: float) -> dict[str, int]:
    """Wait out the keep-alive (plus the reaper's interval) after ``since``; read instances."""
    await asyncio.sleep(max(0.0, since + KEEPALIVE * 1.5 + 1.0 - time.monotonic()))
    return fh.usage_instances(nubes)


def http_suite(quick: bool, with_ministack: bool, emit: Emit) -> None:
    """Everything over HTTP, in one run."""
    sizes = Sizes.of(quick)
    with tempfile.TemporaryDirectory(prefix="bench-fn-") as tmp:
        work = Path(tmp)
        bare = bare_echo(work, sizes, emit)
        base = baselines(work, sizes, emit)
        nubes = fh.start_nubes(work / "nubes", KEEPALIVE)
        try:
            ours = nubes_http(nubes, sizes, base, bare, emit)
            burst_ended = nubes_memory(nubes, sizes, emit)
            # MiniStack runs while nubes' instances sit out their keep-alive
            peer = ministack(sizes, emit) if with_ministack else {}
            live = asyncio.run(_wait_and_read(nubes, burst_ended))
            emit("instances_after_keepalive", sum(live.values()), "instances", None,
                 keepalive_s=KEEPALIVE, per_function=live, target="0")  # fmt: skip
        finally:
            nubes.server.stop()
    if peer:
        compare(ours, peer, emit)


def warm_suite(quick: bool, emit: Emit, against: str | None = None) -> None:
    """Only the warm numbers (``--warm-only``): bare echo, then nubes' warm p50/p99,
    16-client throughput and server CPU per invoke. With ``against`` (another
    checkout's ``src``) that one is measured in the same run, alternating with this
    one, and each ``*_vs_against`` line gives this tree's value over the other's."""
    sizes = Sizes.of(quick)
    runs = [("", None), ("against_", against)] if against else [("", None)]
    results: dict[str, list[dict[str, Any]]] = {prefix: [] for prefix, _ in runs}
    with tempfile.TemporaryDirectory(prefix="bench-fn-warm-") as tmp:
        work = Path(tmp)
        bare = bare_echo(work, sizes, emit)
        for round_ in range(2 if against else 1):
            for prefix, src in runs:
                nubes = fh.start_nubes(work / f"nubes-{prefix}{round_}", KEEPALIVE, src)
                try:
                    create_all(nubes, {"echo": fh.ECHO})
                    request = nubes.invoke_request("echo")
                    one = fh.warm(nubes.port, nubes.server, request, sizes.warm_s, 1)
                    many = fh.warm(nubes.port, nubes.server, request, sizes.load_s, 16)
                finally:
                    nubes.server.stop()
                results[prefix].append({"p50": one.p50_ms, "p99": one.p99_ms, "cpu_1": one.cpu_per_request_us,
                                        "rps_16": many.rps, "cpu_16": many.cpu_per_request_us,
                                        "errors": {**one.errors, **many.errors}})  # fmt: skip
    best: dict[str, dict[str, float]] = {}
    for prefix, rows in results.items():
        # the better of the rounds: noise on a shared machine only ever slows a run down
        b = best[prefix] = {"p50": min(r["p50"] for r in rows), "p99": min(r["p99"] for r in rows),
                            "cpu_1": min(r["cpu_1"] for r in rows), "rps_16": max(r["rps_16"] for r in rows),
                            "cpu_16": min(r["cpu_16"] for r in rows)}  # fmt: skip
        errors = [r["errors"] for r in rows if r["errors"]]
        emit(f"{prefix}http_warm_invoke_p50", b["p50"], "ms", bare["p50"],
             target="<= 2 ms and <= 1.5x bare echo", errors=errors)  # fmt: skip
        emit(f"{prefix}http_warm_invoke_p99", b["p99"], "ms", bare["p99"], target="<= 10 ms")
        emit(f"{prefix}http_warm_server_cpu_1_client", b["cpu_1"], "us/invoke", None)
        emit(f"{prefix}http_throughput_16_clients", b["rps_16"], "invocations/s", None, target=">= 2000/s",
             cpu_us_per_request=round(b["cpu_16"], 1))  # fmt: skip
    if against:
        ours, theirs = best[""], best["against_"]
        for key, metric, unit in (("p50", "http_warm_invoke_p50", "ms"), ("cpu_1", "http_warm_server_cpu_1_client", "us/invoke"),
                                  ("rps_16", "http_throughput_16_clients", "invocations/s"),
                                  ("cpu_16", "http_server_cpu_16_clients", "us/invoke")):  # fmt: skip
            emit(f"{metric}_vs_against", ours[key], unit, theirs[key], against=against)
