"""Inside a Python instance: AWS's public host names lead to nubes.

Functions call AWS by its real names (a Cognito JWKS URL, an execute-api URL
from an environment variable, an SDK client with an explicit regional
endpoint, a Cognito domain's token URL). Every name under ``amazonaws.com`` (and
``amazonaws.com.cn``, ``api.aws``, ``amazoncognito.com``) resolves to a reserved loopback address, and a connection to that
address on port 80 or 443 is redirected to nubes's HTTP or HTTPS listener. The
request keeps its Host header and TLS server name, so nubes can route it the way
AWS would. Nothing leaves the machine.

This works for everything that connects through Python's ``socket`` module
(urllib, http.client, requests/urllib3, botocore, asyncio). Native code that
resolves and connects by itself, and ``provided.*`` runtimes, are not redirected.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

#: what AWS names resolve to inside an instance (nothing listens there)
AWS_ADDRESS = "127.0.0.86"
_SUFFIXES = (".amazonaws.com", ".amazonaws.com.cn", ".api.aws", ".amazoncognito.com")


def is_aws_host(host: object) -> bool:
    """True for ``amazonaws.com`` and the names under it (and the China/dual-stack
    ones, and Cognito's hosted domains)."""
    if isinstance(host, bytes):
        host = host.decode("ascii", "ignore")
    if not isinstance(host, str):
        return False
    name = host.lower().rstrip(".")
    return name.endswith(_SUFFIXES) or ("." + name) in _SUFFIXES


def install(routes: Mapping[int, tuple[str, int]]) -> None:
    """Resolve AWS names to :data:`AWS_ADDRESS`; connect port ``p`` there to ``routes[p]``.

    A port without a route keeps its number and goes to the first route's host.
    """
    if not routes:
        return
    default_host = next(iter(routes.values()))[0]
    real_getaddrinfo = socket.getaddrinfo
    real_gethostbyname = socket.gethostbyname
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def getaddrinfo(host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0,
                    flags: int = 0) -> Any:  # fmt: skip
        if not is_aws_host(host) or family == socket.AF_INET6:
            return real_getaddrinfo(host, port, family, type, proto, flags)
        return real_getaddrinfo(AWS_ADDRESS, port, socket.AF_INET, type, proto, flags)

    def gethostbyname(host: str) -> str:
        return AWS_ADDRESS if is_aws_host(host) else real_gethostbyname(host)

    def target(address: Any) -> Any:
        if type(address) is tuple and len(address) == 2 and address[0] == AWS_ADDRESS:
            return routes.get(address[1], (default_host, address[1]))
        return address

    def connect(self: socket.socket, address: Any) -> None:
        real_connect(self, target(address))

    def connect_ex(self: socket.socket, address: Any) -> int:
        return real_connect_ex(self, target(address))

    socket.getaddrinfo = getaddrinfo
    socket.gethostbyname = gethostbyname
    socket.socket.connect = connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign,assignment]
