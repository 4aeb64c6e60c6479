"""Run the gateway under uvicorn: one process, one port, all services."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
import sys
from collections.abc import Iterator
from typing import Literal

import uvicorn

from nubes.app import App
from nubes.gateway.asgi import Gateway
from nubes.gateway.http1 import Http1Protocol
from nubes.settings import Settings


class PortInUse(Exception):
    """The configured port is taken."""


def check_port(host: str, port: int) -> None:
    """Fail early, with a clear message, when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                raise PortInUse(f"port {port} on {host} is already in use") from None
            raise


class _Server(uvicorn.Server):
    """uvicorn's server without its own signal handling: ``_serve_all`` handles
    SIGINT/SIGTERM for every listener and exits 0 after a graceful shutdown."""

    #: a socket already bound to the listener's port (serve on it instead of binding)
    bound: socket.socket | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _serve_all(app: App, servers: list[_Server]) -> None:
    """Start the app, then run the listeners together; the first SIGINT/SIGTERM stops
    them gracefully, a second SIGINT forces the exit.

    The app starts here rather than in the ASGI lifespan so its providers start in
    the background (the Lambda runtime's zygote takes ~0.3 s): the server answers as
    soon as the store is open, and a request to a service waits for that service.
    """
    loop = asyncio.get_running_loop()
    try:
        await app.start(background=True)
    except Exception:
        logging.getLogger(__name__).exception("start-up failed")
        return

    def on_signal(sig: int) -> None:
        # long polls (SQS ReceiveMessage) end now instead of holding the graceful wait
        app.bus.publish("nubes:stopping", None)
        for server in servers:
            if server.should_exit and sig == signal.SIGINT:
                server.force_exit = True
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await asyncio.gather(
            *(server.serve(sockets=[server.bound] if server.bound else None) for server in servers)
        )
    finally:
        if app.started:  # the lifespan stops it, unless a listener never started
            await app.stop()


def _tls_server(settings: Settings, app: App, gateway: Gateway) -> _Server | None:
    """The HTTPS listener for AWS hostnames, on ``tls_port`` (0: a free port)."""
    if settings.tls_port < 0:
        return None
    from nubes.gateway.tls import LocalCA

    # a free port stays ours from the moment it is picked: closing it and letting uvicorn
    # bind it again later let another process take it, and nubes died after it had started
    bound = None if settings.tls_port else _bound_socket(settings.host)
    port = settings.tls_port or (bound.getsockname()[1] if bound else 0)
    ca = LocalCA(settings.data_dir)
    config = _uvicorn_config(settings, gateway, port=port, lifespan="off")
    config.load()
    config.ssl = ca.server_context()
    config.ssl_certfile = str(ca.cert_path)  # marks the scope's scheme as https
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    app.tls_endpoint = f"https://{host}:{port}"
    app.ca_bundle = str(ca.cert_path)
    server = _Server(config)
    server.bound = bound
    return server


def _bound_socket(host: str) -> socket.socket:
    """A TCP socket bound to a free port on ``host``, for a listener to serve on."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    return sock


def build(settings: Settings) -> tuple[App, Gateway]:
    """A fresh app and its ASGI gateway."""
    app = App(settings)
    return app, Gateway(app)


def _uvicorn_config(settings: Settings, gateway: Gateway, *, port: int | None = None, lifespan: Literal["on", "off"] = "on") -> uvicorn.Config:
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        loop = "asyncio"
    return uvicorn.Config(
        gateway,
        host=settings.host,
        port=settings.port if port is None else port,
        http=Http1Protocol,
        ws="websockets-sansio",
        loop=loop,
        lifespan=lifespan,
        access_log=False,
        log_level="warning" if settings.log_level == "info" else settings.log_level,
        timeout_graceful_shutdown=5,
        timeout_keep_alive=65,
        server_header=False,
        date_header=True,
        # the client's own address is what AWS reports (API Gateway's sourceIp): a
        # local process must not rewrite it with X-Forwarded-For
        proxy_headers=False,
    )


def serve(settings: Settings, banner: bool = True) -> int:
    """Serve until SIGINT/SIGTERM; returns the exit code."""
    logging.basicConfig(
        level=getattr(logging, settings.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        check_port(settings.host, settings.port)
    except PortInUse as exc:
        print(f"nubes: {exc} — is another nubes running? Choose another with --port.", file=sys.stderr)
        return 2
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app, gateway = build(settings)
    server = _Server(_uvicorn_config(settings, gateway))
    servers = [server]
    tls = _tls_server(settings, app, gateway)
    if tls is not None:
        servers.append(tls)
    if banner:
        print(
            f"nubes {app.version} on {settings.endpoint} "
            f"(data: {settings.data_dir}, store: {settings.store_backend}"
            + (f", https: {app.tls_endpoint}" if app.tls_endpoint else "") + ")",
            flush=True,
        )
        print(f"console: {settings.endpoint}/_nubes/console/", flush=True)
    try:
        import uvloop

        uvloop.run(_serve_all(app, servers))
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(_serve_all(app, servers))
    return 0 if server.started else 1
