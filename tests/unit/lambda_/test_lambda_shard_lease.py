"""Only one node reads a DynamoDB stream shard for a mapping at a time."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from nubes.app import App
from nubes.events import esm
from nubes.settings import Settings


def test_shard_lease_is_exclusive_until_it_expires(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        from nubes.storage import open_store

        app = App(Settings.load({"data_dir": str(tmp_path)}, env={}))
        app._store = await open_store(app.settings)

        async def never(*args: Any) -> Any:
            raise AssertionError("no invocation expected")

        doc = {"UUID": "m1", "EventSourceArn": "arn:aws:dynamodb:us-east-1:000000000000:table/t/stream/x",
               "FunctionArn": "arn:aws:lambda:us-east-1:000000000000:function:f"}  # fmt: skip
        one = esm.StreamPoller(esm.EventSourcePollers(app, never), doc)
        two_owner = esm.EventSourcePollers(app, never)
        two = esm.StreamPoller(two_owner, doc)
        try:
            assert await one._hold("shard-1") is True
            assert await one._hold("shard-1") is True  # renewing
            assert await two._hold("shard-1") is False
            assert await two._hold("shard-2") is True  # other shards are free
            monkeypatch.setattr(esm, "_SHARD_LEASE_S", -1.0)
            assert await one._hold("shard-1") is True  # leases now expire at once
            assert await two._hold("shard-1") is True
            await two_owner.stop()  # a clean stop hands the shards back
            monkeypatch.setattr(esm, "_SHARD_LEASE_S", 60.0)
            assert await one._hold("shard-2") is True
        finally:
            await app.store.close()

    asyncio.run(scenario())
