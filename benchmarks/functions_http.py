"""Lambda over HTTP, the way users reach it: signed raw ``Invoke`` requests on keep-alive
connections, against nubes, a bare uvicorn echo app and MiniStack started in the same run.

Used by ``benchmarks.functions``; every measurement returns numbers and prints nothing,
so the caller decides which ratios to report.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from benchmarks import harness

ECHO = "def handler(event, context):\n    return event\n"
BOTO = "import os\n\nimport boto3\n\ndef handler(event, context):\n    return os.getpid()\n"
SLEEP = "import time\n\ndef handler(event, context):\n    time.sleep(1)\n    return 1\n"
PAYLOAD = b'{"hello": "world"}'

# The same ASGI stack as nubes (uvicorn, httptools, uvloop) answering with the request body:
# the floor any HTTP Lambda invoke pays on this machine with this client.
BARE_ECHO = textwrap.dedent(
    """
    import sys, uvicorn
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), http="httptools", loop="uvloop",
                log_level="warning", access_log=False)
    """
)


@dataclass
class Target:
    """A running Lambda endpoint (nubes or MiniStack) and a boto3 client for it."""

    name: str
    server: harness.Server

    @property
    def port(self) -> int:
        """The server's port."""
        return self.server.port

    @property
    def client(self) -> Any:
        """A boto3 Lambda client for this endpoint (no retries: errors must show)."""
        from botocore.config import Config

        return boto3.client(
            "lambda", endpoint_url=f"http://127.0.0.1:{self.port}", region_name="us-east-1",
            aws_access_key_id="test", aws_secret_access_key="test",
            config=Config(retries={"max_attempts": 0}, read_timeout=120),
        )  # fmt: skip

    def invoke_request(self, function: str, payload: bytes = PAYLOAD) -> bytes:
        """The raw bytes of one signed RequestResponse Invoke."""
        return harness.signed_request(
            self.port, "lambda", None, payload, path=f"/2015-03-31/functions/{function}/invocations",
            content_type="application/json",
        )  # fmt: skip


def start_nubes(data_dir: Path, keepalive: float, src: str | None = None) -> Target:
    """``nubes up`` on a free port with a short function keep-alive.

    ``src`` (a ``src`` directory; default ``NUBES_BENCH_SRC``) runs another checkout,
    e.g. exactly HEAD.
    """
    port = harness.free_port()
    env = {"NUBES_LAMBDA_KEEPALIVE": str(keepalive)}
    if src := src or os.environ.get("NUBES_BENCH_SRC"):
        env["PYTHONPATH"] = src
    cmd = [harness.PYTHON, "-m", "nubes", "up", "--port", str(port), "--data-dir", str(data_dir)]
    return Target(
        "nubes", harness.start("nubes-fn", cmd, port, env=env, ready_path="/_nubes/health")
    )


def start_ministack() -> Target:
    """MiniStack (PyPI ``ministack``) on a free port."""
    port = harness.free_port()
    env = {"GATEWAY_PORT": str(port), "LOG_LEVEL": "WARNING"}
    return Target("ministack", harness.start("ministack-fn", ["ministack"], port, env=env))


def start_bare(work: Path) -> harness.Server:
    """The bare uvicorn echo app."""
    port = harness.free_port()
    app = work / "bare_echo.py"
    app.write_text(BARE_ECHO)
    return harness.start("bare-echo", [harness.PYTHON, str(app), str(port)], port)


def zip_of(source: str) -> bytes:
    """A deployment package with ``source`` as app.py."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", source)
    return buf.getvalue()


def create_function(target: Target, name: str, source: str, timeout: int = 30) -> None:
    """Create ``name`` and wait until it is Active (a peer without State counts as Active)."""
    target.client.create_function(
        FunctionName=name, Runtime="python3.12", Handler="app.handler", Code={"ZipFile": zip_of(source)},
        Role="arn:aws:iam::000000000000:role/bench", Timeout=timeout, MemorySize=128,
    )  # fmt: skip
    wait_ready(target, name)


def wait_ready(target: Target, name: str, limit: float = 30.0) -> None:
    """Poll until State is Active and LastUpdateStatus is Successful."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        cfg = target.client.get_function_configuration(FunctionName=name)
        if (
            cfg.get("State", "Active") == "Active"
            and cfg.get("LastUpdateStatus", "Successful") == "Successful"
        ):
            return
        time.sleep(0.01)
    raise RuntimeError(f"{target.name}: {name} did not become Active")


def roundtrip(port: int, request: bytes) -> tuple[int, dict[str, str], bytes, float]:
    """One request on a connection opened beforehand: status, headers, body, milliseconds."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        began = time.perf_counter()
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            data += _recv(sock)
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            body += _recv(sock)
        return int(lines[0].split()[1]), headers, body, (time.perf_counter() - began) * 1000


def _recv(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    if not chunk:
        raise ConnectionError("server closed the connection mid-response")
    return chunk


def invoke_ok(target: Target, function: str, payload: bytes = PAYLOAD) -> tuple[bytes, float]:
    """Invoke once over a raw connection; raise unless it is a 200 with no function error."""
    status, headers, body, ms = roundtrip(target.port, target.invoke_request(function, payload))
    if status != 200 or "x-amz-function-error" in headers:
        raise RuntimeError(
            f"{target.name} {function}: HTTP {status} {headers.get('x-amz-function-error')} {body[:300]!r}"
        )
    return body, ms


def warm(
    target_port: int, server: harness.Server, request: bytes, seconds: float, clients: int
) -> harness.LoadResult:
    """Keep-alive load with ``clients`` connections (one process up to 4, else two)."""
    processes = 1 if clients <= 4 else 2
    return harness.load(server, [request], duration=seconds, processes=processes,
                        connections=clients // processes, warmup=min(1.0, seconds / 2))  # fmt: skip


def cold_starts(target: Target, function: str, n: int) -> list[float]:
    """Request-to-response times of invokes that each need a new instance.

    A new environment variable before each invoke changes the function's configuration,
    so the next invoke cannot reuse a warm instance (on AWS, nubes and MiniStack alike).
    The update and the wait for LastUpdateStatus are not timed.
    """
    samples = []
    for i in range(n):
        target.client.update_function_configuration(
            FunctionName=function,
            Environment={"Variables": {"BENCH_REVISION": f"{time.time_ns()}-{i}"}},
        )
        wait_ready(target, function)
        samples.append(invoke_ok(target, function, b"{}")[1])
    return samples


def fresh_python_ms(n: int, script: str, cwd: Path | None = None) -> list[float]:
    """Wall time of ``python -c script`` in a new process, n times."""
    samples = []
    for _ in range(n):
        began = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", script], cwd=cwd, check=True, stdout=subprocess.DEVNULL
        )
        samples.append((time.perf_counter() - began) * 1000)
    return samples


PER_PROCESS = "import json, sys, app; print(json.dumps(app.handler(json.loads(sys.argv[1]), None)))"


async def process_per_invoke_rate(code_dir: Path, clients: int, seconds: float) -> float:
    """Invocations/s when each invocation is a new interpreter running the handler."""
    deadline = time.perf_counter() + seconds
    count = 0

    async def client() -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                PER_PROCESS,
                PAYLOAD.decode(),
                cwd=code_dir,
                stdout=subprocess.DEVNULL,
            )
            if await proc.wait() == 0:
                count += 1

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return count / (time.perf_counter() - began)


def uss_mb(pid: int) -> float:
    """Unique set size (private clean + dirty pages) of a process, in MB."""
    total = 0
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            if line.startswith(("Private_Clean", "Private_Dirty")):
                total += int(line.split()[1])
    return total / 1024


async def burst(target: Target, function: str, n: int) -> tuple[int, dict[str, int], float]:
    """n simultaneous invokes, each on its own connection: (successes, failures by kind, wall s)."""
    request = target.invoke_request(function, b"{}")
    failures: dict[str, int] = {}

    async def one() -> bool:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", target.port)
        except OSError as exc:
            failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
            return False
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            fn_error = b"x-amz-function-error" in head.lower()
            if not (status == 200 and not fn_error):
                key = f"HTTP {status}" + (" function error" if fn_error else "")
                failures[key] = failures.get(key, 0) + 1
            return status == 200 and not fn_error
        except (OSError, asyncio.IncompleteReadError) as exc:
            failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
            return False
        finally:
            writer.close()

    began = time.perf_counter()
    results = await asyncio.gather(*(one() for _ in range(n)))
    return sum(results), failures, time.perf_counter() - began


def usage_instances(target: Target) -> dict[str, int]:
    """Live instances per function from nubes' ``/_nubes/usage``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{target.port}/_nubes/usage", timeout=10) as resp:
        doc = json.loads(resp.read())
    return {row["function"]: int(row.get("instances", 0)) for row in doc["functions"]}
