"""HTTPS for AWS hostnames, with a local certificate authority.

Code inside functions calls AWS by its real names (``https://cognito-idp.
us-east-1.amazonaws.com/...``). nubes makes a CA once (kept in the data dir),
function instances trust it (``AWS_CA_BUNDLE``, ``SSL_CERT_FILE``,
``REQUESTS_CA_BUNDLE``), and the TLS listener answers every server name with a
leaf certificate minted for it on the fly (SNI), so no wildcard list of regions
is needed. Nothing leaves the machine.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import logging
import os
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_DEFAULT_NAMES = ("localhost", "127.0.0.1")
#: a leaf is minted anew this long before it expires
_RENEW_SECONDS = 7 * 86400


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


class LocalCA:
    """The data dir's certificate authority (``tls/ca.pem``, ``tls/ca.key``).

    The certificate for the default names (``localhost``, ``127.0.0.1``) is kept
    beside it (``tls/default.pem``). What is missing or due is made by a short-lived
    child process, so the server itself loads no cryptography (~10 MB) unless a
    connection names another host (an AWS name, minted on demand).
    """

    def __init__(self, data_dir: Path, *, mint_here: bool = False) -> None:
        self.dir = data_dir / "tls"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cert_path = self.dir / "ca.pem"
        self.key_path = self.dir / "ca.key"
        if not mint_here and not self._files_current():
            try:
                subprocess.run([sys.executable, "-m", "nubes.gateway.tls", str(data_dir)],
                               check=True, capture_output=True, timeout=120)  # fmt: skip
            except (OSError, subprocess.SubprocessError) as exc:  # made here below instead
                log.warning("could not make the local CA in a child process: %s", exc)
        if not self.cert_path.exists() or not self.key_path.exists():
            self._create()
        self._ca_pem = self.cert_path.read_bytes()
        self._signer: tuple[Any, Any, Any] | None = None  # (CA key, CA cert, leaf key)
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._lock = threading.Lock()

    def _create(self) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nubes local CA"),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "nubes")])  # fmt: skip
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256())
        )
        _write_private(self.key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))  # fmt: skip
        _write_private(self.cert_path, cert.public_bytes(serialization.Encoding.PEM))

    def _loaded_signer(self) -> tuple[Any, Any, Any]:
        if self._signer is None:
            from cryptography import x509
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric import ec

            key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
            cert = x509.load_pem_x509_certificate(self._ca_pem)
            self._signer = (key, cert, ec.generate_private_key(ec.SECP256R1()))
        return self._signer

    def leaf_pem(self, names: tuple[str, ...], days: int = 365) -> tuple[bytes, bytes]:
        """(certificate PEM, key PEM) for ``names``, signed by this CA."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        ca_key, ca_cert, leaf_key = self._loaded_signer()
        sans: list[x509.GeneralName] = []
        for name in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_cert.subject)
            .public_key(leaf_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        key_pem = leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())  # fmt: skip
        return cert.public_bytes(serialization.Encoding.PEM), key_pem

    def _context_for(self, names: tuple[str, ...]) -> ssl.SSLContext:
        with self._lock:
            ctx = self._contexts.get(names[0])
            if ctx is not None:
                return ctx
            cert_pem, key_pem = self.leaf_pem(names)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            with tempfile.TemporaryDirectory() as tmp:
                cert_file, key_file = Path(tmp) / "c.pem", Path(tmp) / "k.pem"
                cert_file.write_bytes(cert_pem + self._ca_pem)
                key_file.write_bytes(key_pem)
                ctx.load_cert_chain(cert_file, key_file)
            if len(self._contexts) > 512:
                self._contexts.clear()
            self._contexts[names[0]] = ctx
            return ctx

    def _default_current(self, ca_pem: bytes) -> bool:
        """Whether ``tls/default.*`` were made by this CA and are not yet due."""
        try:
            digest, _, until = (self.dir / "default.meta").read_text().partition(" ")
            return digest == hashlib.sha256(ca_pem).hexdigest() and float(until) - _RENEW_SECONDS > time.time()
        except (OSError, ValueError):
            return False

    def _files_current(self) -> bool:
        try:
            ca_pem = self.cert_path.read_bytes()
        except OSError:
            return False
        return self.key_path.exists() and self._default_current(ca_pem)

    def _default_context(self) -> ssl.SSLContext:
        """The context for the default names, from ``tls/default.*`` when they are
        current for this CA; minted (and kept) otherwise."""
        chain, key, meta = self.dir / "default.pem", self.dir / "default.key", self.dir / "default.meta"
        ca_digest = hashlib.sha256(self._ca_pem).hexdigest()
        if not self._default_current(self._ca_pem):
            days = 365
            cert_pem, key_pem = self.leaf_pem(_DEFAULT_NAMES, days=days)
            _write_private(key, key_pem)
            _write_private(chain, cert_pem + self._ca_pem)
            _write_private(meta, f"{ca_digest} {time.time() + days * 86400:.0f}".encode())
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(chain, key)
        return ctx

    def server_context(self) -> ssl.SSLContext:
        """A server context that mints a certificate for each SNI name it is asked for."""
        default = self._default_context()

        def choose(sock: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext) -> None:
            if server_name and server_name not in _DEFAULT_NAMES:
                sock.context = self._context_for((server_name,))

        default.sni_callback = choose
        return default


if __name__ == "__main__":  # the child that makes the CA and the default certificate
    LocalCA(Path(sys.argv[1]), mint_here=True).server_context()
