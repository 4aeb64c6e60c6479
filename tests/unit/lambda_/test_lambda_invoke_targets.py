"""Invoke's cache of resolved functions (``targets.py``): every change shows at once."""

from __future__ import annotations

import asyncio
import io
import time
import zipfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from nubes.app import App
from nubes.aws.errors import AwsError
from nubes.services.lambda_ import store as st
from nubes.services.lambda_ import targets
from nubes.services.lambda_.provider import LambdaProvider
from nubes.services.lambda_.targets import Target, TargetCache
from nubes.settings import Settings

ROLE = "arn:aws:iam::000000000000:role/x"
ENV_HANDLER = "import os\n\ndef handler(event, context):\n    return os.environ.get('X', '-')\n"


def _zip(source: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("app.py", source)
    return buf.getvalue()


def _run(tmp_path: Path, scenario: Callable[[App], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        app = App(Settings.load({"data_dir": str(tmp_path), "tls_port": "-1"}, env={}))
        await app.start()
        try:
            return await scenario(app)
        finally:
            await app.stop()

    return asyncio.run(main())


async def _create(app: App, name: str, source: str = ENV_HANDLER, **extra: Any) -> None:
    await app.call("lambda", "CreateFunction", {"FunctionName": name, "Runtime": "python3.12",
                   "Handler": "app.handler", "Role": ROLE, "Code": {"ZipFile": _zip(source)}, **extra})  # fmt: skip
    await _settled(app, name)


async def _settled(app: App, name: str) -> None:
    """Wait until the background Pending → Active (or InProgress → Successful) write is done."""
    for _ in range(200):
        config = await app.call("lambda", "GetFunctionConfiguration", {"FunctionName": name})
        if config["State"] == "Active" and config["LastUpdateStatus"] == "Successful":
            await asyncio.sleep(0.05)  # the settling task forgets cached targets right after
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{name} did not settle")


async def _invoke(app: App, name: str, qualifier: str | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"FunctionName": name, "Payload": b"{}"}
    if qualifier is not None:
        params["Qualifier"] = qualifier
    out = await app.call("lambda", "Invoke", params)
    out["Payload"] = orjson.loads(out["Payload"])
    return out


def _lambda(app: App) -> LambdaProvider:
    provider = app.provider("lambda")
    assert isinstance(provider, LambdaProvider)
    return provider


def test_a_configuration_change_is_seen_by_the_very_next_invoke(tmp_path: Path) -> None:
    async def scenario(app: App) -> list[Any]:
        await _create(app, "fn", Environment={"Variables": {"X": "one"}})
        seen = [(await _invoke(app, "fn"))["Payload"], (await _invoke(app, "fn"))["Payload"]]
        assert len(_lambda(app).targets) == 1  # the second invoke was served from the cache
        await app.call("lambda", "UpdateFunctionConfiguration",
                       {"FunctionName": "fn", "Environment": {"Variables": {"X": "two"}}})  # fmt: skip
        seen.append((await _invoke(app, "fn"))["Payload"])
        await app.call("lambda", "PutFunctionConcurrency", {"FunctionName": "fn", "ReservedConcurrentExecutions": 0})
        try:
            await _invoke(app, "fn")
        except AwsError as exc:
            seen.append(exc.code)
        await app.call("lambda", "DeleteFunctionConcurrency", {"FunctionName": "fn"})
        seen.append((await _invoke(app, "fn"))["Payload"])
        await app.call("lambda", "DeleteFunction", {"FunctionName": "fn"})
        try:
            await _invoke(app, "fn")
        except AwsError as exc:
            seen.append(exc.code)
        return seen

    assert _run(tmp_path, scenario) == ["one", "one", "two", "TooManyRequestsException", "two",
                                        "ResourceNotFoundException"]  # fmt: skip


def test_aliases_versions_and_weights_resolve_per_invocation(tmp_path: Path) -> None:
    async def scenario(app: App) -> tuple[set[str], str, str, str]:
        await _create(app, "fn", Environment={"Variables": {"X": "v1"}})
        await app.call("lambda", "PublishVersion", {"FunctionName": "fn"})
        await app.call("lambda", "UpdateFunctionConfiguration",
                       {"FunctionName": "fn", "Environment": {"Variables": {"X": "v2"}}})  # fmt: skip
        await _settled(app, "fn")
        await app.call("lambda", "PublishVersion", {"FunctionName": "fn"})
        await app.call("lambda", "CreateAlias", {"FunctionName": "fn", "Name": "live", "FunctionVersion": "1",
                       "RoutingConfig": {"AdditionalVersionWeights": {"2": 0.5}}})  # fmt: skip
        runs = [await _invoke(app, "fn", "live") for _ in range(60)]
        executed = {f"{r['ExecutedVersion']}={r['Payload']}" for r in runs}
        await app.call("lambda", "UpdateAlias", {"FunctionName": "fn", "Name": "live", "FunctionVersion": "2",
                                                 "RoutingConfig": {}})  # fmt: skip
        after = await _invoke(app, "fn", "live")
        by_version = await _invoke(app, "fn", "1")
        latest = await _invoke(app, "fn")
        return executed, after["Payload"], by_version["Payload"], latest["Payload"]

    executed, after, by_version, latest = _run(tmp_path, scenario)
    assert executed == {"1=v1", "2=v2"}
    assert (after, by_version, latest) == ("v2", "v1", "v2")


class _Clock:
    """The target cache's clock, moved forward instead of slept through (a cold
    start on a loaded machine can take longer than a short time to live)."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.ahead


def test_a_write_by_another_node_shows_after_the_time_to_live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock()
    monkeypatch.setattr(targets, "time", clock)

    async def scenario(app: App) -> list[str]:
        provider = _lambda(app)
        provider.targets = TargetCache(ttl_s=30)
        await _create(app, "fn", Environment={"Variables": {"X": "one"}})
        seen = [(await _invoke(app, "fn"))["Payload"]]

        def other_node(txn: Any) -> None:  # the store shared with another node, written there
            key = st.function_key("us-east-1", "fn")
            doc = st.get(txn, st.FUNCTIONS, key)
            assert doc is not None
            doc["config"]["Environment"] = {"Variables": {"X": "elsewhere"}}
            doc["config"]["RevisionId"] = "changed-elsewhere"
            st.put(txn, st.FUNCTIONS, key, doc)

        await app.store.write(other_node)
        seen.append((await _invoke(app, "fn"))["Payload"])  # still trusted
        clock.ahead = 31
        seen.append((await _invoke(app, "fn"))["Payload"])
        return seen

    assert _run(tmp_path, scenario) == ["one", "one", "elsewhere"]


def test_a_read_that_raced_a_write_is_not_kept() -> None:
    cache = TargetCache()
    entry = Target({}, {}, "$LATEST", None, cache.expiry())
    generation = cache.generation
    cache.changed()  # a write finished while the read was in flight
    cache.put(("us-east-1", "fn", None), entry, generation)
    assert cache.get(("us-east-1", "fn", None)) is None
    cache.put(("us-east-1", "fn", None), entry, cache.generation)
    assert cache.get(("us-east-1", "fn", None)) is entry


def test_the_cache_stays_bounded() -> None:
    cache = TargetCache(max_entries=3)
    for i in range(10):
        cache.put(("us-east-1", f"fn{i}", None), Target({}, {}, "$LATEST", None, cache.expiry()), cache.generation)
        assert len(cache) <= 3


@pytest.mark.parametrize("qualifier", ["nope", "7"])
def test_an_unknown_qualifier_is_not_found(tmp_path: Path, qualifier: str) -> None:
    async def scenario(app: App) -> str:
        await _create(app, "fn")
        try:
            await _invoke(app, "fn", qualifier)
        except AwsError as exc:
            return f"{exc.code}: {exc.message}"
        return "invoked"

    assert _run(tmp_path, scenario) == (
        "ResourceNotFoundException: Function not found: "
        f"arn:aws:lambda:us-east-1:000000000000:function:fn:{qualifier}"
    )
