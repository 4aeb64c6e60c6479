"""API Gateway data plane: an HTTP API → Lambda echo driven by ``wrk`` with 32
connections against a bare uvicorn echo app in the same run; then 1,000 WebSocket
clients and the time for PostToConnection to reach all of them.

    python -m benchmarks.http [--duration 10] [--clients 1000]

Without ``wrk`` on PATH the raw load client in benchmarks/harness.py drives the
same 32 connections."""

from __future__ import annotations

import argparse
import asyncio
import io
import re
import shutil
import subprocess
import tempfile
import textwrap
import time
import zipfile
from pathlib import Path
from typing import Any

import boto3
from websockets.asyncio.client import ClientConnection, connect

from benchmarks.harness import PYTHON, Server, emit, free_port, load, start

ECHO = "def handler(event, context):\n    return {'statusCode': 200, 'body': event.get('rawPath', '')}\n"
WS_ID = "def handler(event, context):\n    return {'statusCode': 200, 'body': event['requestContext']['connectionId']}\n"
CONNECTIONS = 32

BARE_APP = textwrap.dedent(
    """
    import sys, uvicorn
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        body = scope["path"].encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), http="httptools", loop="uvloop", log_level="warning", access_log=False)
    """
)


def _client(service: str, port: int) -> Any:
    return boto3.client(service, endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")  # fmt: skip


def _function(port: int, name: str, code: str) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", code)
    lam = _client("lambda", port)
    arn: str = lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", MemorySize=256,
                                   Role="arn:aws:iam::000000000000:role/x", Code={"ZipFile": buf.getvalue()})["FunctionArn"]  # fmt: skip
    lam.get_waiter("function_active_v2").wait(FunctionName=name)
    return arn


def _unit_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if m is None:
        return float("nan")
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[m.group(2)]


def drive(server: Server, path: str, duration: float) -> tuple[float, float, int]:
    """(requests/s, p50 ms, non-2xx+errors) with 32 connections."""
    url = f"http://127.0.0.1:{server.port}{path}"
    if shutil.which("wrk"):
        subprocess.run(["wrk", "-t2", f"-c{CONNECTIONS}", "-d1s", url], capture_output=True, check=True)  # warm-up
        out = subprocess.run(["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{max(1, round(duration))}s", "--latency", url],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
        p50 = _unit_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
        bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
        errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
        return rps, p50, (int(bad.group(1)) if bad else 0) + (sum(int(g) for g in errors.groups()) if errors else 0)
    raw = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode()
    res = load(server, [raw], duration=duration, processes=2, connections=CONNECTIONS // 2)
    return res.rps, res.p50_ms, sum(res.errors.values())


async def _ws_fanout(port: int, api_id: str, clients: int) -> tuple[float, float, int]:
    """(ms to connect all, ms until every client got its pushed message, misses)."""
    url = f"ws://127.0.0.1:{port}/_nubes/execute-api/{api_id}/live"
    began = time.perf_counter()
    sockets: list[ClientConnection] = []
    for i in range(0, clients, 100):
        sockets += await asyncio.gather(*(connect(url, max_queue=None) for _ in range(min(100, clients - i))))
    connected_ms = (time.perf_counter() - began) * 1000
    ids = []
    for i in range(0, clients, 100):
        batch = sockets[i : i + 100]
        await asyncio.gather(*(ws.send("whoami") for ws in batch))
        ids += [str(x) for x in await asyncio.wait_for(asyncio.gather(*(ws.recv() for ws in batch)), 60)]
    post = [f"POST /_nubes/execute-api/{api_id}/live/@connections/{cid} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Length: 4\r\n\r\nping".encode() for cid in ids]  # fmt: skip
    received = [ws.recv() for ws in sockets]
    waiting = asyncio.ensure_future(asyncio.gather(*received))
    began = time.perf_counter()
    await asyncio.gather(*(_post_all(port, post[i::CONNECTIONS]) for i in range(CONNECTIONS)))
    messages = await asyncio.wait_for(waiting, 30)
    fanout_ms = (time.perf_counter() - began) * 1000
    misses = sum(1 for m in messages if m != b"ping" and m != "ping")
    await asyncio.gather(*(ws.close() for ws in sockets))
    return connected_ms, fanout_ms, misses


async def _post_all(port: int, requests: list[bytes]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for raw in requests:
        writer.write(raw)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"content-length:\s*(\d+)", head, re.I)
        if length:
            await reader.readexactly(int(length.group(1)))
    writer.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=1000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-http-"))
    tool = "wrk" if shutil.which("wrk") else "harness"

    bare_port = free_port()
    (tmp / "bare.py").write_text(BARE_APP)
    bare = start("bare-echo", [PYTHON, str(tmp / "bare.py"), str(bare_port)], bare_port)
    try:
        bare_rps, bare_p50, _ = drive(bare, "/echo", args.duration)
    finally:
        bare.stop()

    port = free_port()
    nubes = start("nubes", [PYTHON, "-m", "nubes", "up", "--port", str(port), "--data-dir", str(tmp / "nubes")], port, ready_path="/_nubes/health")
    try:
        arn = _function(port, "bench-echo", ECHO)
        api_id = _client("apigatewayv2", port).create_api(Name="bench", ProtocolType="HTTP", Target=arn)["ApiId"]
        rps, p50, errors = drive(nubes, f"/_nubes/execute-api/{api_id}/echo", args.duration)
        emit("http", "http_api_lambda_rps", rps, "req/s", bare_rps, tool=tool, connections=CONNECTIONS, errors=errors, target=">= 1500")
        emit("http", "http_api_lambda_p50", p50, "ms", bare_p50, tool=tool, target="<= 3 ms")
        ws_api = _ws_api(port)
        connected_ms, fanout_ms, misses = asyncio.run(_ws_fanout(port, ws_api, args.clients))
        emit("http", "websocket_connect_all", connected_ms, "ms", None, clients=args.clients)
        emit("http", "websocket_post_to_all", fanout_ms, "ms", 1000.0, clients=args.clients, misses=misses, target="<= 1000 ms")
    finally:
        nubes.stop()


def _ws_api(port: int) -> str:
    arn = _function(port, "bench-ws-id", WS_ID)
    v2 = _client("apigatewayv2", port)
    api_id: str = v2.create_api(Name="bench-ws", ProtocolType="WEBSOCKET", RouteSelectionExpression="$request.body.action")["ApiId"]
    integration = v2.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY", IntegrationUri=arn)["IntegrationId"]
    # a two-way route (the function's answer goes back to the client) needs a route response selection
    v2.create_route(ApiId=api_id, RouteKey="$default", Target=f"integrations/{integration}", RouteResponseSelectionExpression="$default")
    v2.create_stage(ApiId=api_id, StageName="live", AutoDeploy=True)
    return api_id


if __name__ == "__main__":
    main()
