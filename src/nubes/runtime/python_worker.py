"""Python function instances: forked by the zygote, driven over a framed socket.

:class:`PythonInstance` is the manager's side of one instance. It takes a forked
process from the :class:`~nubes.runtime.zygote_client.ZygoteClient` (usually a
spare that is already waiting), sends it the function's configuration, waits
for the handler module's import (init) and then exchanges INVOKE/DONE frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from nubes.runtime import protocol
from nubes.runtime.base import (
    LOG_GRACE_S,
    BaseInstance,
    Outcome,
    describe_exit,
    error_outcome,
)
from nubes.runtime.spec import FunctionSpec, instance_environment, python_sys_path
from nubes.runtime.zygote_client import Process, ZygoteClient

#: AWS gives a function's init 10 seconds on demand
INIT_TIMEOUT_S = 10.0


class PythonInstance(BaseInstance):
    """A forked Python instance of one function version."""

    def __init__(
        self,
        spec: FunctionSpec,
        log_stream: str,
        tmp_dir: Path,
        zygote: ZygoteClient,
        platform_env: dict[str, str],
        aws_hosts: dict[int, tuple[str, int]] | None = None,
        isolate: bool = True,
    ) -> None:
        super().__init__(spec, log_stream, tmp_dir)
        self._isolate = isolate
        #: what the sandbox achieved: {"tmp": private /tmp, "read_only": code read-only}
        self.isolated: dict[str, bool] = {}
        self._zygote = zygote
        self._platform_env = platform_env
        self._aws_hosts = aws_hosts or {}
        self._proc: Process | None = None
        self._ready: asyncio.Future[dict[str, Any] | None] | None = None
        self._flushed: asyncio.Event | None = None
        self._exit_code: int | None = None
        self._chan_eof = False

    async def start(self) -> None:
        """Take a forked process, make it this function, wait for init."""
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        self._ready = loop.create_future()
        self._proc = await self._zygote.take(self)
        self.pid = self._proc.pid
        spec = self.spec
        config = {
            "env": instance_environment(
                spec, self._platform_env, log_stream=self.log_stream, tmp_dir=self.tmp_dir
            ),
            "cwd": str(spec.code_dir),
            "sys_path": python_sys_path(spec, self._zygote.sys_path),
            "handler": spec.handler,
            "aws_hosts": {str(port): list(dest) for port, dest in self._aws_hosts.items()},
        }
        if self._isolate:
            config["sandbox"] = {
                "tmp": str(self.tmp_dir),
                "read_only": [str(spec.code_dir), *(str(d) for d in spec.layer_dirs)],
            }
        self._proc.send(protocol.CONFIG, config)
        try:
            ready = await asyncio.wait_for(asyncio.shield(self._ready), INIT_TIMEOUT_S)
        except TimeoutError:
            if self.request_logs():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._flush_event().wait(), LOG_GRACE_S)
            self.kill()
            self.init_duration_ms = (time.perf_counter() - started) * 1000
            message = f"Error: Task timed out after {INIT_TIMEOUT_S:.2f} seconds"
            self.init_error = error_outcome(
                "Sandbox.Timedout", message, status="timeout", line=message
            )
            self.init_logs = self.take_stray()
            return
        self.init_duration_ms = (time.perf_counter() - started) * 1000
        if ready is None:
            await self._init_exited()
            return
        self.isolated = ready.get("isolated") or {}
        self.init_logs = self._merge_stray([(e[0], e[1]) for e in ready["logs"]])
        if ready["error"] is not None:
            err = ready["error"]
            self.init_error = Outcome(
                json.dumps(err).encode(), err["errorType"], status="error", reusable=False
            )

    async def _init_exited(self) -> None:
        """The process ended during init: wait for its status, describe it like AWS."""
        for _ in range(100):
            if self._exit_code is not None:
                break
            await asyncio.sleep(0.01)
        code = self._exit_code if self._exit_code is not None else -9
        self.init_logs = self.take_stray()
        message = "Error: Runtime exited with error: " + describe_exit(code)
        self.init_error = error_outcome(
            "Runtime.ExitError", message, status="error", line=message + "\nRuntime.ExitError"
        )
        self.alive = False

    def frame(self, kind: int, header: dict[str, Any], payload: bytes) -> None:
        """One frame from the instance."""
        if kind == protocol.DONE:
            logs = header["logs"]
            outcome = Outcome(payload, header["err"], [(e[0], e[1]) for e in logs], header["rss"])
            self._finish(outcome)
        elif kind == protocol.LOGS:
            # flushed early (large output, exit, or our FLUSH_SIGNAL): merged by time
            # into whatever this invocation's outcome turns out to be
            self._stray.extend((e[0], e[1]) for e in header["logs"])
            if header.get("flush"):
                self._flush_event().set()
                self.logs_flushed()
        elif kind == protocol.READY and self._ready is not None and not self._ready.done():
            self._ready.set_result(header)

    def channel_closed(self) -> None:
        """EOF on the channel: every frame the process sent has been read."""
        self._chan_eof = True
        self.alive = False  # exiting: never hand it another invocation
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(None)
        if self._exit_code is not None:
            self._report_exit()
        elif self._pending is not None and not self._pending.done():
            # normally the zygote reports the exit status within milliseconds
            asyncio.get_running_loop().call_later(2.0, self._exit_fallback)

    def exited(self, code: int) -> None:
        """The zygote reaped this instance (``code`` < 0: killed by that signal)."""
        self._exit_code = code
        self.alive = False
        if self._chan_eof:
            self._report_exit()
        elif self._pending is not None:
            # normally the channel's EOF is already queued and channel_closed() reports,
            # after the last logs; a process the function forked may hold the socket open
            asyncio.get_running_loop().call_later(0.2, self._report_exit)

    def _exit_fallback(self) -> None:
        if self._exit_code is None:
            self._exit_code = -9
        self._report_exit()

    def _report_exit(self) -> None:
        super().exited(self._exit_code if self._exit_code is not None else -9)

    def request_logs(self) -> bool:
        """Signal the process to send its buffered logs (see ``FLUSH_SIGNAL``)."""
        if self.pid is None or not self.alive:
            return False
        try:
            os.kill(self.pid, protocol.FLUSH_SIGNAL)
        except OSError:
            return False
        return True

    def _flush_event(self) -> asyncio.Event:
        if self._flushed is None:
            self._flushed = asyncio.Event()
        return self._flushed

    def _send_invoke(self, header: dict[str, Any], payload: bytes) -> None:
        assert self._proc is not None
        self._proc.send(protocol.INVOKE, header, payload)

    async def stop(self) -> None:
        """Kill the process and close its sockets."""
        if self._proc is not None:
            self._proc.close()
        await super().stop()
