"""EventBridge and Scheduler on the PostgreSQL store (the scale-out backend)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from nubes.app import App
from nubes.services.events.schedules import TIMERS
from nubes.services.events.timers import set_due
from nubes.settings import Settings

from .test_events_inprocess import _queue, _receive

PG_URL = os.environ.get("NUBES_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
pytestmark = pytest.mark.postgres


@pytest.fixture
def schema() -> Iterator[str]:
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(PG_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL at {PG_URL} is not reachable: {exc}")
    name = f"nubes_events_{uuid.uuid4().hex[:10]}"
    try:
        yield name
    finally:
        admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        admin.close()


def test_events_and_schedules_on_postgres(schema: str) -> None:
    from nubes.storage.postgres import PostgresStore

    async def body() -> None:
        store = await asyncio.to_thread(PostgresStore, PG_URL, schema=schema)
        app = App(Settings(), store=store)
        await app.provider("events").start()
        await app.provider("scheduler").start()
        url, arn = await _queue(app)
        await app.call("events", "PutRule", {"Name": "r", "EventPattern": '{"source": ["a"]}'})
        await app.call("events", "PutTargets", {"Rule": "r", "Targets": [{"Id": "q", "Arn": arn}]})
        await app.call("events", "PutEvents", {"Entries": [
            {"Source": "a", "DetailType": "d", "Detail": '{"n": 1}'}]})  # fmt: skip
        assert len(await _receive(app, url, 1)) == 1
        await app.call(
            "events", "PutRule", {"Name": "tick", "ScheduleExpression": "rate(5 minutes)"}
        )
        await app.call(
            "events", "PutTargets", {"Rule": "tick", "Targets": [{"Id": "q", "Arn": arn}]}
        )
        await app.store.write(lambda txn: set_due(txn, TIMERS, "us-east-1/tick", time.time() - 1))
        app.bus.wake(TIMERS)
        assert len(await _receive(app, url, 1)) == 1
        target: dict[str, Any] = {
            "Arn": arn,
            "RoleArn": "arn:aws:iam::000000000000:role/r",
            "Input": "hi",
        }
        await app.call("scheduler", "CreateSchedule", {
            "Name": "s", "ScheduleExpression": "rate(1 hour)", "FlexibleTimeWindow": {"Mode": "OFF"},
            "Target": target})  # fmt: skip
        assert [m["Body"] for m in await _receive(app, url, 1)] == ["hi"]
        await app.stop()

    asyncio.run(asyncio.wait_for(body(), 60))
