"""The data plane's in-memory API documents: changes made through the store apply at
once; a change written by another node (straight to the shared store) within
SERVING_TTL; a deleted API is gone at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from nubes.app import App
from nubes.services.apigateway import store as api_store
from nubes.services.apigateway.store import APIS, ApiStore
from nubes.settings import Settings
from nubes.storage.keys import pack


def test_serving_documents_follow_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        app = App(Settings(data_dir=tmp_path))
        await app.start()
        try:
            apis = ApiStore(app)
            await apis.put({"Id": "abc", "Version": 2, "Name": "one", "Stages": {}})
            first = await apis.find_serving("abc")
            assert first is not None and first["Name"] == "one"
            assert await apis.find_serving("abc") is first  # served from memory

            await apis.change("abc", True, lambda api: api.update(Name="two"))
            changed = await apis.find_serving("abc")
            assert changed is not None and changed["Name"] == "two"

            # another node writes the shared store: seen once the TTL has passed
            other = {"Id": "abc", "Version": 2, "Name": "three", "Stages": {}}
            await app.store.write(lambda txn: txn.put(APIS, pack("abc"), orjson.dumps(other)))
            assert (await apis.find_serving("abc") or {})["Name"] == "two"
            monkeypatch.setattr(api_store, "SERVING_TTL", 0.0)
            assert (await apis.find_serving("abc") or {})["Name"] == "three"
            monkeypatch.setattr(api_store, "SERVING_TTL", 60.0)

            await apis.delete("abc")
            assert await apis.find_serving("abc") is None
            assert await apis.find_serving("nope") is None
        finally:
            await app.stop()

    asyncio.run(main())
