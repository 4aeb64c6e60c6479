"""The HTTPS listener's free port is held from the moment nubes picks it."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

import pytest

from nubes.server import _tls_server, build
from nubes.settings import Settings


def test_the_picked_tls_port_cannot_be_taken_before_uvicorn_listens(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, host="127.0.0.1", port=4566, tls_port=0)
    app, gateway = build(settings)
    server = _tls_server(settings, app, gateway)
    assert server is not None and server.bound is not None
    try:
        port = server.bound.getsockname()[1]
        assert app.tls_endpoint == f"https://127.0.0.1:{port}"
        # what another process would do between the pick and uvicorn's bind
        with socket.socket() as other, pytest.raises(OSError) as err:
            other.bind(("127.0.0.1", port))
        assert err.value.errno == errno.EADDRINUSE
    finally:
        server.bound.close()


def test_a_configured_tls_port_is_bound_by_uvicorn(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, host="127.0.0.1", port=4566, tls_port=48443)
    app, gateway = build(settings)
    server = _tls_server(settings, app, gateway)
    assert server is not None and server.bound is None
    assert app.tls_endpoint == "https://127.0.0.1:48443"
