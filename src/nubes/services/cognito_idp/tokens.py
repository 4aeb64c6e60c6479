"""Pool signing keys, RS256 JWTs with Cognito's claims, JWKS and OpenID documents."""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import rsa

ID_TOKEN_SECONDS = 3600
ACCESS_TOKEN_SECONDS = 3600
_UNIT_SECONDS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}
#: (validity member, TokenValidityUnits member, default value, default unit) per token kind
_VALIDITY = {"access": ("AccessTokenValidity", "AccessToken", 1, "hours"), "id": ("IdTokenValidity", "IdToken", 1, "hours"),
             "refresh": ("RefreshTokenValidity", "RefreshToken", 30, "days")}  # fmt: skip


def validity(client: dict[str, Any], kind: str) -> int:
    """Seconds a client's ``access``/``id``/``refresh`` tokens live (its
    *TokenValidity and TokenValidityUnits, else AWS's defaults)."""
    member, unit_member, default, default_unit = _VALIDITY[kind]
    value = client.get(member) or default
    unit = (client.get("TokenValidityUnits") or {}).get(unit_member) or default_unit
    return int(value) * _UNIT_SECONDS.get(str(unit), _UNIT_SECONDS[default_unit])


#: the scope of tokens from InitiateAuth: the user's own Cognito API calls
USER_ADMIN_SCOPE = "aws.cognito.signin.user.admin"


def new_signing_key() -> tuple[str, str]:
    """(kid, private key PEM) for a new pool."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="), pem.decode()


def _b64(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@lru_cache(maxsize=64)
def _private_key(private_pem: str) -> rsa.RSAPrivateKey:
    """A pool's signing key, parsed once (every sign-in signs, every token check verifies)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def jwks(kid: str, private_pem: str) -> dict[str, Any]:
    """The pool's public keys as ``/.well-known/jwks.json`` serves them."""
    numbers = _private_key(private_pem).public_key().public_numbers()
    return {"keys": [{"alg": "RS256", "e": _b64(numbers.e), "kid": kid, "kty": "RSA", "n": _b64(numbers.n), "use": "sig"}]}


def openid_configuration(issuer: str, hosted: str | None = None) -> dict[str, Any]:
    """The pool's OpenID document; ``hosted`` is the base URL of its domain's
    OAuth endpoints (OIDC clients discover them here)."""
    base = hosted or issuer
    return {
        "issuer": issuer,
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "authorization_endpoint": f"{base}/oauth2/authorize",
        "token_endpoint": f"{base}/oauth2/token",
        "userinfo_endpoint": f"{base}/oauth2/userInfo",
        "response_types_supported": ["code", "token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "email", "phone", "profile"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
    }


def sign(claims: dict[str, Any], kid: str, private_pem: str) -> str:
    import jwt

    return jwt.encode(claims, _private_key(private_pem), algorithm="RS256", headers={"kid": kid})


def issue(pool: dict[str, Any], client_id: str, user: dict[str, Any], groups: list[str], *,
          auth_time: int, origin_jti: str, overrides: dict[str, Any] | None = None,
          suppress: list[str] | None = None, scope: str = USER_ADMIN_SCOPE,
          nonce: str | None = None, oauth: bool = False, access_overrides: dict[str, Any] | None = None,
          access_suppress: list[str] | None = None, access_seconds: int = ACCESS_TOKEN_SECONDS,
          id_seconds: int = ID_TOKEN_SECONDS) -> tuple[str, str]:  # fmt: skip
    """(id token, access token) for a user signing in to a client; ``oauth`` marks
    tokens from the hosted UI / token endpoint (the ID token gets ``at_hash``)."""
    now = int(time.time())
    issuer = pool["Issuer"]
    event_id = str(uuid.uuid4())
    attributes = {a["Name"]: a["Value"] for a in user.get("Attributes", [])}
    sub = attributes["sub"]
    id_claims: dict[str, Any] = {"sub": sub}
    if groups:
        id_claims["cognito:groups"] = groups
    for name, value in attributes.items():
        if name == "sub":
            continue
        id_claims[name] = value == "true" if name.endswith("_verified") else value
    id_claims.update({
        "iss": issuer, "cognito:username": user["Username"], "origin_jti": origin_jti, "aud": client_id,
        "event_id": event_id, "token_use": "id", "auth_time": auth_time, "exp": now + id_seconds,
        "iat": now, "jti": str(uuid.uuid4()),
    })  # fmt: skip
    if nonce:
        id_claims["nonce"] = nonce
    for name in suppress or []:
        id_claims.pop(name, None)
    id_claims.update(overrides or {})
    access: dict[str, Any] = {"sub": sub}
    if groups:
        access["cognito:groups"] = groups
    access.update({
        "iss": issuer, "client_id": client_id, "origin_jti": origin_jti, "event_id": event_id,
        "token_use": "access", "scope": scope, "auth_time": auth_time,
        "exp": now + access_seconds, "iat": now, "jti": str(uuid.uuid4()), "username": user["Username"],
    })  # fmt: skip
    if oauth:
        access["version"] = 2
    customize(access, access_overrides, access_suppress)
    access_token = sign(access, pool["Kid"], pool["PrivateKey"])
    if oauth:
        id_claims["at_hash"] = at_hash(access_token)
    return sign(id_claims, pool["Kid"], pool["PrivateKey"]), access_token


#: claims a pre token generation trigger cannot change in an access token
PROTECTED_ACCESS_CLAIMS = frozenset({"iss", "sub", "aud", "token_use", "exp", "iat", "auth_time", "jti", "origin_jti",
                                     "client_id", "username", "event_id", "scope", "version", "cognito:groups"})  # fmt: skip


def customize(claims: dict[str, Any], add: dict[str, Any] | None, suppress: list[str] | None) -> None:
    """Apply a V2/V3 trigger's ``claimsToAddOrOverride`` / ``claimsToSuppress``."""
    for name in suppress or []:
        if name not in PROTECTED_ACCESS_CLAIMS:
            claims.pop(name, None)
    for name, value in (add or {}).items():
        if name not in PROTECTED_ACCESS_CLAIMS:
            claims[name] = value


def at_hash(access_token: str) -> str:
    """OpenID Connect's ``at_hash``: the left half of the token's SHA-256, base64url."""
    digest = hashlib.sha256(access_token.encode()).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).decode().rstrip("=")


def client_credentials_token(pool: dict[str, Any], client_id: str, scope: str, add: dict[str, Any] | None = None,
                             suppress: list[str] | None = None, seconds: int = ACCESS_TOKEN_SECONDS) -> str:  # fmt: skip
    """A machine-to-machine access token: the client is the subject, no user."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": client_id, "token_use": "access", "scope": scope, "auth_time": now, "iss": pool["Issuer"],
              "exp": now + seconds, "iat": now, "version": 2, "jti": str(uuid.uuid4()), "client_id": client_id}  # fmt: skip
    customize(claims, add, suppress)
    return sign(claims, pool["Kid"], pool["PrivateKey"])


def unverified_claims(token: str) -> dict[str, Any] | None:
    import jwt

    try:
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
        return claims
    except jwt.PyJWTError:
        return None


def verify(token: str, pool: dict[str, Any]) -> dict[str, Any] | None:
    """Claims of a valid, unexpired token signed by the pool; else None."""
    import jwt

    try:
        claims: dict[str, Any] = jwt.decode(token, _private_key(pool["PrivateKey"]).public_key(), algorithms=["RS256"], issuer=pool["Issuer"],
                                            options={"verify_aud": False})  # fmt: skip
        return claims
    except jwt.PyJWTError:
        return None
