"""Console sign-in against a real ``nubes up --host 0.0.0.0``, reached through this
machine's own non-loopback address, so the server really sees a remote client."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from nubes.console.session import COOKIE
from nubes.testing.server import NubesServer

from .remote import OUTSIDE

pytestmark = pytest.mark.skipif(OUTSIDE is None, reason="this machine has no non-loopback address")


def _lower(items: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in items}


class Remote:
    """HTTP to one server through the outside address, with a cookie set by hand."""

    def __init__(self, server: NubesServer) -> None:
        self.server = server
        self.cookie: str | None = None

    @property
    def base(self) -> str:
        return f"http://{OUTSIDE}:{self.server.port}"

    def send(
        self, path: str, method: str = "GET", body: bytes | None = None, *, local: bool = False
    ) -> tuple[int, dict[str, str], bytes]:
        headers = {"X-Nubes-Console": "1"} if method != "GET" else {}
        if self.cookie:
            headers["Cookie"] = self.cookie
        base = self.server.endpoint if local else self.base
        request = urllib.request.Request(base + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, _lower(response.headers.items()), response.read()
        except urllib.error.HTTPError as error:
            return error.code, _lower(error.headers.items()), error.read()

    def signin(self, key: str = "test", secret: str = "test", **more: str) -> tuple[int, Any]:
        body = json.dumps({"accessKeyId": key, "secretAccessKey": secret, **more}).encode()
        status, headers, raw = self.send("/_nubes/console/api/signin", "POST", body)
        if status == 200:
            self.cookie = headers["set-cookie"].split(";", 1)[0]
        return status, json.loads(raw)


@pytest.fixture(scope="module")
def shared() -> Iterator[NubesServer]:
    """A nubes listening on every address, as a team shares one."""
    with NubesServer(extra_args=["--host", "0.0.0.0"]) as server:
        yield server


def _error_code(raw: bytes) -> str:
    return str(json.loads(raw)["error"]["code"])


def test_remote_client_signs_in_and_out(shared: NubesServer) -> None:
    s3 = shared.client("s3")
    s3.create_bucket(Bucket="shared-signin")
    s3.put_object(Bucket="shared-signin", Key="a.txt", Body=b"remote bytes")
    remote = Remote(shared)
    status, headers, raw = remote.send("/_nubes/console/")
    assert status == 200 and b"<html" in raw  # the page itself loads for anyone
    status, headers, raw = remote.send("/_nubes/console/api/buckets")
    assert status == 401 and _error_code(raw) == "SignInRequired"
    status, _, raw = remote.send("/_nubes/console/api/object?bucket=shared-signin&key=a.txt")
    assert status == 401 and b"remote bytes" not in raw
    # the same server asked over loopback needs nothing
    status, _, raw = remote.send("/_nubes/console/api/buckets", local=True)
    assert status == 200 and b"shared-signin" in raw

    assert remote.signin(secret="wrong")[0] == 401 and remote.cookie is None
    status, doc = remote.signin()
    assert status == 200 and doc["access_key"] == "test"
    assert remote.cookie is not None and remote.cookie.startswith(COOKIE + "=")
    status, _, raw = remote.send("/_nubes/console/api/buckets")
    assert status == 200 and b"shared-signin" in raw
    status, _, raw = remote.send("/_nubes/console/api/object?bucket=shared-signin&key=a.txt")
    assert status == 200 and raw == b"remote bytes"
    status, _, raw = remote.send("/_nubes/console/api/session")
    assert json.loads(raw)["signed_in"] is True

    status, headers, _ = remote.send("/_nubes/console/api/signout", "POST")
    assert status == 200 and headers["set-cookie"].startswith(COOKIE + "=;")
    remote.cookie = headers["set-cookie"].split(";", 1)[0]
    status, _, raw = remote.send("/_nubes/console/api/buckets")
    assert status == 401 and _error_code(raw) == "SignInRequired"


def test_forged_cookie_is_refused(shared: NubesServer) -> None:
    remote = Remote(shared)
    assert remote.signin()[0] == 200
    assert remote.cookie is not None
    name, token = remote.cookie.split("=", 1)
    version, payload, mac = token.split(".")
    flipped = ("A" if mac[0] != "A" else "B") + mac[1:]
    # the last character's low bits are base64 padding: same bytes, another spelling
    respelled = mac[:-1] + chr(ord(mac[-1]) ^ 1)
    for forged in (f"{version}.{payload}.{flipped}", f"{version}.{payload}.{respelled}",
                   f"{version}.{payload[:-1]}.{mac}", ""):  # fmt: skip
        remote.cookie = f"{name}={forged}"
        status, _, raw = remote.send("/_nubes/console/api/buckets")
        assert status == 401 and _error_code(raw) == "SignInRequired", forged


def test_sts_temporary_credentials_sign_in(shared: NubesServer) -> None:
    creds = shared.client("sts").get_session_token(DurationSeconds=900)["Credentials"]
    remote = Remote(shared)
    # without the session token the temporary key is not accepted, as on the AWS APIs
    status, doc = remote.signin(creds["AccessKeyId"], creds["SecretAccessKey"])
    assert status == 401 and remote.cookie is None
    status, doc = remote.signin(
        creds["AccessKeyId"], creds["SecretAccessKey"], sessionToken=creds["SessionToken"]
    )
    assert status == 200 and doc["access_key"] == creds["AccessKeyId"]
    assert remote.send("/_nubes/console/api/buckets")[0] == 200


def test_session_survives_a_restart(shared: NubesServer) -> None:
    remote = Remote(shared)
    assert remote.signin()[0] == 200
    shared.restart()
    status, _, raw = remote.send("/_nubes/console/api/session")
    assert status == 200 and json.loads(raw)["signed_in"] is True
    assert remote.send("/_nubes/console/api/buckets")[0] == 200


def test_no_auth_needs_no_signin() -> None:
    with NubesServer(extra_args=["--host", "0.0.0.0", "--no-auth"]) as server:
        remote = Remote(server)
        status, _, raw = remote.send("/_nubes/console/api/buckets")
        assert status == 200 and json.loads(raw)["buckets"] == []
        status, _, raw = remote.send("/_nubes/console/api/session")
        assert json.loads(raw)["required"] is False
