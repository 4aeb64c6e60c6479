"""The zygote: a Python process that has imported boto3 once and forks instances.

Started by the runtime manager as ``python -m nubes.runtime.zygote <fd>`` where
``fd`` is its end of a ``SOCK_SEQPACKET`` control socket. Each request carries two
file descriptors (SCM_RIGHTS): the new process's channel and its stdout/stderr
socket. The zygote forks; the child runs :func:`nubes.runtime.instance.main`,
which learns which function it is from the manager over its channel. The zygote reports each child's pid and,
when it exits, its wait status, because only a parent can reap a process.

A forked child shares the zygote's pages copy-on-write, so boto3 costs an instance
neither import time nor much memory (``gc.freeze`` keeps the collector from
touching, and so copying, the pre-imported objects).
"""

from __future__ import annotations

import array
import gc
import json
import os
import selectors
import signal
import socket
import sys
from typing import Any

_MAX_MESSAGE = 1 << 20


def _preload() -> None:
    """Import what nearly every function imports, once for all instances."""
    import boto3
    import boto3.session  # noqa: F401
    import botocore.client
    import botocore.endpoint
    import botocore.httpsession
    import botocore.parsers
    import botocore.regions
    import botocore.serialize
    import botocore.session  # noqa: F401

    import nubes.runtime.instance  # noqa: F401


class Zygote:
    """The fork server loop."""

    def __init__(self, control: socket.socket, isolation: bool = False) -> None:
        self.control = control
        #: instances may enter mount namespaces here (probed at startup)
        self.isolation = isolation
        self.children: set[int] = set()
        self.sel = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        os.set_blocking(self.wake_r, False)

    def run(self) -> None:
        """Serve fork requests until the manager closes the control socket."""
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.set_wakeup_fd(self.wake_w)
        self.sel.register(self.control, selectors.EVENT_READ, "control")
        self.sel.register(self.wake_r, selectors.EVENT_READ, "signal")
        try:
            while True:
                for key, _ in self.sel.select():
                    if key.data == "signal":
                        self._drain_wakeup()
                        self._reap()
                    elif not self._handle_request():
                        return
        finally:
            for pid in self.children:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass

    def _drain_wakeup(self) -> None:
        try:
            while os.read(self.wake_r, 512):
                pass
        except BlockingIOError:
            pass

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.children.discard(pid)
            self._send({"exit": pid, "status": status})

    def _send(self, message: dict[str, Any]) -> None:
        try:
            self.control.send(json.dumps(message).encode())
        except OSError:
            pass  # manager gone: the select loop sees EOF next

    def _handle_request(self) -> bool:
        fds = array.array("i")
        try:
            data, ancdata, _, _ = self.control.recvmsg(
                _MAX_MESSAGE, socket.CMSG_SPACE(2 * fds.itemsize)
            )
        except InterruptedError:
            return True
        if not data:
            return False
        for level, kind, cdata in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(cdata[: len(cdata) - (len(cdata) % fds.itemsize)])
        request = json.loads(data)
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            self._send({"t": request.get("t"), "error": "expected 2 file descriptors"})
            return True
        pid = os.fork()
        if pid == 0:
            isolate = self.isolation and bool(request.get("isolate"))
            self._become_instance(fds[0], fds[1], isolate)
        os.close(fds[0])
        os.close(fds[1])
        self.children.add(pid)
        self._send({"t": request["t"], "pid": pid})
        return True

    def _become_instance(self, chan_fd: int, stdio_fd: int, isolate: bool) -> None:
        try:
            signal.set_wakeup_fd(-1)
            self.sel.close()
            self.control.close()
            os.close(self.wake_r)
            os.close(self.wake_w)
            from nubes.runtime import instance

            instance.main(chan_fd, stdio_fd, isolate)
        finally:
            os._exit(70)


def main() -> None:
    """``python -m nubes.runtime.zygote <control fd>``."""
    control = socket.socket(fileno=int(sys.argv[1]))
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: die with nubes
        libc.prctl(15, b"nubes-zygote")  # PR_SET_NAME: what ps/top show
    except (OSError, AttributeError):
        pass
    # '' (the cwd) must not shadow function code with whatever directory nubes ran in
    sys.path[:] = [p for p in sys.path if p not in ("", os.getcwd())]
    _preload()
    from nubes.runtime import sandbox

    isolation = sandbox.probe()
    gc.collect()
    gc.freeze()
    hello = {"ready": os.getpid(), "path": sys.path, "isolation": isolation}
    control.send(json.dumps(hello).encode())
    Zygote(control, isolation).run()


if __name__ == "__main__":
    main()
