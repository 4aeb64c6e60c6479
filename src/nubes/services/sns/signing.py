"""Message signatures as SNS makes them, with a key kept in the data dir.

AWS signs the canonical "name\\nvalue\\n" string of a message's fields with RSA:
SHA1 for ``SignatureVersion`` 1, SHA256 for 2. Verifiers fetch the certificate from
``SigningCertURL``; nubes serves its own at ``/_nubes/sns/SimpleNotificationService.pem``.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import threading
from collections.abc import Hashable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported on the first signature: most servers never sign
    from cryptography.hazmat.primitives.asymmetric import rsa

CERT_PATH = "/_nubes/sns/SimpleNotificationService.pem"

#: signatures remembered (oldest dropped first)
_SIGNATURE_CACHE = 4096
_NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_CONFIRMATION_FIELDS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)


def string_to_sign(message: dict[str, Any]) -> str:
    """The canonical string SNS signs (fields in this order, Subject only if present)."""
    names = _NOTIFICATION_FIELDS if message.get("Type") == "Notification" else _CONFIRMATION_FIELDS
    return "".join(f"{name}\n{message[name]}\n" for name in names if message.get(name) is not None)


class Signer:
    """An RSA key and self-signed certificate, created on first use and kept on disk."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._key: rsa.RSAPrivateKey | None = None
        self._cert_pem: bytes = b""
        self._signatures: dict[Hashable, str] = {}

    def _load(self) -> rsa.RSAPrivateKey:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        with self._lock:
            if self._key is not None:
                return self._key
            key_path = self.directory / "signing-key.pem"
            cert_path = self.directory / "SimpleNotificationService.pem"
            if key_path.exists() and cert_path.exists():
                loaded = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
                assert isinstance(loaded, rsa.RSAPrivateKey)
                self._key, self._cert_pem = loaded, cert_path.read_bytes()
                return loaded
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
            now = dt.datetime.now(dt.UTC)
            cert = (
                x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
                .not_valid_after(now + dt.timedelta(days=3650)).sign(key, hashes.SHA256())
            )  # fmt: skip
            self.directory.mkdir(parents=True, exist_ok=True)
            key_pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            _write_atomic(key_path, key_pem, 0o600)
            self._cert_pem = cert.public_bytes(serialization.Encoding.PEM)
            _write_atomic(cert_path, self._cert_pem, 0o644)
            self._key = key
            return key

    def certificate_pem(self) -> bytes:
        """The PEM certificate verifiers download."""
        self._load()
        return self._cert_pem

    def sign(self, message: dict[str, Any], version: str, cache_key: Hashable | None = None) -> str:
        """Base64 signature of ``message`` for SignatureVersion ``version``.

        The signed fields do not include the subscription, so every subscriber of a
        message gets the same signature: it is computed once (RSA costs ~0.3 ms) and
        remembered for the next few thousand messages."""
        # the caller's key (message id and variant) spares building the string to sign
        if cache_key is not None and (hit := self.cached(version, cache_key)) is not None:
            return hit
        text = string_to_sign(message)
        if cache_key is None:
            cache_key = text
            if (hit := self.cached(version, cache_key)) is not None:
                return hit
        signature = self.sign_text(text, version)
        self.remember(version, cache_key, signature)
        return signature

    def cached(self, version: str, cache_key: Hashable) -> str | None:
        """The remembered signature for ``cache_key`` (as given to ``sign``), if any."""
        return self._signatures.get((version, cache_key))

    def remember(self, version: str, cache_key: Hashable, signature: str) -> None:
        """Remember a signature made by ``sign_text`` for later ``sign`` calls.
        Only the event loop's thread calls this (the cache is not locked)."""
        if len(self._signatures) >= _SIGNATURE_CACHE:
            self._signatures.pop(next(iter(self._signatures)))
        self._signatures[(version, cache_key)] = signature

    def sign_text(self, text: str, version: str) -> str:
        """Base64 RSA signature of a string to sign; thread-safe, and the RSA operation
        releases the GIL, so a worker thread can sign while the event loop runs."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        key = self._load()
        digest: hashes.HashAlgorithm = hashes.SHA256() if version == "2" else hashes.SHA1()
        return base64.b64encode(key.sign(text.encode(), padding.PKCS1v15(), digest)).decode()


class SigningJob:
    """Signatures for a list of (string to sign, version), made from both ends at once:
    a worker thread takes them from the front (``sign_from_front``), the event loop from
    the back, one between each round of its other work (``sign_one_from_back``).

    RSA releases the GIL, so the two sign in parallel. Signing on the loop as well is
    what keeps the thread fast: a thread that needs the GIL back from a busy event loop
    waits out the interpreter's switch interval (5 ms) each time, which alone would cap
    it at ~200 signatures/s; the loop's own signatures release the GIL every round."""

    def __init__(self, signer: Signer, items: list[tuple[str, str]]) -> None:
        self._signer = signer
        self._items = items
        self._lock = threading.Lock()
        self._front = 0
        self._back = len(items)
        #: the signatures, in the order of ``items``, once both ends have met
        self.signatures: list[str] = [""] * len(items)

    def _take(self, *, front: bool) -> int | None:
        with self._lock:
            if self._front >= self._back:
                return None
            if front:
                self._front += 1
                return self._front - 1
            self._back -= 1
            return self._back

    def _sign(self, index: int) -> None:
        text, version = self._items[index]
        self.signatures[index] = self._signer.sign_text(text, version)

    def sign_from_front(self) -> None:
        """Sign until the two ends meet (run in a thread)."""
        while (index := self._take(front=True)) is not None:
            self._sign(index)

    def sign_one_from_back(self) -> bool:
        """Sign one from the back; False when none is left to take."""
        index = self._take(front=False)
        if index is None:
            return False
        self._sign(index)
        return True


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
