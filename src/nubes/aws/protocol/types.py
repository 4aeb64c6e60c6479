"""Requests and responses as the protocol layer sees them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class WireRequest:
    """An HTTP request, decoded just enough for protocol parsing."""

    method: str
    #: percent-decoded path
    path: str
    #: query parameters, each with all its values in order
    query: dict[str, list[str]]
    #: lower-cased header names
    headers: dict[str, str]
    body: bytes
    #: set instead of ``body`` for operations whose payload streams (S3 uploads)
    body_stream: Any = None
    #: query keys consumed by named members (filled by the router)
    claimed_query: set[str] = field(default_factory=set)


@dataclass
class WireResponse:
    """What the gateway sends: status, headers, and bytes or a chunk stream."""

    status: int
    headers: dict[str, str]
    body: bytes | AsyncIterator[bytes]
    #: headers that repeat (several Set-Cookie), sent after ``headers``
    extra_headers: list[tuple[str, str]] = field(default_factory=list)
