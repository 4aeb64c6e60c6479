"""What a raw route's provider gets: the path as sent and the scheme, beside the decoded path."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from nubes.app import App
from nubes.aws.protocol.types import WireResponse
from nubes.gateway.asgi import Gateway
from nubes.services.base import HttpRequest
from nubes.services.console.provider import ConsoleProvider
from nubes.settings import Settings


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_raw_route_sees_raw_path_and_scheme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheme: str) -> None:
    seen: list[HttpRequest] = []

    async def capture(self: Any, request: HttpRequest, match: re.Match[str]) -> WireResponse:
        seen.append(request)
        return WireResponse(200, {}, b"ok")

    monkeypatch.setattr(ConsoleProvider, "http_console", capture)
    gateway = Gateway(App(Settings(data_dir=tmp_path, tls_port=-1)))
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http", "method": "GET", "path": "/_nubes/console/a b/c/d", "raw_path": b"/_nubes/console/a%20b/c%2Fd",
        "query_string": b"x=1", "headers": [(b"host", b"127.0.0.1:4566")], "scheme": scheme, "client": ("10.0.0.7", 5555),
    }  # fmt: skip

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(gateway(scope, receive, send))
    assert sent[0]["status"] == 200
    (request,) = seen
    assert (request.path, request.raw_path) == ("/_nubes/console/a b/c/d", "/_nubes/console/a%20b/c%2Fd")
    assert (request.scheme, request.client_ip, request.query_string) == (scheme, "10.0.0.7", b"x=1")
