"""Bad requests to a user pool domain's endpoints, in-process through the gateway:
each gets Cognito's OAuth error (or an error page), never a crash, and nothing
is stored half-done."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from nubes.app import App
from nubes.gateway.asgi import Gateway
from nubes.settings import Settings

CALLBACK = "http://localhost:3000/cb"
Check = Callable[[httpx.AsyncClient, dict[str, Any]], Awaitable[None]]


def _run(tmp_path: Path, check: Check) -> None:
    async def main() -> None:
        app = App(Settings(data_dir=tmp_path, tls_port=-1))
        await app.start()
        try:
            pool = (await app.call("cognito-idp", "CreateUserPool", {"PoolName": "p"}))["UserPool"]
            await app.call("cognito-idp", "CreateUserPoolDomain", {"Domain": "bad-input", "UserPoolId": pool["Id"]})
            web = (await app.call("cognito-idp", "CreateUserPoolClient", {
                "UserPoolId": pool["Id"], "ClientName": "web", "AllowedOAuthFlowsUserPoolClient": True,
                "AllowedOAuthFlows": ["code"], "AllowedOAuthScopes": ["openid"], "CallbackURLs": [CALLBACK]}))["UserPoolClient"]  # fmt: skip
            env = {"pool": pool, "web": web, "base": "http://127.0.0.1:4566/_nubes/cognito/bad-input"}
            transport = httpx.ASGITransport(app=Gateway(app))
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:4566", follow_redirects=False) as http:
                await check(http, env)
        finally:
            await app.stop()

    asyncio.run(main())


async def _token_errors(http: httpx.AsyncClient, env: dict[str, Any]) -> None:
    url = f"{env['base']}/oauth2/token"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    cases: list[tuple[dict[str, str], bytes, int, str]] = [
        (form, b"grant_type=client_credentials&client_id=\xff\xfe", 400, "invalid_request"),
        ({**form, "Authorization": "Basic !!!not-base64"}, b"grant_type=client_credentials", 400, "invalid_client"),
        ({**form, "Authorization": "Basic " + base64.b64encode(b"no-colon").decode()}, b"grant_type=client_credentials", 400, "invalid_client"),
        ({"Content-Type": "application/json"}, b'{"grant_type": "client_credentials"}', 400, "invalid_request"),
        (form, b"grant_type=authorization_code&client_id=" + env["web"]["ClientId"].encode() + b"&code=&redirect_uri=", 400, "invalid_request"),
        (form, b"grant_type=implicit&client_id=x", 400, "unsupported_grant_type"),
    ]
    for headers, body, status, error in cases:
        out = await http.post(url, headers=headers, content=body)
        assert (out.status_code, out.json()) == (status, {"error": error}), body
    assert (await http.get(url)).status_code == 405


async def _user_info_and_revoke_errors(http: httpx.AsyncClient, env: dict[str, Any]) -> None:
    url = f"{env['base']}/oauth2/userInfo"
    for header in ("Bearer not.a.jwt", "Bearer " + "e30." * 2 + "x", "Basic abc"):
        out = await http.get(url, headers={"Authorization": header})
        assert out.status_code == 401 and out.json()["error"] in ("invalid_token", "invalid_request")
    revoke = f"{env['base']}/oauth2/revoke"
    out = await http.post(revoke, data={"client_id": env["web"]["ClientId"]})
    assert (out.status_code, out.json()) == (400, {"error": "invalid_request"})
    out = await http.post(revoke, data={"client_id": env["web"]["ClientId"], "token": "a.b.c"})
    assert (out.status_code, out.json()) == (400, {"error": "unsupported_token_type"})
    out = await http.post(revoke, data={"client_id": "nope", "token": "x"})
    assert (out.status_code, out.json()) == (400, {"error": "invalid_client"})
    # an unknown refresh token is simply not there any more (RFC 7009)
    assert (await http.post(revoke, data={"client_id": env["web"]["ClientId"], "token": "unknown"})).status_code == 200


async def _hosted_pages(http: httpx.AsyncClient, env: dict[str, Any]) -> None:
    params = f"response_type=code&client_id={env['web']['ClientId']}&redirect_uri={CALLBACK}"
    login = f"{env['base']}/login?{params}"
    empty = await http.post(login, data={})
    assert empty.status_code == 200 and "Incorrect username or password." in empty.text
    stale = await http.post(login, data={"session": "x" * 30, "totpCode": "123456"})
    assert stale.status_code == 200 and "session is expired" in stale.text
    stale = await http.post(login, data={"session": "x" * 30, "newPassword": "N3w-Password!"})
    assert stale.status_code == 200 and "session is expired" in stale.text
    assert "<script>" not in (await http.get(f"{env['base']}/error?error=<script>alert(1)</script>")).text
    weird = await http.get(f"{env['base']}/oauth2/authorize?client_id=%FF%FE&redirect_uri=%FF")
    assert weird.status_code == 302 and "/error?error=invalid_request" in weird.headers["location"]
    assert (await http.get(f"{env['base']}/no/such/page")).status_code == 404
    assert (await http.put(login)).status_code == 405
    assert (await http.request("OPTIONS", f"{env['base']}/oauth2/token")).headers["access-control-allow-origin"] == "*"
    # nothing was issued by any of it
    out = await http.post(f"{env['base']}/oauth2/token", data={"grant_type": "authorization_code", "client_id": env["web"]["ClientId"],
                                                               "code": "guess", "redirect_uri": CALLBACK})  # fmt: skip
    assert out.json() == {"error": "invalid_grant"}


@pytest.mark.parametrize("check", [_token_errors, _user_info_and_revoke_errors, _hosted_pages])
def test_bad_requests_get_oauth_errors(tmp_path: Path, check: Check) -> None:
    _run(tmp_path, check)
