"""The OAuth 2.0 endpoints of a user pool domain that apps call directly:
``/oauth2/token`` (authorization_code with PKCE, refresh_token, client_credentials),
``/oauth2/userInfo`` and ``/oauth2/revoke``. Errors are OAuth's JSON bodies
(``{"error": "invalid_grant"}``), as Cognito sends them."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

import orjson

from nubes.aws.errors import AwsError
from nubes.aws.protocol.types import WireResponse
from nubes.services.base import HttpRequest, RequestContext
from nubes.services.cognito_idp import tokens, users
from nubes.services.cognito_idp.oauth_config import OAuthConfig, custom_scopes
from nubes.services.cognito_idp.store import AUTH_CODES, CLIENTS, REFRESH, USERS, loads
from nubes.storage.base import Txn
from nubes.storage.keys import pack

CODE_SECONDS = 300
_JSON = {"Content-Type": "application/json;charset=UTF-8", "Cache-Control": "no-store", "Pragma": "no-cache"}
#: browsers call the token and userInfo endpoints from single-page apps
CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Headers": "Authorization, Content-Type",
        "Access-Control-Allow-Methods": "GET, POST, OPTIONS"}  # fmt: skip


class _ScopeError(Exception):
    """A requested scope the client may not have (or none at all)."""


class OAuthError(Exception):
    """An OAuth error answer: ``{"error": code}`` with its status."""

    def __init__(self, error: str, status: int = 400, description: str | None = None) -> None:
        super().__init__(error)
        self.error, self.status, self.description = error, status, description

    def response(self) -> WireResponse:
        body: dict[str, str] = {"error": self.error}
        if self.description:
            body["error_description"] = self.description
        return WireResponse(self.status, {**_JSON, **CORS}, orjson.dumps(body))


@dataclass
class Domain:
    """The user pool domain a hosted UI request came in on."""

    name: str
    pool: dict[str, Any]
    #: path prefix of the domain's pages: "" on its own host, ``/_nubes/cognito/{domain}`` otherwise
    base: str


def form(request: HttpRequest) -> dict[str, str]:
    """The urlencoded body's fields (the last value of a repeated one)."""
    if request.body and not request.headers.get("content-type", "").lower().startswith("application/x-www-form-urlencoded"):
        raise OAuthError("invalid_request")
    try:
        pairs = urllib.parse.parse_qsl(request.body.decode(), keep_blank_values=True)
    except UnicodeDecodeError:
        raise OAuthError("invalid_request") from None
    return dict(pairs)


def query(request: HttpRequest) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(request.query_string.decode("latin-1"), keep_blank_values=True))


def pkce_matches(method: str, challenge: str, verifier: str) -> bool:
    if method == "S256":
        digest = hashlib.sha256(verifier.encode()).digest()
        computed = base64.urlsafe_b64encode(digest).decode().rstrip("=")
    else:
        computed = verifier
    return hmac.compare_digest(computed.encode(), challenge.encode())


def json_response(body: dict[str, Any], status: int = 200) -> WireResponse:
    return WireResponse(status, {**_JSON, **CORS}, orjson.dumps(body))


class OAuthEndpoints(OAuthConfig):
    """Token, userInfo and revoke."""

    async def _oauth_client(self, domain: Domain, request: HttpRequest, fields: dict[str, str]) -> tuple[dict[str, Any], bool]:
        """(client, authenticated with its secret) from Basic auth or the form."""
        client_id, secret = fields.get("client_id"), fields.get("client_secret")
        header = request.headers.get("authorization", "")
        if header[:6].lower() == "basic ":
            try:
                decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise OAuthError("invalid_client") from None
            basic_id, sep, basic_secret = decoded.partition(":")
            if not sep or (client_id and client_id != basic_id):
                raise OAuthError("invalid_client")
            client_id, secret = urllib.parse.unquote(basic_id), urllib.parse.unquote(basic_secret)
        if not client_id:
            raise OAuthError("invalid_request")
        raw = await self.app.store.read(lambda txn: txn.get(CLIENTS, pack(client_id)))
        client = loads(raw) if raw is not None else None
        if client is None or client["UserPoolId"] != domain.pool["Id"]:
            raise OAuthError("invalid_client")
        expected = client.get("ClientSecret")
        if expected is not None and not hmac.compare_digest((secret or "").encode(), expected.encode()):
            raise OAuthError("invalid_client")
        if expected is None and secret:
            raise OAuthError("invalid_client")
        return client, expected is not None

    @staticmethod
    def _oauth_enabled(client: dict[str, Any], flow: str) -> bool:
        return bool(client.get("AllowedOAuthFlowsUserPoolClient")) and flow in (client.get("AllowedOAuthFlows") or [])

    async def oauth_token(self, domain: Domain, request: HttpRequest) -> WireResponse:
        """``POST /oauth2/token``."""
        if request.method != "POST":
            return json_response({"error": "invalid_request"}, 405)
        fields = form(request)
        grant = fields.get("grant_type")
        if not grant:
            raise OAuthError("invalid_request")
        if grant not in ("authorization_code", "refresh_token", "client_credentials"):
            raise OAuthError("unsupported_grant_type")
        client, with_secret = await self._oauth_client(domain, request, fields)
        if grant == "client_credentials":
            return await self._client_credentials(domain, client, with_secret, fields)
        if grant == "authorization_code":
            return await self._authorization_code(domain, client, fields)
        return await self._refresh_grant(domain, client, fields)

    async def _client_credentials(self, domain: Domain, client: dict[str, Any], with_secret: bool, fields: dict[str, str]) -> WireResponse:
        if not with_secret:
            raise OAuthError("invalid_client")
        if not self._oauth_enabled(client, "client_credentials"):
            raise OAuthError("unauthorized_client")
        try:
            access = await self._m2m_token(domain.pool, client, fields.get("scope", "").split(), None)
        except _ScopeError:
            raise OAuthError("invalid_scope") from None
        except AwsError:
            raise OAuthError("invalid_request") from None
        return json_response({"access_token": access, "expires_in": tokens.validity(client, "access"), "token_type": "Bearer"})

    async def _m2m_token(self, pool: dict[str, Any], client: dict[str, Any], requested: list[str], metadata: Any) -> str:
        """A client_credentials access token for the requested custom scopes (all the
        client's when none), through the V3 pre token generation trigger if set."""
        allowed = set(client.get("AllowedOAuthScopes") or []) & custom_scopes(await self.resource_servers(pool["Id"]))
        if requested and not set(requested) <= allowed:
            raise _ScopeError()
        scopes = list(dict.fromkeys(requested)) or sorted(allowed)
        if not scopes:
            raise _ScopeError()
        add: dict[str, Any] | None = None
        suppress: list[str] | None = None
        config = (pool.get("LambdaConfig") or {}).get("PreTokenGenerationConfig") or {}
        if config.get("LambdaVersion") == "V3_0" and config.get("LambdaArn"):
            event = {
                "version": "3", "triggerSource": "TokenGeneration_ClientCredentials", "region": pool["Id"].split("_")[0],
                "userPoolId": pool["Id"], "userName": None,
                "callerContext": {"awsSdkVersion": "aws-sdk-unknown-unknown", "clientId": client["ClientId"]},
                "request": {"userAttributes": {}, "scopes": scopes, **({"clientMetadata": metadata} if metadata else {})},
                "response": {"claimsAndScopeOverrideDetails": None},
            }  # fmt: skip
            response = await self._invoke_trigger(pool, config["LambdaArn"], "PreTokenGeneration", event)
            generation = (response.get("claimsAndScopeOverrideDetails") or {}).get("accessTokenGeneration") or {}
            removed = set(generation.get("scopesToSuppress") or [])
            scopes = [s for s in [*scopes, *(x for x in generation.get("scopesToAdd") or [] if x not in scopes)] if s not in removed]
            add, suppress = generation.get("claimsToAddOrOverride"), generation.get("claimsToSuppress")
        return tokens.client_credentials_token(pool, client["ClientId"], " ".join(scopes), add, suppress, tokens.validity(client, "access"))

    async def get_client_token(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """The API form of the client_credentials grant (``ALLOW_CLIENT_TOKEN_AUTH``)."""
        client = await self.db.client(params["ClientId"])
        expected = client.get("ClientSecret")
        if expected is None or not hmac.compare_digest(str(params.get("Secret") or "").encode(), expected.encode()):
            raise AwsError("NotAuthorizedException", f"Client {client['ClientId']} is not authorized", 400)
        # botocore's ExplicitAuthFlows enum does not list ALLOW_CLIENT_TOKEN_AUTH yet, so a
        # client allowed the client_credentials grant may use this too
        if "ALLOW_CLIENT_TOKEN_AUTH" not in (client.get("ExplicitAuthFlows") or []) and not self._oauth_enabled(client, "client_credentials"):
            raise AwsError("InvalidParameterException", "ALLOW_CLIENT_TOKEN_AUTH flow not enabled for this client", 400)
        pool = await self.db.pool(client["UserPoolId"])
        try:
            access = await self._m2m_token(pool, client, list(params.get("Scopes") or []), params.get("ClientMetadata"))
        except _ScopeError:
            raise AwsError("InvalidParameterException", "Invalid scope requested for this client", 400) from None
        return {"ClientAuthenticationResult": {"AccessToken": access, "ExpiresIn": tokens.validity(client, "access"), "TokenType": "Bearer"}}

    async def _authorization_code(self, domain: Domain, client: dict[str, Any], fields: dict[str, str]) -> WireResponse:
        if not self._oauth_enabled(client, "code"):
            raise OAuthError("unauthorized_client")
        code, redirect_uri = fields.get("code"), fields.get("redirect_uri")
        if not code or not redirect_uri:
            raise OAuthError("invalid_request")
        if redirect_uri not in (client.get("CallbackURLs") or []):
            raise OAuthError("unauthorized_client")

        def take(txn: Txn) -> dict[str, Any] | None:  # a code is used once, even by a failing request
            raw = txn.get(AUTH_CODES, pack(code))
            if raw is None:
                return None
            txn.delete(AUTH_CODES, pack(code))
            return loads(raw)

        grant = await self.app.store.write(take)
        if grant is None or grant["ClientId"] != client["ClientId"] or grant["Expires"] < time.time():
            raise OAuthError("invalid_grant")
        if grant["RedirectUri"] != redirect_uri:
            raise OAuthError("invalid_grant")
        if grant.get("CodeChallenge"):
            verifier = fields.get("code_verifier")
            if not verifier:
                raise OAuthError("invalid_request")
            if not pkce_matches(grant["CodeChallengeMethod"], grant["CodeChallenge"], verifier):
                raise OAuthError("invalid_grant")
        user = await self.app.store.read(lambda txn: self.db.find_user(txn, domain.pool, grant["Username"]))
        if user is None or not user.get("Enabled", True):
            raise OAuthError("invalid_grant")
        try:
            result = await self._tokens(domain.pool, client, user, "TokenGeneration_HostedAuth", None,
                                        scopes=grant["Scopes"], nonce=grant.get("Nonce"))  # fmt: skip
        except AwsError:
            raise OAuthError("invalid_request") from None
        return json_response(self._oauth_result(result, grant["Scopes"]))

    @staticmethod
    def _oauth_result(result: dict[str, Any], scopes: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "openid" in scopes:
            out["id_token"] = result["IdToken"]
        out["access_token"] = result["AccessToken"]
        if "RefreshToken" in result:
            out["refresh_token"] = result["RefreshToken"]
        out.update(expires_in=result["ExpiresIn"], token_type="Bearer")
        return out

    async def _refresh_grant(self, domain: Domain, client: dict[str, Any], fields: dict[str, str]) -> WireResponse:
        token = fields.get("refresh_token")
        if not token:
            raise OAuthError("invalid_request")
        if not client.get("AllowedOAuthFlowsUserPoolClient"):
            raise OAuthError("unauthorized_client")
        raw = await self.app.store.read(lambda txn: txn.get(REFRESH, pack(token)))
        record = loads(raw) if raw is not None else None
        if record is None or record["Revoked"] or record["Expires"] < time.time() or record["ClientId"] != client["ClientId"]:
            raise OAuthError("invalid_grant")
        user = await self.app.store.read(lambda txn: self.db.find_user(txn, domain.pool, record["Username"]))
        if user is None or not user.get("Enabled", True) or user.get("SignedOutAt", 0) > record["Issued"]:
            raise OAuthError("invalid_grant")
        scopes: list[str] = record.get("Scopes") or ["openid", tokens.USER_ADMIN_SCOPE]
        try:
            result = await self._tokens(domain.pool, client, user, "TokenGeneration_RefreshTokens", None, refresh=False, scopes=scopes)
        except AwsError:
            raise OAuthError("invalid_request") from None
        return json_response(self._oauth_result(result, scopes))

    async def oauth_user_info(self, domain: Domain, request: HttpRequest) -> WireResponse:
        """``GET|POST /oauth2/userInfo``: the signed-in user's attributes."""
        header = request.headers.get("authorization", "")
        if header[:7].lower() != "bearer " or not header[7:].strip():
            return WireResponse(401, {**_JSON, **CORS, "WWW-Authenticate": 'Bearer error="invalid_request", error_description="Bearer token is missing"'},
                                orjson.dumps({"error": "invalid_request", "error_description": "Bearer token is missing"}))  # fmt: skip
        message = "Access token is expired, disabled, or deleted, or the user has globally signed out."
        invalid = WireResponse(401, {**_JSON, **CORS, "WWW-Authenticate": f'Bearer error="invalid_token", error_description="{message}"'},
                               orjson.dumps({"error": "invalid_token", "error_description": message}))  # fmt: skip
        claims = tokens.verify(header[7:].strip(), domain.pool)
        if claims is None or claims.get("token_use") != "access" or "username" not in claims:
            return invalid
        if not {"openid", tokens.USER_ADMIN_SCOPE} & set(str(claims.get("scope", "")).split()):
            return invalid
        user = await self.app.store.read(lambda txn: self.db.find_user(txn, domain.pool, str(claims["username"])))
        if user is None or not user.get("Enabled", True) or user.get("SignedOutAt", 0) >= claims["iat"]:
            return invalid
        body: dict[str, Any] = dict(users.attributes(user))
        body["username"] = user["Username"]
        return json_response(body)

    async def oauth_revoke(self, domain: Domain, request: HttpRequest) -> WireResponse:
        """``POST /oauth2/revoke``: a refresh token and the tokens issued with it."""
        if request.method != "POST":
            return json_response({"error": "invalid_request"}, 405)
        fields = form(request)
        token = fields.get("token")
        if not token:
            raise OAuthError("invalid_request")
        client, _ = await self._oauth_client(domain, request, fields)
        if token.count(".") == 2:  # an ID or access token: only refresh tokens are revoked
            raise OAuthError("unsupported_token_type")

        def revoke(txn: Txn) -> None:
            raw = txn.get(REFRESH, pack(token))
            if raw is None:
                return
            record = loads(raw)
            if record["ClientId"] != client["ClientId"]:
                return
            record["Revoked"] = True
            txn.put(REFRESH, pack(token), orjson.dumps(record))
            user_raw = txn.get(USERS, pack(record["PoolId"], record["Username"]))
            if user_raw is not None:
                user = loads(user_raw)
                user["SignedOutAt"] = time.time()
                txn.put(USERS, pack(record["PoolId"], record["Username"]), orjson.dumps(user))

        await self.app.store.write(revoke)
        return WireResponse(200, {**_JSON, **CORS}, b"")
