"""TOTP codes against RFC 6238's test vectors, and the window and replay rules
nubes applies when a code is checked."""

from __future__ import annotations

import base64

import pytest

from nubes.services.cognito_idp import mfa

#: RFC 6238 appendix B (SHA-1, key "12345678901234567890"): time → 8-digit code;
#: a 6-digit code is the same value modulo 10**6
VECTORS = [(59, "94287082"), (1111111109, "07081804"), (1111111111, "14050471"),
           (1234567890, "89005924"), (2000000000, "69279037"), (20000000000, "65353130")]  # fmt: skip
SECRET = base64.b32encode(b"12345678901234567890").decode()


@pytest.mark.parametrize(("when", "code"), VECTORS)
def test_rfc6238_vectors(when: int, code: str) -> None:
    assert mfa.totp(SECRET, when // 30) == code[-6:]


def test_a_code_is_good_for_one_step_either_way_and_once() -> None:
    now = 1111111111.0
    step = int(now // 30)
    for offset in (-1, 0, 1):
        assert mfa.matching_step(SECRET, mfa.totp(SECRET, step + offset), now=now) == step + offset
    assert mfa.matching_step(SECRET, mfa.totp(SECRET, step + 2), now=now) is None
    assert mfa.matching_step(SECRET, mfa.totp(SECRET, step - 2), now=now) is None
    # a code already used (its step is not after the last used one) is refused
    assert mfa.matching_step(SECRET, mfa.totp(SECRET, step), after=step, now=now) is None
    assert mfa.matching_step(SECRET, mfa.totp(SECRET, step + 1), after=step, now=now) == step + 1


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "12 456"])
def test_malformed_codes_never_match(code: str) -> None:
    assert mfa.matching_step(SECRET, code, now=59.0) is None


def test_new_secrets_are_base32_of_32_bytes() -> None:
    secret = mfa.new_secret()
    assert len(base64.b32decode(secret + "=" * (-len(secret) % 8))) == 32
    assert secret != mfa.new_secret()
