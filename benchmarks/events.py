"""EventBridge speed: pattern matching as rules grow, PutEvents, delivery, schedules.

``python -m benchmarks.events [--quick]`` prints JSON lines
``{"bench", "metric", "value", "unit", "baseline", "ratio", ...}``:

* ``match_us_per_event_<n>_rules`` — ``PatternIndex.match`` per event with n rules
  (10 .. 10,000); baseline: trying every rule's compiled pattern (same run, same
  rules). The index must grow sub-linearly: see ``growth_vs_10_rules``.
* ``matched_events_per_s_1000_rules`` — the index's rate with 1,000 rules (target
  >= 10,000/s); baseline: trying every rule.
* ``put_events_per_s_1000_rules`` — PutEvents in-process (validation, matching,
  durable queueing of the deliveries in the SQLite store) with 1,000 rules on the
  bus; baseline: the bare store writing one queue row per event.
* ``put_to_sqs_p50_ms`` — PutEvents until the message is in an SQS target queue;
  baseline: SendMessage until the message is receivable, in the same process.
* ``put_events_to_lambda_start_p50_ms`` — PutEvents through a real server until the
  Lambda target's handler starts (target <= 5 ms); baseline: an asynchronous Invoke.
* ``scheduler_lateness_p99_ms`` — 10,000 (2,000 with ``--quick``) ``rate(1 minute)``
  schedules whose runs fall within 10 s (a minute's load at 6x speed): how late
  after its scheduled time each invocation starts (target p99 <= 1 s).
* ``scheduler_burst_lateness_p99_ms`` — a fifth as many, all due at one instant.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from benchmarks.harness import emit
from nubes.app import App
from nubes.events.patterns import CompiledPattern, PatternIndex
from nubes.settings import Settings
from nubes.storage import open_store
from nubes.storage.base import Txn

SOURCES = [f"app.service{i}" for i in range(20)]


def make_rule(i: int) -> dict[str, Any]:
    """A realistic mix: exact source + detail-type, some with content filters."""
    rule: dict[str, Any] = {
        "source": [SOURCES[i % len(SOURCES)]],
        "detail-type": [f"Order{i % 500}"],
    }
    if i % 3 == 0:
        rule["detail"] = {"amount": [{"numeric": [">", i % 100]}]}
    elif i % 3 == 1:
        rule["detail"] = {"region": [{"prefix": "eu-"}], "tier": ["gold", "silver"]}
    if i % 50 == 0:  # a few rules with nothing to index on
        rule = {"detail": {"customer": [{"prefix": f"c{i % 7}"}]}}
    return rule


def make_event(rng: random.Random) -> dict[str, Any]:
    n = rng.randrange(1000)
    return {
        "version": "0", "id": str(n), "source": SOURCES[n % len(SOURCES)],
        "detail-type": f"Order{rng.randrange(500)}", "account": "000000000000",
        "time": "2024-01-01T00:00:00Z", "region": "us-east-1", "resources": [],
        "detail": {"amount": rng.randrange(200), "region": rng.choice(["eu-west-1", "us-east-1"]),
                   "tier": rng.choice(["gold", "bronze"]), "customer": f"c{n % 9}x"},
    }  # fmt: skip


def _per_event_us(fn: Any, events: list[dict[str, Any]], budget: float) -> float:
    done, begin = 0, time.perf_counter()
    while True:
        for event in events:
            fn(event)
        done += len(events)
        elapsed = time.perf_counter() - begin
        if elapsed > budget:
            return elapsed / done * 1e6


def bench_matching(quick: bool) -> None:
    rng = random.Random(7)
    events = [make_event(rng) for _ in range(200)]
    first: float | None = None
    for n in (10, 100, 1000, 10_000):
        rules = [make_rule(i) for i in range(n)]
        index = PatternIndex()
        compiled = []
        for i, rule in enumerate(rules):
            index.add(i, rule)
            compiled.append((i, CompiledPattern.compile(rule)))

        def naive(event: dict[str, Any], compiled: list[Any] = compiled) -> list[int]:
            return [i for i, p in compiled if p.matches(event)]

        for event in events[:50]:  # the index answers exactly what trying every rule does
            assert sorted(index.match(event)) == naive(event)  # type: ignore[type-var]
        budget = 0.3 if quick else 1.0
        indexed = _per_event_us(index.match, events, budget)
        baseline = _per_event_us(naive, events[: max(5, 2000 // n)], budget)
        first = first or indexed
        emit("events", f"match_us_per_event_{n}_rules", indexed, "us", baseline,
             growth_vs_10_rules=round(indexed / first, 2))  # fmt: skip
        if n == 1000:
            emit("events", "matched_events_per_s_1000_rules", 1e6 / indexed, "events/s",
                 1e6 / baseline)  # fmt: skip


async def _app(data: Path, *services: str) -> App:
    settings = Settings(data_dir=data)
    app = App(settings, store=await open_store(settings))
    for model in services:
        await app.provider(model).start()
    return app


async def _queue(app: App, name: str) -> tuple[str, str]:
    url = (await app.call("sqs", "CreateQueue", {"QueueName": name}))["QueueUrl"]
    attrs = await app.call("sqs", "GetQueueAttributes",
                           {"QueueUrl": url, "AttributeNames": ["QueueArn"]})  # fmt: skip
    return url, attrs["Attributes"]["QueueArn"]


def _enqueue_ten(payload: bytes, now: float, txn: Txn) -> None:
    for _ in range(10):
        txn.enqueue("bench.baseline", payload, now=now)


async def bench_put_events(data: Path, quick: bool) -> None:
    app = await _app(data, "events")
    _, arn = await _queue(app, "bench-target")
    for i in range(1000):
        rule = make_rule(i)
        await app.call(
            "events", "PutRule", {"Name": f"r{i}", "EventPattern": orjson.dumps(rule).decode()}
        )
        if i % 100 == 1:  # 1% of the rules (rarely matched ones) deliver somewhere
            await app.call(
                "events", "PutTargets", {"Rule": f"r{i}", "Targets": [{"Id": "q", "Arn": arn}]}
            )
    rng = random.Random(3)
    batches = [[{"Source": e["source"], "DetailType": e["detail-type"],
                 "Detail": orjson.dumps(e["detail"]).decode()} for e in (make_event(rng) for _ in range(10))]
               for _ in range(50)]  # fmt: skip
    count, begin = 0, time.perf_counter()
    budget = 2.0 if quick else 5.0
    while time.perf_counter() - begin < budget:
        for batch in batches:
            await app.call("events", "PutEvents", {"Entries": batch})
            count += len(batch)
    rate = count / (time.perf_counter() - begin)

    rows, begin = 0, time.perf_counter()
    payload = orjson.dumps(batches[0])
    while time.perf_counter() - begin < budget / 2:
        await app.store.write(partial(_enqueue_ten, payload, time.time()))
        rows += 10
    baseline = rows / (time.perf_counter() - begin)
    emit("events", "put_events_per_s_1000_rules", rate, "events/s", baseline)
    await app.stop()


async def bench_delivery_latency(data: Path, quick: bool) -> None:
    app = await _app(data, "events")
    url, arn = await _queue(app, "bench-latency")
    await app.call("events", "PutRule", {"Name": "lat", "EventPattern": '{"source": ["lat"]}'})
    await app.call("events", "PutTargets", {"Rule": "lat", "Targets": [{"Id": "q", "Arn": arn}]})

    async def until_received() -> None:
        while True:
            got = await app.call("sqs", "ReceiveMessage", {"QueueUrl": url})
            if got.get("Messages"):
                handle = got["Messages"][0]["ReceiptHandle"]
                await app.call("sqs", "DeleteMessage", {"QueueUrl": url, "ReceiptHandle": handle})
                return
            await asyncio.sleep(0.0005)

    rounds = 50 if quick else 200
    eb, direct = [], []
    for _ in range(rounds):
        begin = time.perf_counter()
        await app.call(
            "events",
            "PutEvents",
            {"Entries": [{"Source": "lat", "DetailType": "t", "Detail": "{}"}]},
        )
        await until_received()
        eb.append((time.perf_counter() - begin) * 1000)
        begin = time.perf_counter()
        await app.call("sqs", "SendMessage", {"QueueUrl": url, "MessageBody": "{}"})
        await until_received()
        direct.append((time.perf_counter() - begin) * 1000)
    emit("events", "put_to_sqs_p50_ms", statistics.median(eb), "ms", statistics.median(direct))
    await app.stop()


async def bench_scheduler(data: Path, count: int, spread: float) -> None:
    """``count`` rate(1 minute) schedules whose first runs fall within ``spread``
    seconds (0: all at one instant); emits how late their invocations start."""
    app = await _app(data, "scheduler")
    _, arn = await _queue(app, "bench-schedules")
    provider: Any = app.provider("scheduler")
    lateness: list[float] = []
    deliver = provider.worker.deliver

    async def timed(doc: dict[str, Any]) -> None:
        lateness.append((time.time() - float(doc["scheduled"])) * 1000)
        await deliver(doc)

    provider.worker.deliver = timed
    first = time.time() + 3 + count / 1000  # after creating them all
    for i in range(count):
        start = dt.datetime.fromtimestamp(first + spread * i / count, dt.UTC)
        await app.call("scheduler", "CreateSchedule", {
            "Name": f"s{i}", "ScheduleExpression": "rate(1 minute)", "StartDate": start,
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "Target": {"Arn": arn, "RoleArn": "arn:aws:iam::000000000000:role/r", "Input": "{}"},
        })  # fmt: skip
    if time.time() > first:
        print(f"# creating {count} schedules took past their first run", flush=True)
    deadline = first + spread + 30
    while len(lateness) < count and time.time() < deadline:
        await asyncio.sleep(0.1)
    ordered = sorted(lateness)
    p99 = ordered[max(0, int(len(ordered) * 0.99) - 1)] if ordered else float("nan")
    metric = "scheduler_burst_lateness_p99_ms" if spread == 0 else "scheduler_lateness_p99_ms"
    emit("events", metric, p99, "ms", None, schedules=count, spread_s=spread,
         fired=len(lateness), p50_ms=round(statistics.median(ordered), 1) if ordered else None)  # fmt: skip
    await app.stop()


STAMP = """
import json, os, time, boto3
sqs = boto3.client("sqs")

def handler(event, context):
    started = time.time()
    sent = event.get("detail", event).get("sent")
    sqs.send_message(QueueUrl=os.environ["QUEUE_URL"], MessageBody=json.dumps([sent, started]))
"""


def bench_lambda_target(quick: bool) -> None:
    """PutEvents → the Lambda target's handler starts, through a real server; baseline:
    an asynchronous Invoke of the same function."""
    import io
    import zipfile

    from nubes.testing.server import NubesServer

    with tempfile.TemporaryDirectory() as tmp, NubesServer(Path(tmp)) as server:
        sqs, lam, events = (server.client(s) for s in ("sqs", "lambda", "events"))
        url = sqs.create_queue(QueueName="stamps")["QueueUrl"]
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as archive:
            archive.writestr("app.py", STAMP)
        arn = lam.create_function(
            FunctionName="stamp", Runtime="python3.12", Handler="app.handler",
            Role="arn:aws:iam::000000000000:role/r", Code={"ZipFile": buf.getvalue()},
            Environment={"Variables": {"QUEUE_URL": url}},
        )["FunctionArn"]  # fmt: skip
        lam.get_waiter("function_active_v2").wait(FunctionName="stamp")
        events.put_rule(Name="stamp", EventPattern='{"source": ["bench"]}')
        events.put_targets(Rule="stamp", Targets=[{"Id": "fn", "Arn": arn}])

        def one(send: Any) -> float:
            sent = time.time()
            send(sent)
            while True:
                got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5).get("Messages", [])
                for message in got:
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                    stamp_sent, started = orjson.loads(message["Body"])
                    if stamp_sent == sent:
                        return (started - sent) * 1000

        def via_events(sent: float) -> None:
            events.put_events(Entries=[{"Source": "bench", "DetailType": "t",
                                        "Detail": orjson.dumps({"sent": sent}).decode()}])  # fmt: skip

        def via_invoke(sent: float) -> None:
            lam.invoke(FunctionName="stamp", InvocationType="Event",
                       Payload=orjson.dumps({"sent": sent}))  # fmt: skip

        one(via_invoke)  # warm the function
        rounds = 20 if quick else 60
        eb = [one(via_events) for _ in range(rounds)]
        direct = [one(via_invoke) for _ in range(rounds)]
        emit("events", "put_events_to_lambda_start_p50_ms", statistics.median(eb), "ms",
             statistics.median(direct))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller, shorter runs")
    parser.add_argument("--skip-scheduler", action="store_true")
    parser.add_argument("--skip-lambda", action="store_true")
    args = parser.parse_args()
    bench_matching(args.quick)
    if not args.skip_lambda:
        bench_lambda_target(args.quick)
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(bench_put_events(Path(tmp) / "put", args.quick))
        asyncio.run(bench_delivery_latency(Path(tmp) / "latency", args.quick))
        if not args.skip_scheduler:
            count = 2000 if args.quick else 10_000
            # a minute's worth of rate(1 minute) schedules fire spread over it; squeeze
            # them into 10 s (6x the real rate), and separately all at one instant
            asyncio.run(bench_scheduler(Path(tmp) / "spread", count, 10.0))
            asyncio.run(bench_scheduler(Path(tmp) / "burst", count // 5, 0.0))


if __name__ == "__main__":
    main()
