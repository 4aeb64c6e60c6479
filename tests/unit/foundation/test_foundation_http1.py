"""The HTTP/1.1 protocol nubes serves with (gateway/http1.py), spoken to over raw sockets."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvicorn

from nubes.gateway.http1 import Http1Protocol

App = Callable[[Any, Any, Any], Awaitable[None]]


@asynccontextmanager
async def serving(app: App, keep_alive: int = 65) -> AsyncIterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, http=Http1Protocol, lifespan="off", log_level="warning", timeout_keep_alive=keep_alive)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await task


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, dict[bytes, bytes], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status, *lines = head[:-4].split(b"\r\n")
    headers = {k.lower(): v for k, _, v in (line.partition(b": ") for line in lines)}
    if headers.get(b"transfer-encoding") == b"chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    else:
        body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
    return status, headers, body


async def echo(scope: Any, receive: Any, send: Any) -> None:
    """Answers with the method, path, query and the whole body it received."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    out = b"%s %s ?%s %s" % (scope["method"].encode(), scope["raw_path"], scope["query_string"], body)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(out)).encode()), (b"X-Thing", b"1")]})
    await send({"type": "http.response.body", "body": out})


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 30))  # type: ignore[arg-type]


def test_keep_alive_pipelining_and_one_write_per_response() -> None:
    async def main() -> None:
        async with serving(echo) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            # two requests in one segment: answered in order, on one connection
            writer.write(b"POST /a%20b?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
                         b"GET /second HTTP/1.1\r\nHost: h\r\n\r\n")  # fmt: skip
            status, headers, body = await read_response(reader)
            assert status == b"HTTP/1.1 200 OK"
            assert body == b"POST /a%20b ?x=1 abc"
            assert headers[b"x-thing"] == b"1" and b"date" in headers  # names lower-cased, as uvicorn does
            status, _, body = await read_response(reader)
            assert body == b"GET /second ? "
            writer.close()

    run(main())


def test_chunked_request_body_and_expect_100_continue() -> None:
    async def main() -> None:
        async with serving(echo) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"PUT /o HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n")
            assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
            _, _, body = await read_response(reader)
            assert body == b"PUT /o ? abcde"
            writer.close()

    run(main())


def test_streamed_response_head_and_no_content() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        if scope["path"] == "/stream":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for part in (b"one", b"two"):
                await send({"type": "http.response.body", "body": part, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        elif scope["path"] == "/empty":
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        else:
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
            await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else b"hello"})

    async def main() -> None:
        async with serving(app) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /stream HTTP/1.1\r\nHost: h\r\n\r\n")
            _, headers, body = await read_response(reader)
            assert headers[b"transfer-encoding"] == b"chunked" and body == b"onetwo"
            writer.write(b"HEAD /x HTTP/1.1\r\nHost: h\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            assert b"content-length: 5" in head
            writer.write(b"GET /empty HTTP/1.1\r\nHost: h\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 204") and b"transfer-encoding" not in head
            writer.write(b"GET /x HTTP/1.0\r\n\r\n")  # HTTP/1.0: answered, then closed
            _, headers, body = await read_response(reader)
            assert body == b"hello" and headers[b"connection"] == b"close"
            assert await reader.read() == b""

    run(main())


@pytest.mark.parametrize("header", [(b"bad name", b"v"), (b"x-ok", b"line\nbreak")])
def test_invalid_response_header_is_a_500_not_a_split_response(header: tuple[bytes, bytes]) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [header]})
        await send({"type": "http.response.body", "body": b"no"})

    async def main() -> None:
        async with serving(app) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            status, _, body = await read_response(reader)
            assert status == b"HTTP/1.1 500 Internal Server Error" and body == b"Internal Server Error"
            writer.close()

    run(main())


def test_receive_after_the_body_waits_for_the_client_to_go() -> None:
    """An application that watches ``receive()`` once the body is read sees
    ``http.disconnect`` when the client goes away, and does not spin before that."""
    seen: list[str] = []
    done = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        message = await receive()  # blocks until the client leaves
        seen.append(message["type"])
        done.set()

    async def main() -> None:
        async with serving(app) as port:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            await asyncio.sleep(0.2)
            assert seen == []
            writer.close()
            await asyncio.wait_for(done.wait(), 5)
            assert seen == ["http.disconnect"]

    run(main())


def test_an_idle_connection_is_closed_after_the_keep_alive_timeout() -> None:
    async def main() -> None:
        async with serving(echo, keep_alive=1) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            for _ in range(3):  # busy: requests within the timeout keep it open
                writer.write(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
                await read_response(reader)
                await asyncio.sleep(0.6)
            began = asyncio.get_running_loop().time()
            assert await asyncio.wait_for(reader.read(), 5) == b""
            assert asyncio.get_running_loop().time() - began < 1.5

    run(main())


def test_a_malformed_request_gets_400() -> None:
    async def main() -> None:
        async with serving(echo) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"NOT HTTP AT ALL\r\n\r\n")
            status, _, _ = await read_response(reader)
            assert status.startswith(b"HTTP/1.1 400")

    run(main())


def test_responses_finished_together_each_reach_their_own_client() -> None:
    """Responses finished in one loop pass leave together (the outbox): each goes to
    the connection that asked, in order, and a closing one still gets its answer."""

    async def main() -> None:
        async with serving(echo) as port:
            conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(6)]
            for i, (_, writer) in enumerate(conns):
                close = b"Connection: close\r\n" if i == 5 else b""
                writer.write(b"GET /c%d HTTP/1.1\r\nHost: h\r\n%b\r\nGET /again%d HTTP/1.1\r\nHost: h\r\n\r\n" % (i, close, i))
            for i, (reader, _) in enumerate(conns):
                _, _, body = await read_response(reader)
                assert body == b"GET /c%d ? " % i
                if i == 5:
                    assert await reader.read() == b""  # closed after its answer
                else:
                    _, _, body = await read_response(reader)
                    assert body == b"GET /again%d ? " % i
            for _, writer in conns:
                writer.close()

    run(main())
