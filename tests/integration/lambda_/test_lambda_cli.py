"""The issue's aws CLI session, and ``nubes invoke | logs | functions | usage``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from nubes.testing.server import NubesServer

from .conftest import make_zip

HELLO = """
def handler(event, context):
    print("hello from", context.function_name)
    return {"got": event}
"""


def _aws(nubes: NubesServer, *args: str, cwd: Path | None = None) -> str:
    # the installed aws CLI is v1, which sends --payload as is and has no --cli-binary-format
    args = tuple(a for a in args if a not in ("--cli-binary-format", "raw-in-base64-out"))
    env = {**os.environ, **nubes.env_vars()}
    out = subprocess.run([sys.executable, "-m", "awscli", *args], capture_output=True, text=True, env=env,
                         timeout=60, cwd=cwd)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout


def _nubes(nubes: NubesServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUBES_")}
    return subprocess.run([sys.executable, "-m", "nubes", *args, "--port", str(nubes.port)],
                          capture_output=True, text=True, env=env, timeout=60)  # fmt: skip


def _wait_for_logs(nubes: NubesServer, name: str, count: int) -> list[str]:
    logs = nubes.client("logs")
    deadline = time.time() + 15
    messages: list[str] = []
    while time.time() < deadline:
        try:
            messages = [e["message"] for e in logs.filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]]
        except logs.exceptions.ResourceNotFoundException:
            messages = []
        if sum(m.startswith("REPORT") for m in messages) >= count:
            break
        time.sleep(0.1)
    return messages


def test_aws_cli_session(nubes: NubesServer, tmp_path: Path) -> None:
    name = f"hello-{uuid.uuid4().hex[:8]}"
    (tmp_path / "fn.zip").write_bytes(make_zip({"app.py": HELLO}))
    created = json.loads(_aws(nubes, "lambda", "create-function", "--function-name", name, "--runtime", "python3.12",
                              "--handler", "app.handler", "--zip-file", "fileb://fn.zip",
                              "--role", "arn:aws:iam::000000000000:role/x", cwd=tmp_path))  # fmt: skip
    assert created["FunctionName"] == name
    nubes.client("lambda").get_waiter("function_active_v2").wait(FunctionName=name,
                                                                 WaiterConfig={"Delay": 0.1, "MaxAttempts": 50})  # fmt: skip
    meta = json.loads(_aws(nubes, "lambda", "invoke", "--function-name", name, "--payload", '{"a":1}',
                           "--cli-binary-format", "raw-in-base64-out", "out.json", cwd=tmp_path))  # fmt: skip
    assert meta["StatusCode"] == 200
    assert json.loads((tmp_path / "out.json").read_text()) == {"got": {"a": 1}}
    meta = json.loads(_aws(nubes, "lambda", "invoke", "--function-name", name, "--invocation-type", "Event",
                           "--payload", "{}", "--cli-binary-format", "raw-in-base64-out", "out2.json", cwd=tmp_path))  # fmt: skip
    assert meta["StatusCode"] == 202
    _wait_for_logs(nubes, name, 2)
    events = json.loads(_aws(nubes, "logs", "filter-log-events", "--log-group-name", f"/aws/lambda/{name}"))["events"]
    assert sum(e["message"].startswith("REPORT RequestId:") for e in events) == 2
    assert any(e["message"].startswith(f"hello from {name}") for e in events)


def test_nubes_cli_commands(nubes: NubesServer, tmp_path: Path) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    lam = nubes.client("lambda")
    lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler",
                        Role="arn:aws:iam::000000000000:role/x", Code={"ZipFile": make_zip({"app.py": HELLO})})  # fmt: skip
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 50})
    out = _nubes(nubes, "invoke", name, "--payload", '{"x": 2}', "--log")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"got": {"x": 2}} and "REPORT RequestId:" in out.stderr
    (tmp_path / "event.json").write_text('{"from": "file"}')
    out = _nubes(nubes, "invoke", name, "--payload", f"@{tmp_path / 'event.json'}")
    assert json.loads(out.stdout) == {"got": {"from": "file"}}
    missing = _nubes(nubes, "invoke", "no-such-function")
    assert missing.returncode == 2 and "ResourceNotFoundException" in missing.stderr
    _wait_for_logs(nubes, name, 2)
    logs = _nubes(nubes, "logs", name)
    assert logs.returncode == 0 and logs.stdout.count("REPORT RequestId:") == 2
    listing = _nubes(nubes, "functions")
    line = next(row for row in listing.stdout.splitlines() if row.startswith(name))
    assert "python3.12" in line and "Active" in line and "unreserved" in line
    usage = _nubes(nubes, "usage", "--json")
    row = next(u for u in json.loads(usage.stdout)["functions"] if u["function"] == name)
    assert row["requests"] == 2


def test_nubes_logs_follow(nubes: NubesServer) -> None:
    import threading

    name = f"follow-{uuid.uuid4().hex[:8]}"
    lam = nubes.client("lambda")
    lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler",
                        Role="arn:aws:iam::000000000000:role/x", Code={"ZipFile": make_zip({"app.py": HELLO})})  # fmt: skip
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 50})
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUBES_")}
    follower = subprocess.Popen([sys.executable, "-m", "nubes", "logs", name, "--follow", "--port", str(nubes.port)],
                                stdout=subprocess.PIPE, text=True, env=env)  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(follower.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        time.sleep(1.5)  # let it start polling before anything is logged
        request_id = lam.invoke(FunctionName=name)["ResponseMetadata"]["RequestId"]
        deadline = time.time() + 15
        while not any(f"REPORT RequestId: {request_id}" in line for line in lines) and time.time() < deadline:
            time.sleep(0.1)
        seen = "".join(lines)
        assert f"START RequestId: {request_id}" in seen and f"REPORT RequestId: {request_id}" in seen
    finally:
        follower.terminate()
        follower.wait(10)
