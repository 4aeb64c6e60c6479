"""``provided.*`` runtimes: an executable ``bootstrap`` driven by the Lambda Runtime API.

Each instance gets its own Runtime API server on ``127.0.0.1:<random port>``
(``AWS_LAMBDA_RUNTIME_API``), serving exactly AWS's paths:

- ``GET  /2018-06-01/runtime/invocation/next`` — blocks until an invocation is
  handed over; the event is the body, the context is in ``Lambda-Runtime-*`` headers
- ``POST /2018-06-01/runtime/invocation/{id}/response`` — the result
- ``POST /2018-06-01/runtime/invocation/{id}/error`` — a function error
  (``Lambda-Runtime-Function-Error-Type`` header, JSON body)
- ``POST /2018-06-01/runtime/init/error`` — init failed

Init lasts until the bootstrap first asks for ``next`` (or reports an init error).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from nubes.runtime import protocol
from nubes.runtime.base import BaseInstance, Outcome, describe_exit, error_outcome
from nubes.runtime.spec import (
    MAX_SYNC_RESPONSE_BYTES,
    FunctionSpec,
    instance_environment,
    response_too_large,
)
from nubes.runtime.zygote_client import Process, ZygoteClient

INIT_TIMEOUT_S = 10.0
_PREFIX = "/2018-06-01/runtime/"
_REASONS = {
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    413: "Request Entity Too Large",
    500: "Internal Server Error",
}


class _HttpError(Exception):
    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = json.dumps({"errorMessage": message, "errorType": error_type}).encode()


async def _read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> tuple[str, str, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if headers.get("expect", "").lower() == "100-continue":
        # curl asks before sending bodies over 1 KB; without this it waits a second
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                break
            chunks += await reader.readexactly(size)
            await reader.readexactly(2)
        # trailers (a streamed response reports a late error in them), then a blank line
        while (trailer := await reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = trailer.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = bytes(chunks)
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
    return method, target, headers, body


def _response(status: int, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    head = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def find_bootstrap(spec: FunctionSpec) -> Path | None:
    """``bootstrap`` in the code (``/var/task``), else in a layer (``/opt``)."""
    for root in (spec.code_dir, *spec.layer_dirs):
        candidate = root / "bootstrap"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


class ProvidedInstance(BaseInstance):
    """One ``bootstrap`` process and its Runtime API server.

    The process comes from the zygote like a Python instance (so it gets the same
    session, death signal, stdio capture and sandbox) and then executes
    ``bootstrap`` in place.
    """

    def __init__(
        self,
        spec: FunctionSpec,
        log_stream: str,
        tmp_dir: Path,
        platform_env: dict[str, str],
        zygote: ZygoteClient,
        isolate: bool = True,
    ) -> None:
        super().__init__(spec, log_stream, tmp_dir)
        self._platform_env = platform_env
        self._zygote = zygote
        self._isolate = isolate
        self.isolated: dict[str, bool] = {}
        self._server: asyncio.Server | None = None
        self._proc: Process | None = None
        self._invocations: asyncio.Queue[tuple[dict[str, Any], bytes]] = asyncio.Queue()
        self._initialized: asyncio.Future[None] | None = None
        self._connections: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        """Start the Runtime API, run ``bootstrap``, wait until it asks for work."""
        started = time.perf_counter()
        bootstrap = find_bootstrap(self.spec)
        if bootstrap is None:
            message = (
                "Error: Couldn't find valid bootstrap(s): [/var/task/bootstrap /opt/bootstrap]"
            )
            self._fail_init("Runtime.InvalidEntrypoint", message)
            self.init_duration_ms = (time.perf_counter() - started) * 1000
            self.alive = False
            return
        self._initialized = asyncio.get_running_loop().create_future()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self._proc = await self._zygote.take(self)
        self.pid = self._proc.pid
        self._proc.send(protocol.CONFIG, self._config(bootstrap, port))
        try:
            await asyncio.wait_for(asyncio.shield(self._initialized), INIT_TIMEOUT_S)
        except TimeoutError:
            self.kill()
            self._fail_init(
                "Sandbox.Timedout", f"Error: Task timed out after {INIT_TIMEOUT_S:.2f} seconds"
            )
        self.init_duration_ms = (time.perf_counter() - started) * 1000
        self._drain()
        self.init_logs = self.take_stray()

    def _config(self, bootstrap: Path, port: int) -> dict[str, Any]:
        spec = self.spec
        env = instance_environment(
            spec, self._platform_env, log_stream=self.log_stream, tmp_dir=self.tmp_dir,
            runtime_api=f"127.0.0.1:{port}",
        )  # fmt: skip
        config: dict[str, Any] = {"exec": str(bootstrap), "env": env, "cwd": str(spec.code_dir)}
        if self._isolate:
            config["sandbox"] = {
                "tmp": str(self.tmp_dir),
                "read_only": [str(spec.code_dir), *(str(d) for d in spec.layer_dirs)],
                # the bootstrap's interpreter and tools must stay visible
                "keep_visible": [sys.prefix, sys.executable, *env["PATH"].split(":")],
            }
        return config

    def _fail_init(self, error_type: str, message: str) -> None:
        status = "timeout" if error_type == "Sandbox.Timedout" else "error"
        line = message if status == "timeout" else f"{message}\n{error_type}"
        self.init_error = error_outcome(error_type, message, status=status, line=line)
        if self._initialized is not None and not self._initialized.done():
            self._initialized.set_result(None)

    # -- what the process reports (through the zygote client) -------------------------

    def frame(self, kind: int, header: dict[str, Any], payload: bytes) -> None:
        """Before its exec the process says how it was isolated, or why the exec failed."""
        if kind != protocol.READY:
            return
        self.isolated = header.get("isolated") or {}
        error = header.get("error")
        if error is not None:
            self._fail_init(error["errorType"], error["errorMessage"])

    def channel_closed(self) -> None:
        """The exec closed the channel: expected, the Runtime API takes over."""

    def exited(self, code: int) -> None:
        """The bootstrap ended (``code`` < 0: killed by that signal)."""
        self._drain()
        if self._initialized is not None and not self._initialized.done():
            if self.init_error is None:
                self._fail_init(
                    "Runtime.ExitError", "Error: Runtime exited with error: " + describe_exit(code)
                )
            else:
                self._initialized.set_result(None)
        super().exited(code)

    def _drain(self) -> None:
        """Read what the process has written so far, so log lines precede its response."""
        if self._proc is not None:
            self._proc.drain_output()

    def _send_invoke(self, header: dict[str, Any], payload: bytes) -> None:
        self._invocations.put_nowait((header, payload))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            while True:
                try:
                    method, target, headers, body = await _read_request(reader, writer)
                except (asyncio.IncompleteReadError, ConnectionError, ValueError):
                    return
                try:
                    status, out, extra = await self._route(method, target, headers, body)
                except _HttpError as e:
                    status, out, extra = e.status, e.body, {}
                writer.write(_response(status, out, extra))
                await writer.drain()
        finally:
            writer.close()
            if task is not None:
                self._connections.discard(task)

    async def _route(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes, dict[str, str]]:
        path = target.split("?", 1)[0]
        if not path.startswith(_PREFIX):
            raise _HttpError(404, "InvalidPath", f"Unknown path {path}")
        parts = path[len(_PREFIX) :].split("/")
        if method == "GET" and parts == ["invocation", "next"]:
            return await self._next()
        if method == "POST" and parts == ["init", "error"]:
            return self._init_error(headers, body)
        if method == "POST" and len(parts) == 3 and parts[0] == "invocation":
            if parts[2] == "response":
                return self._respond(parts[1], body)
            if parts[2] == "error":
                return self._error(parts[1], headers, body)
        raise _HttpError(404, "InvalidPath", f"Unknown path {path}")

    async def _next(self) -> tuple[int, bytes, dict[str, str]]:
        if self._initialized is not None and not self._initialized.done():
            self._initialized.set_result(None)
        header, payload = await self._invocations.get()
        extra = {
            "Lambda-Runtime-Aws-Request-Id": header["id"],
            "Lambda-Runtime-Deadline-Ms": str(header["deadline"]),
            "Lambda-Runtime-Invoked-Function-Arn": header["arn"],
            "Lambda-Runtime-Trace-Id": header["trace"],
        }
        if header.get("cc") is not None:  # JSON text already (manager.py)
            extra["Lambda-Runtime-Client-Context"] = header["cc"]
        if header.get("ci") is not None:
            extra["Lambda-Runtime-Cognito-Identity"] = header["ci"]
        return 200, payload or b"{}", extra

    def _check_id(self, request_id: str) -> None:
        if self._pending is None or self._pending.done() or request_id != self._request_id:
            raise _HttpError(400, "InvalidRequestID", f"Invalid request ID: {request_id}")

    def _respond(self, request_id: str, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        self._check_id(request_id)
        if len(body) > MAX_SYNC_RESPONSE_BYTES:
            self._drain()
            self._finish(Outcome(response_too_large(), "Function.ResponseSizeTooLarge"))
            raise _HttpError(
                413,
                "RequestEntityTooLarge",
                f"Exceeded maximum allowed payload size ({MAX_SYNC_RESPONSE_BYTES} bytes).",
            )
        self._drain()
        self._finish(Outcome(body))
        return 202, b'{"status":"OK"}', {}

    def _error(
        self, request_id: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes, dict[str, str]]:
        self._check_id(request_id)
        payload, error_type = _error_payload(headers, body)
        self._drain()
        self._finish(Outcome(payload, error_type))
        return 202, b'{"status":"OK"}', {}

    def _init_error(
        self, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes, dict[str, str]]:
        if self._initialized is None or self._initialized.done():
            raise _HttpError(403, "InvalidStateTransition", "Init already completed")
        payload, error_type = _error_payload(headers, body)
        self.init_error = Outcome(payload, error_type, status="error", reusable=False)
        self._initialized.set_result(None)
        return 202, b'{"status":"OK"}', {}

    async def stop(self) -> None:
        """Kill the bootstrap's process group and close the Runtime API server."""
        await super().stop()
        if self._proc is not None:
            self._proc.close()
        if self._server is not None:
            self._server.close()
        # a connection parked in GET /next would otherwise wait for work forever
        for task in list(self._connections):
            task.cancel()


def _error_payload(headers: dict[str, str], body: bytes) -> tuple[bytes, str]:
    """What the Invoke caller gets for a reported error, and its type."""
    header_type = headers.get("lambda-runtime-function-error-type", "")
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        error_type = str(parsed.get("errorType") or header_type or "Runtime.Unknown")
        return body, error_type
    error_type = header_type or "Runtime.Unknown"
    message = body.decode(errors="replace")
    return json.dumps({"errorMessage": message, "errorType": error_type}).encode(), error_type
