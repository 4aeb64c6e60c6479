"""Where a warm HTTP invoke spends its time: ``nubes up`` sampled by py-spy (server and
function instances) while one keep-alive client invokes an echo function.

    python -m benchmarks.functions_profile [--seconds 5] [--clients 1]
    python -m benchmarks.functions_profile --split [--invokes 3000]

Prints the hottest innermost frames of the server and of the instances, as the share of
samples (not idle in epoll/recv) and microseconds per invoke.

``--split`` needs no py-spy: it runs the app in this process and measures CPU per Invoke
(``time.process_time``, every thread) three ways — through the ASGI gateway with a signed
request (no sockets to a client), straight into ``app.dispatch``, and dispatch with the
function's log lines not delivered — so the differences say what the gateway (routing,
SigV4, parsing, serializing) and the log pipeline (Telemetry → PutLogEvents → store) cost
next to the Lambda provider and runtime themselves.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from benchmarks import functions_http as fh
from benchmarks import harness

RATE = 400


def collapse(raw: Path) -> dict[str, tuple[Counter[str], Counter[str]]]:
    """py-spy's raw samples by side (server / instance): (innermost frame, inclusive function)."""
    sides = {side: (Counter[str](), Counter[str]()) for side in ("server", "instance")}
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")[1:]
        leaves, inclusive = sides[
            "instance" if any("Instance.serve" in f for f in frames) else "server"
        ]
        leaves[frames[-1] if frames else "?"] += int(count)
        # a function counts once per sample however often it recurs; the line number goes
        for name in {
            f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0] + ")" for f in frames
        }:
            inclusive[name] += int(count)
    return sides


def report(
    sides: dict[str, tuple[Counter[str], Counter[str]]], us_per_sample_invoke: float, top: int
) -> None:
    """Print, per side, the inclusive cost of our functions and the innermost frames."""
    for side, (leaves, inclusive) in sides.items():
        total = sum(leaves.values()) or 1
        print(
            f"\n{side}: {total} samples holding the GIL, {total * us_per_sample_invoke:.0f} us/invoke"
        )
        print("  inclusive (the function and what it calls):")
        ours = [(k, v) for k, v in inclusive.items() if v < total]  # not the entry points
        for name, n in sorted(ours, key=lambda kv: -kv[1])[:top]:
            print(f"  {100 * n / total:5.1f}%  {n * us_per_sample_invoke:6.1f} us  {name}")
        print("  innermost frames:")
        for leaf, n in leaves.most_common(top // 2):
            print(f"  {100 * n / total:5.1f}%  {n * us_per_sample_invoke:6.1f} us  {leaf}")


def _signed_scope(path: str, body: bytes) -> dict[str, Any]:
    """An ASGI scope of a SigV4-signed Lambda request, as uvicorn would pass it."""
    req = AWSRequest(method="POST", url=f"http://127.0.0.1:4566{path}", data=body,
                     headers={"Host": "127.0.0.1:4566", "Content-Type": "application/json"})  # fmt: skip
    SigV4Auth(Credentials("test", "test"), "lambda", "us-east-1").add_auth(req)
    headers = [(k.lower().encode(), v.encode()) for k, v in req.headers.items()]
    headers.append((b"content-length", str(len(body)).encode()))
    return {"type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "query_string": b"",
            "headers": headers, "scheme": "http", "client": ("127.0.0.1", 5555), "server": ("127.0.0.1", 4566),
            "http_version": "1.1", "asgi": {"version": "3.0"}}  # fmt: skip


async def _cpu_per_call(n: int, call: Callable[[], Awaitable[Any]]) -> float:
    began = time.process_time()
    for _ in range(n):
        await call()
    return (time.process_time() - began) / n * 1e6


async def split(invokes: int, rounds: int = 5) -> None:
    """CPU per warm Invoke in-process: gateway + provider, provider, provider without logs."""
    from nubes.server import build
    from nubes.settings import Settings

    with tempfile.TemporaryDirectory(prefix="bench-fn-split-") as tmp:
        app, gateway = build(Settings.load({"data_dir": tmp, "tls_port": "-1"}, env={}))
        await app.start()
        try:
            await app.call("lambda", "CreateFunction", {"FunctionName": "echo", "Runtime": "python3.12",
                           "Handler": "app.handler", "Role": "arn:aws:iam::000000000000:role/bench",
                           "Code": {"ZipFile": fh.zip_of(fh.ECHO)}})  # fmt: skip
            scope = _signed_scope("/2015-03-31/functions/echo/invocations", fh.PAYLOAD)
            statuses: list[int] = []

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": fh.PAYLOAD, "more_body": False}

            async def send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    statuses.append(message["status"])

            params = {"FunctionName": "echo", "Payload": fh.PAYLOAD}
            runtime = app.provider("lambda").runtime  # type: ignore[attr-defined]
            on_logs = runtime.on_logs

            async def via_gateway() -> None:
                await gateway(scope, receive, send)

            async def dispatch() -> None:
                await app.dispatch(app.context("lambda", "Invoke"), params)

            for _ in range(300):  # warm: the instance, the caches, the log group and stream
                await via_gateway()
            if set(statuses) != {200}:
                raise RuntimeError(f"Invoke through the gateway answered {sorted(set(statuses))}")
            rows = []
            for _ in range(rounds):
                gw = await _cpu_per_call(invokes, via_gateway)
                provider = await _cpu_per_call(invokes, dispatch)
                runtime.on_logs = None
                bare = await _cpu_per_call(invokes, dispatch)
                runtime.on_logs = on_logs
                rows.append((gw, provider, bare))
        finally:
            await app.stop()
    # each round's three numbers are taken back to back: their differences are compared
    # within a round, and the median round-by-round value is reported
    parts = {
        "gateway + Lambda (ASGI call, signed request, no client sockets)": [r[0] for r in rows],
        "  gateway: routing, SigV4, parse, serialize, ASGI": [r[0] - r[1] for r in rows],
        "  log lines: Telemetry -> PutLogEvents -> store": [r[1] - r[2] for r in rows],
        "  Lambda provider + runtime (frame to the instance and back)": [r[2] for r in rows],
    }
    print(f"CPU per warm Invoke, in-process, median of {rounds} rounds x {invokes} invokes:")
    for label, values in parts.items():
        print(f"  {statistics.median(values):6.1f} us  {label}")


def main() -> None:
    """Profile warm invokes and print the breakdown."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--split", action="store_true", help="in-process CPU split: gateway, logs, Lambda")
    parser.add_argument("--invokes", type=int, default=3000, help="with --split: invokes per measurement")
    args = parser.parse_args()
    if args.split:
        asyncio.run(split(args.invokes))
        return
    spy = shutil.which("py-spy") or str(Path(harness.PYTHON).with_name("py-spy"))
    with tempfile.TemporaryDirectory(prefix="bench-fn-prof-") as tmp:
        nubes = fh.start_nubes(Path(tmp) / "nubes", 300.0)
        try:
            fh.create_function(nubes, "echo", fh.ECHO)
            fh.invoke_ok(nubes, "echo")
            raw = Path(tmp) / "spy.txt"
            cmd = [spy, "record", "-p", str(nubes.server.pid), "--subprocesses", "-r", str(RATE),
                   "-d", str(int(args.seconds)), "-f", "raw", "-o", str(raw), "--nonblocking", "--gil"]  # fmt: skip
            recorder = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.3)  # py-spy attaches to every process first
            request = nubes.invoke_request("echo")
            res = harness.load(nubes.server, [request], duration=args.seconds, processes=1,
                               connections=args.clients, warmup=0)  # fmt: skip
            recorder.wait(60)
        finally:
            nubes.server.stop()
        print(
            f"{res.requests} invokes, p50 {res.p50_ms:.3f} ms, server CPU {res.cpu_per_request_us:.0f} us/invoke"
        )
        report(collapse(raw), 1e6 / RATE / max(res.requests, 1), args.top)


if __name__ == "__main__":
    main()
