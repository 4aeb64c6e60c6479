"""S3 through the whole stack: 1 KB PutObject/GetObject with a raw keep-alive HTTP
client (8 concurrent: 2 processes x 4 connections) against moto's server in the same
run, and one large object streamed in and out while the server's RSS is sampled.

    python -m benchmarks.s3 [--duration 3] [--size-mb 1024] [--skip-peers]

Targets (issue 6): PutObject/GetObject of 1 KB >= 2,000 ops/s; a 1 GB object streams
through with server RSS growing by <= 50 MB; >= 300 MB/s on loopback.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from benchmarks.harness import PYTHON, Server, emit, free_port, load, rss_mb, start

BUCKET = "bench-bucket"
BODY_1K = b"x" * 1024
PEERS = (("moto", ["moto_server", "-p", "{port}"], {}),)


class _Auth(S3SigV4Auth):
    """S3 SigV4 with a declared payload hash (a real hash, or UNSIGNED-PAYLOAD)."""

    def __init__(self, payload_hash: str) -> None:
        super().__init__(Credentials("test", "test"), "s3", "us-east-1")
        self.payload_hash = payload_hash

    def payload(self, request: AWSRequest) -> str:
        return self.payload_hash


def s3_request(port: int, method: str, path: str, body: bytes = b"", *, content_length: int | None = None,
               unsigned: bool = False) -> bytes:  # fmt: skip
    """Raw bytes of one signed S3 request (the head only when ``content_length`` is given)."""
    host = f"127.0.0.1:{port}"
    payload_hash = "UNSIGNED-PAYLOAD" if unsigned else hashlib.sha256(body).hexdigest()
    request = AWSRequest(method=method, url=f"http://{host}{path}", data=body,
                         headers={"Host": host, "X-Amz-Content-SHA256": payload_hash})  # fmt: skip
    _Auth(payload_hash).add_auth(request)
    lines = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in request.headers.items())]
    length = len(body) if content_length is None else content_length
    if method in ("PUT", "POST"):
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _client(port: int) -> Any:
    return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")  # fmt: skip


def measure_small(server: Server, duration: float) -> dict[str, float]:
    """1 KB PutObject and GetObject requests/s (64 keys, signed once each)."""
    client = _client(server.port)
    client.create_bucket(Bucket=BUCKET)
    keys = [f"/{BUCKET}/obj-{i:03d}" for i in range(64)]
    for key in keys:
        client.put_object(Bucket=BUCKET, Key=key.split("/", 2)[2], Body=BODY_1K)
    puts = [s3_request(server.port, "PUT", key, BODY_1K) for key in keys]
    gets = [s3_request(server.port, "GET", key) for key in keys]
    put = load(server, puts, duration=duration)
    get = load(server, gets, duration=duration)
    return {"put_rps": put.rps, "put_p50_ms": put.p50_ms, "put_cpu_us": put.cpu_per_request_us, "put_errors": sum(put.errors.values()),
            "get_rps": get.rps, "get_p50_ms": get.p50_ms, "get_cpu_us": get.cpu_per_request_us, "get_errors": sum(get.errors.values())}  # fmt: skip


class _RssSampler:
    """Samples a process's RSS every 20 ms in a thread; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_mb(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mb(self.pid))

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _response_head(sock: socket.socket) -> tuple[int, int]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return int(head[9:12]), length - len(rest)


def measure_large(server: Server, size_mb: int) -> dict[str, float]:
    """Stream one ``size_mb`` object in (PutObject) and out (GetObject): MB/s and RSS growth."""
    chunk = b"\0" * (1 << 20)
    path = f"/{BUCKET}/large.bin"
    before = rss_mb(server.pid)
    with _RssSampler(server.pid) as sampler, socket.create_connection(("127.0.0.1", server.port)) as sock:
        began = time.perf_counter()
        sock.sendall(s3_request(server.port, "PUT", path, content_length=size_mb << 20, unsigned=True))
        for _ in range(size_mb):
            sock.sendall(chunk)
        status, left = _response_head(sock)
        put_seconds = time.perf_counter() - began
        if status != 200:
            raise RuntimeError(f"large PutObject answered {status}")
        while left > 0:
            left -= len(sock.recv(min(left, 65536)))
        began = time.perf_counter()
        sock.sendall(s3_request(server.port, "GET", path))
        status, left = _response_head(sock)
        buffer = bytearray(1 << 20)
        while left > 0:
            left -= sock.recv_into(buffer, min(left, len(buffer)))
        get_seconds = time.perf_counter() - began
    return {"put_mb_s": size_mb / put_seconds, "get_mb_s": size_mb / get_seconds, "rss_growth_mb": sampler.peak - before}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--skip-peers", action="store_true", help="do not run moto")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-s3-"))
    port = free_port()
    nubes = start("nubes", [PYTHON, "-m", "nubes", "up", "--port", str(port), "--data-dir", str(tmp / "nubes")],
                  port, ready_path="/_nubes/health")  # fmt: skip
    try:
        ours = measure_small(nubes, args.duration)
        large = measure_large(nubes, args.size_mb)
    finally:
        nubes.stop()
        # the data dir holds what the run wrote (a 1 GB object for S3): never leave it behind
        shutil.rmtree(tmp, ignore_errors=True)
    peers: dict[str, dict[str, float]] = {}
    if not args.skip_peers:
        for name, cmd, env in PEERS:
            peer_port = free_port()
            try:
                peer = start(name, [c.format(port=peer_port) for c in cmd], peer_port, env=env)
            except Exception as error:  # a missing peer is reported, not fatal
                emit("s3", f"{name}_failed", 0, "", None, error=repr(error)[:200])
                continue
            try:
                peers[name] = measure_small(peer, args.duration)
            except Exception as error:
                emit("s3", f"{name}_failed", 0, "", None, error=repr(error)[:200])
            finally:
                peer.stop()
    moto = peers.get("moto", {})
    emit("s3", "put_object_1k", ours["put_rps"], "ops/s", moto.get("put_rps"), baseline_name="moto", target=">= 2000 ops/s",
         p50_ms=round(ours["put_p50_ms"], 3), cpu_us_per_request=round(ours["put_cpu_us"], 1), errors=ours["put_errors"])  # fmt: skip
    emit("s3", "get_object_1k", ours["get_rps"], "ops/s", moto.get("get_rps"), baseline_name="moto", target=">= 2000 ops/s",
         p50_ms=round(ours["get_p50_ms"], 3), cpu_us_per_request=round(ours["get_cpu_us"], 1), errors=ours["get_errors"])  # fmt: skip
    emit("s3", "put_object_1k_vs_target", ours["put_rps"], "ops/s", 2000.0, target=">= 2000 ops/s")
    emit("s3", "get_object_1k_vs_target", ours["get_rps"], "ops/s", 2000.0, target=">= 2000 ops/s")
    emit("s3", f"put_object_{args.size_mb}mb_stream", large["put_mb_s"], "MB/s", 300.0, target=">= 300 MB/s")
    emit("s3", f"get_object_{args.size_mb}mb_stream", large["get_mb_s"], "MB/s", 300.0, target=">= 300 MB/s")
    emit("s3", f"rss_growth_{args.size_mb}mb_stream", large["rss_growth_mb"], "MB", 50.0, target="<= 50 MB")


if __name__ == "__main__":
    main()
