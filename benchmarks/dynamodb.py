"""DynamoDB PutItem and GetItem of 1 KB items with a raw keep-alive HTTP client
(8 concurrent connections), on nubes (durable store) against MiniStack and moto's
server measured in the same run; Query latency for 100 items of a big partition.

    python -m benchmarks.dynamodb [--quick] [--duration 3] [--skip-peers] [--partition 20000] [--memory-items 0]

Throughput on a shared, busy machine swings with whatever else runs; each
server's CPU time per operation swings much less, so the comparison is also
given as operations per server CPU second (``*_cpu_vs_*``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

import boto3

from benchmarks.harness import PYTHON, Server, emit, free_port, load, rss_mb, signed_request, start

TABLE = "bench"
PUT = "DynamoDB_20120810.PutItem"
GET = "DynamoDB_20120810.GetItem"
QUERY = "DynamoDB_20120810.Query"
LIMITS = "DynamoDB_20120810.DescribeLimits"
KEYS = 256


def _client(server: Server) -> object:
    return boto3.client("dynamodb", endpoint_url=f"http://127.0.0.1:{server.port}", region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")  # fmt: skip


def _item(n: int) -> dict[str, object]:
    return {"pk": {"S": f"user#{n}"}, "sk": {"N": str(n)}, "name": {"S": f"name-{n}"},
            "payload": {"S": "x" * 900}, "count": {"N": str(n * 7)}, "tags": {"SS": ["a", "b"]}}  # fmt: skip


def _setup(server: Server) -> None:
    client = _client(server)
    client.create_table(  # type: ignore[attr-defined]
        TableName=TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for n in range(KEYS):
        client.put_item(TableName=TABLE, Item=_item(n))  # type: ignore[attr-defined]


def _requests(port: int, target: str, bodies: list[dict[str, object]]) -> list[bytes]:
    return [signed_request(port, "dynamodb", target, json.dumps(b).encode(), content_type="application/x-amz-json-1.0") for b in bodies]


def _run_put_get(server: Server, duration: float) -> dict[str, object]:
    _setup(server)
    puts = _requests(server.port, PUT, [{"TableName": TABLE, "Item": _item(n)} for n in range(KEYS)])
    gets = _requests(server.port, GET, [{"TableName": TABLE, "Key": {"pk": {"S": f"user#{n}"}, "sk": {"N": str(n)}}} for n in range(KEYS)])
    return {"put": load(server, puts, duration=duration), "get": load(server, gets, duration=duration, warmup=0.5)}


def _floor(server: Server, duration: float) -> object:
    """DescribeLimits: a signed DynamoDB request answered with constants, no
    store access: what HTTP, SigV4, routing and the wire layer cost alone."""
    return load(server, _requests(server.port, LIMITS, [{}]), duration=duration, warmup=0.5)


def _query_latency(server: Server, partition: int) -> tuple[float, float]:
    client = _client(server)
    client.create_table(  # type: ignore[attr-defined]
        TableName="bench-q",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for start_at in range(0, partition, 25):
        batch = [{"PutRequest": {"Item": {"pk": {"S": "big"}, "sk": {"N": str(n)}, "v": {"S": "y" * 100}}}}
                 for n in range(start_at, min(partition, start_at + 25))]  # fmt: skip
        client.batch_write_item(RequestItems={"bench-q": batch})  # type: ignore[attr-defined]
    body = {"TableName": "bench-q", "KeyConditionExpression": "pk = :p AND sk >= :s", "Limit": 100,
            "ExpressionAttributeValues": {":p": {"S": "big"}, ":s": {"N": str(partition // 2)}}}  # fmt: skip
    raw = signed_request(server.port, "dynamodb", QUERY, json.dumps(body).encode(), content_type="application/x-amz-json-1.0")
    head, _, payload = raw.partition(b"\r\n\r\n")
    req = urllib.request.Request(f"http://127.0.0.1:{server.port}/", data=payload, method="POST")
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.decode().partition(": ")
        if key.lower() not in ("content-length", "host"):
            req.add_header(key, value)
    samples: list[float] = []
    for _ in range(200):
        began = time.perf_counter()
        with urllib.request.urlopen(req) as resp:
            assert len(json.loads(resp.read())["Items"]) == 100
        samples.append((time.perf_counter() - began) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99)]


def _memory_growth(server: Server, items: int) -> tuple[float, float]:
    """Server RSS (MB) after the first 10% of ``items`` and after all of them."""
    client = _client(server)
    client.create_table(  # type: ignore[attr-defined]
        TableName="bench-m", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST",
    )  # fmt: skip
    early = 0.0
    for start_at in range(0, items, 25):
        batch = [{"PutRequest": {"Item": {"pk": {"S": f"k{n}"}, "v": {"S": "z" * 200}}}} for n in range(start_at, min(items, start_at + 25))]
        client.batch_write_item(RequestItems={"bench-m": batch})  # type: ignore[attr-defined]
        if not early and start_at >= items // 10:
            early = rss_mb(server.pid)
    return early, rss_mb(server.pid)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--skip-peers", action="store_true", help="do not run MiniStack and moto")
    parser.add_argument("--partition", type=int, default=20000, help="items in the Query partition (0: skip)")
    parser.add_argument("--memory-items", type=int, default=0, help="items stored to watch server RSS (0: skip)")
    parser.add_argument("--quick", action="store_true", help="1.5 s per measurement, no Query or memory runs")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.partition, args.memory_items = 1.5, 0, 0
    tmp = Path(tempfile.mkdtemp(prefix="bench-ddb-"))
    port = free_port()
    nubes = start("nubes", [PYTHON, "-m", "nubes", "up", "--port", str(port), "--data-dir", str(tmp / "nubes")], port, ready_path="/_nubes/health")
    try:
        results = {"nubes": _run_put_get(nubes, args.duration)}
        floor = _floor(nubes, args.duration)
        if args.partition:
            p50, p99 = _query_latency(nubes, args.partition)
            emit("dynamodb", "query_100_items_p50", p50, "ms", 5.0, p99_ms=round(p99, 3), partition_items=args.partition, target="<= 5 ms")
        if args.memory_items:
            early, late = _memory_growth(nubes, args.memory_items)
            emit("dynamodb", "server_rss_after_all_items", late, "MB", early, items=args.memory_items,
                 target="ratio ~1: data lives in the store, not in memory")  # fmt: skip
    finally:
        nubes.stop()
    if not args.skip_peers:
        for name, cmd, env in (
            ("ministack", ["ministack"], {"GATEWAY_PORT": "{port}", "LOG_LEVEL": "WARNING"}),
            ("moto", ["moto_server", "-p", "{port}"], {}),
        ):
            peer_port = free_port()
            peer = start(name, [c.format(port=peer_port) for c in cmd], peer_port,
                         env={k: v.format(port=peer_port) for k, v in env.items()})  # fmt: skip
            try:
                results[name] = _run_put_get(peer, args.duration)
            finally:
                peer.stop()
    for name, pair in results.items():
        for op, res in pair.items():
            emit("dynamodb", f"{name}_{op}_item_ops", res.rps, "ops/s", None, p50_ms=round(res.p50_ms, 3),  # type: ignore[attr-defined]
                 p99_ms=round(res.p99_ms, 3), cpu_us_per_op=round(res.cpu_per_request_us, 1), errors=res.errors)  # type: ignore[attr-defined]  # fmt: skip
    emit("dynamodb", "nubes_floor_describe_limits_ops", floor.rps, "ops/s", None, p50_ms=round(floor.p50_ms, 3),  # type: ignore[attr-defined]
         cpu_us_per_op=round(floor.cpu_per_request_us, 1),  # type: ignore[attr-defined]
         note="signed request, constant answer: the per-request cost outside DynamoDB and the store")  # fmt: skip
    for op in ("put", "get"):
        ours_cpu = results["nubes"][op].cpu_per_request_us  # type: ignore[attr-defined]
        emit("dynamodb", f"nubes_{op}_cpu_over_floor", ours_cpu - floor.cpu_per_request_us, "us/op", None,  # type: ignore[attr-defined]
             note="server CPU per operation beyond the DescribeLimits floor: item parsing, DynamoDB, the store")  # fmt: skip
    for op in ("put", "get"):
        ours = results["nubes"][op].rps  # type: ignore[attr-defined]
        for name, target in (("ministack", ">= 3x"), ("moto", ">= 15x")):
            if name in results:
                emit("dynamodb", f"nubes_{op}_vs_{name}", ours, "ops/s", results[name][op].rps, target=target)  # type: ignore[attr-defined]
        ours_cpu = results["nubes"][op].cpu_per_request_us  # type: ignore[attr-defined]
        for name in ("ministack", "moto"):
            theirs_cpu = results[name][op].cpu_per_request_us if name in results else 0.0  # type: ignore[attr-defined]
            if ours_cpu and theirs_cpu:
                emit("dynamodb", f"nubes_{op}_cpu_vs_{name}", 1e6 / ours_cpu, "ops/cpu-s", 1e6 / theirs_cpu,
                     server_cpu_us_per_op=round(ours_cpu, 1), baseline_cpu_us_per_op=round(theirs_cpu, 1))  # fmt: skip


if __name__ == "__main__":
    main()
