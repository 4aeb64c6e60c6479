"""Integration plumbing of the Step Functions provider that needs no server."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from nubes.services.stepfunctions import apigateway
from nubes.services.stepfunctions.integrations import pascal, plain
from nubes.workflows.errors import StatesError


class _Echo(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        status = 404 if "missing" in self.path else 200
        payload = json.dumps({"path": self.path, "method": self.command, "body": body,
                              "x": self.headers.get("x-test")}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def echo() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_api_gateway_invoke(echo: str) -> None:
    params = {"ApiEndpoint": "abc123.execute-api.us-east-1.amazonaws.com", "Method": "POST",
              "Stage": "prod", "Path": "/orders/1", "QueryParameters": {"q": ["a", "b"]},
              "Headers": {"x-test": ["yes"]}, "RequestBody": {"n": 1}}
    result = asyncio.run(apigateway.invoke(echo, params))
    assert result["StatusCode"] == 200
    body = result["ResponseBody"]
    assert body["path"] == "/_nubes/execute-api/abc123/prod/orders/1?q=a&q=b"
    assert body["method"] == "POST" and json.loads(body["body"]) == {"n": 1}
    assert body["x"] == "yes"
    with pytest.raises(StatesError) as err:
        asyncio.run(apigateway.invoke(echo, dict(params, Path="missing")))
    assert err.value.error == "ApiGateway.404"
    assert json.loads(err.value.cause)["StatusCode"] == 404
    with pytest.raises(StatesError):
        asyncio.run(apigateway.invoke(echo, {"ApiEndpoint": "x", "Method": "FETCH"}))


def test_sdk_naming_and_plain_values() -> None:
    assert pascal("getObject") == "GetObject"
    assert pascal("sendMessage") == "SendMessage"
    when = dt.datetime(2024, 1, 2, tzinfo=dt.UTC)
    assert plain({"b": b"text", "t": when, "l": [b"\xff"]}) == {
        "b": "text", "t": "2024-01-02T00:00:00+00:00", "l": ["/w=="]}


def test_listening_does_not_lose_an_early_wake() -> None:
    from nubes.events.bus import EventBus
    from nubes.services.stepfunctions.common import listening

    async def scenario() -> tuple[bool, float]:
        bus = EventBus()
        loop = asyncio.get_running_loop()
        began = loop.time()
        async with listening(bus, "x", 5.0) as woken:
            bus.wake("x")  # arrives after we armed, before we await (the racy window)
            result = await woken
        return result, loop.time() - began

    woken, elapsed = asyncio.run(scenario())
    assert woken is True and elapsed < 1.0
