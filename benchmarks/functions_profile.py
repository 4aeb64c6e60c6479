"""Where a warm HTTP invoke spends its time: ``nubes up`` sampled by py-spy (server and
function instances) while one keep-alive client invokes an echo function.

    python -m benchmarks.functions_profile [--seconds 5] [--clients 1]

Prints the hottest innermost frames of the server and of the instances, as the share of
samples (not idle in epoll/recv) and microseconds per invoke.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

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


def main() -> None:
    """Profile warm invokes and print the breakdown."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
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
