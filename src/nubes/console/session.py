"""Console sign-in: who must sign in, and the signed session cookie.

The AWS APIs on nubes's port demand SigV4 with the configured credentials; the
console shows the same data (tables, objects, secrets, the mailbox with Cognito
codes) and invokes functions, so a client that is not on this machine signs in
with an access key pair nubes accepts before the console answers it. A client on
a loopback address needs no sign-in (as before), and nobody does when signatures
are off (``no_auth``).

A session is a cookie holding ``v1.<payload>.<mac>``: the payload names the access
key (and an STS credential's session token) and when the session ends; the MAC is
HMAC-SHA256 with a random key kept in the store (every node of a PostgreSQL store
shares it, and sessions survive restarts) over the payload *and the key's current
secret*, so deleting or rotating a credential, or an STS credential expiring, ends
its sessions too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from nubes.storage.base import Store, Txn

if TYPE_CHECKING:
    from nubes.settings import Settings

#: the cookie's name; its path is the console's, so no other route ever sees it
COOKIE = "nubes_console_session"
COOKIE_PATH = "/_nubes/console"
#: how long a session lasts
SESSION_SECONDS = 12 * 3600
#: store table and key of the HMAC key (one per data dir / PostgreSQL store)
KEY_TABLE = "console.session"
KEY_NAME = b"hmac-key"
_VERSION = "v1"
_CONTEXT = b"nubes console session v1\x00"

#: resolves an access key id (and session token) to its current secret access key;
#: raises when the key is unknown or its temporary credential has expired
SecretLookup = Callable[[str, str | None], Awaitable[str]]


def is_loopback(client_ip: str) -> bool:
    """Whether ``client_ip`` is a loopback address (127.0.0.0/8, ::1, or an
    IPv4-mapped ``::ffff:127.x.y.z``); anything unparseable is not."""
    try:
        address = ipaddress.ip_address(client_ip.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def signin_required(settings: Settings, client_ip: str) -> bool:
    """Whether a console request from ``client_ip`` needs a session.

    Never when signatures are off (``no_auth``); not for a loopback client unless
    the settings turn that exemption off (``console_trust_loopback = False``, for a
    nubes behind a reverse proxy on the same machine, whose clients all look local).
    """
    if settings.no_auth:
        return False
    return not (settings.console_trust_loopback and is_loopback(client_ip))


@dataclass(frozen=True)
class Session:
    """A verified session: whose it is and when it ends (epoch seconds)."""

    access_key: str
    expires: int


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, payload: str, secret: str) -> bytes:
    message = _CONTEXT + payload.encode("ascii") + b"\x00" + secret.encode("utf-8")
    return hmac.new(key, message, hashlib.sha256).digest()


def issue(
    key: bytes,
    access_key: str,
    secret: str,
    session_token: str | None = None,
    *,
    now: float | None = None,
    seconds: int = SESSION_SECONDS,
) -> str:
    """A session token for ``access_key`` (whose secret was just verified)."""
    expires = int((time.time() if now is None else now) + seconds)
    doc: dict[str, Any] = {"k": access_key, "e": expires}
    if session_token:
        doc["t"] = session_token
    payload = _b64(orjson.dumps(doc))
    return f"{_VERSION}.{payload}.{_b64(_mac(key, payload, secret))}"


async def verify(
    key: bytes, token: str, lookup: SecretLookup, *, now: float | None = None
) -> Session | None:
    """The session ``token`` stands for, or None when it is malformed, forged,
    expired, or its credential is gone or has another secret now."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != _VERSION:
        return None
    _, payload, mac = parts
    try:
        doc = orjson.loads(_unb64(payload))
        given = mac.encode("ascii")
        payload.encode("ascii")
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None
    if not isinstance(doc, dict):
        return None
    access_key, expires, session_token = doc.get("k"), doc.get("e"), doc.get("t")
    if not isinstance(access_key, str) or type(expires) is not int:
        return None
    if session_token is not None and not isinstance(session_token, str):
        return None
    if expires <= (time.time() if now is None else now):
        return None
    try:
        secret = await lookup(access_key, session_token)
    except Exception:
        return None
    # compared as text: base64 has several spellings of the same bytes (the last
    # character's unused bits), and only the one nubes issued is accepted
    if not hmac.compare_digest(_b64(_mac(key, payload, secret)).encode("ascii"), given):
        return None
    return Session(access_key, expires)


def secrets_match(expected: str, given: str) -> bool:
    """Constant-time comparison of two secret access keys."""
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))


async def load_key(store: Store) -> bytes:
    """The store's HMAC key, made (32 random bytes) by the first node that needs it.

    ``insert`` keeps the first key written when two nodes race; both then read it.
    """
    fresh = secrets.token_bytes(32)

    def get_or_make(txn: Txn) -> bytes:
        txn.insert(KEY_TABLE, KEY_NAME, fresh)
        stored = txn.get(KEY_TABLE, KEY_NAME)
        return fresh if stored is None else stored

    return await store.write(get_or_make)


def cookie_value(headers: Mapping[str, str]) -> str | None:
    """The session cookie in a request's ``Cookie`` header, if any."""
    for part in headers.get("cookie", "").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name == COOKIE:
            return value.strip().strip('"')
    return None


def set_cookie(token: str, *, secure: bool) -> str:
    """``Set-Cookie`` for a new session: HttpOnly, SameSite=Strict, 12 hours."""
    flags = f"; Path={COOKIE_PATH}; Max-Age={SESSION_SECONDS}; HttpOnly; SameSite=Strict"
    return f"{COOKIE}={token}{flags}" + ("; Secure" if secure else "")


def clear_cookie(*, secure: bool) -> str:
    """``Set-Cookie`` that removes the session cookie."""
    flags = f"; Path={COOKIE_PATH}; Max-Age=0; HttpOnly; SameSite=Strict"
    return f"{COOKIE}={flags}" + ("; Secure" if secure else "")


class FailedSignins:
    """Failed sign-ins per client address: after ``limit`` in ``window`` seconds that
    address is refused until its window ends, so a shared nubes's secret cannot be
    guessed at network speed. Bounded: addresses are the clients' to choose."""

    def __init__(self, limit: int = 10, window: float = 60.0, max_clients: int = 4096) -> None:
        self.limit = limit
        self.window = window
        self.max_clients = max_clients
        #: client address → (start of its window, failures in it)
        self._failures: dict[str, tuple[float, int]] = {}

    def blocked(self, client_ip: str, now: float) -> bool:
        """Whether ``client_ip`` has used up its failures for now."""
        start, count = self._failures.get(client_ip, (now, 0))
        return now - start < self.window and count >= self.limit

    def failed(self, client_ip: str, now: float) -> None:
        """Count one failed sign-in of ``client_ip``."""
        start, count = self._failures.get(client_ip, (now, 0))
        if now - start >= self.window:
            start, count = now, 0
        if client_ip not in self._failures and len(self._failures) >= self.max_clients:
            self._failures = {
                ip: seen for ip, seen in self._failures.items() if now - seen[0] < self.window
            }
            if len(self._failures) >= self.max_clients:
                self._failures.clear()
        self._failures[client_ip] = (start, count + 1)
