"""The HTTP/1.1 connection protocol nubes serves with, under uvicorn's server.

uvicorn's httptools protocol costs ~40 us of CPU per request on this kind of
machine where a bare httptools protocol costs ~16 (same load, same responses):
an ``asyncio.Event``, a keep-alive timer armed and cancelled, regular-expression
checks of every header one by one, a bytearray copy of the body and two writes
per response. Every AWS call pays that, so this protocol keeps uvicorn's
behaviour — parsing by httptools, keep-alive, pipelining, ``Expect:
100-continue``, flow control both ways, WebSocket upgrades handed to uvicorn's
WebSocket protocol, graceful shutdown, the ``date`` header, a 500 for an
application that fails before answering — at a fraction of the bookkeeping:

- one response leaves in one ``send``: the status line and headers wait for
  the first body chunk (a streamed body's later chunks go out as they come);
- the responses finished in one pass of the event loop are sent together at
  its end (see ``_Outbox``);
- a connection arms one keep-alive timer and re-arms it only when it fires,
  instead of one timer per request;
- header names and values are each checked with one search over all of them
  (a forbidden byte is forbidden wherever it is, so joining them hides none);
- the request body is handed over as the bytes received, without copies.

It subclasses uvicorn's protocol for the connection-level parts (connect,
parse errors, upgrades, shutdown), so a uvicorn upgrade keeps those working.
"""

from __future__ import annotations

import asyncio
import urllib.parse
import weakref
from typing import Any

import httptools
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT, service_unavailable
from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    HttpToolsProtocol,
)

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
#: a response at least this long is written at once (flow control sees it at once)
_OUTBOX_LIMIT = 65536


class _Outbox:
    """Responses finished during one pass of the event loop, sent at its end.

    A response's ``send`` is where the kernel wakes the client up, and on a virtual
    machine waking a vCPU that went idle costs tens of microseconds (an exit to the
    hypervisor). Sent back to back, the first response wakes a client process and the
    next ones find it awake; the latency added is the rest of one loop pass.
    """

    __slots__ = ("loop", "pending")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending: list[tuple[asyncio.Transport, bytes, bool]] = []

    def send(self, transport: asyncio.Transport, data: bytes, close: bool, *, at_once: bool = False) -> None:
        """Send ``data`` (then close) at the end of this pass, or ``at_once`` after
        whatever is pending (a long response or a streamed chunk: flow control must
        see it now)."""
        if at_once:
            self.flush()
            _deliver(transport, data, close)
            return
        if not self.pending:
            self.loop.call_soon(self.flush)
        self.pending.append((transport, data, close))

    def flush(self) -> None:
        pending = self.pending
        if not pending:
            return
        self.pending = []
        for transport, data, close in pending:
            _deliver(transport, data, close)


def _deliver(transport: asyncio.Transport, data: bytes, close: bool) -> None:
    if transport.is_closing():
        return
    if data:
        transport.write(data)
    if close:
        transport.close()


_OUTBOXES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Outbox] = weakref.WeakKeyDictionary()


def _outbox(loop: asyncio.AbstractEventLoop) -> _Outbox:
    box = _OUTBOXES.get(loop)
    if box is None:
        box = _OUTBOXES[loop] = _Outbox(loop)
    return box


class Http1Protocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol with a lean request/response cycle (see the module)."""

    cycle: Cycle  # type: ignore[assignment]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.outbox = _outbox(self.loop)
        self._idle_since: float | None = None
        self._keep_alive_timer: asyncio.TimerHandle | None = None
        self.pending_cycles: list[Cycle] = []

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        cycle = self.cycle
        if cycle is not None:
            if not cycle.response_complete:
                cycle.disconnected = True
            cycle.wake()
        if self.flow is not None:
            self.flow.resume_writing()
        if self._keep_alive_timer is not None:
            self._keep_alive_timer.cancel()
            self._keep_alive_timer = None
        if exc is None:
            self.transport.close()
        self.parser = None  # type: ignore[assignment]

    # -- keep-alive: one timer per connection ---------------------------------------
    def _unset_keepalive_if_required(self) -> None:
        # called for every chunk received: the connection is busy, not idle
        self._idle_since = None

    def _arm_keep_alive(self) -> None:
        self._idle_since = self.loop.time()
        if self._keep_alive_timer is None:
            self._keep_alive_timer = self.loop.call_later(self.timeout_keep_alive, self._keep_alive_due)

    def _keep_alive_due(self) -> None:
        self._keep_alive_timer = None
        idle_since = self._idle_since
        if idle_since is None or self.transport.is_closing():
            return  # busy: the next response arms the timer again
        left = idle_since + self.timeout_keep_alive - self.loop.time()
        if left > 0:
            self._keep_alive_timer = self.loop.call_later(left, self._keep_alive_due)
        else:
            self.transport.close()

    # -- parser callbacks -----------------------------------------------------------
    def on_message_begin(self) -> None:
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self.scope = {  # type: ignore[typeddict-item]
            "type": "http",
            "asgi": {"version": self.asgi_version, "spec_version": "2.3"},
            "http_version": "1.1",
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,  # type: ignore[typeddict-item]
            "root_path": self.root_path,
            "headers": self.headers,
            "state": self.app_state.copy() if self.app_state else {},
        }

    def on_headers_complete(self) -> None:
        parser = self.parser
        http_version = parser.get_http_version()
        scope: Any = self.scope
        scope["method"] = parser.get_method().decode("ascii")
        if http_version != "1.1":
            scope["http_version"] = http_version
        if parser.should_upgrade() and self._should_upgrade():
            return
        url = httptools.parse_url(self.url)
        raw_path = url.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        if self.root_path:
            scope["path"] = self.root_path + path
            scope["raw_path"] = self.root_path.encode("ascii") + raw_path
        else:
            scope["path"] = path
            scope["raw_path"] = raw_path
        scope["query_string"] = url.query or b""
        app = self.app
        if self.limit_concurrency is not None and (
            len(self.connections) >= self.limit_concurrency or len(self.tasks) >= self.limit_concurrency
        ):
            app = service_unavailable
        keep_alive = http_version != "1.0" and parser.should_keep_alive()
        previous = self.cycle
        self.cycle = Cycle(self, app, scope, keep_alive, self.expect_100_continue)
        if previous is None or previous.response_complete:
            self._start(self.cycle)
        else:  # a pipelined request waits for the one before it
            self.flow.pause_reading()
            self.pending_cycles.append(self.cycle)

    def _start(self, cycle: Cycle) -> None:
        task = self.loop.create_task(cycle.run_asgi())
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    def on_body(self, body: bytes) -> None:
        if self.parser.should_upgrade() and self._should_upgrade():
            return  # (an upgrade request has no cycle)
        cycle = self.cycle
        if cycle.response_complete:
            return
        cycle.body.append(body)
        cycle.body_size += len(body)
        if cycle.body_size > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        cycle.wake()

    def on_message_complete(self) -> None:
        if self.parser.should_upgrade() and self._should_upgrade():
            return
        cycle = self.cycle
        if cycle.response_complete:
            return
        cycle.more_body = False
        cycle.wake()

    def on_response_complete(self) -> None:
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pending_cycles:
            self._start(self.pending_cycles.pop(0))
        else:
            self._arm_keep_alive()

    def shutdown(self) -> None:
        self.outbox.flush()  # a finished response still leaves before the close
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            self.transport.close()
        else:
            cycle.keep_alive = False


class Cycle:
    """One request and its response on an ``Http1Protocol`` connection (ASGI's
    ``receive``/``send`` for the application)."""

    __slots__ = (
        "app", "body", "body_done", "body_size", "chunked", "disconnected", "expected_length", "head",
        "keep_alive", "more_body", "protocol", "response_complete", "response_started",
        "scope", "transport", "waiter", "waiting_for_100_continue",
    )  # fmt: skip

    def __init__(
        self, protocol: Http1Protocol, app: Any, scope: Any, keep_alive: bool, expect_100_continue: bool
    ) -> None:
        self.protocol = protocol
        self.app = app
        self.transport = protocol.transport
        self.scope = scope
        self.keep_alive = keep_alive
        self.waiting_for_100_continue = expect_100_continue
        self.body: list[bytes] = []
        self.body_size = 0
        self.more_body = True
        #: the whole body was handed to the application
        self.body_done = False
        self.disconnected = False
        self.response_started = False
        self.response_complete = False
        self.chunked: bool | None = None
        self.expected_length = 0
        #: the status line and headers, written with the first body chunk
        self.head: bytes | None = None
        self.waiter: asyncio.Future[None] | None = None

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def run_asgi(self) -> None:
        try:
            result = await self.app(self.scope, self.receive, self.send)
        except BaseException:
            self.protocol.logger.exception("Exception in ASGI application")
            if not self.response_started:
                await self._send_500()
            else:
                self.transport.close()
        else:
            if result is not None:
                self.protocol.logger.error("ASGI callable should return None, but returned '%s'.", result)
                self.transport.close()
            elif not self.response_started and not self.disconnected:
                self.protocol.logger.error("ASGI callable returned without starting response.")
                await self._send_500()
            elif not self.response_complete and not self.disconnected:
                self.protocol.logger.error("ASGI callable returned without completing response.")
                self.transport.close()

    async def _send_500(self) -> None:
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"21"), (b"connection", b"close")]
        await self.send({"type": "http.response.start", "status": 500, "headers": headers})
        await self.send({"type": "http.response.body", "body": b"Internal Server Error", "more_body": False})

    async def receive(self) -> dict[str, Any]:
        if self.waiting_for_100_continue and not self.transport.is_closing():
            self.transport.write(_CONTINUE)
            self.waiting_for_100_continue = False
        if not self.disconnected and not self.response_complete:
            self.protocol.flow.resume_reading()
            # wait for more of the body; once all of it was handed over, for the
            # client to go away or the response to finish (as uvicorn does)
            if not self.body and (self.more_body or self.body_done):
                self.waiter = self.protocol.loop.create_future()
                await self.waiter
        if self.disconnected or self.response_complete:
            return {"type": "http.disconnect"}
        chunks = self.body
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.body = []
        self.body_size = 0
        self.body_done = not self.more_body
        return {"type": "http.request", "body": body, "more_body": self.more_body}

    async def send(self, message: Any) -> None:
        flow = self.protocol.flow
        if flow.write_paused and not self.disconnected:
            await flow.drain()
        if self.disconnected:
            return
        if not self.response_started:
            if message["type"] != "http.response.start":
                raise RuntimeError(f"Expected ASGI message 'http.response.start', but got '{message['type']}'.")
            self._start_response(message["status"], message.get("headers", ()))
            return
        if self.response_complete:
            raise RuntimeError(f"Unexpected ASGI message '{message['type']}' sent, after response already completed.")
        if message["type"] != "http.response.body":
            raise RuntimeError(f"Expected ASGI message 'http.response.body', but got '{message['type']}'.")
        body = message.get("body", b"")
        more_body = message.get("more_body", False)
        head = self.head
        self.head = None
        if self.scope["method"] == "HEAD":
            self.expected_length = 0
            out = head or b""
        elif self.chunked:
            out = (head or b"") + (b"%x\r\n%b\r\n" % (len(body), body) if body else b"")
            if not more_body:
                out += b"0\r\n\r\n"
        else:
            if len(body) > self.expected_length:
                raise RuntimeError("Response content longer than Content-Length")
            self.expected_length -= len(body)
            out = head + body if head is not None else body
        if not more_body:
            if self.expected_length != 0:
                raise RuntimeError("Response content shorter than Content-Length")
            self.response_complete = True
            self.protocol.outbox.send(self.transport, out, not self.keep_alive, at_once=len(out) >= _OUTBOX_LIMIT)
            self.wake()
            self.protocol.on_response_complete()
        elif out:
            self.protocol.outbox.send(self.transport, out, False, at_once=True)

    def _start_response(self, status: int, headers: Any) -> None:
        """Build the status line and headers (written with the body), as uvicorn does."""
        all_headers = [*self.protocol.server_state.default_headers, *headers]
        # checked before the response counts as started, so the client gets a 500
        if HEADER_RE.search(b"".join(name for name, _ in all_headers)):
            raise RuntimeError("Invalid HTTP header name.")
        if HEADER_VALUE_RE.search(b"".join(value for _, value in all_headers)):
            raise RuntimeError("Invalid HTTP header value.")
        self.response_started = True
        self.waiting_for_100_continue = False
        content = [STATUS_LINE[status]]
        has_close = False
        for raw_name, value in all_headers:
            name = raw_name.lower()
            if name == b"content-length" and self.chunked is None:
                self.expected_length = int(value.decode())
                self.chunked = False
            elif name == b"transfer-encoding" and value.lower() == b"chunked":
                self.expected_length = 0
                self.chunked = True
            elif name == b"connection" and b"close" in [t.lower().strip() for t in value.split(b",")]:
                self.keep_alive = False
                has_close = True
            content.append(b"%b: %b\r\n" % (name, value))
        if not self.keep_alive and not has_close:
            content.append(b"connection: close\r\n")
        if self.chunked is None and self.scope["method"] != "HEAD" and status not in (204, 304):
            self.chunked = True
            content.append(b"transfer-encoding: chunked\r\n")
        content.append(b"\r\n")
        self.head = b"".join(content)
