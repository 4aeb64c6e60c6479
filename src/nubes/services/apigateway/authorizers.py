"""Authorizers: JWT (HTTP APIs), Cognito user pools (REST), Lambda (REQUEST and
TOKEN, simple and IAM-policy responses, cached by TTL) and IAM (SigV4)."""

from __future__ import annotations

import asyncio
import fnmatch
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, unquote

import orjson

from nubes.app import App
from nubes.aws.errors import AwsError
from nubes.aws.protocol.types import WireRequest
from nubes.gateway.auth import Authenticator
from nubes.services.apigateway.payloads import Incoming, event_v1, event_v2

if TYPE_CHECKING:
    import jwt


#: characters a path segment may hold unescaped (RFC 3986 pchar, less unreserved)
_PCHAR = "/@:!$&'()*+,;="


class Denied(Exception):
    """Authorization failed: HTTP ``status`` with AWS's body ``message``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def unauthorized(description: str = "") -> Denied:
    headers = {"www-authenticate": f'Bearer scope="" error="invalid_token" error_description="{description}"'} if description else {}
    return Denied(401, "Unauthorized", headers)


def forbidden() -> Denied:
    return Denied(403, "Forbidden")


def _claims_as_strings(claims: dict[str, Any]) -> dict[str, str]:
    """HTTP APIs hand claims to the function as strings (arrays as ``[a b]``)."""
    out: dict[str, str] = {}
    for key, value in claims.items():
        if isinstance(value, list):
            out[key] = "[" + " ".join(str(v) for v in value) + "]"
        elif isinstance(value, bool):
            out[key] = "true" if value else "false"
        else:
            out[key] = str(value)
    return out


def identity_value(source: str, req: Incoming) -> str | None:
    """Evaluate ``$request.header.X`` / ``method.request.header.X`` and friends."""
    text = source.strip()
    for prefix in ("$request.", "method.request."):
        if text.startswith(prefix):
            text = text[len(prefix) :]
            break
    kind, _, name = text.partition(".")
    if kind == "header":
        return req.headers.get(name.lower())
    if kind in ("querystring", "query"):
        for key, value in req.query_pairs:
            if key == name:
                return value
        return None
    if kind == "path":
        return req.path_parameters.get(name)
    if text.startswith("$stageVariables.") or text.startswith("stageVariables."):
        return req.stage_variables.get(text.split(".", 1)[1])
    if text.startswith("$context."):
        return {"requestId": req.request_id, "stage": req.stage, "apiId": req.api_id}.get(text.split(".", 1)[1])
    return None


class Authorizers:
    """Runs authorizers for the execute-api data plane."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._jwks: dict[str, jwt.PyJWKClient] = {}
        self._cache: dict[tuple[str, tuple[str, ...]], tuple[float, dict[str, Any] | None]] = {}
        # a deleted access key stops signing here at once, as at the gateway
        self._iam = Authenticator.for_app(app)

    # -- JWT ------------------------------------------------------------------------

    async def _jwk_key(self, issuer: str, token: str) -> Any:
        import jwt  # JWT/Cognito authorizers only: PyJWT and cryptography are slow to import

        client = self._jwks.get(issuer)
        if client is None:
            client = jwt.PyJWKClient(issuer.rstrip("/") + "/.well-known/jwks.json", cache_keys=True, lifespan=3600)
            self._jwks[issuer] = client
        try:
            return await asyncio.to_thread(lambda: client.get_signing_key_from_jwt(token).key)
        except (jwt.PyJWKClientError, jwt.PyJWTError) as exc:
            raise unauthorized(str(exc)) from None

    async def jwt(self, authorizer: dict[str, Any], scopes: list[str], req: Incoming) -> dict[str, Any]:
        """Validate a JWT (HTTP APIs); the ``authorizer`` entry of the event."""
        import jwt

        sources = authorizer.get("IdentitySource") or ["$request.header.Authorization"]
        raw = identity_value(sources[0], req)
        if not raw:
            raise unauthorized()
        token = raw[7:] if raw[:7].lower() == "bearer " else raw
        config = authorizer.get("JwtConfiguration") or {}
        issuer = config.get("Issuer", "")
        key = await self._jwk_key(issuer, token)
        try:
            claims: dict[str, Any] = jwt.decode(token, key, algorithms=["RS256", "RS384", "RS512", "ES256"], issuer=issuer,
                                                options={"verify_aud": False}, leeway=0)  # fmt: skip
        except jwt.ExpiredSignatureError:
            raise unauthorized("the token has expired") from None
        except jwt.PyJWTError as exc:
            raise unauthorized(str(exc)) from None
        audience = config.get("Audience") or []
        token_aud = claims.get("aud", claims.get("client_id"))
        token_auds = token_aud if isinstance(token_aud, list) else [token_aud]
        if audience and not set(audience) & {a for a in token_auds if a}:
            raise unauthorized("the token does not have a valid audience")
        granted = str(claims.get("scope", claims.get("scp", ""))).split()
        if scopes and not set(scopes) & set(granted):
            raise forbidden()
        return {"jwt": {"claims": _claims_as_strings(claims), "scopes": granted or None}}

    # -- Cognito (REST) -----------------------------------------------------------------

    async def cognito(self, authorizer: dict[str, Any], req: Incoming, scopes: list[str]) -> dict[str, Any]:
        import jwt

        source = authorizer.get("identitySource") or "method.request.header.Authorization"
        token = identity_value(source, req)
        if not token:
            raise Denied(401, "Unauthorized")
        if token[:7].lower() == "bearer ":
            token = token[7:]
        claims = jwt.decode(token, options={"verify_signature": False}) if token.count(".") == 2 else None
        issuer = str((claims or {}).get("iss", ""))
        pools = [arn.rsplit("/", 1)[1] for arn in authorizer.get("providerARNs") or []]
        if claims is None or issuer.rsplit("/", 1)[-1] not in pools:
            raise Denied(401, "Unauthorized")
        try:
            key = await self._jwk_key(issuer, token)
            verified: dict[str, Any] = jwt.decode(token, key, algorithms=["RS256"], issuer=issuer, options={"verify_aud": False})
        except (Denied, jwt.PyJWTError):
            raise Denied(401, "Unauthorized") from None
        granted = str(verified.get("scope", "")).split()
        if scopes and not set(scopes) & set(granted):
            raise Denied(401, "Unauthorized")
        if not scopes and verified.get("token_use") != "id":
            raise Denied(401, "Unauthorized")
        return {"claims": _claims_as_strings(verified)}

    # -- Lambda -------------------------------------------------------------------------

    async def lambda_(self, authorizer: dict[str, Any], req: Incoming, method_arn: str, *, v2: bool) -> dict[str, Any]:
        """Run a Lambda authorizer (REQUEST or TOKEN); the authorizer context."""
        kind = (authorizer.get("AuthorizerType") or authorizer.get("type") or "REQUEST").upper()
        sources = authorizer.get("IdentitySource") or authorizer.get("identitySource") or []
        if isinstance(sources, str):
            sources = [s.strip() for s in sources.split(",") if s.strip()]
        values = tuple(identity_value(s, req) or "" for s in sources)
        if sources and not all(values):
            raise Denied(401, "Unauthorized")
        ttl = int(authorizer.get("AuthorizerResultTtlInSeconds", authorizer.get("authorizerResultTtlInSeconds", 300 if not v2 else 0)) or 0)
        cache_key = (str(authorizer.get("AuthorizerId") or authorizer.get("id")), values)
        cached = self._cache.get(cache_key)
        if ttl and cached is not None and cached[0] > time.time():
            if cached[1] is None:
                raise forbidden()
            return cached[1]
        payload_version = authorizer.get("AuthorizerPayloadFormatVersion", "1.0") if v2 else "1.0"
        if kind == "TOKEN":
            event: dict[str, Any] = {"type": "TOKEN", "authorizationToken": values[0] if values else "", "methodArn": method_arn}
        elif payload_version == "2.0":
            event = {**event_v2(req), "type": "REQUEST", "routeArn": method_arn, "identitySource": list(values)}
        else:
            event = {**event_v1(req, http_api=v2), "type": "REQUEST", "methodArn": method_arn}
        uri = str(authorizer.get("AuthorizerUri") or authorizer.get("authorizerUri") or "")
        function = uri.split("/functions/", 1)[1].split("/invocations", 1)[0] if "/functions/" in uri else uri
        try:
            out = await self.app.call("lambda", "Invoke", {"FunctionName": function, "Payload": orjson.dumps(event)})
        except AwsError:
            raise Denied(500, "Internal Server Error") from None
        if out.get("FunctionError"):
            body = orjson.loads(out.get("Payload") or b"{}")
            if isinstance(body, dict) and body.get("errorMessage") == "Unauthorized":
                raise Denied(401, "Unauthorized")
            raise Denied(500, "Internal Server Error" if v2 else "AuthorizerConfigurationException")
        result = orjson.loads(out.get("Payload") or b"null")
        context = self._read_result(result, method_arn, simple=bool(authorizer.get("EnableSimpleResponses")) and payload_version == "2.0", v2=v2)
        if ttl:
            self._cache[cache_key] = (time.time() + ttl, context)
        if context is None:
            raise forbidden()
        return context

    @staticmethod
    def _read_result(result: Any, method_arn: str, *, simple: bool, v2: bool) -> dict[str, Any] | None:
        if not isinstance(result, dict):
            raise Denied(500, "Internal Server Error")
        if simple:
            if not result.get("isAuthorized"):
                return None
            return {"lambda": result.get("context") or {}}
        statements = (result.get("policyDocument") or {}).get("Statement") or []
        allowed = False
        for statement in statements if isinstance(statements, list) else [statements]:
            resources = statement.get("Resource") or []
            resources = resources if isinstance(resources, list) else [resources]
            if any(fnmatch.fnmatchcase(method_arn, r) for r in resources):
                if statement.get("Effect") == "Deny":
                    return None
                if statement.get("Effect") == "Allow":
                    allowed = True
        if not allowed:
            return None
        context = {str(k): v for k, v in (result.get("context") or {}).items()}
        if v2:
            return {"lambda": context, "principalId": result.get("principalId")}
        out = {**context, "principalId": result.get("principalId"), "integrationLatency": 0}
        if result.get("usageIdentifierKey"):
            # for apiKeySource AUTHORIZER; RestApiServer takes it out before the context reaches the event
            out["usageIdentifierKey"] = str(result["usageIdentifierKey"])
        return out

    # -- IAM ----------------------------------------------------------------------------

    async def iam(self, req: Incoming, raw_path: str) -> dict[str, Any]:
        """SigV4 on the request itself (``execute-api``); the caller's identity.

        ``raw_path`` is the path as the client sent it, or (a request made
        in-process) a spelling of it: the usual other spellings (sub-delimiters like
        ``=`` ``@`` ``:`` left as they are, or all escaped) are tried in turn when the
        signature does not match."""
        query: dict[str, list[str]] = {}
        for key, value in parse_qsl(req.raw_query, keep_blank_values=True):
            query.setdefault(key, []).append(value)
        wire = WireRequest(req.method, raw_path, query, req.headers, req.body)
        decoded = unquote(raw_path)
        spellings = list(dict.fromkeys((raw_path, quote(decoded, safe=_PCHAR), quote(decoded))))
        access_key: str | None = None
        for i, path in enumerate(spellings):
            try:
                access_key = await self._iam.verify(wire, path, req.raw_query, "rest-json", s3=False)
                break
            except AwsError as err:
                if err.code != "InvalidSignatureException" or i == len(spellings) - 1:
                    raise Denied(403, err.message, {"x-amzn-ErrorType": err.code}) from None
        if access_key is None:
            raise Denied(403, "Missing Authentication Token", {"x-amzn-ErrorType": "MissingAuthenticationTokenException"})
        account = self.app.settings.account_id
        return {"accessKey": access_key, "accountId": account, "caller": access_key, "user": access_key,
                "userArn": f"arn:aws:iam::{account}:root"}  # fmt: skip
