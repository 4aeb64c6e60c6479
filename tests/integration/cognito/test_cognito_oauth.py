"""A user pool domain as apps use it: the hosted UI's authorization-code + PKCE
flow driven like a browser (authorize → login form → redirect → token), the
machine-to-machine client_credentials grant with a resource server's scopes,
userInfo, refresh, revoke and logout, reached by path and by Host header, with
OAuth's error bodies for each kind of bad request."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import urllib.parse
import uuid
from typing import Any

import httpx
import jwt
import pytest
from botocore.exceptions import ClientError

from nubes.testing import NubesServer

PASSWORD = "Corr3ct-Horse!"
CALLBACK = "http://localhost:3000/callback"
SIGNED_OUT = "http://localhost:3000/signed-out"


def _setup(nubes: NubesServer) -> dict[str, Any]:
    idp = nubes.client("cognito-idp")
    pool_id = idp.create_user_pool(PoolName="web")["UserPool"]["Id"]
    domain = f"web-{uuid.uuid4().hex[:10]}"
    idp.create_user_pool_domain(Domain=domain, UserPoolId=pool_id)
    idp.create_resource_server(UserPoolId=pool_id, Identifier="orders", Name="Orders API",
                               Scopes=[{"ScopeName": "read", "ScopeDescription": "read orders"},
                                       {"ScopeName": "write", "ScopeDescription": "write orders"}])  # fmt: skip
    web = idp.create_user_pool_client(
        UserPoolId=pool_id, ClientName="spa", AllowedOAuthFlowsUserPoolClient=True, AllowedOAuthFlows=["code"],
        AllowedOAuthScopes=["openid", "email", "profile", "orders/read"], CallbackURLs=[CALLBACK], LogoutURLs=[SIGNED_OUT],
        SupportedIdentityProviders=["COGNITO"],
    )["UserPoolClient"]  # fmt: skip
    m2m = idp.create_user_pool_client(
        UserPoolId=pool_id, ClientName="worker", GenerateSecret=True, AllowedOAuthFlowsUserPoolClient=True,
        AllowedOAuthFlows=["client_credentials"], AllowedOAuthScopes=["orders/read", "orders/write"],
    )["UserPoolClient"]  # fmt: skip
    idp.admin_create_user(UserPoolId=pool_id, Username="alice", MessageAction="SUPPRESS",
                          UserAttributes=[{"Name": "email", "Value": "alice@example.test"}, {"Name": "email_verified", "Value": "true"}])  # fmt: skip
    idp.admin_set_user_password(UserPoolId=pool_id, Username="alice", Password=PASSWORD, Permanent=True)
    base = f"{nubes.endpoint}/_nubes/cognito/{domain}"
    return {"idp": idp, "pool_id": pool_id, "domain": domain, "web": web, "m2m": m2m, "base": base}


def _verify(nubes: NubesServer, pool_id: str, token: str, audience: str | None = None) -> dict[str, Any]:
    key = jwt.PyJWKClient(f"{nubes.endpoint}/{pool_id}/.well-known/jwks.json").get_signing_key_from_jwt(token)
    claims: dict[str, Any] = jwt.decode(token, key.key, algorithms=["RS256"], audience=audience,
                                        issuer=f"{nubes.endpoint}/{pool_id}", options={"verify_aud": audience is not None})  # fmt: skip
    return claims


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


def _query(location: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))


def _sign_in(http: httpx.Client, env: dict[str, Any], params: dict[str, str], password: str = PASSWORD) -> httpx.Response:
    """authorize → login form → POST; the response that follows the POST."""
    start = http.get(f"{env['base']}/oauth2/authorize", params=params)
    assert start.status_code == 302, start.text
    login_url = urllib.parse.urljoin(str(start.url), start.headers["location"])
    assert urllib.parse.urlsplit(login_url).path == f"/_nubes/cognito/{env['domain']}/login"
    page = http.get(login_url)
    assert page.status_code == 200 and 'name="password"' in page.text
    action = re.search(r'<form method="post" action="([^"]+)"', page.text)
    csrf = re.search(r'name="_csrf" value="([^"]+)"', page.text)
    assert action and csrf
    target = urllib.parse.urljoin(login_url, action.group(1).replace("&amp;", "&"))
    return http.post(target, data={"_csrf": csrf.group(1), "username": "alice", "password": password, "signInSubmitButton": "Sign in"})


def test_authorization_code_with_pkce_through_the_hosted_ui(nubes: NubesServer) -> None:
    env = _setup(nubes)
    client_id = env["web"]["ClientId"]
    verifier, challenge = _pkce()
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": CALLBACK, "state": "st-1",
              "scope": "openid email profile", "code_challenge": challenge, "code_challenge_method": "S256", "nonce": "n-0S6"}  # fmt: skip
    with httpx.Client(follow_redirects=False) as http:
        wrong = _sign_in(http, env, params, password="Wrong-pass1!")
        assert wrong.status_code == 200 and "Incorrect username or password." in wrong.text
        done = _sign_in(http, env, params)
        assert done.status_code == 302, done.text
        location = done.headers["location"]
        assert location.startswith(CALLBACK + "?")
        back = _query(location)
        assert back["state"] == "st-1" and back["code"]
        token_url = f"{env['base']}/oauth2/token"
        bad = http.post(token_url, data={"grant_type": "authorization_code", "client_id": client_id, "code": back["code"],
                                         "redirect_uri": CALLBACK, "code_verifier": "not-the-verifier"})  # fmt: skip
        assert (bad.status_code, bad.json()) == (400, {"error": "invalid_grant"})
        reused = http.post(token_url, data={"grant_type": "authorization_code", "client_id": client_id, "code": back["code"],
                                            "redirect_uri": CALLBACK, "code_verifier": verifier})  # fmt: skip
        assert (reused.status_code, reused.json()) == (400, {"error": "invalid_grant"})
        # the browser is signed in: authorize answers with a code straight away (unless told to ask again)
        again = http.get(f"{env['base']}/oauth2/authorize", params=params)
        assert again.status_code == 302 and again.headers["location"].startswith(CALLBACK + "?")
        forced = http.get(f"{env['base']}/oauth2/authorize", params={**params, "prompt": "login"})
        assert "/login?" in forced.headers["location"]
        silent = http.get(f"{env['base']}/oauth2/authorize", params={**params, "prompt": "none"})
        assert silent.headers["location"].startswith(CALLBACK + "?code=")
        code = _query(again.headers["location"])["code"]
        missing = http.post(token_url, data={"grant_type": "authorization_code", "client_id": client_id, "code": code, "redirect_uri": CALLBACK})
        assert (missing.status_code, missing.json()) == (400, {"error": "invalid_request"})
        again = http.get(f"{env['base']}/oauth2/authorize", params=params)
        code = _query(again.headers["location"])["code"]
        out = http.post(token_url, data={"grant_type": "authorization_code", "client_id": client_id, "code": code,
                                         "redirect_uri": CALLBACK, "code_verifier": verifier})  # fmt: skip
        assert out.status_code == 200, out.text
        tokens = out.json()
        assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 3600
        id_claims = _verify(nubes, env["pool_id"], tokens["id_token"], client_id)
        assert id_claims["cognito:username"] == "alice" and id_claims["email"] == "alice@example.test"
        assert id_claims["nonce"] == "n-0S6" and id_claims["token_use"] == "id"
        digest = hashlib.sha256(tokens["access_token"].encode()).digest()
        assert id_claims["at_hash"] == base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")
        access = _verify(nubes, env["pool_id"], tokens["access_token"])
        assert access["scope"].split() == ["openid", "email", "profile"] and access["username"] == "alice"
        assert access["client_id"] == client_id and access["token_use"] == "access"

        info = http.get(f"{env['base']}/oauth2/userInfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
        assert info.status_code == 200
        assert info.json()["email"] == "alice@example.test" and info.json()["username"] == "alice"
        assert info.json()["sub"] == id_claims["sub"]

        refreshed = http.post(token_url, data={"grant_type": "refresh_token", "client_id": client_id, "refresh_token": tokens["refresh_token"]})
        assert refreshed.status_code == 200 and "refresh_token" not in refreshed.json()
        assert _verify(nubes, env["pool_id"], refreshed.json()["id_token"], client_id)["sub"] == id_claims["sub"]

        revoked = http.post(f"{env['base']}/oauth2/revoke", data={"token": tokens["refresh_token"], "client_id": client_id})
        assert revoked.status_code == 200
        after = http.post(token_url, data={"grant_type": "refresh_token", "client_id": client_id, "refresh_token": tokens["refresh_token"]})
        assert (after.status_code, after.json()) == (400, {"error": "invalid_grant"})

        bye = http.get(f"{env['base']}/logout", params={"client_id": client_id, "logout_uri": SIGNED_OUT})
        assert bye.status_code == 302 and bye.headers["location"] == SIGNED_OUT
        assert "Max-Age=0" in bye.headers["set-cookie"]
        http.cookies.clear()
        fresh = http.get(f"{env['base']}/oauth2/authorize", params=params)
        assert "/login?" in fresh.headers["location"]
        silent = http.get(f"{env['base']}/oauth2/authorize", params={**params, "prompt": "none"})
        assert _query(silent.headers["location"]) == {"error": "login_required", "state": "st-1"}
        mismatch = http.get(f"{env['base']}/logout", params={"client_id": client_id, "logout_uri": "https://evil.test/"})
        assert mismatch.status_code == 302 and "error=redirect_mismatch" in mismatch.headers["location"]


def test_client_credentials_by_host_header_with_resource_server_scopes(nubes: NubesServer) -> None:
    env = _setup(nubes)
    m2m = env["m2m"]
    basic = base64.b64encode(f"{m2m['ClientId']}:{m2m['ClientSecret']}".encode()).decode()
    hosts = [f"{env['domain']}.auth.localhost:{nubes.port}", f"{env['domain']}.auth.us-east-1.amazoncognito.com"]
    with httpx.Client() as http:
        for host in hosts:
            out = http.post(f"{nubes.endpoint}/oauth2/token", headers={"Host": host, "Authorization": f"Basic {basic}"},
                            data={"grant_type": "client_credentials", "scope": "orders/read"})  # fmt: skip
            assert out.status_code == 200, out.text
            body = out.json()
            assert set(body) == {"access_token", "expires_in", "token_type"}
            claims = _verify(nubes, env["pool_id"], body["access_token"])
            assert claims["scope"] == "orders/read" and claims["client_id"] == m2m["ClientId"]
            assert claims["token_use"] == "access" and claims["sub"] == m2m["ClientId"] and "username" not in claims
        # client_secret_post, no scope: every scope the client is allowed
        post = http.post(f"{env['base']}/oauth2/token", data={"grant_type": "client_credentials", "client_id": m2m["ClientId"],
                                                              "client_secret": m2m["ClientSecret"]})  # fmt: skip
        assert sorted(_verify(nubes, env["pool_id"], post.json()["access_token"])["scope"].split()) == ["orders/read", "orders/write"]
        # the wrong region in the host name is not this domain
        other = http.post(f"{nubes.endpoint}/oauth2/token", headers={"Host": f"{env['domain']}.auth.eu-west-1.amazoncognito.com"},
                          data={"grant_type": "client_credentials"})  # fmt: skip
        assert other.status_code == 404
        # a machine token is no user's: userInfo refuses it
        info = http.get(f"{env['base']}/oauth2/userInfo", headers={"Authorization": f"Bearer {post.json()['access_token']}"})
        assert info.status_code == 401 and info.json()["error"] == "invalid_token"
        assert 'error="invalid_token"' in info.headers["www-authenticate"]


@pytest.mark.parametrize(
    ("data", "auth", "expected"),
    [
        ({"grant_type": "client_credentials"}, "wrong", "invalid_client"),
        ({"grant_type": "client_credentials", "scope": "orders/delete"}, "m2m", "invalid_scope"),
        ({"grant_type": "client_credentials", "scope": "openid"}, "m2m", "invalid_scope"),
        ({"grant_type": "password", "username": "alice", "password": PASSWORD}, "m2m", "unsupported_grant_type"),
        ({}, "m2m", "invalid_request"),
        ({"grant_type": "authorization_code", "code": "x", "redirect_uri": CALLBACK}, "m2m", "unauthorized_client"),
        ({"grant_type": "client_credentials"}, "web", "invalid_client"),
        ({"grant_type": "authorization_code", "code": "nope", "redirect_uri": CALLBACK}, "web", "invalid_grant"),
        ({"grant_type": "authorization_code", "code": "nope", "redirect_uri": "http://other.test/"}, "web", "unauthorized_client"),
        ({"grant_type": "refresh_token"}, "web", "invalid_request"),
        ({"grant_type": "refresh_token", "refresh_token": "made-up"}, "web", "invalid_grant"),
        ({"grant_type": "client_credentials", "client_id": "nosuchclient"}, None, "invalid_client"),
    ],
)
def test_token_endpoint_errors(nubes: NubesServer, data: dict[str, str], auth: str | None, expected: str) -> None:
    env = _setup(nubes)
    headers = {}
    if auth == "m2m":
        headers["Authorization"] = "Basic " + base64.b64encode(f"{env['m2m']['ClientId']}:{env['m2m']['ClientSecret']}".encode()).decode()
    elif auth == "wrong":
        headers["Authorization"] = "Basic " + base64.b64encode(f"{env['m2m']['ClientId']}:not-the-secret".encode()).decode()
    elif auth == "web":
        data = {**data, "client_id": env["web"]["ClientId"]}
    out = httpx.post(f"{env['base']}/oauth2/token", data=data, headers=headers)
    assert (out.status_code, out.json()) == (400, {"error": expected})


def test_authorize_errors_and_json_bodies(nubes: NubesServer) -> None:
    env = _setup(nubes)
    client_id = env["web"]["ClientId"]
    url = f"{env['base']}/oauth2/authorize"
    good = {"response_type": "code", "client_id": client_id, "redirect_uri": CALLBACK, "state": "s"}
    with httpx.Client(follow_redirects=False) as http:
        out = http.get(url, params={**good, "redirect_uri": "https://evil.test/cb"})
        assert out.status_code == 302 and out.headers["location"].startswith(f"/_nubes/cognito/{env['domain']}/error?error=redirect_mismatch")
        assert http.get(urllib.parse.urljoin(url, out.headers["location"])).status_code == 400
        out = http.get(url, params={**good, "client_id": "nosuchclient"})
        assert "/error?error=invalid_request" in out.headers["location"]
        for change, error in (({"scope": "openid orders/write"}, "invalid_scope"), ({"response_type": "id_token"}, "unsupported_response_type"),
                              ({"response_type": "token"}, "unauthorized_client"), ({"code_challenge_method": "S512", "code_challenge": "x"}, "invalid_request")):  # fmt: skip
            out = http.get(url, params={**good, **change})
            assert out.status_code == 302
            assert out.headers["location"].startswith(CALLBACK + "?")
            assert _query(out.headers["location"]) == {"error": error, "state": "s"}
        env["idp"].update_user_pool_client(UserPoolId=env["pool_id"], ClientId=client_id, SupportedIdentityProviders=["Google"])
        out = http.get(url, params=good)
        assert _query(out.headers["location"]) == {"error": "unauthorized_client", "state": "s"}
        m2m_token = http.post(f"{env['base']}/oauth2/token", data={"grant_type": "client_credentials"}, headers={"Content-Type": "application/json"})
        assert (m2m_token.status_code, m2m_token.json()["error"]) == (400, "invalid_request")
        assert http.get(f"{env['base']}/oauth2/userInfo").status_code == 401
        assert http.get(f"{nubes.endpoint}/_nubes/cognito/no-such-domain/login").status_code == 404


def test_domain_resource_server_and_client_oauth_operations(nubes: NubesServer) -> None:
    env = _setup(nubes)
    idp, pool_id = env["idp"], env["pool_id"]
    described = idp.describe_user_pool_domain(Domain=env["domain"])["DomainDescription"]
    assert described["UserPoolId"] == pool_id and described["Status"] == "ACTIVE" and described["Domain"] == env["domain"]
    assert described["CloudFrontDistribution"] == f"{env['domain']}.auth.localhost"  # where nubes serves it
    assert idp.describe_user_pool(UserPoolId=pool_id)["UserPool"]["Domain"] == env["domain"]
    assert idp.describe_user_pool_domain(Domain="never-made-here")["DomainDescription"] == {}
    with pytest.raises(ClientError) as err:
        idp.create_user_pool_domain(Domain=env["domain"], UserPoolId=idp.create_user_pool(PoolName="other")["UserPool"]["Id"])
    assert err.value.response["Error"]["Code"] == "InvalidParameterException"
    with pytest.raises(ClientError) as err:
        idp.create_user_pool_domain(Domain="Not_Valid", UserPoolId=pool_id)
    assert err.value.response["Error"]["Code"] == "InvalidParameterException"

    server = idp.describe_resource_server(UserPoolId=pool_id, Identifier="orders")["ResourceServer"]
    assert [s["ScopeName"] for s in server["Scopes"]] == ["read", "write"]
    with pytest.raises(ClientError) as err:
        idp.create_resource_server(UserPoolId=pool_id, Identifier="orders", Name="again")
    assert err.value.response["Error"]["Code"] == "InvalidParameterException"
    idp.create_resource_server(UserPoolId=pool_id, Identifier="https://api.example.test", Name="api",
                               Scopes=[{"ScopeName": "admin", "ScopeDescription": "all"}])  # fmt: skip
    assert len(idp.list_resource_servers(UserPoolId=pool_id, MaxResults=10)["ResourceServers"]) == 2
    page = idp.list_resource_servers(UserPoolId=pool_id, MaxResults=1)
    assert len(page["ResourceServers"]) == 1 and page["NextToken"]
    updated = idp.update_resource_server(UserPoolId=pool_id, Identifier="https://api.example.test", Name="api v2", Scopes=[])
    assert updated["ResourceServer"]["Name"] == "api v2"
    idp.delete_resource_server(UserPoolId=pool_id, Identifier="https://api.example.test")
    with pytest.raises(ClientError) as err:
        idp.describe_resource_server(UserPoolId=pool_id, Identifier="https://api.example.test")
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"

    with pytest.raises(ClientError) as err:
        idp.create_user_pool_client(UserPoolId=pool_id, ClientName="x", AllowedOAuthFlowsUserPoolClient=True,
                                    AllowedOAuthFlows=["client_credentials"], AllowedOAuthScopes=["orders/read"])  # fmt: skip
    assert err.value.response["Error"]["Code"] == "InvalidOAuthFlowException"
    with pytest.raises(ClientError) as err:
        idp.create_user_pool_client(UserPoolId=pool_id, ClientName="x", GenerateSecret=True, AllowedOAuthFlowsUserPoolClient=True,
                                    AllowedOAuthFlows=["client_credentials"], AllowedOAuthScopes=["orders/delete"])  # fmt: skip
    assert err.value.response["Error"]["Code"] == "ScopeDoesNotExistException"
    with pytest.raises(ClientError) as err:
        idp.create_user_pool_client(UserPoolId=pool_id, ClientName="x", GenerateSecret=True, AllowedOAuthFlowsUserPoolClient=True,
                                    AllowedOAuthFlows=["client_credentials", "code"], AllowedOAuthScopes=["orders/read"],
                                    CallbackURLs=[CALLBACK])  # fmt: skip
    assert err.value.response["Error"]["Code"] == "InvalidOAuthFlowException"

    idp.delete_user_pool_domain(Domain=env["domain"], UserPoolId=pool_id)
    assert idp.describe_user_pool_domain(Domain=env["domain"])["DomainDescription"] == {}
    assert httpx.get(f"{env['base']}/login").status_code == 404


TRIGGER = """
def handler(event, context):
    source = event['triggerSource']
    if source == 'PreAuthentication_Authentication' and event['userName'] == 'blocked':
        raise Exception('blocked user')
    if source.startswith('TokenGeneration_'):
        event['response']['claimsOverrideDetails'] = {'claimsToAddOrOverride': {'source': source}}
    return event
"""


def _trigger_function(nubes: NubesServer) -> str:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", TRIGGER)
    lam = nubes.client("lambda")
    name = f"hosted-{uuid.uuid4().hex[:6]}"
    arn: str = lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler",
                                   Role="arn:aws:iam::000000000000:role/x", Code={"ZipFile": buf.getvalue()})["FunctionArn"]  # fmt: skip
    lam.get_waiter("function_active_v2").wait(FunctionName=name)
    return arn


def test_hosted_ui_triggers_new_password_implicit_flow_and_discovery(nubes: NubesServer) -> None:
    fn = _trigger_function(nubes)
    idp = nubes.client("cognito-idp")
    pool_id = idp.create_user_pool(PoolName="hosted", LambdaConfig={"PreAuthentication": fn, "PreTokenGeneration": fn})["UserPool"]["Id"]
    domain = f"hosted-{uuid.uuid4().hex[:8]}"
    idp.create_user_pool_domain(Domain=domain, UserPoolId=pool_id)
    client_id = idp.create_user_pool_client(UserPoolId=pool_id, ClientName="web", AllowedOAuthFlowsUserPoolClient=True,
                                            AllowedOAuthFlows=["code", "implicit"], AllowedOAuthScopes=["openid", "email"],
                                            CallbackURLs=[CALLBACK])["UserPoolClient"]["ClientId"]  # fmt: skip
    idp.admin_create_user(UserPoolId=pool_id, Username="newbie", TemporaryPassword="Temp-pass1!", MessageAction="SUPPRESS")
    idp.admin_create_user(UserPoolId=pool_id, Username="blocked", MessageAction="SUPPRESS")
    idp.admin_set_user_password(UserPoolId=pool_id, Username="blocked", Password=PASSWORD, Permanent=True)
    base = f"{nubes.endpoint}/_nubes/cognito/{domain}"

    discovery = httpx.get(f"{nubes.endpoint}/{pool_id}/.well-known/openid-configuration").json()
    assert discovery["authorization_endpoint"] == f"{base}/oauth2/authorize"
    assert discovery["token_endpoint"] == f"{base}/oauth2/token" and discovery["userinfo_endpoint"] == f"{base}/oauth2/userInfo"

    login = f"{base}/login?" + urllib.parse.urlencode({"response_type": "code", "client_id": client_id, "redirect_uri": CALLBACK, "state": "s"})
    with httpx.Client(follow_redirects=False) as http:
        blocked = http.post(login, data={"username": "blocked", "password": PASSWORD})
        assert blocked.status_code == 200 and "PreAuthentication failed with error blocked user." in blocked.text
        change = http.post(login, data={"username": "newbie", "password": "Temp-pass1!"})
        assert change.status_code == 200 and 'name="newPassword"' in change.text
        session = re.search(r'name="session" value="([^"]+)"', change.text)
        assert session
        weak = http.post(login, data={"session": session.group(1), "newPassword": "short"})
        assert weak.status_code == 200 and "Password did not conform with policy" in weak.text
        done = http.post(login, data={"session": session.group(1), "newPassword": "N3w-Password!"})
        assert done.status_code == 302, done.text
        assert idp.admin_get_user(UserPoolId=pool_id, Username="newbie")["UserStatus"] == "CONFIRMED"
        code = _query(done.headers["location"])["code"]
        out = http.post(f"{base}/oauth2/token", data={"grant_type": "authorization_code", "client_id": client_id, "code": code, "redirect_uri": CALLBACK})
        claims = _verify(nubes, pool_id, out.json()["id_token"], client_id)
        assert claims["cognito:username"] == "newbie" and claims["source"] == "TokenGeneration_HostedAuth"

        implicit = http.get(f"{base}/oauth2/authorize", params={"response_type": "token", "client_id": client_id,
                                                                 "redirect_uri": CALLBACK, "state": "i1", "scope": "openid"})  # fmt: skip
        assert implicit.status_code == 302
        location = implicit.headers["location"]
        assert location.startswith(CALLBACK + "#")
        fragment = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).fragment))
        assert fragment["state"] == "i1" and fragment["token_type"] == "Bearer" and "refresh_token" not in fragment
        assert _verify(nubes, pool_id, fragment["access_token"])["scope"] == "openid"
        assert _verify(nubes, pool_id, fragment["id_token"], client_id)["cognito:username"] == "newbie"


V3_TRIGGER = """
def handler(event, context):
    assert event['version'] == '3', event
    if event['triggerSource'] == 'TokenGeneration_ClientCredentials':
        assert event['request']['scopes'] and event['callerContext']['clientId'], event
        event['response']['claimsAndScopeOverrideDetails'] = {'accessTokenGeneration': {
            'claimsToAddOrOverride': {'tenant': 'acme', 'iss': 'forged'}, 'scopesToSuppress': ['orders/write']}}
    else:
        assert event['request']['scopes'] == ['aws.cognito.signin.user.admin'], event
        event['response']['claimsAndScopeOverrideDetails'] = {
            'accessTokenGeneration': {'claimsToAddOrOverride': {'role': 'user'}, 'scopesToAdd': ['orders/read']},
            'idTokenGeneration': {'claimsToAddOrOverride': {'plan': 'gold'}}}
    return event
"""


def test_v3_pre_token_trigger_for_machine_and_user_tokens_and_get_client_token(nubes: NubesServer) -> None:
    fn = nubes.create_function(V3_TRIGGER, name=f"v3-{uuid.uuid4().hex[:6]}")["FunctionArn"]
    env = _setup(nubes)
    idp, pool_id = env["idp"], env["pool_id"]
    idp.update_user_pool(UserPoolId=pool_id, LambdaConfig={"PreTokenGenerationConfig": {"LambdaVersion": "V3_0", "LambdaArn": fn}})
    m2m = env["m2m"]
    out = httpx.post(f"{env['base']}/oauth2/token", data={"grant_type": "client_credentials", "client_id": m2m["ClientId"],
                                                          "client_secret": m2m["ClientSecret"]})  # fmt: skip
    claims = _verify(nubes, pool_id, out.json()["access_token"])
    assert claims["scope"] == "orders/read" and claims["tenant"] == "acme"  # iss is not the trigger's to change

    with pytest.raises(ClientError) as err:  # a public client has no secret to show
        idp.get_client_token(ClientId=env["web"]["ClientId"], Secret="anything-at-all-but-24-chars")
    assert err.value.response["Error"]["Code"] == "NotAuthorizedException"
    with pytest.raises(ClientError) as err:
        idp.get_client_token(ClientId=m2m["ClientId"], Secret=m2m["ClientSecret"], Scopes=["orders/delete"])
    assert err.value.response["Error"]["Code"] == "InvalidParameterException"
    with pytest.raises(ClientError) as err:
        idp.get_client_token(ClientId=m2m["ClientId"], Secret="wrong-secret-of-twenty-four-chars")
    assert err.value.response["Error"]["Code"] == "NotAuthorizedException"
    result = idp.get_client_token(ClientId=m2m["ClientId"], Secret=m2m["ClientSecret"], Scopes=["orders/write", "orders/read"])
    token = result["ClientAuthenticationResult"]
    assert token["TokenType"] == "Bearer" and token["ExpiresIn"] == 3600
    assert _verify(nubes, pool_id, token["AccessToken"])["scope"] == "orders/read"

    user_client = idp.create_user_pool_client(UserPoolId=pool_id, ClientName="api", ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH"])
    signed = idp.initiate_auth(ClientId=user_client["UserPoolClient"]["ClientId"], AuthFlow="USER_PASSWORD_AUTH",
                               AuthParameters={"USERNAME": "alice", "PASSWORD": PASSWORD})["AuthenticationResult"]  # fmt: skip
    access = _verify(nubes, pool_id, signed["AccessToken"])
    assert access["role"] == "user" and access["scope"].split() == ["aws.cognito.signin.user.admin", "orders/read"]
    assert _verify(nubes, pool_id, signed["IdToken"], user_client["UserPoolClient"]["ClientId"])["plan"] == "gold"


def test_token_lifetimes_follow_the_client_settings(nubes: NubesServer) -> None:
    env = _setup(nubes)
    idp, pool_id, m2m = env["idp"], env["pool_id"], env["m2m"]
    idp.update_user_pool_client(UserPoolId=pool_id, ClientId=m2m["ClientId"], AccessTokenValidity=10, TokenValidityUnits={"AccessToken": "minutes"})
    out = httpx.post(f"{env['base']}/oauth2/token", auth=(m2m["ClientId"], m2m["ClientSecret"]), data={"grant_type": "client_credentials"})
    assert out.json()["expires_in"] == 600
    claims = _verify(nubes, pool_id, out.json()["access_token"])
    assert claims["exp"] - claims["iat"] == 600
    api = idp.create_user_pool_client(UserPoolId=pool_id, ClientName="short", ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH"],
                                      AccessTokenValidity=5, IdTokenValidity=2, TokenValidityUnits={"AccessToken": "minutes", "IdToken": "hours"})
    result = idp.initiate_auth(ClientId=api["UserPoolClient"]["ClientId"], AuthFlow="USER_PASSWORD_AUTH",
                               AuthParameters={"USERNAME": "alice", "PASSWORD": PASSWORD})["AuthenticationResult"]  # fmt: skip
    assert result["ExpiresIn"] == 300
    access = _verify(nubes, pool_id, result["AccessToken"])
    ident = _verify(nubes, pool_id, result["IdToken"], api["UserPoolClient"]["ClientId"])
    assert (access["exp"] - access["iat"], ident["exp"] - ident["iat"]) == (300, 7200)


def _mailed_code(nubes: NubesServer, email: str) -> str:
    messages = httpx.get(f"{nubes.endpoint}/_nubes/ses", params={"email": email}).json()["messages"]
    match = re.search(r"\b(\d{6})\b", str(messages[-1]["Text"]))
    assert match, messages[-1]
    return match.group(1)


def test_hosted_sign_up_confirm_and_forgotten_password(nubes: NubesServer) -> None:
    idp = nubes.client("cognito-idp")
    pool_id = idp.create_user_pool(PoolName="selfservice", AutoVerifiedAttributes=["email"])["UserPool"]["Id"]
    domain = f"self-{uuid.uuid4().hex[:8]}"
    idp.create_user_pool_domain(Domain=domain, UserPoolId=pool_id)
    client = idp.create_user_pool_client(UserPoolId=pool_id, ClientName="web", GenerateSecret=True, AllowedOAuthFlowsUserPoolClient=True,
                                         AllowedOAuthFlows=["code"], AllowedOAuthScopes=["openid"], CallbackURLs=[CALLBACK])["UserPoolClient"]  # fmt: skip
    query = "?" + urllib.parse.urlencode({"response_type": "code", "client_id": client["ClientId"], "redirect_uri": CALLBACK})
    base = f"{nubes.endpoint}/_nubes/cognito/{domain}"
    email = f"s{uuid.uuid4().hex[:8]}@example.test"
    with httpx.Client(follow_redirects=False) as http:
        login_page = http.get(f"{base}/login{query}").text
        assert f"/_nubes/cognito/{domain}/signup?" in login_page and "Forgot your password?" in login_page
        assert 'name="password"' in http.get(f"{base}/signup{query}").text
        weak = http.post(f"{base}/signup{query}", data={"username": "sam", "email": email, "password": "weak"})
        assert "Password did not conform with policy" in weak.text
        signed = http.post(f"{base}/signup{query}", data={"username": "sam", "email": email, "password": PASSWORD})
        assert signed.status_code == 200 and 'name="code"' in signed.text
        assert idp.admin_get_user(UserPoolId=pool_id, Username="sam")["UserStatus"] == "UNCONFIRMED"
        wrong = http.post(f"{base}/confirm{query}", data={"username": "sam", "code": "000000"})
        assert "Invalid verification code" in wrong.text or _mailed_code(nubes, email) == "000000"
        confirmed = http.post(f"{base}/confirm{query}", data={"username": "sam", "code": _mailed_code(nubes, email)})
        assert "Your account is confirmed" in confirmed.text
        done = http.post(f"{base}/login{query}", data={"username": "sam", "password": PASSWORD})
        assert done.status_code == 302 and done.headers["location"].startswith(CALLBACK + "?code=")

        asked = http.post(f"{base}/forgotPassword{query}", data={"username": "sam"})
        assert 'name="code"' in asked.text
        bad = http.post(f"{base}/confirmForgotPassword{query}", data={"username": "sam", "code": _mailed_code(nubes, email), "password": "weak"})
        assert "Password did not conform with policy" in bad.text
        http.post(f"{base}/forgotPassword{query}", data={"username": "sam"})
        changed = http.post(f"{base}/confirmForgotPassword{query}", data={"username": "sam", "code": _mailed_code(nubes, email), "password": "N3w-Password!"})
        assert "Your password has been changed" in changed.text
        old = http.post(f"{base}/login{query}", data={"username": "sam", "password": PASSWORD})
        assert old.status_code == 200 and "Incorrect username or password." in old.text
        new = http.post(f"{base}/login{query}", data={"username": "sam", "password": "N3w-Password!"})
        assert new.status_code == 302
