"""A small WebSocket wrapper over ASGI, for services that serve WebSocket APIs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any


class WebSocketClosed(Exception):
    """The client went away."""

    def __init__(self, code: int = 1000) -> None:
        super().__init__(code)
        self.code = code


class WebSocket:
    """One WebSocket connection."""

    def __init__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
        headers: dict[str, str],
    ) -> None:
        self.scope = scope
        self._receive = receive
        self._send = send
        self.headers = headers
        self.path: str = scope["path"]
        self.query_string: bytes = scope.get("query_string", b"")
        client = scope.get("client") or ("127.0.0.1", 0)
        self.client_ip: str = client[0]

    async def wait_connect(self) -> None:
        message = await self._receive()
        if message["type"] != "websocket.connect":
            raise WebSocketClosed(1006)

    async def accept(self, subprotocol: str | None = None) -> None:
        await self._send({"type": "websocket.accept", "subprotocol": subprotocol})

    async def receive(self) -> str | bytes:
        """The next message (text or bytes); raises ``WebSocketClosed`` on close."""
        message = await self._receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketClosed(int(message.get("code", 1000)))
        if message.get("text") is not None:
            return str(message["text"])
        return bytes(message.get("bytes") or b"")

    async def send(self, data: str | bytes) -> None:
        if isinstance(data, str):
            await self._send({"type": "websocket.send", "text": data})
        else:
            await self._send({"type": "websocket.send", "bytes": data})

    async def close(self, code: int = 1000) -> None:
        await self._send({"type": "websocket.close", "code": code})
