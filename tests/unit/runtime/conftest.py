"""Fixtures for driving the runtime directly, without the HTTP server."""

from __future__ import annotations

import asyncio
import textwrap
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from nubes.runtime import FunctionSpec, InvocationResult, RuntimeManager
from nubes.settings import Settings


class Harness:
    """A runtime manager on a fresh event loop, with everything it reported recorded."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.logs: list[tuple[str, str, list[tuple[int, str]]]] = []
        self.results: list[tuple[str, InvocationResult]] = []
        #: extra keyword arguments for RuntimeManager (e.g. ``max_starting``)
        self.manager_options: dict[str, Any] = {}

    def code(self, source: str, *, name: str = "fn", filename: str = "app.py") -> Path:
        """Write a function's code directory."""
        code_dir = self.tmp_path / "code" / name
        code_dir.mkdir(parents=True, exist_ok=True)
        (code_dir / filename).write_text(textwrap.dedent(source))
        return code_dir

    def spec(self, code_dir: Path, name: str = "fn", **kw: Any) -> FunctionSpec:
        """A $LATEST python3.12 spec for ``code_dir``."""
        values: dict[str, Any] = {
            "name": name,
            "version": "$LATEST",
            "arn": f"arn:aws:lambda:us-east-1:000000000000:function:{name}",
            "runtime": "python3.12",
            "handler": "app.handler",
            "code_dir": code_dir,
            "revision": "r1",
        }
        values.update(kw)
        return FunctionSpec(**values)

    def run(self, scenario: Callable[[RuntimeManager], Awaitable[Any]], **settings: Any) -> Any:
        """Run ``scenario(manager)`` with a started manager; stop it afterwards."""

        async def main() -> Any:
            manager = RuntimeManager(
                Settings(data_dir=self.tmp_path / "data", **settings),
                platform_env={
                    "AWS_ENDPOINT_URL": "http://127.0.0.1:4566",
                    "AWS_ACCESS_KEY_ID": "test",
                    "AWS_SECRET_ACCESS_KEY": "test",
                },
                on_logs=lambda spec, stream, events: self.logs.append((spec.name, stream, events)),
                on_invocation=lambda spec, result: self.results.append((spec.name, result)),
                **self.manager_options,
            )
            await manager.start()
            try:
                return await scenario(manager)
            finally:
                await manager.stop()

        return asyncio.run(main())


def rid() -> str:
    """A fresh request id."""
    return str(uuid.uuid4())


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    """The runtime test harness."""
    return Harness(tmp_path)


@pytest.fixture
def new_rid() -> Callable[[], str]:
    """Make request ids."""
    return rid
