"""PKCE checks against RFC 7636's example, and the redirect URLs the hosted UI builds."""

from __future__ import annotations

from nubes.services.cognito_idp.hosted_ui import with_params
from nubes.services.cognito_idp.oauth import pkce_matches
from nubes.services.cognito_idp.tokens import at_hash

VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"


def test_s256_and_plain_per_rfc7636() -> None:
    assert pkce_matches("S256", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", VERIFIER)
    assert not pkce_matches("S256", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN", VERIFIER)
    assert not pkce_matches("S256", VERIFIER, VERIFIER)  # a plain challenge is not an S256 one
    assert pkce_matches("plain", VERIFIER, VERIFIER)
    assert not pkce_matches("plain", VERIFIER, VERIFIER[:-1])


def test_redirects_keep_the_apps_own_query_and_escape_values() -> None:
    assert with_params("https://app.test/cb", {"code": "a b", "state": "x&y"}) == "https://app.test/cb?code=a+b&state=x%26y"
    assert with_params("https://app.test/cb?tenant=1", {"code": "c"}) == "https://app.test/cb?tenant=1&code=c"
    assert with_params("https://app.test/cb#old", {"access_token": "t"}, fragment=True) == "https://app.test/cb#access_token=t"


def test_at_hash_is_the_left_half_of_sha256() -> None:
    # OpenID Connect Core's rule; 16 bytes → 22 base64url characters without padding
    assert len(at_hash("any.access.token")) == 22
    assert at_hash("a") != at_hash("b")
