"""The frame format between the runtime manager and a Python function instance.

Both ends of the instance channel (a unix stream socket) speak it. It is kept
tiny because the zygote imports it before forking, and the warm-invoke fast path
is one ``send`` and one ``recv`` per side.

A frame is ``u32 body_length | u8 kind | u32 header_length | header | payload``
where ``header`` is JSON and ``payload`` raw bytes (the event or the response).
Headers go through orjson (a dependency of nubes, so every instance has it), ~20x
faster than the stdlib on both ends of every invocation; the stdlib takes over for
what orjson refuses, such as log text with lone surrogates. orjson reads an integer
past 64 bits as a float without complaint, so no header carries the user's own JSON
values: a client context travels as JSON text.
"""

from __future__ import annotations

import json
import signal
import struct
from typing import Any

import orjson

PREFIX = struct.Struct("<IBI")
#: manager → instance: become this function (header: env, cwd, sys_path, handler, ...)
CONFIG = ord("C")
#: manager → instance: run the handler on ``payload``
INVOKE = ord("I")
#: instance → manager: init finished (header: pid, init_ms, error?, logs)
READY = ord("R")
#: instance → manager: invocation finished (header: error_type?, max_rss_kb, logs)
DONE = ord("D")
#: instance → manager: log lines flushed early (buffer grew large or the process exits)
LOGS = ord("L")

#: manager → instance process: send your buffered logs now (a LOGS frame with
#: ``"flush": true``), e.g. before a timed-out instance is killed
FLUSH_SIGNAL = signal.SIGRTMIN + 3

#: a log event: (epoch milliseconds, message)
LogEvent = tuple[int, str]


def encode(kind: int, header: dict[str, Any], payload: bytes = b"") -> bytes:
    """One frame, ready to send."""
    try:
        head = orjson.dumps(header)
    except TypeError:  # orjson.JSONEncodeError
        head = json.dumps(header, separators=(",", ":")).encode()
    return PREFIX.pack(5 + len(head) + len(payload), kind, len(head)) + head + payload


def decode_body(body: bytes) -> tuple[int, dict[str, Any], bytes]:
    """Split a frame body (everything after the u32 length) into kind, header, payload."""
    kind = body[0]
    head_len = int.from_bytes(body[1:5], "little")
    raw = body[5 : 5 + head_len]
    try:
        header = orjson.loads(raw)
    except orjson.JSONDecodeError:  # an escaped lone surrogate, which json allows
        header = json.loads(raw)
    return kind, header, body[5 + head_len :]


class FrameBuffer:
    """Accumulates stream bytes and yields complete frames (manager side, non-blocking)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, dict[str, Any], bytes]]:
        """Add received bytes; return every frame now complete."""
        if not self._buf and len(data) >= 4 and len(data) == 4 + int.from_bytes(data[:4], "little"):
            return [decode_body(data[4:])]  # the usual case: exactly one whole frame, no copying
        self._buf += data
        frames = []
        while len(self._buf) >= 4:
            size = int.from_bytes(self._buf[:4], "little")
            if len(self._buf) < 4 + size:
                break
            frames.append(decode_body(bytes(self._buf[4 : 4 + size])))
            del self._buf[: 4 + size]
        return frames
