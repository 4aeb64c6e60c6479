"""SQS and SNS through the whole stack with a raw keep-alive HTTP client, 8 concurrent
(2 processes x 4 connections), against MiniStack and moto's server in the same run.

    python -m benchmarks.messaging [--duration 3] [--skip-peers] [--skip-function]

Metrics: SendMessage of 1 KB messages (durable on nubes, in memory on the peers);
send+receive+delete cycles; messages/s sent in batches of 10; SNS Publish to a topic
with 10 SQS subscribers (publishes/s, deliveries/s until every queue has them, and
server CPU per publish until then).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import boto3

from benchmarks.harness import (
    PYTHON,
    Server,
    cpu_seconds,
    emit,
    free_port,
    load,
    signed_request,
    start,
)

JSON = "application/x-amz-json-1.0"
BODY_1K = "x" * 1024
PEERS: tuple[tuple[str, list[str], dict[str, str]], ...] = (
    ("ministack", ["ministack"], {"GATEWAY_PORT": "{port}", "LOG_LEVEL": "WARNING"}),
    ("moto", ["moto_server", "-p", "{port}"], {}),
)


def _client(port: int, service: str) -> Any:
    return boto3.client(service, endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")  # fmt: skip


def _sqs_request(port: int, operation: str, params: dict[str, Any]) -> bytes:
    return signed_request(
        port, "sqs", f"AmazonSQS.{operation}", json.dumps(params).encode(), content_type=JSON
    )


# -- send+receive+delete cycles: each delete needs the handle just received ----------


class _Conn:
    """One keep-alive connection that reconnects when the peer closes it (moto's server)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.pair: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def call(self, payload: bytes) -> tuple[int, Any]:
        if self.pair is None:
            self.pair = await asyncio.open_connection("127.0.0.1", self.port)
        reader, writer = self.pair
        writer.write(payload)
        head = await reader.readuntil(b"\r\n\r\n")
        length, keep = 0, head.startswith(b"HTTP/1.1")
        for line in head.split(b"\r\n"):
            low = line.lower()
            if low.startswith(b"content-length:"):
                length = int(line[15:])
            elif low.startswith(b"connection:") and b"close" in low:
                keep = False
        body = await reader.readexactly(length)
        if not keep:
            writer.close()
            self.pair = None
        return int(head[9:12]), (json.loads(body) if body else {})


async def _cycles(port: int, url: str, until: float, counts: list[int]) -> None:
    conn = _Conn(port)
    send = _sqs_request(port, "SendMessage", {"QueueUrl": url, "MessageBody": BODY_1K})
    receive = _sqs_request(port, "ReceiveMessage", {"QueueUrl": url, "MaxNumberOfMessages": 1})
    while time.perf_counter() < until:
        await conn.call(send)
        _, got = await conn.call(receive)
        for message in got.get("Messages", []):
            status, _ = await conn.call(
                _sqs_request(
                    port,
                    "DeleteMessage",
                    {"QueueUrl": url, "ReceiptHandle": message["ReceiptHandle"]},
                )
            )
            if status == 200:
                counts.append(1)
    if conn.pair is not None:
        conn.pair[1].close()


def _cycle_process(port: int, url: str, duration: float, out: Any) -> None:
    counts: list[int] = []

    async def run() -> None:
        until = time.perf_counter() + duration
        await asyncio.gather(*(_cycles(port, url, until, counts) for _ in range(4)))

    asyncio.run(run())
    out.put(len(counts))


def cycles_per_second(server: Server, url: str, duration: float) -> tuple[float, float]:
    """(cycles/s, server CPU µs per cycle) from 2 processes x 4 connections."""
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    cpu0 = cpu_seconds(server.pid)
    began = time.perf_counter()
    procs = [
        ctx.Process(target=_cycle_process, args=(server.port, url, duration, queue))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    total = sum(queue.get(timeout=duration + 60) for _ in procs)
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - began
    cpu = cpu_seconds(server.pid) - cpu0
    return total / elapsed, (cpu / total * 1e6 if total else 0.0)


# -- one server ------------------------------------------------------------------------


def measure_sqs(server: Server, duration: float, *, batches: bool) -> dict[str, float]:
    sqs = _client(server.port, "sqs")
    url = sqs.create_queue(QueueName=f"bench-{time.time_ns()}")["QueueUrl"]
    results: dict[str, float] = {}
    send = load(server, [_sqs_request(server.port, "SendMessage", {"QueueUrl": url, "MessageBody": BODY_1K})],
                duration=duration, warmup=0.5)  # fmt: skip
    results["send_rps"] = send.rps
    results["send_cpu_us"] = send.cpu_per_request_us
    results["send_p50_ms"] = send.p50_ms
    results["send_errors"] = float(sum(send.errors.values()))
    sqs.purge_queue(QueueUrl=url)
    cycle_url = sqs.create_queue(QueueName=f"bench-cycle-{time.time_ns()}")["QueueUrl"]
    results["cycle_rps"], results["cycle_cpu_us"] = cycles_per_second(server, cycle_url, duration)
    if batches:
        entries = [{"Id": f"m{i}", "MessageBody": BODY_1K} for i in range(10)]
        batch_url = sqs.create_queue(QueueName=f"bench-batch-{time.time_ns()}")["QueueUrl"]
        batch = load(server, [_sqs_request(server.port, "SendMessageBatch", {"QueueUrl": batch_url, "Entries": entries})],
                     duration=duration, warmup=0.5)  # fmt: skip
        results["batch_messages_per_s"] = batch.rps * 10
    return results


def measure_sns(server: Server, duration: float, subscribers: int = 10) -> dict[str, float]:
    sns, sqs = _client(server.port, "sns"), _client(server.port, "sqs")
    topic = sns.create_topic(Name=f"bench-{time.time_ns()}")["TopicArn"]
    urls = []
    for i in range(subscribers):
        url = sqs.create_queue(QueueName=f"bench-sub-{time.time_ns()}-{i}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
        urls.append(url)
    body = urlencode(
        {"Action": "Publish", "Version": "2010-03-31", "TopicArn": topic, "Message": BODY_1K}
    ).encode()
    publish = signed_request(
        server.port,
        "sns",
        None,
        body,
        content_type="application/x-www-form-urlencoded; charset=utf-8",
    )
    began = time.perf_counter()
    cpu0 = cpu_seconds(server.pid)
    result = load(server, [publish], duration=duration, warmup=0)
    published = result.requests
    # deliveries done when every queue holds every message
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        counts = [int(sqs.get_queue_attributes(QueueUrl=u, AttributeNames=["ApproximateNumberOfMessages"])
                      ["Attributes"]["ApproximateNumberOfMessages"]) for u in urls]  # fmt: skip
        if min(counts) >= published:
            break
        time.sleep(0.1)
    drained = time.perf_counter() - began
    # server CPU until every delivery is in, per publish (includes the polling above)
    cpu_us = (cpu_seconds(server.pid) - cpu0) / published * 1e6 if published else 0.0
    return {"publish_rps": result.rps, "publish_p50_ms": result.p50_ms, "cpu_us_per_publish": cpu_us,
            "deliveries_per_s": sum(counts) / drained, "fanout_complete_publishes_per_s": min(counts) / drained}  # fmt: skip


RECORDER = """
import os, time
def handler(event, context):
    now = time.time()
    with open(os.environ["OUT"], "a") as fh:
        for record in event["Records"]:
            fh.write(f"{now - float(record['body'])}\\n")
"""


def measure_sqs_to_function(server: Server, tmp: Path, messages: int = 40) -> float:
    """p50 ms from SendMessage to the function running (event source mapping, warm)."""
    import io
    import zipfile

    lam, sqs = _client(server.port, "lambda"), _client(server.port, "sqs")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("app.py", RECORDER)
    out = tmp / "latency.txt"
    lam.create_function(FunctionName="bench-esm", Runtime="python3.12", Handler="app.handler",
                        Role="arn:aws:iam::000000000000:role/x", Code={"ZipFile": buf.getvalue()},
                        Environment={"Variables": {"OUT": str(out)}})  # fmt: skip
    lam.get_waiter("function_active_v2").wait(
        FunctionName="bench-esm", WaiterConfig={"Delay": 0.1, "MaxAttempts": 100}
    )
    url = sqs.create_queue(QueueName="bench-esm")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    mapping = lam.create_event_source_mapping(
        EventSourceArn=arn, FunctionName="bench-esm", BatchSize=1
    )
    deadline = time.monotonic() + 30
    while (
        lam.get_event_source_mapping(UUID=mapping["UUID"])["State"] != "Enabled"
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    for _ in range(messages + 3):  # the first few warm the function up
        sqs.send_message(QueueUrl=url, MessageBody=repr(time.time()))
        time.sleep(0.05)
    deadline = time.monotonic() + 30
    lines: list[float] = []
    while time.monotonic() < deadline:
        lines = [float(x) for x in out.read_text().split()] if out.exists() else []
        if len(lines) >= messages + 3:
            break
        time.sleep(0.1)
    latencies = sorted(lines[3:])
    return latencies[len(latencies) // 2] * 1000 if latencies else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--skip-peers", action="store_true", help="do not run MiniStack and moto")
    parser.add_argument("--skip-function", action="store_true",
                        help="do not measure SQS -> function start (creates a function)")  # fmt: skip
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-msg-"))
    port = free_port()
    nubes = start("nubes", [PYTHON, "-m", "nubes", "up", "--port", str(port), "--data-dir", str(tmp / "nubes")],
                  port, ready_path="/_nubes/health")  # fmt: skip
    try:
        results = {"nubes": measure_sqs(nubes, args.duration, batches=True)}
        sns_nubes = measure_sns(nubes, args.duration)
        to_function_ms = float("nan") if args.skip_function else measure_sqs_to_function(nubes, tmp)
    finally:
        nubes.stop()
        # the data dir holds what the run wrote (a 1 GB object for S3): never leave it behind
        shutil.rmtree(tmp, ignore_errors=True)
    sns_peer: dict[str, dict[str, float]] = {}
    if not args.skip_peers:
        for name, cmd, env in PEERS:
            peer_port = free_port()
            peer = start(name, [c.format(port=peer_port) for c in cmd], peer_port,
                         env={k: v.format(port=peer_port) for k, v in env.items()})  # fmt: skip
            try:
                results[name] = measure_sqs(peer, args.duration, batches=False)
                if name == "ministack":
                    sns_peer[name] = measure_sns(peer, args.duration)
            except Exception as error:  # a peer that cannot do something is reported, not fatal
                emit("messaging", f"{name}_failed", 0, "", None, error=repr(error)[:200])
            finally:
                peer.stop()
    ours = results["nubes"]
    for name, res in results.items():
        emit("messaging", f"sqs_send_{name}", res["send_rps"], "msg/s", None,
             cpu_us_per_request=round(res["send_cpu_us"], 1), p50_ms=round(res["send_p50_ms"], 3),
             errors=res["send_errors"])  # fmt: skip
        emit("messaging", f"sqs_cycle_{name}", res["cycle_rps"], "cycles/s", None,
             cpu_us_per_cycle=round(res["cycle_cpu_us"], 1))  # fmt: skip
    for name, target_send in (("ministack", ">= 3x"), ("moto", ">= 50x")):
        if name in results:
            emit(
                "messaging",
                f"sqs_send_vs_{name}",
                ours["send_rps"],
                "msg/s",
                results[name]["send_rps"],
                target=target_send,
            )
            emit(
                "messaging",
                f"sqs_cycle_vs_{name}",
                ours["cycle_rps"],
                "cycles/s",
                results[name]["cycle_rps"],
            )
    emit(
        "messaging",
        "sqs_batch_send",
        ours["batch_messages_per_s"],
        "msg/s",
        10000.0,
        target=">= 10000 msg/s",
    )
    if not args.skip_function:
        emit("messaging", "sqs_send_to_function_start_p50", to_function_ms, "ms", 10.0,
             target="<= 10 ms")  # fmt: skip
    base = sns_peer.get("ministack", {})
    emit("messaging", "sns_publish_10_sqs_subscribers", sns_nubes["publish_rps"], "publish/s",
         base.get("publish_rps"), target=">= 1000 publish/s", p50_ms=round(sns_nubes["publish_p50_ms"], 3))  # fmt: skip
    emit("messaging", "sns_fanout_complete", sns_nubes["fanout_complete_publishes_per_s"], "publish/s",
         base.get("fanout_complete_publishes_per_s"), deliveries_per_s=round(sns_nubes["deliveries_per_s"], 1),
         cpu_us_per_publish=round(sns_nubes["cpu_us_per_publish"], 1))  # fmt: skip


if __name__ == "__main__":
    main()
