"""``App.start(background=True)``: the app is up once its store is open; a request to
a service waits for that service's provider to finish starting."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from nubes.app import App
from nubes.aws.errors import AwsError
from nubes.services.base import Provider, RequestContext, ServiceSpec
from nubes.settings import Settings

EVENTS: list[str] = []


class Slow(Provider):
    """Starts only when the test lets it (like Lambda waiting for its zygote)."""

    gate: asyncio.Event

    async def start(self) -> None:
        EVENTS.append("slow: start begins")
        await self.gate.wait()
        self.value = "ready"
        EVENTS.append("slow: started")

    async def stop(self) -> None:
        EVENTS.append("slow: stop")

    async def get_thing(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return {"Value": self.value}


class Quick(Provider):
    async def start(self) -> None:
        EVENTS.append("quick: started")

    async def get_thing(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return {"Value": "quick"}


class Broken(Provider):
    async def start(self) -> None:
        await asyncio.sleep(0)
        raise OSError("no such device")

    async def get_thing(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("a provider that did not start must not be called")


def _run(tmp_path: Path, body: Callable[[App], Awaitable[None]]) -> None:
    EVENTS.clear()

    async def main() -> None:
        app = App(Settings(data_dir=tmp_path))
        # providers of this test only (the real ones would start a Lambda runtime)
        app.specs = {"slow": ServiceSpec(("slow",), Slow), "quick": ServiceSpec(("quick",), Quick),
                     "broken": ServiceSpec(("broken",), Broken)}  # fmt: skip
        app.hooks = {}
        Slow.gate = asyncio.Event()
        try:
            await body(app)
        finally:
            Slow.gate.set()
            await app.stop()

    asyncio.run(main())


def test_background_start_returns_before_a_slow_provider_and_its_requests_wait(tmp_path: Path) -> None:
    async def body(app: App) -> None:
        await app.start(background=True)
        assert app.started
        # every start ran up to its first wait, in name order, before start() returned
        assert EVENTS == ["quick: started", "slow: start begins"]
        assert await app.call("quick", "GetThing") == {"Value": "quick"}
        call = asyncio.ensure_future(app.call("slow", "GetThing"))
        await asyncio.sleep(0.05)
        assert not call.done()  # waiting for the provider, not calling it half-started
        Slow.gate.set()
        assert await asyncio.wait_for(call, 5) == {"Value": "ready"}
        assert await app.call("slow", "GetThing") == {"Value": "ready"}

    _run(tmp_path, body)


def test_a_provider_that_fails_to_start_answers_service_unavailable(tmp_path: Path) -> None:
    async def body(app: App) -> None:
        await app.start(background=True)
        for _ in range(2):  # every request, not only the first
            with pytest.raises(AwsError) as err:
                await app.call("broken", "GetThing")
            assert (err.value.code, err.value.status) == ("ServiceUnavailableException", 503)
            assert "no such device" in err.value.message
        assert await app.call("quick", "GetThing") == {"Value": "quick"}

    _run(tmp_path, body)


def test_stop_lets_a_background_start_finish_before_stopping_the_provider(tmp_path: Path) -> None:
    async def body(app: App) -> None:
        await app.start(background=True)
        stopping = asyncio.ensure_future(app.stop())
        await asyncio.sleep(0.05)
        assert "slow: stop" not in EVENTS
        Slow.gate.set()
        await asyncio.wait_for(stopping, 5)
        assert EVENTS.index("slow: started") < EVENTS.index("slow: stop")

    _run(tmp_path, body)


def test_start_without_background_waits_for_every_provider(tmp_path: Path) -> None:
    async def body(app: App) -> None:
        app.specs = {k: v for k, v in app.specs.items() if k != "broken"}
        Slow.gate.set()
        await app.start()
        assert "slow: started" in EVENTS
        assert await app.call("slow", "GetThing") == {"Value": "ready"}

    _run(tmp_path, body)
