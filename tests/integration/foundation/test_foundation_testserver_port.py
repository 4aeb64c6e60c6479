"""``NubesServer`` (the test harness users get too) and a port taken before the server binds it."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from nubes.testing.server import NubesServer


def _occupy(port: int) -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


def test_a_picked_port_taken_meanwhile_is_replaced(tmp_path: Path) -> None:
    server = NubesServer(tmp_path / "data")
    picked = server.port
    squatter = _occupy(picked)  # another process got there between free_port() and the bind
    try:
        with server:
            assert server.port != picked
            assert server.client("sqs").list_queues().get("QueueUrls", []) == []
    finally:
        squatter.close()


def test_a_chosen_port_that_is_taken_is_an_error(tmp_path: Path) -> None:
    squatter = _occupy(0)
    try:
        with pytest.raises(RuntimeError, match="already in use"):
            NubesServer(tmp_path / "data", port=squatter.getsockname()[1]).start()
    finally:
        squatter.close()
