"""The HTTPS listener answers AWS hostnames with certificates from the local CA."""

from __future__ import annotations

import json
import socket
import ssl
import urllib.request
from pathlib import Path

import boto3

from nubes.testing import NubesServer


def _health(server: NubesServer) -> dict[str, str]:
    with urllib.request.urlopen(server.endpoint + "/_nubes/health") as resp:
        doc: dict[str, str] = json.loads(resp.read())
        return doc


def test_https_for_aws_hostnames(nubes: NubesServer) -> None:
    health = _health(nubes)
    tls_endpoint, ca = health["tls_endpoint"], health["ca_bundle"]
    assert tls_endpoint.startswith("https://127.0.0.1:")
    port = int(tls_endpoint.rsplit(":", 1)[1])
    context = ssl.create_default_context(cafile=ca)
    for name in ("cognito-idp.us-east-1.amazonaws.com", "abc123.execute-api.eu-west-1.amazonaws.com", "localhost"):
        with socket.create_connection(("127.0.0.1", port)) as raw, context.wrap_socket(raw, server_hostname=name) as tls:
            cert = tls.getpeercert()
            assert cert is not None
            assert ("DNS", name) in cert["subjectAltName"]
    sts = boto3.client("sts", endpoint_url=tls_endpoint, verify=ca, region_name="us-east-1",
                       aws_access_key_id="test", aws_secret_access_key="test")  # fmt: skip
    assert sts.get_caller_identity()["Account"] == "000000000000"


def test_untrusted_without_the_ca(nubes: NubesServer) -> None:
    port = int(_health(nubes)["tls_endpoint"].rsplit(":", 1)[1])
    context = ssl.create_default_context()
    with socket.create_connection(("127.0.0.1", port)) as raw:
        try:
            context.wrap_socket(raw, server_hostname="sts.amazonaws.com")
        except ssl.SSLCertVerificationError:
            return
    raise AssertionError("a client without the nubes CA must not trust the certificate")


def test_ca_is_kept_across_restarts(tmp_path: Path) -> None:
    server = NubesServer(tmp_path / "d").start()
    try:
        first = Path(_health(server)["ca_bundle"]).read_bytes()
        server.restart()
        assert Path(_health(server)["ca_bundle"]).read_bytes() == first
    finally:
        server.close()


def test_tls_can_be_turned_off(tmp_path: Path) -> None:
    with NubesServer(tmp_path / "d", env={"NUBES_TLS_PORT": "-1"}) as server:
        assert _health(server)["tls_endpoint"] is None
