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
import ipaddress
import os
import ssl
import tempfile
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_DEFAULT_NAMES = ("localhost", "127.0.0.1")


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


class LocalCA:
    """The data dir's certificate authority (``tls/ca.pem``, ``tls/ca.key``)."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir / "tls"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cert_path = self.dir / "ca.pem"
        key_path = self.dir / "ca.key"
        if not self.cert_path.exists() or not key_path.exists():
            self._create(key_path)
        self.key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        self.cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        self._leaf_key = ec.generate_private_key(ec.SECP256R1())
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._lock = threading.Lock()

    def _create(self, key_path: Path) -> None:
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
        _write_private(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))  # fmt: skip
        _write_private(self.cert_path, cert.public_bytes(serialization.Encoding.PEM))

    def leaf_pem(self, names: tuple[str, ...]) -> tuple[bytes, bytes]:
        """(certificate PEM, key PEM) for ``names``, signed by this CA."""
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
            .issuer_name(self.cert.subject)
            .public_key(self._leaf_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())  # type: ignore[arg-type]
        )
        key_pem = self._leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
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
                cert_file.write_bytes(cert_pem + self.cert_path.read_bytes())
                key_file.write_bytes(key_pem)
                ctx.load_cert_chain(cert_file, key_file)
            if len(self._contexts) > 512:
                self._contexts.clear()
            self._contexts[names[0]] = ctx
            return ctx

    def server_context(self) -> ssl.SSLContext:
        """A server context that mints a certificate for each SNI name it is asked for."""
        default = self._context_for(_DEFAULT_NAMES)

        def choose(sock: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext) -> None:
            if server_name and server_name not in _DEFAULT_NAMES:
                sock.context = self._context_for((server_name,))

        default.sni_callback = choose
        return default
