"""EventBridge and Scheduler in one process against a real SQLite store:
timers fire once (also across restarts), schedule rules and schedules deliver."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from nubes.app import App
from nubes.services.events import store as est
from nubes.services.events.schedules import TIMERS as RULE_TIMERS
from nubes.services.events.timers import due_items, get_due, set_due
from nubes.services.scheduler import store as sst
from nubes.settings import Settings
from nubes.storage import open_store
from nubes.storage.base import Txn
from nubes.storage.keys import pack


async def _app(data: Path, *services: str) -> App:
    settings = Settings(data_dir=data)
    app = App(settings, store=await open_store(settings))
    for model in services:
        await app.provider(model).start()
    return app


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 60))


async def _queue(app: App) -> tuple[str, str]:
    url = (await app.call("sqs", "CreateQueue", {"QueueName": f"q{time.time_ns()}"}))["QueueUrl"]
    attrs = await app.call(
        "sqs", "GetQueueAttributes", {"QueueUrl": url, "AttributeNames": ["QueueArn"]}
    )
    return url, attrs["Attributes"]["QueueArn"]


async def _receive(app: App, url: str, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    deadline = time.time() + timeout
    while len(got) < count and time.time() < deadline:
        answer = await app.call("sqs", "ReceiveMessage", {
            "QueueUrl": url, "MaxNumberOfMessages": 10, "MessageAttributeNames": ["All"]})  # fmt: skip
        got.extend(answer.get("Messages", []))
        if len(got) < count:
            await asyncio.sleep(0.05)
    return got


def test_timer_tables(tmp_path: Path) -> None:
    async def body() -> None:
        store = await open_store(Settings(data_dir=tmp_path))

        def setup(txn: Txn) -> None:
            set_due(txn, "t", "a", 100.0)
            set_due(txn, "t", "b", 50.0)
            set_due(txn, "t", "a", 200.0)  # moving a timer drops its old slot
            set_due(txn, "t", "c", 10.0)
            set_due(txn, "t", "c", None)

        await store.write(setup)
        assert await store.read(lambda txn: due_items(txn, "t", 150.0)) == [(50.0, "b")]
        assert await store.read(lambda txn: due_items(txn, "t", 1e9)) == [(50.0, "b"), (200.0, "a")]
        assert await store.read(lambda txn: get_due(txn, "t", "c")) is None
        await store.close()

    run(body)


def test_schedule_rule_fires_when_due(tmp_path: Path) -> None:
    async def body() -> None:
        app = await _app(tmp_path, "events")
        url, arn = await _queue(app)
        await app.call(
            "events", "PutRule", {"Name": "tick", "ScheduleExpression": "rate(5 minutes)"}
        )
        await app.call(
            "events", "PutTargets", {"Rule": "tick", "Targets": [{"Id": "q", "Arn": arn}]}
        )
        due = await app.store.read(lambda txn: get_due(txn, RULE_TIMERS, "us-east-1/tick"))
        assert due is not None and 290 < due - time.time() <= 300
        # make it due now instead of waiting five minutes
        await app.store.write(
            lambda txn: set_due(txn, RULE_TIMERS, "us-east-1/tick", time.time() - 1)
        )
        app.bus.wake(RULE_TIMERS)
        messages = await _receive(app, url, 1)
        event = json.loads(messages[0]["Body"])
        assert event["detail-type"] == "Scheduled Event" and event["source"] == "aws.events"
        assert event["resources"][0].endswith(":rule/tick")
        nxt = await app.store.read(lambda txn: get_due(txn, RULE_TIMERS, "us-east-1/tick"))
        assert nxt is not None and nxt > time.time() + 200
        await app.call("events", "DisableRule", {"Name": "tick"})
        assert await app.store.read(lambda txn: get_due(txn, RULE_TIMERS, "us-east-1/tick")) is None
        await app.stop()

    run(body)


def test_one_time_schedule_due_while_down_fires_once(tmp_path: Path) -> None:
    async def body() -> None:
        app = await _app(tmp_path, "scheduler")
        url, arn = await _queue(app)
        soon = time.gmtime(time.time() + 3)
        at = time.strftime("at(%Y-%m-%dT%H:%M:%S)", soon)
        await app.call("scheduler", "CreateSchedule", {
            "Name": "once", "ScheduleExpression": at, "FlexibleTimeWindow": {"Mode": "OFF"},
            "ActionAfterCompletion": "DELETE",
            "Target": {"Arn": arn, "RoleArn": "arn:aws:iam::000000000000:role/r",
                       "Input": '{"arn": "<aws.scheduler.schedule-arn>"}'},
        })  # fmt: skip
        await app.stop()  # down before it is due
        await asyncio.sleep(3.5)
        app = await _app(tmp_path, "scheduler")
        messages = await _receive(app, url, 1)
        assert json.loads(messages[0]["Body"]) == {
            "arn": "arn:aws:scheduler:us-east-1:000000000000:schedule/default/once"}  # fmt: skip
        await asyncio.sleep(0.5)
        assert await _receive(app, url, 1, timeout=0.5) == []
        # ActionAfterCompletion DELETE removed it
        schedules = await app.call("scheduler", "ListSchedules", {})
        assert schedules["Schedules"] == []
        await app.stop()
        # and a second restart does not fire it again
        app = await _app(tmp_path, "scheduler")
        assert await _receive(app, url, 1, timeout=1.0) == []
        await app.stop()

    run(body)


def test_rate_schedule_starts_now_and_fails_to_dlq(tmp_path: Path) -> None:
    async def body() -> None:
        app = await _app(tmp_path, "scheduler")
        dlq_url, dlq_arn = await _queue(app)
        await app.call("scheduler", "CreateSchedule", {
            "Name": "every", "ScheduleExpression": "rate(1 minute)",
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "Target": {
                "Arn": "arn:aws:sqs:us-east-1:000000000000:missing-queue",
                "RoleArn": "arn:aws:iam::000000000000:role/r", "Input": "hello",
                "DeadLetterConfig": {"Arn": dlq_arn},
                "RetryPolicy": {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 60},
            },
        })  # fmt: skip
        messages = await _receive(app, dlq_url, 1)
        assert messages[0]["Body"] == "hello"
        attrs = {k: v["StringValue"] for k, v in messages[0]["MessageAttributes"].items()}
        assert attrs["X-Amz-Scheduler-Schedule-Arn"].endswith(":schedule/default/every")
        assert attrs["X-Amz-Scheduler-Attempt"] == "1"
        assert attrs["ERROR_CODE"] in (
            "AWS.SimpleQueueService.NonExistentQueue",
            "QueueDoesNotExist",
        )
        item = sst.timer_item("us-east-1", "default", "every")
        nxt = await app.store.read(lambda txn: get_due(txn, sst.TIMERS, item))
        assert nxt is not None and 50 < nxt - time.time() <= 60
        await app.stop()

    run(body)


def test_deliveries_survive_restart(tmp_path: Path) -> None:
    async def body() -> None:
        app = await _app(tmp_path)  # nothing started: deliveries stay queued
        url, arn = await _queue(app)
        await app.call("events", "PutRule", {"Name": "r", "EventPattern": '{"source": ["a"]}'})
        await app.call("events", "PutTargets", {"Rule": "r", "Targets": [{"Id": "q", "Arn": arn}]})
        result = await app.call("events", "PutEvents", {"Entries": [
            {"Source": "a", "DetailType": "d", "Detail": '{"n": 1}'}]})  # fmt: skip
        assert result["FailedEntryCount"] == 0
        queued = await app.store.read(lambda txn: txn.queue_stats(est.DELIVERIES, now=time.time()))
        assert queued[0] == 1
        await app.stop()
        app = await _app(tmp_path, "events")
        messages = await _receive(app, url, 1)
        assert json.loads(messages[0]["Body"])["detail"] == {"n": 1}
        await app.stop()

    run(body)


def test_events_put_topic_reaches_the_default_bus(tmp_path: Path) -> None:
    async def body() -> None:
        app = await _app(tmp_path, "events")
        url, arn = await _queue(app)
        pattern = {"source": ["aws.s3"], "detail-type": ["Object Created"]}
        await app.call("events", "PutRule", {"Name": "s3", "EventPattern": json.dumps(pattern)})
        await app.call("events", "PutTargets", {"Rule": "s3", "Targets": [{"Id": "q", "Arn": arn}]})
        # an AWS source (not allowed through PutEvents) from another nubes service
        app.bus.publish("events:put", {
            "Source": "aws.s3", "DetailType": "Object Created", "region": "us-east-1",
            "Detail": {"bucket": {"name": "b"}}, "Resources": ["arn:aws:s3:::b"],
        })  # fmt: skip
        messages = await _receive(app, url, 1)
        event = json.loads(messages[0]["Body"])
        assert event["source"] == "aws.s3" and event["detail"] == {"bucket": {"name": "b"}}
        assert event["resources"] == ["arn:aws:s3:::b"]
        await app.stop()

    run(body)


def test_archive_retention_trims_old_events(tmp_path: Path) -> None:
    async def body() -> None:
        app = await _app(tmp_path)
        bus = await app.call("events", "DescribeEventBus", {})
        await app.call("events", "CreateArchive", {
            "ArchiveName": "a", "EventSourceArn": bus["Arn"], "RetentionDays": 1})  # fmt: skip
        log_name = est.archive_log("us-east-1", "a")
        old, fresh = time.time() - 3 * 86400, time.time()

        def fill(txn: Txn) -> None:
            for i in range(150):  # more than one page of old ones
                txn.append(log_name, json.dumps({"at": old, "event": {"n": i}}).encode())
            for i in range(3):
                txn.append(log_name, json.dumps({"at": fresh, "event": {"n": i}}).encode())

        await app.store.write(fill)
        provider: Any = app.provider("events")
        doc = await app.call("events", "DescribeArchive", {"ArchiveName": "a"})
        assert doc["EventCount"] == 153
        archive = await app.store.read(
            lambda txn: est.get_json(txn, est.ARCHIVES, pack("us-east-1", "a"))
        )
        assert await provider._trim_archive(archive) == 150
        assert (await app.call("events", "DescribeArchive", {"ArchiveName": "a"}))[
            "EventCount"
        ] == 3
        assert await provider._trim_archive(archive) == 0
        await app.stop()

    run(body)


def test_cross_bus_forwarding_keeps_aws_sources(tmp_path: Path) -> None:
    async def body() -> None:
        app = await _app(tmp_path, "events")
        url, queue_arn = await _queue(app)
        other = (await app.call("events", "CreateEventBus", {"Name": "other"}))["EventBusArn"]
        pattern = json.dumps({"source": ["aws.s3"]})
        await app.call("events", "PutRule", {"Name": "fwd", "EventPattern": pattern})
        await app.call(
            "events", "PutTargets", {"Rule": "fwd", "Targets": [{"Id": "b", "Arn": other}]}
        )
        await app.call(
            "events", "PutRule", {"Name": "q", "EventPattern": pattern, "EventBusName": "other"}
        )
        await app.call("events", "PutTargets", {"Rule": "q", "EventBusName": "other",
                                                "Targets": [{"Id": "q", "Arn": queue_arn}]})  # fmt: skip
        app.bus.publish("events:put", {"Source": "aws.s3", "DetailType": "Object Created",
                                       "Detail": {"k": 1}, "region": "us-east-1"})  # fmt: skip
        messages = await _receive(app, url, 1)
        assert json.loads(messages[0]["Body"])["source"] == "aws.s3"
        await app.stop()

    run(body)


def test_listing_pages_and_rule_updates_keep_targets(tmp_path: Path) -> None:
    async def body() -> None:
        app = await _app(tmp_path)
        for i in range(7):
            await app.call(
                "events", "PutRule", {"Name": f"r{i}", "EventPattern": '{"source": ["a"]}'}
            )
        names, token = [], None
        while True:
            page = await app.call(
                "events", "ListRules", {"Limit": 3, **({"NextToken": token} if token else {})}
            )
            names += [r["Name"] for r in page["Rules"]]
            token = page.get("NextToken")
            if not token:
                break
        assert names == [f"r{i}" for i in range(7)]
        await app.call(
            "events",
            "PutTargets",
            {"Rule": "r0", "Targets": [{"Id": "t", "Arn": "arn:aws:sqs:us-east-1:000000000000:q"}]},
        )
        await app.call("events", "PutRule", {"Name": "r0", "EventPattern": '{"source": ["b"]}',
                                             "State": "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"})  # fmt: skip
        targets = await app.call("events", "ListTargetsByRule", {"Rule": "r0"})
        assert [t["Id"] for t in targets["Targets"]] == ["t"]
        provider: Any = app.provider("events")
        bus = await app.call("events", "DescribeEventBus", {})
        assert bus["Name"] == "default"
        generation = await app.store.read(
            lambda txn: est.get_bus(txn, "us-east-1", "000000000000", "default")
        )
        index = provider.bus_index("us-east-1", "default", generation["Generation"],
                                   lambda: est_snapshot(app))  # fmt: skip
        assert index is not None
        assert index.index.match({"source": "b"}) == ["r0"]
        await app.stop()

    run(body)


def est_snapshot(app: App) -> Any:
    return app.store.read_sync(lambda txn: est.bus_snapshot(txn, "us-east-1", "default"))
