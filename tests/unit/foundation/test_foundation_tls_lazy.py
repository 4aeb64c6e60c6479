"""The local CA and its default certificate are made by a child process and kept,
so the server loads no cryptography until a connection names another host, and a
certificate made for another CA is never served."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path

from nubes.gateway.tls import LocalCA

PROBE = """
import sys
from pathlib import Path
from nubes.gateway.tls import LocalCA
LocalCA(Path(sys.argv[1])).server_context()
print("cryptography" in sys.modules)
"""


def _loads_cryptography(data_dir: Path) -> bool:
    out = subprocess.run([sys.executable, "-c", PROBE, str(data_dir)], capture_output=True, text=True, check=True)
    return out.stdout.strip() == "True"


def _handshake(ctx: ssl.SSLContext, cafile: Path, server_name: str) -> dict[str, object]:
    """Serve one TLS handshake with ``ctx`` and return the certificate a client
    trusting ``cafile`` verified."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection(("127.0.0.1", port)) as raw, client.wrap_socket(raw, server_hostname=server_name) as tls:
        cert = tls.getpeercert()
    thread.join(5)
    listener.close()
    assert cert is not None
    return dict(cert)


def test_restart_loads_no_cryptography_and_serves_both_kinds_of_names(tmp_path: Path) -> None:
    assert _loads_cryptography(tmp_path) is False  # a child made the CA and the default leaf
    assert {p.name for p in (tmp_path / "tls").iterdir()} >= {"ca.pem", "ca.key", "default.pem", "default.key"}
    assert _loads_cryptography(tmp_path) is False  # later starts only read them
    ca = LocalCA(tmp_path)
    ctx = ca.server_context()
    assert ("DNS", "localhost") in _handshake(ctx, ca.cert_path, "localhost")["subjectAltName"]  # type: ignore[operator]
    sni = _handshake(ctx, ca.cert_path, "sts.us-east-1.amazonaws.com")  # minted on demand
    assert ("DNS", "sts.us-east-1.amazonaws.com") in sni["subjectAltName"]  # type: ignore[operator]


def test_a_new_ca_gets_a_new_default_certificate(tmp_path: Path) -> None:
    LocalCA(tmp_path).server_context()
    (tmp_path / "tls" / "ca.pem").unlink()
    (tmp_path / "tls" / "ca.key").unlink()
    ca = LocalCA(tmp_path)  # a new CA: the kept leaf was signed by the old one
    cert = _handshake(ca.server_context(), ca.cert_path, "localhost")
    assert ("DNS", "localhost") in cert["subjectAltName"]  # type: ignore[operator]
