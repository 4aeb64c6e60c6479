"""Shared benchmark tools: start servers, drive them with a raw keep-alive HTTP
client from several processes, read their CPU time and memory, print JSON lines."""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def emit(bench: str, metric: str, value: float, unit: str, baseline: float | None, **extra: Any) -> None:
    """Print one result line with the ratio to its same-run baseline."""
    ratio = round(value / baseline, 3) if baseline else None
    line = {"bench": bench, "metric": metric, "value": round(value, 3), "unit": unit,
            "baseline": None if baseline is None else round(baseline, 3), "ratio": ratio, **extra}  # fmt: skip
    print(json.dumps(line), flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    started_in: float

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def start(name: str, cmd: Sequence[str], port: int, env: dict[str, str] | None = None,
          ready_path: str = "/", timeout: float = 60.0) -> Server:  # fmt: skip
    """Start a server process and wait until it answers HTTP on ``port``."""
    full_env = {**os.environ, **(env or {})}
    begin = time.perf_counter()
    log = open(Path(tempfile.gettempdir()) / f"bench-{name}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(list(cmd), env=full_env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited: see {log.name}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(f"GET {ready_path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
                if sock.recv(12).startswith(b"HTTP/1."):
                    return Server(name, proc, port, time.perf_counter() - begin)
        except OSError:
            time.sleep(0.02)
    proc.kill()
    raise RuntimeError(f"{name} did not start within {timeout}s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (and its reaped children)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / ticks


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def signed_request(port: int, service: str, target: str | None, body: bytes, *,
                   method: str = "POST", path: str = "/", content_type: str = "application/x-amz-json-1.1",
                   headers: dict[str, str] | None = None) -> bytes:  # fmt: skip
    """The raw bytes of one SigV4-signed HTTP/1.1 request (signed once, sent many times)."""
    host = f"127.0.0.1:{port}"
    hdrs = {"Host": host, "Content-Type": content_type, **(headers or {})}
    if target:
        hdrs["X-Amz-Target"] = target
    request = AWSRequest(method=method, url=f"http://{host}{path}", data=body, headers=hdrs)
    SigV4Auth(Credentials("test", "test"), service, "us-east-1").add_auth(request)
    lines = [f"{method} {path} HTTP/1.1"]
    lines += [f"{k}: {v}" for k, v in request.headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes) -> tuple[int, bool]:
    """Send one request, read one response; (status, connection still usable)."""
    writer.write(payload)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length: int | None = None
    keep = head.startswith(b"HTTP/1.1")
    chunked = False
    for line in head.split(b"\r\n"):
        low = line.lower()
        if low.startswith(b"content-length:"):
            length = int(line[15:])
        elif low.startswith(b"connection:") and b"close" in low:
            keep = False
        elif low.startswith(b"transfer-encoding:") and b"chunked" in low:
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length is not None:
        await reader.readexactly(length)
    else:
        await reader.read()
        keep = False
    return status, keep


async def _connection(port: int, requests: Sequence[bytes], until: float, latencies: list[float], errors: list[int]) -> None:
    """One client connection, reconnecting when the server closes it (HTTP/1.0 peers)."""
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    i = 0
    while time.perf_counter() < until:
        payload = requests[i % len(requests)]
        i += 1
        t0 = time.perf_counter()
        try:
            if conn is None:
                conn = await asyncio.open_connection("127.0.0.1", port)
            status, keep = await _exchange(conn[0], conn[1], payload)
        except (OSError, asyncio.IncompleteReadError):
            errors.append(0)
            if conn is not None:
                conn[1].close()
            conn = None
            continue
        latencies.append(time.perf_counter() - t0)
        if status >= 400:
            errors.append(status)
        if not keep:
            conn[1].close()
            conn = None
    if conn is not None:
        conn[1].close()


def _client_process(port: int, requests: Sequence[bytes], duration: float, connections: int, out: Any) -> None:
    latencies: list[float] = []
    errors: list[int] = []

    async def run() -> None:
        until = time.perf_counter() + duration
        await asyncio.gather(*(_connection(port, requests, until, latencies, errors) for _ in range(connections)))

    asyncio.run(run())
    out.put((latencies, errors))


@dataclass
class LoadResult:
    requests: int
    #: HTTP status (0: connection error) → count
    errors: dict[int, int]
    seconds: float
    p50_ms: float
    p99_ms: float
    cpu_per_request_us: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def load(server: Server, requests: Sequence[bytes], *, duration: float = 5.0, processes: int = 2,
         connections: int = 4, warmup: float = 1.0) -> LoadResult:  # fmt: skip
    """Drive ``server`` with keep-alive connections from several processes."""
    if warmup:
        _run_clients(server.port, requests, warmup, processes, connections)
    cpu0 = cpu_seconds(server.pid)
    began = time.perf_counter()
    latencies, errors = _run_clients(server.port, requests, duration, processes, connections)
    elapsed = time.perf_counter() - began
    cpu = cpu_seconds(server.pid) - cpu0
    latencies.sort()
    n = len(latencies)
    return LoadResult(
        requests=n, errors=errors, seconds=min(elapsed, duration + 0.05) if n else elapsed,
        p50_ms=latencies[n // 2] * 1000 if n else 0.0,
        p99_ms=latencies[min(n - 1, int(n * 0.99))] * 1000 if n else 0.0,
        cpu_per_request_us=cpu / n * 1e6 if n else 0.0,
    )  # fmt: skip


def _run_clients(port: int, requests: Sequence[bytes], duration: float, processes: int, connections: int) -> tuple[list[float], dict[int, int]]:
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_client_process, args=(port, requests, duration, connections, queue)) for _ in range(processes)]
    for p in procs:
        p.start()
    latencies: list[float] = []
    errors: dict[int, int] = {}
    for _ in procs:
        lat, errs = queue.get(timeout=duration + 60)
        latencies.extend(lat)
        for status in errs:
            errors[status] = errors.get(status, 0) + 1
    for p in procs:
        p.join()
    return latencies, errors


PYTHON = sys.executable
