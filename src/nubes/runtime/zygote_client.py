"""The manager's side of the zygote: start it, get forked processes, keep spares.

A forked process is generic until it receives its function's configuration (a
CONFIG frame on its channel), so :class:`ZygoteClient` keeps a few *spare*
processes forked in advance: a cold start then costs the function's own init,
not a fork. Each process reports to an *owner* (the instance using it, or the
spare pool while unused): frames and EOF on its channel, bytes on its
stdout/stderr socket, and its exit status, which only the zygote (its parent)
can learn.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Protocol

import nubes
from nubes.runtime import protocol

_ZYGOTE_START_TIMEOUT_S = 60.0
#: processes kept forked and waiting for a function (each costs ~3 MB unique memory)
DEFAULT_SPARES = 2


def _socketpairs() -> tuple[socket.socket, socket.socket, socket.socket, socket.socket]:
    """A forked process's channel and output sockets: (ours, its) twice."""
    chan, chan_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    out, out_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return chan, chan_child, out, out_child


class ZygoteError(RuntimeError):
    """The zygote could not be started or stopped answering."""


class Owner(Protocol):
    """Whoever a forked process reports to."""

    def frame(self, kind: int, header: dict[str, Any], payload: bytes) -> None: ...
    def channel_closed(self) -> None: ...
    def output(self, data: bytes) -> None: ...
    def exited(self, code: int) -> None: ...


class Process:
    """One forked process: pid, channel (framed) and stdout/stderr socket."""

    def __init__(self, owner: Owner) -> None:
        self.owner = owner
        self.pid = 0
        self.channel: asyncio.Transport | None = None
        self.output: asyncio.BaseTransport | None = None
        self._drain_sock: socket.socket | None = None

    def send(self, kind: int, header: dict[str, Any], payload: bytes = b"") -> None:
        """Write one frame to the process."""
        if self.channel is not None and not self.channel.is_closing():
            self.channel.write(protocol.encode(kind, header, payload))

    def drain_output(self) -> None:
        """Hand the owner whatever stdout/stderr bytes are already waiting, right now.

        The event loop would deliver them a moment later; a Runtime API response
        must not overtake the log lines written before it.
        """
        if self.output is None or self.output.is_closing():
            return
        if self._drain_sock is None:
            fd = self.output.get_extra_info("socket").fileno()
            self._drain_sock = socket.socket(fileno=os.dup(fd))
            self._drain_sock.setblocking(False)
        while True:
            try:
                data = self._drain_sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if not data:
                return
            self.owner.output(data)

    def close(self) -> None:
        """Close both sockets (the process sees EOF)."""
        for transport in (self.channel, self.output):
            if transport is not None:
                transport.close()
        if self._drain_sock is not None:
            self._drain_sock.close()
            self._drain_sock = None


class _Channel(asyncio.Protocol):
    def __init__(self, proc: Process) -> None:
        self.proc = proc
        self.frames = protocol.FrameBuffer()

    def data_received(self, data: bytes) -> None:
        for kind, header, payload in self.frames.feed(data):
            self.proc.owner.frame(kind, header, payload)

    def connection_lost(self, exc: Exception | None) -> None:
        self.proc.owner.channel_closed()


class _Output(asyncio.Protocol):
    def __init__(self, proc: Process) -> None:
        self.proc = proc

    def data_received(self, data: bytes) -> None:
        self.proc.owner.output(data)


class _Spare:
    """The owner of a spare process until an instance adopts it."""

    def __init__(self, client: ZygoteClient) -> None:
        self.client = client
        self.proc: Process | None = None

    def frame(self, kind: int, header: dict[str, Any], payload: bytes) -> None:
        pass  # a spare says nothing before its CONFIG frame

    def output(self, data: bytes) -> None:
        pass

    def channel_closed(self) -> None:
        if self.proc is not None:
            self.client.drop_spare(self.proc)

    def exited(self, code: int) -> None:
        if self.proc is not None:
            self.client.drop_spare(self.proc)


class ZygoteClient:
    """The manager's connection to one zygote process."""

    def __init__(self, work_dir: Path, spares: int = DEFAULT_SPARES, isolate: bool = True) -> None:
        self.work_dir = work_dir
        self.spare_target = spares
        #: forked processes enter their own mount namespace (see sandbox.py)
        self.isolate = isolate
        #: whether this machine allows it (the zygote probes once when it starts)
        self.isolation_available = False
        self.sys_path: list[str] = []
        self.pid: int | None = None
        self._popen: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._spawns: dict[int, tuple[asyncio.Future[int], Process]] = {}
        self._by_pid: dict[int, Process] = {}
        self._outbox: list[tuple[bytes, list[int]]] = []
        self._next_token = 0
        self._lock = asyncio.Lock()
        self._spares: list[Process] = []
        self._refilling = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def running(self) -> bool:
        """True while the zygote process is connected."""
        return self._sock is not None

    async def ensure_started(self) -> None:
        """Start the zygote (imports boto3 once) unless it is already running."""
        if self._sock is not None:
            return
        async with self._lock:
            if self._sock is None:
                await self._start()
                self._refill()

    async def _start(self) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        src_dir = str(Path(nubes.__file__).resolve().parent.parent)
        env = {
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "LANG": "en_US.UTF-8",
            "PYTHONPATH": src_dir,
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._popen = subprocess.Popen(
            [sys.executable, "-m", "nubes.runtime.zygote", str(child.fileno())],
            pass_fds=[child.fileno()], env=env, cwd=self.work_dir,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        child.close()
        parent.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            data = await asyncio.wait_for(loop.sock_recv(parent, 1 << 20), _ZYGOTE_START_TIMEOUT_S)
        except BaseException as e:
            # cancelled too (the manager stops while the zygote starts): no orphan
            parent.close()
            self._popen.kill()
            if isinstance(e, (TimeoutError, OSError)):
                raise ZygoteError(f"the Python zygote did not start: {e}") from e
            raise
        if not data:
            parent.close()
            raise ZygoteError(f"the Python zygote exited with status {self._popen.wait()}")
        hello = json.loads(data)
        self.pid, self.sys_path = hello["ready"], hello["path"]
        self.isolation_available = bool(hello.get("isolation"))
        self._sock = parent
        loop.add_reader(parent.fileno(), self._on_readable)

    # -- processes -----------------------------------------------------------------

    async def take(self, owner: Owner) -> Process:
        """A forked process for ``owner``: a spare if one is ready, else a fresh fork."""
        await self.ensure_started()
        while self._spares:
            proc = self._spares.pop()
            if proc.pid in self._by_pid:  # still alive
                proc.owner = owner
                self._refill()
                return proc
        proc = await self._fork(owner)
        self._refill()
        return proc

    async def _fork(self, owner: Owner) -> Process:
        loop = asyncio.get_running_loop()
        proc = Process(owner)
        # socketpair() can stall for milliseconds (the kernel growing the fd table of a
        # process with threads waits for RCU): not on the event loop
        chan, chan_child, out, out_child = await asyncio.to_thread(_socketpairs)
        proc.channel, _ = await loop.create_unix_connection(lambda: _Channel(proc), sock=chan)
        proc.output, _ = await loop.create_unix_connection(lambda: _Output(proc), sock=out)
        fds = [chan_child.detach(), out_child.detach()]  # the outbox owns them now
        if self._sock is None:
            proc.close()
            raise ZygoteError("the Python zygote exited")
        self._next_token += 1
        token = self._next_token
        fut: asyncio.Future[int] = loop.create_future()
        self._spawns[token] = (fut, proc)
        self._outbox.append((json.dumps({"t": token, "isolate": self.isolate}).encode(), fds))
        self._flush()
        try:
            proc.pid = await fut
        except BaseException:
            proc.close()
            raise
        return proc

    def _refill(self) -> None:
        """Fork spares in the background until there are ``spare_target`` of them."""
        if self._sock is None:
            return
        while len(self._spares) + self._refilling < self.spare_target:
            self._refilling += 1
            task = asyncio.get_running_loop().create_task(self._fork_spare())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _fork_spare(self) -> None:
        spare = _Spare(self)
        try:
            proc = await self._fork(spare)
        except ZygoteError:
            return
        finally:
            self._refilling -= 1
        spare.proc = proc
        if proc.owner is spare and proc.pid in self._by_pid:
            self._spares.append(proc)

    def drop_spare(self, proc: Process) -> None:
        """A spare died before use."""
        with contextlib.suppress(ValueError):
            self._spares.remove(proc)
        proc.close()

    # -- the control socket ----------------------------------------------------------

    def _flush(self) -> None:
        sock = self._sock
        if sock is None:
            return
        while self._outbox:
            data, fds = self._outbox[0]
            try:
                sock.sendmsg(
                    [data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
                )
            except BlockingIOError:
                # many cold starts at once: wait until the zygote drains its socket
                asyncio.get_running_loop().add_writer(sock.fileno(), self._flush)
                return
            self._outbox.pop(0)
            for fd in fds:
                os.close(fd)  # the zygote (then the child) holds them now
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_writer(sock.fileno())

    def _on_readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        while True:
            try:
                data = sock.recv(1 << 16)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._lost()
                return
            self._dispatch(json.loads(data))

    def _dispatch(self, msg: dict[str, Any]) -> None:
        if "exit" in msg:
            proc = self._by_pid.pop(msg["exit"], None)
            if proc is not None:
                proc.owner.exited(os.waitstatus_to_exitcode(msg["status"]))
            return
        fut, proc = self._spawns.pop(msg["t"])
        if "pid" in msg:
            self._by_pid[msg["pid"]] = proc
            if not fut.done():
                fut.set_result(msg["pid"])
        elif not fut.done():
            fut.set_exception(ZygoteError(msg.get("error", "fork failed")))

    def _lost(self) -> None:
        """The zygote is gone: its processes died with it (PDEATHSIG)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            loop = asyncio.get_running_loop()
            loop.remove_reader(sock.fileno())
            with contextlib.suppress(ValueError, OSError):
                loop.remove_writer(sock.fileno())
            sock.close()
        for fut, _ in self._spawns.values():
            if not fut.done():
                fut.set_exception(ZygoteError("the Python zygote exited"))
        self._spawns.clear()
        for _, fds in self._outbox:
            for fd in fds:
                os.close(fd)
        self._outbox.clear()
        procs, self._by_pid = list(self._by_pid.values()), {}
        for proc in procs:
            proc.owner.exited(-9)
        for proc in self._spares:
            proc.close()
        self._spares.clear()

    async def stop(self) -> None:
        """Close the control socket (the zygote kills its processes and exits) and wait."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._lost()
        popen, self._popen = self._popen, None
        if popen is not None:
            try:
                await asyncio.to_thread(popen.wait, 5)
            except subprocess.TimeoutExpired:
                popen.kill()
                await asyncio.to_thread(popen.wait)
