"""This machine's non-loopback address, for tests that must reach nubes as a remote client."""

from __future__ import annotations

import socket


def outside_address() -> str | None:
    """An IPv4 address of this machine that is not loopback (the default route's source)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("203.0.113.1", 9))  # TEST-NET-3: only picks a route, sends nothing
        except OSError:
            return None
        address: str = sock.getsockname()[0]
    return None if address.startswith("127.") or address == "0.0.0.0" else address


OUTSIDE = outside_address()
