"""API Gateway data plane: an HTTP API → Lambda echo driven by ``wrk`` with 32
connections against a bare uvicorn echo app in the same run; then 1,000 WebSocket
clients and the time for PostToConnection to reach all of them.

    python -m benchmarks.http [--duration 10] [--clients 1000]

Without ``wrk`` on PATH the raw load client in benchmarks/harness.py drives the
same 32 connections.

``--mode loadtest`` is the load test teams run on such APIs: npm's ``loadtest -c 10
--rps 200`` for ``--duration`` seconds (60 for the real thing) against an HTTP API
whose function writes every request to a DynamoDB table; it reports errors, p50/p99
(baseline: the same loadtest against the bare echo app) and checks the table holds
one item per completed request. loadtest is installed with npm into
``~/.cache/nubes-bench`` (``NUBES_BENCH_CACHE``) when missing.

    python -m benchmarks.http --mode loadtest --duration 60"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
import textwrap
import time
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3
from websockets.asyncio.client import ClientConnection, connect

from benchmarks.harness import PYTHON, Server, emit, free_port, load, signed_request, start

ECHO = "def handler(event, context):\n    return {'statusCode': 200, 'body': event.get('rawPath', '')}\n"
WS_ID = "def handler(event, context):\n    return {'statusCode': 200, 'body': event['requestContext']['connectionId']}\n"
#: writes each request to the table (the function reaches nubes through AWS_ENDPOINT_URL)
WRITER = textwrap.dedent(
    """
    import json, os, boto3
    table = boto3.resource("dynamodb").Table(os.environ["TABLE"])
    def handler(event, context):
        table.put_item(Item={"id": context.aws_request_id, "path": event.get("rawPath", ""), "body": event.get("body") or ""})
        return {"statusCode": 201, "headers": {"content-type": "application/json"}, "body": json.dumps({"id": context.aws_request_id})}
    """
)
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
    # the management API is IAM-authorized: each push is SigV4-signed (before the clock starts)
    post = [signed_request(port, "execute-api", None, b"ping", path=f"/_nubes/execute-api/{api_id}/live/@connections/{quote(cid, safe='')}",
                           content_type="application/octet-stream") for cid in ids]  # fmt: skip
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
    parser.add_argument("--mode", choices=("echo", "loadtest"), default="echo")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rps", type=int, default=200, help="loadtest mode: requests per second")
    parser.add_argument("--concurrency", type=int, default=10, help="loadtest mode: concurrent clients")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-http-"))
    if args.mode == "loadtest":
        run_loadtest(tmp, args.duration, args.rps, args.concurrency)
        return
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


# -- loadtest mode ---------------------------------------------------------------------


def loadtest_bin() -> str:
    """The ``loadtest`` command, installed with npm into the bench cache when missing."""
    cache = Path(os.environ.get("NUBES_BENCH_CACHE") or Path.home() / ".cache" / "nubes-bench")
    binary = cache / "node_modules" / ".bin" / "loadtest"
    if not binary.exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--prefix", str(cache), "--no-audit", "--no-fund", "--silent", "loadtest@8"],
                       check=True, capture_output=True)  # fmt: skip
    return str(binary)


def run_loadtest_tool(url: str, seconds: float, rps: int, concurrency: int, body: str) -> dict[str, float]:
    """Run ``loadtest`` and read its summary: completed, errors, mean/p50/p90/p99/max ms, rps."""
    cmd = [loadtest_bin(), "-c", str(concurrency), "--rps", str(rps), "-t", str(max(1, round(seconds))),
           "-m", "POST", "-T", "application/json", "-P", body, url]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return parse_loadtest(out)


def parse_loadtest(out: str) -> dict[str, float]:
    """The numbers of loadtest's text summary (``nan`` for one it did not print)."""

    def number(pattern: str) -> float:
        m = re.search(pattern, out, re.M)
        return float(m.group(1)) if m else float("nan")

    return {
        "completed": number(r"Completed requests:\s+(\d+)"), "errors": number(r"Total errors:\s+(\d+)"),
        "mean_ms": number(r"Mean latency:\s+([\d.]+) ms"), "rps": number(r"Effective rps:\s+([\d.]+)"),
        "p50_ms": number(r"^\s*50%\s+([\d.]+) ms"), "p90_ms": number(r"^\s*90%\s+([\d.]+) ms"),
        "p99_ms": number(r"^\s*99%\s+([\d.]+) ms"), "max_ms": number(r"^\s*100%\s+([\d.]+) ms"),
        "clients": number(r"Concurrent clients:\s+(\d+)"),
    }  # fmt: skip


def _writer_api(port: int) -> tuple[str, str]:
    """(api id, table name): an HTTP API whose function writes each request to DynamoDB."""
    table = "bench-writes"
    ddb = _client("dynamodb", port)
    ddb.create_table(TableName=table, AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}], BillingMode="PAY_PER_REQUEST")  # fmt: skip
    ddb.get_waiter("table_exists").wait(TableName=table)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", WRITER)
    lam = _client("lambda", port)
    arn = lam.create_function(FunctionName="bench-writer", Runtime="python3.12", Handler="app.handler", MemorySize=256,
                              Role="arn:aws:iam::000000000000:role/x", Code={"ZipFile": buf.getvalue()},
                              Environment={"Variables": {"TABLE": table}})["FunctionArn"]  # fmt: skip
    lam.get_waiter("function_active_v2").wait(FunctionName="bench-writer")
    api_id: str = _client("apigatewayv2", port).create_api(Name="bench-writer", ProtocolType="HTTP", Target=arn)["ApiId"]
    return api_id, table


def _items(port: int, table: str) -> int:
    ddb, count, start_key = _client("dynamodb", port), 0, None
    while True:
        page = ddb.scan(TableName=table, Select="COUNT", **({"ExclusiveStartKey": start_key} if start_key else {}))
        count += int(page["Count"])
        start_key = page.get("LastEvaluatedKey")
        if not start_key:
            return count


def _cold_starts(port: int, function: str, since_ms: int) -> int:
    """How many instances of ``function`` started (REPORT lines with an Init Duration) since then."""
    logs, count, token = _client("logs", port), 0, None
    while True:
        page = logs.filter_log_events(logGroupName=f"/aws/lambda/{function}", filterPattern="REPORT", startTime=since_ms,
                                      **({"nextToken": token} if token else {}))  # fmt: skip
        count += sum(1 for e in page["events"] if "Init Duration" in e["message"])
        token = page.get("nextToken")
        if not token:
            return count


def run_loadtest(tmp: Path, duration: float, rps: int, concurrency: int) -> None:
    """loadtest -c N --rps R against the bare echo app, then against the DynamoDB-writing HTTP API."""
    body = json.dumps({"order": "bench", "qty": 1})
    bare_port = free_port()
    (tmp / "bare.py").write_text(BARE_APP)
    bare = start("bare-echo", [PYTHON, str(tmp / "bare.py"), str(bare_port)], bare_port)
    try:
        run_loadtest_tool(f"http://127.0.0.1:{bare_port}/orders", 2, rps, concurrency, body)  # warm up, as for nubes
        base = run_loadtest_tool(f"http://127.0.0.1:{bare_port}/orders", duration, rps, concurrency, body)
    finally:
        bare.stop()
    load_before = os.getloadavg()[0]
    port = free_port()
    nubes = start("nubes", [PYTHON, "-m", "nubes", "up", "--port", str(port), "--data-dir", str(tmp / "nubes")], port, ready_path="/_nubes/health")
    try:
        api_id, table = _writer_api(port)
        url = f"http://127.0.0.1:{port}/_nubes/execute-api/{api_id}/orders"
        run_loadtest_tool(url, 2, rps, concurrency, body)  # warm the function's instances
        warm_items = _items(port, table)
        began_ms = int(time.time() * 1000)
        got = run_loadtest_tool(url, duration, rps, concurrency, body)
        written = _items(port, table) - warm_items
        # function instances started during the run: each is a cold start on a CPU the
        # requests share, the usual source of a tail here (logs arrive batched: wait a little)
        time.sleep(2)
        cold = _cold_starts(port, "bench-writer", began_ms)
    finally:
        nubes.stop()
    # the machine is shared: its 1-minute load average says how much a tail is worth
    common = {"tool": "loadtest", "concurrency": concurrency, "target_rps": rps, "seconds": duration,
              "loadavg_1m_before": round(load_before, 2), "loadavg_1m_after": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}  # fmt: skip
    # items_written may exceed completed by the requests in flight when loadtest stopped
    emit("http", "loadtest_dynamodb_errors", got["errors"], "requests", None, completed=int(got["completed"]),
         items_written=written, clients_used=got["clients"], cold_starts=cold, target="0", **common)  # fmt: skip
    emit("http", "loadtest_dynamodb_p99", got["p99_ms"], "ms", base["p99_ms"], **common)
    emit("http", "loadtest_dynamodb_p50", got["p50_ms"], "ms", base["p50_ms"], **common)
    emit("http", "loadtest_dynamodb_mean", got["mean_ms"], "ms", base["mean_ms"], max_ms=got["max_ms"], **common)
    emit("http", "loadtest_dynamodb_rps", got["rps"], "req/s", base["rps"], **common)


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
