"""Inside a Python instance: capturing stdout/stderr and logging like AWS's runtime.

``sys.stdout``/``sys.stderr`` write into a :class:`LogSink` (one log event per
line); the root logger gets AWS's handler: the text format
``[LEVEL]\t<timestamp>\t<request id>\t<message>`` or, when the function's
``LoggingConfig`` says JSON (``AWS_LAMBDA_LOG_FORMAT=JSON``), one JSON object per
record with ``timestamp``, ``level``, ``message``, ``logger``, ``requestId`` and
the record's extra fields, filtered by ``AWS_LAMBDA_LOG_LEVEL``.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from nubes.runtime import protocol

#: flush captured logs to the manager early once this many bytes are buffered
_EARLY_FLUSH = 256 * 1024
_STACK_INDENT = "\u00a0"
#: LogRecord attributes that are not user ``extra`` fields
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "aws_request_id", "taskName",
}  # fmt: skip
#: AWS_LAMBDA_LOG_LEVEL values (Lambda's names) → Python's
_LEVELS = {"TRACE": "DEBUG", "DEBUG": "DEBUG", "INFO": "INFO", "WARN": "WARNING",
           "WARNING": "WARNING", "ERROR": "ERROR", "FATAL": "CRITICAL", "CRITICAL": "CRITICAL"}  # fmt: skip


class State:
    """What the log handler needs to know about the running invocation."""

    request_id = ""


class LogSink:
    """Per-invocation log capture: stdout/stderr text split into lines, plus whole records."""

    def __init__(self) -> None:
        self._events: list[protocol.LogEvent] = []
        self._partial = bytearray()
        self._partial_ts = 0
        self._size = 0
        self.on_full: Callable[[], None] | None = None

    def write(self, data: bytes) -> None:
        """Stream text (print, sys.stderr): one log event per line."""
        now = int(time.time() * 1000)
        start = 0
        while start < len(data):
            if not self._partial:
                self._partial_ts = now
            end = data.find(b"\n", start)
            if end < 0:
                self._partial += data[start:]
                break
            self._partial += data[start:end]
            self._events.append((self._partial_ts, self._partial.decode(errors="replace")))
            self._partial = bytearray()
            start = end + 1
        self._grew(len(data))

    def record(self, message: str) -> None:
        """A whole log event (a logging record, an error report), newlines kept inside."""
        self._end_partial()
        self._events.append((int(time.time() * 1000), message))
        self._grew(len(message))

    def take(self) -> list[protocol.LogEvent]:
        """Everything captured since the last call (an unfinished line counts as one event)."""
        self._end_partial()
        events, self._events, self._size = self._events, [], 0
        return events

    def _end_partial(self) -> None:
        if self._partial:
            self._events.append((self._partial_ts, self._partial.decode(errors="replace")))
            self._partial = bytearray()

    def _grew(self, n: int) -> None:
        self._size += n
        if self._size > _EARLY_FLUSH and self.on_full is not None:
            self.on_full()


class _SinkRaw(io.RawIOBase):
    """The raw file under ``sys.stdout``/``sys.stderr``; ``fileno`` is the real fd."""

    def __init__(self, sink: LogSink, fd: int) -> None:
        super().__init__()
        self._sink = sink
        self._fd = fd

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self._sink.write(data)
        return len(data)

    def fileno(self) -> int:
        return self._fd


class LambdaLogHandler(logging.Handler):
    """The root logger's handler: one log event per record, text or JSON."""

    def __init__(self, sink: LogSink, state: State, json_format: bool) -> None:
        super().__init__()
        self._sink = sink
        self._state = state
        fmt: logging.Formatter
        if json_format:
            fmt = JsonFormatter()
        else:
            fmt = logging.Formatter(
                "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
                "%Y-%m-%dT%H:%M:%S",
            )
            fmt.converter = time.gmtime
        self.setFormatter(fmt)

    def emit(self, record: logging.LogRecord) -> None:
        record.aws_request_id = self._state.request_id
        try:
            self._sink.record(self.format(record))
        except Exception:
            self.handleError(record)


class JsonFormatter(logging.Formatter):
    """AWS's JSON log format for the root logger."""

    def format(self, record: logging.LogRecord) -> str:
        """One record as one JSON object."""
        msg = record.msg
        out: dict[str, Any] = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
            "level": record.levelname,
            "message": msg if isinstance(msg, dict) and not record.args else record.getMessage(),
            "logger": record.name,
            "requestId": getattr(record, "aws_request_id", None) or None,
        }
        if record.exc_info and record.exc_info[1] is not None:
            etype, value, tb = record.exc_info
            out["errorType"] = etype.__name__ if etype else None
            out["errorMessage"] = str(value)
            out["stackTrace"] = traceback.format_tb(tb)
            out["location"] = f"{record.pathname}:{record.funcName}:{record.lineno}"
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                out[key] = value
        return json.dumps({k: v for k, v in out.items() if v is not None}, default=str,
                          ensure_ascii=False)  # fmt: skip


def log_error(sink: LogSink, error: dict[str, Any]) -> None:
    """Write an error the way AWS's runtime does: ``[ERROR] Type: message`` then the trace."""
    if os.environ.get("AWS_LAMBDA_LOG_FORMAT", "").upper() == "JSON":
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        sink.record(json.dumps({"timestamp": stamp, "level": "ERROR", **error}))
        return
    lines = [f"[ERROR] {error['errorType']}: {error['errorMessage']}"]
    trace = error.get("stackTrace")
    if trace:
        lines.append("Traceback (most recent call last):")
        for element in trace:
            for line in element.splitlines():
                stripped = line.lstrip(" ")
                lines.append(_STACK_INDENT * (len(line) - len(stripped)) + stripped)
    sink.record("\n".join(lines))


def capture_streams(sink: LogSink) -> None:
    """Route ``sys.stdout`` and ``sys.stderr`` into ``sink``."""
    sys.stdout = io.TextIOWrapper(
        _SinkRaw(sink, 1), encoding="utf-8", errors="backslashreplace", write_through=True
    )
    sys.stderr = io.TextIOWrapper(
        _SinkRaw(sink, 2), encoding="utf-8", errors="backslashreplace", write_through=True
    )


def install_root_handler(sink: LogSink, state: State) -> None:
    """Give the root logger AWS's handler, format and level (from the environment)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    json_format = os.environ.get("AWS_LAMBDA_LOG_FORMAT", "").upper() == "JSON"
    root.addHandler(LambdaLogHandler(sink, state, json_format))
    level = os.environ.get("AWS_LAMBDA_LOG_LEVEL", "").upper()
    if level in _LEVELS:
        root.setLevel(_LEVELS[level])
    elif json_format:
        root.setLevel(logging.INFO)  # JSON's default application log level
