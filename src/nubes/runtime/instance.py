"""Inside a Python function instance: init once, then serve invocations.

The zygote imports this module before forking, so a new instance only has to
apply its environment, import the user's handler module (init) and enter
:func:`serve`. Everything here runs in the forked child, never in nubes itself.

Behaviour follows AWS's Python runtime: the handler string ``module.function``,
the error payloads and types (``Runtime.ImportModuleError`` ...), the root
logger's text format, stdout captured per invocation, ``SystemExit`` ending the
process (``Runtime.ExitError``) rather than being reported as a handler error.
"""

from __future__ import annotations

import ctypes
import decimal
import importlib
import importlib.util
import json
import math
import os
import resource
import signal
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

from nubes.runtime import awshosts, protocol, sandbox
from nubes.runtime.context import LambdaContext
from nubes.runtime.logcapture import (
    LogSink,
    State,
    capture_streams,
    install_root_handler,
    log_error,
)

Handler = Callable[[Any, LambdaContext], Any]
_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
#: flush captured logs to the manager early once this many bytes are buffered
_EARLY_FLUSH = 256 * 1024
_STACK_INDENT = "\u00a0"


def _fault(error_type: str, message: str, trace: list[str] | None = None) -> dict[str, Any]:
    return {
        "errorMessage": message,
        "errorType": error_type,
        "requestId": "",
        "stackTrace": trace or [],
    }


def _exception_result(exc: BaseException, skip_frames: int) -> dict[str, Any]:
    tb = exc.__traceback__
    for _ in range(skip_frames):
        if tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
    trace = traceback.format_list(traceback.extract_tb(tb))
    return _fault(type(exc).__name__, str(exc), trace)


def load_handler(handler: str) -> tuple[Handler | None, dict[str, Any] | None]:
    """Import the handler's module (the function's init) and find the function."""
    try:
        modname, fname = handler.rsplit(".", 1)
    except ValueError as e:
        return None, _fault("Runtime.MalformedHandlerName", f"Bad handler '{handler}': {e}")
    if modname.split(".")[0] in sys.builtin_module_names:
        return None, _fault(
            "Runtime.BuiltInModuleConflict",
            f"Cannot use built-in module {modname} as a handler module",
        )
    try:
        module = importlib.import_module(modname.replace("/", "."))
    except ImportError as e:
        return None, _fault(
            "Runtime.ImportModuleError", f"Unable to import module '{modname}': {e}"
        )
    except SyntaxError as e:
        trace = [f'  File "{e.filename}" Line {e.lineno}\n    {e.text}']
        return None, _fault(
            "Runtime.UserCodeSyntaxError", f"Syntax error in module '{modname}': {e}", trace
        )
    except Exception as e:
        return None, _exception_result(e, 0)
    fn = getattr(module, fname, None)
    if fn is None:
        return None, _fault(
            "Runtime.HandlerNotFound", f"Handler '{fname}' missing on module '{modname}'"
        )
    return fn, None


def _json_default(obj: Any) -> Any:
    if isinstance(obj, decimal.Decimal):
        if obj.is_nan():
            return math.nan
        return int(obj) if obj == obj.to_integral_value() else float(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


class Channel:
    """The instance's end of its channel: frames out, and log flushes on demand.

    Logs are buffered in the process and travel with each DONE frame; they are
    also flushed early when the buffer grows large, when the process exits
    (``os._exit`` included), and when the manager asks with
    :data:`~nubes.runtime.protocol.FLUSH_SIGNAL` before killing a timed-out
    instance, so what a function printed before it hung is not lost.
    """

    def __init__(self, sock: socket.socket, sink: LogSink) -> None:
        self.sock = sock
        self.reader = FrameReader(sock)
        self.sink = sink
        self._sending = False
        sink.on_full = self.flush_logs

    def send(self, kind: int, header: dict[str, Any], payload: bytes = b"") -> None:
        """Write one frame."""
        self._sending = True
        try:
            self.sock.sendall(protocol.encode(kind, header, payload))
        finally:
            self._sending = False

    def flush_logs(self, final: bool = False) -> None:
        """Send buffered log lines now; ``final`` answers the manager's flush request."""
        if self._sending:
            return  # a signal arrived mid-frame: never interleave two frames
        events = self.sink.take()
        if events or final:
            try:
                self.send(protocol.LOGS, {"logs": events, "flush": final})
            except OSError:
                pass

    def install_flush_hooks(self) -> None:
        """Flush on the manager's signal and before ``os._exit``."""
        signal.signal(protocol.FLUSH_SIGNAL, lambda *_: self.flush_logs(final=True))
        real_exit = os._exit

        def _exit(status: int) -> NoReturn:
            self.flush_logs()
            real_exit(status)

        os._exit = _exit


class Instance:
    """The serving side of one instance: runs the handler for each INVOKE frame."""

    def __init__(self, chan: Channel, handler: Handler, state: State) -> None:
        self.chan = chan
        self.sink = chan.sink
        self.handler = handler
        self.state = state
        self.ensure_ascii = not _python_at_least(os.environ.get("AWS_EXECUTION_ENV", ""), 12)

    def invoke(self, header: dict[str, Any], payload: bytes) -> tuple[str | None, bytes]:
        """Run the handler once; returns (error type or None, response bytes)."""
        request_id: str = header["id"]
        self.state.request_id = request_id
        if header.get("trace"):
            os.environ["_X_AMZN_TRACE_ID"] = header["trace"]
        error: dict[str, Any] | None = None
        try:
            event = json.loads(payload) if payload else {}
        except ValueError as e:
            error = _fault("Runtime.UnmarshalError", f"Unable to unmarshal input: {e}")
        if error is None:
            cc, ci = header.get("cc"), header.get("ci")  # JSON text (manager.py)
            ctx = LambdaContext(
                request_id,
                header["deadline"],
                header["arn"],
                None if cc is None else json.loads(cc),
                None if ci is None else json.loads(ci),
            )
            try:
                result = self.handler(event, ctx)
            except Exception as e:
                error = _exception_result(e, 1)
        if error is None:
            if isinstance(result, bytes):
                return None, result
            try:
                body = json.dumps(result, default=_json_default, ensure_ascii=self.ensure_ascii)
                return None, body.encode()
            except (TypeError, ValueError) as e:
                error = _fault("Runtime.MarshalError", f"Unable to marshal response: {e}")
        error["requestId"] = request_id
        log_error(self.sink, error)
        return error["errorType"], json.dumps(error).encode()

    def serve(self) -> None:
        """Answer invocation frames until the manager closes the channel."""
        chan = self.chan
        while True:
            frame = chan.reader.read()
            if frame is None:
                return
            _, header, payload = frame
            error_type, response = self.invoke(header, payload)
            sys.stdout.flush()
            sys.stderr.flush()
            rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            done = {"err": error_type, "rss": rss_kb, "logs": self.sink.take()}
            chan.send(protocol.DONE, done, response)


def _recv_into(chan: socket.socket, view: memoryview) -> bool:
    while len(view):
        n = chan.recv_into(view)
        if n == 0:
            return False
        view = view[n:]
    return True


def _python_at_least(execution_env: str, minor: int) -> bool:
    try:
        return int(execution_env.rsplit("python3.", 1)[1]) >= minor
    except (IndexError, ValueError):
        return True


def _detach(stdio_fd: int) -> None:
    """Become a process of its own: session and process group, signals, stdio."""
    os.setsid()
    try:
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: the zygote still kills its instances when it exits
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(stdio_fd, 1)
    os.dup2(stdio_fd, 2)
    os.close(stdio_fd)


def _specialize(config: dict[str, Any]) -> dict[str, bool]:
    """Become one function's instance: mounts, environment, cwd, /tmp, import path, AWS names."""
    isolated = {"tmp": False, "read_only": False}
    box = config.get("sandbox")
    if box:
        visible = [config["cwd"], *config.get("sys_path", ()), *box.get("keep_visible", ())]
        isolated = sandbox.isolate(box["tmp"], box["read_only"], visible)
    _set_process_name(config["env"].get("AWS_LAMBDA_FUNCTION_NAME", ""))
    os.environ.clear()
    os.environ.update(config["env"])
    time.tzset()
    os.chdir(config["cwd"])
    tempfile.tempdir = None
    sys.path[:] = config["sys_path"]
    sys.argv = [config.get("argv0", "/var/runtime/bootstrap")]
    routes = config.get("aws_hosts")
    if routes:
        awshosts.install({int(port): (host, int(to)) for port, (host, to) in routes.items()})
    return isolated


def _set_process_name(function_name: str) -> None:
    """``ps``/``top`` show ``fn:<name>`` instead of the zygote's command line."""
    try:
        ctypes.CDLL(None).prctl(_PR_SET_NAME, f"fn:{function_name}"[:15].encode())
    except (OSError, AttributeError):
        pass


def _warm_up() -> None:
    """Touch the import machinery once while still a spare.

    A forked process copies each memory page the first time it writes to it;
    doing that for the import system now, before any function waits on this
    process, takes it off the cold start's path.
    """
    importlib.util.find_spec("_nubes_warm_up_no_such_module")
    exec(compile("def handler(event, context):\n    return event\n", "<warm-up>", "exec"), {})


#: bytes asked of the kernel per read: a whole small frame (most invocations) in one call
_READ_SIZE = 65536


class FrameReader:
    """Frames from the manager, read in as few ``recv`` calls as the data allows.

    A warm invocation's frame usually arrives whole, so one ``recv`` brings it
    (reading the length prefix first would cost a second system call each time).
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = bytearray()

    def read(self) -> tuple[int, dict[str, Any], bytes] | None:
        """The next frame, or None when the manager closed the channel."""
        buf = self._buf
        while len(buf) < 4:
            chunk = self.sock.recv(_READ_SIZE)
            if not chunk:
                return None
            buf += chunk
        end = 4 + int.from_bytes(buf[:4], "little")
        if len(buf) < end:
            # a large payload: receive the rest straight into a buffer of its size
            body = bytearray(end - 4)
            have = len(buf) - 4
            body[:have] = buf[4:]
            buf.clear()
            if not _recv_into(self.sock, memoryview(body)[have:]):
                return None
            return protocol.decode_body(bytes(body))
        body_bytes = bytes(buf[4:end])
        del buf[:end]
        return protocol.decode_body(body_bytes)


def _exit_status(e: SystemExit) -> int:
    """The process status ``sys.exit(code)`` asks for, printing a non-int code as Python does."""
    if e.code is None:
        return 0
    if isinstance(e.code, int):
        return e.code
    print(e.code, file=sys.stderr)
    return 1


def _init_and_serve(
    chan: Channel, state: State, handler_name: str, isolated: dict[str, bool]
) -> int:
    started = time.perf_counter()
    handler, error = load_handler(handler_name)
    init_ms = (time.perf_counter() - started) * 1000
    if error is not None:
        log_error(chan.sink, error)
    ready = {
        "pid": os.getpid(),
        "init_ms": init_ms,
        "error": error,
        "logs": chan.sink.take(),
        "isolated": isolated,
    }
    chan.send(protocol.READY, ready)
    if handler is None:
        return 1
    Instance(chan, handler, state).serve()
    return 0


def _exec(chan: Channel, config: dict[str, Any]) -> int:
    """A ``provided.*`` runtime: isolate, then replace this process with ``bootstrap``.

    The pid, session, stdio sockets and death signal carry over to the bootstrap;
    the channel (close-on-exec) does not. If the exec fails the manager hears why.
    """
    box = config.get("sandbox")
    isolated = {"tmp": False, "read_only": False}
    if box:
        visible = [config["cwd"], *box.get("keep_visible", ())]
        isolated = sandbox.isolate(box["tmp"], box["read_only"], visible)
    path = config["exec"]
    try:
        os.chdir(config["cwd"])
        # Python ignores these; a program started by exec must not inherit that
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
        chan.send(protocol.READY, {"pid": os.getpid(), "isolated": isolated, "error": None})
        os.execve(path, [path], config["env"])
    except OSError as e:
        error = {
            "errorType": "Runtime.InvalidEntrypoint",
            "errorMessage": f"Error: fork/exec {path}: {e.strerror.lower() if e.strerror else e}",
        }
        chan.send(protocol.READY, {"pid": os.getpid(), "isolated": isolated, "error": error})
    return 127


def main(chan_fd: int, stdio_fd: int, isolate: bool = False) -> None:
    """Entry point of a freshly forked process; never returns.

    Everything generic happens first; then the process waits (possibly as a spare,
    for a while) for the CONFIG frame that makes it one function's instance.
    """
    code = 1
    try:
        _detach(stdio_fd)
        _set_process_name("")  # "fn:" until it knows which function it is
        sink = LogSink()
        chan = Channel(socket.socket(fileno=chan_fd), sink)
        state = State()
        capture_streams(sink)
        if isolate:
            sandbox.prepare()
        _warm_up()
        frame = chan.reader.read()
        if frame is None or frame[0] != protocol.CONFIG:
            code = 0  # a spare nobody needed
            return
        config = frame[1]
        if config.get("exec"):
            code = _exec(chan, config)
            return
        chan.install_flush_hooks()
        isolated = _specialize(config)
        install_root_handler(sink, state)
        code = _init_and_serve(chan, state, config["handler"], isolated)
    except SystemExit as e:
        # sys.exit() at module level or in the handler: the runtime process ends with
        # that status (Runtime.ExitError); os._exit below hands over what it logged
        code = _exit_status(e)
    except BaseException:
        traceback.print_exc(file=sys.__stderr__)
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
