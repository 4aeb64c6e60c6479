"""``nubes deploy`` of the example app (examples/inspections): cold (new stack),
warm (unchanged re-deploy, the target is ≤ 1 s), and ``--watch``'s save-to-answer
time (edit a function's source → the next invocation runs it; the target is < 1 s).

Baselines measured in this run: a fresh ``python -m nubes --version`` process for the
deploys (what any CLI call costs), the 1 s target for the watch loop.

    python -m benchmarks.deploy
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import emit
from nubes.testing.server import NubesServer

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "inspections"


def _run(*args: str, port: int, cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "nubes", *args, "--port", str(port)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(done.stdout + done.stderr)
    return time.perf_counter() - started


def _watch_latency(server: NubesServer, app: Path, rounds: int = 5) -> list[float]:
    """Edit presignup.py and invoke the function until it answers with the edit."""
    log = open(app / "watch.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "nubes", "deploy", "--watch", "--stack-name", "bench",
                             "--port", str(server.port)], cwd=app, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    lambda_ = server.client("lambda")
    cfn = server.client("cloudformation")
    try:
        while "Watching" not in (app / "watch.log").read_text():
            time.sleep(0.05)
        name = cfn.describe_stack_resource(StackName="bench", LogicalResourceId="PreSignUpFunction")
        function = name["StackResourceDetail"]["PhysicalResourceId"]
        source = app / "src" / "presignup.py"
        original = source.read_text()
        event = {"request": {"userAttributes": {}}, "response": {}}
        times = []
        for i in range(rounds):
            marker = f"round-{i}"
            saved = time.perf_counter()
            source.write_text(original.replace("return event", f"event['marker'] = {marker!r}\n    return event"))
            while True:
                out = json.loads(lambda_.invoke(FunctionName=function, Payload=json.dumps(event))["Payload"].read())
                if out.get("marker") == marker:
                    break
                time.sleep(0.02)
            times.append(time.perf_counter() - saved)
            time.sleep(0.3)
        return times
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(10)
        log.close()


def main() -> None:
    """Run the measurements and print JSON lines."""
    with tempfile.TemporaryDirectory(prefix="nubes-bench-deploy-") as tmp, NubesServer(Path(tmp) / "data") as server:
        app = Path(tmp) / "inspections"
        shutil.copytree(EXAMPLE, app, ignore=shutil.ignore_patterns(".nubes", "__pycache__", "tests"))
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "nubes", "--version"], capture_output=True, check=True)
        baseline = time.perf_counter() - started
        cold = _run("deploy", "--stack-name", "bench", port=server.port, cwd=app)
        warm = sorted(_run("deploy", "--stack-name", "bench", port=server.port, cwd=app) for _ in range(3))[1]
        resources = server.client("cloudformation").describe_stack_resources(StackName="bench")["StackResources"]
        emit("deploy", "cold_deploy_s", cold, "s", baseline, resources=len(resources))
        emit("deploy", "unchanged_redeploy_s", warm, "s", baseline)
        times = sorted(_watch_latency(server, app))
        emit("deploy", "watch_save_to_answer_median_s", times[len(times) // 2], "s", 1.0, rounds=len(times))
        emit("deploy", "watch_save_to_answer_max_s", times[-1], "s", 1.0)


if __name__ == "__main__":
    main()
