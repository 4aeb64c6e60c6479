"""Key material and ciphertext blobs.

Key material is random, stored encrypted (AES-256-GCM) under a master key that
lives in the data dir (``kms-master.key``, created once, mode 0600). A
ciphertext blob names its key, so Decrypt needs no KeyId, and binds the
encryption context as associated data, as KMS does.
"""

from __future__ import annotations

import os
import secrets
import struct
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_MAGIC = b"nkms1"


def _aead(key: bytes) -> AESGCM:
    """AES-GCM with ``key`` (cryptography is imported on first use: ~5 MB a server
    that never touches KMS need not carry)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


class MasterKey:
    """Wraps and unwraps key material with the master key.

    Single node (SQLite): the key is a file in the data dir. Several nodes share
    a PostgreSQL store but not a data dir, so there the key lives in the store
    (``from_bytes``), created once by whichever node needs it first.
    """

    @classmethod
    def from_bytes(cls, key: bytes) -> MasterKey:
        self = cls.__new__(cls)
        self._key = key
        self._cipher = None
        return self

    def __init__(self, data_dir: Path) -> None:
        path = data_dir / "kms-master.key"
        if not path.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(secrets.token_bytes(32))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        self._key = path.read_bytes()
        self._cipher: AESGCM | None = None

    @property
    def _aead(self) -> AESGCM:
        if self._cipher is None:  # made by the first KMS operation, not at start-up
            self._cipher = _aead(self._key)
        return self._cipher

    def wrap(self, key_id: str, material: bytes) -> bytes:
        nonce = secrets.token_bytes(12)
        return nonce + self._aead.encrypt(nonce, material, key_id.encode())

    def unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        return self._aead.decrypt(wrapped[:12], wrapped[12:], key_id.encode())


def _context_bytes(context: dict[str, str] | None) -> bytes:
    return orjson.dumps(context or {}, option=orjson.OPT_SORT_KEYS)


def encrypt(key_id: str, material: bytes, plaintext: bytes, context: dict[str, str] | None) -> bytes:
    """A ciphertext blob: magic, key id, nonce, AES-GCM ciphertext+tag."""
    nonce = secrets.token_bytes(12)
    kid = key_id.encode()
    sealed = _aead(material).encrypt(nonce, plaintext, kid + _context_bytes(context))
    return _MAGIC + struct.pack(">H", len(kid)) + kid + nonce + sealed


def blob_key_id(blob: bytes) -> str | None:
    """The key id a ciphertext blob was made with, or None if it is not ours."""
    if not blob.startswith(_MAGIC) or len(blob) < len(_MAGIC) + 2:
        return None
    (length,) = struct.unpack(">H", blob[len(_MAGIC) : len(_MAGIC) + 2])
    start = len(_MAGIC) + 2
    if len(blob) < start + length + 12 + 16:
        return None
    return blob[start : start + length].decode(errors="replace")


def decrypt(material: bytes, blob: bytes, context: dict[str, str] | None) -> bytes | None:
    """The plaintext, or None if the blob, key or context do not match."""
    key_id = blob_key_id(blob)
    if key_id is None:
        return None
    start = len(_MAGIC) + 2 + len(key_id.encode())
    nonce, sealed = blob[start : start + 12], blob[start + 12 :]
    from cryptography.exceptions import InvalidTag

    try:
        return _aead(material).decrypt(nonce, sealed, key_id.encode() + _context_bytes(context))
    except (InvalidTag, ValueError):
        return None
