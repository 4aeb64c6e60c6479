"""The frame format between the manager and Python instances, and the instance's reader."""

from __future__ import annotations

import json
import socket
import threading
from typing import Any

from nubes.runtime import RuntimeManager, protocol
from nubes.runtime.instance import FrameReader


def test_headers_round_trip_including_what_orjson_refuses() -> None:
    headers = [
        {"id": "r1", "deadline": 1_700_000_000_000, "cc": None, "logs": [[1, "héllo ✓"]]},
        {"id": "r2", "cc": '{"custom": {"big": 12345678901234567890123}}'},  # JSON text
        {"err": None, "logs": [[2, "lone \ud800 surrogate"]]},  # what print() of one captures
    ]
    for header in headers:
        body = protocol.encode(protocol.INVOKE, header, b'{"a": 1}')
        assert int.from_bytes(body[:4], "little") == len(body) - 4
        kind, decoded, payload = protocol.decode_body(body[4:])
        assert (kind, payload) == (protocol.INVOKE, b'{"a": 1}')
        assert decoded == {k: [list(e) for e in v] if k == "logs" else v for k, v in header.items()}


def test_the_manager_side_buffer_splits_any_chunking() -> None:
    frames = [protocol.encode(protocol.DONE, {"n": i}, b"x" * i * 100) for i in range(5)]
    stream = b"".join(frames)
    for size in (1, 3, 7, 64, len(stream)):
        buffer = protocol.FrameBuffer()
        got = []
        for i in range(0, len(stream), size):
            got += buffer.feed(stream[i : i + size])
        assert [(h["n"], len(p)) for _, h, p in got] == [(i, i * 100) for i in range(5)]
    buffer = protocol.FrameBuffer()  # one whole frame per read (the usual case) ...
    whole = [f for frame in frames for f in buffer.feed(frame)]
    whole += buffer.feed(frames[0][:3]) + buffer.feed(frames[0][3:] + frames[1])  # ... and not
    assert [(h["n"], len(p)) for _, h, p in whole] == [(i, i * 100) for i in range(5)] + [
        (0, 0),
        (1, 100),
    ]


def test_the_instance_reader_handles_coalesced_split_and_large_frames() -> None:
    big = bytes(range(256)) * 4096  # 1 MiB: arrives over many reads
    frames = [
        protocol.encode(protocol.CONFIG, {"handler": "app.handler"}),
        protocol.encode(protocol.INVOKE, {"id": "a"}, b"{}"),
        protocol.encode(protocol.INVOKE, {"id": "b"}, big),
        protocol.encode(protocol.INVOKE, {"id": "c"}, b"[1]"),
    ]
    manager, instance = socket.socketpair()

    def send() -> None:
        manager.sendall(frames[0] + frames[1])  # two frames in one write
        data = frames[2] + frames[3]
        for i in range(0, len(data), 50_000):  # split anywhere, even inside a prefix
            manager.sendall(data[i : i + 50_000])
        manager.close()

    writer = threading.Thread(target=send)
    writer.start()
    reader = FrameReader(instance)
    got = []
    while (frame := reader.read()) is not None:
        got.append(frame)
    writer.join()
    instance.close()
    assert [(k, h) for k, h, _ in got] == [(protocol.CONFIG, {"handler": "app.handler"}), (protocol.INVOKE, {"id": "a"}),
                                          (protocol.INVOKE, {"id": "b"}), (protocol.INVOKE, {"id": "c"})]  # fmt: skip
    assert [p for _, _, p in got] == [b"", b"{}", big, b"[1]"]


def test_the_instance_reader_reports_a_closed_channel_mid_frame() -> None:
    manager, instance = socket.socketpair()
    frame = protocol.encode(protocol.INVOKE, {"id": "a"}, b"x" * 100_000)
    manager.sendall(frame[:70_000])
    manager.close()
    assert FrameReader(instance).read() is None
    instance.close()


def test_a_client_context_reaches_the_handler_exactly(harness: Any) -> None:
    code = harness.code(
        "def handler(event, context):\n    return repr(context.client_context.custom)\n"
    )
    custom = '{"big": 123456789012345678901234567890, "f": 0.1, "n": -0, "s": "\\u00e9"}'

    async def scenario(m: RuntimeManager) -> Any:
        return await m.invoke(harness.spec(code), b"{}", request_id="r1",
                              client_context='{"custom": ' + custom + "}")  # fmt: skip

    result = harness.run(scenario)
    assert json.loads(result.payload) == repr(json.loads(custom))
