"""User records: passwords (hash and SRP verifier), password policy, attributes,
ListUsers filters, confirmation codes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from typing import Any

from nubes.aws.errors import AwsError
from nubes.services.cognito_idp import srp

_SYMBOLS = set("^$*.[]{}()?-\"!@#%&/\\,><':;|_~`+= ")
CODE_SECONDS = 24 * 3600
STANDARD_ATTRIBUTES = {
    "address", "birthdate", "email", "email_verified", "family_name", "gender", "given_name", "locale",
    "middle_name", "name", "nickname", "phone_number", "phone_number_verified", "picture",
    "preferred_username", "profile", "sub", "updated_at", "website", "zoneinfo",
}  # fmt: skip


def check_password(policy: dict[str, Any], password: str) -> None:
    """AWS's InvalidPasswordException wording for each failed rule."""
    minimum = int(policy.get("MinimumLength", 8))
    problems = []
    if len(password) < minimum:
        problems.append("Password not long enough")
    if policy.get("RequireLowercase", True) and not re.search(r"[a-z]", password):
        problems.append("Password must have lowercase characters")
    if policy.get("RequireUppercase", True) and not re.search(r"[A-Z]", password):
        problems.append("Password must have uppercase characters")
    if policy.get("RequireNumbers", True) and not re.search(r"[0-9]", password):
        problems.append("Password must have numeric characters")
    if policy.get("RequireSymbols", True) and not any(c in _SYMBOLS for c in password):
        problems.append("Password must have symbol characters")
    if problems:
        raise AwsError("InvalidPasswordException", "Password did not conform with policy: " + problems[0], 400)


def set_password(user: dict[str, Any], pool_name: str, password: str) -> None:
    """Store a salted hash and the SRP verifier (never the password)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 60_000)
    user["PasswordHash"] = base64.b64encode(salt + digest).decode()
    user["SrpSalt"], user["SrpVerifier"] = srp.verifier(pool_name, user["Username"], password)
    user["PasswordChanged"] = time.time()


def password_matches(user: dict[str, Any], password: str) -> bool:
    stored = user.get("PasswordHash")
    if not stored:
        return False
    raw = base64.b64decode(stored)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), raw[:16], 60_000)
    return hmac.compare_digest(digest, raw[16:])


def attributes(user: dict[str, Any]) -> dict[str, str]:
    return {a["Name"]: a["Value"] for a in user.get("Attributes", [])}


def set_attributes(user: dict[str, Any], updates: list[dict[str, str]], schema: set[str]) -> None:
    """Apply attribute updates; unknown attributes are InvalidParameterException."""
    current = attributes(user)
    for item in updates:
        name = item["Name"]
        if name not in STANDARD_ATTRIBUTES and name not in schema:
            raise AwsError("InvalidParameterException", "Attribute does not exist in the schema.\n", 400)
        if name == "sub" and "sub" in current:
            raise AwsError("InvalidParameterException", "Cannot modify an immutable attribute: sub", 400)
        if name == "email" and current.get("email") != item.get("Value"):
            current["email_verified"] = "false"
        current[name] = item.get("Value", "")
    user["Attributes"] = [{"Name": k, "Value": v} for k, v in current.items()]


def new_code(user: dict[str, Any], purpose: str) -> str:
    code = f"{secrets.randbelow(1_000_000):06d}"
    user.setdefault("Codes", {})[purpose] = {"Code": code, "Expires": time.time() + CODE_SECONDS}
    return code


def use_code(user: dict[str, Any], purpose: str, code: str) -> None:
    entry = user.get("Codes", {}).get(purpose)
    if entry is None or not hmac.compare_digest(entry["Code"], code):
        raise AwsError("CodeMismatchException", "Invalid verification code provided, please try again.", 400)
    if entry["Expires"] < time.time():
        raise AwsError("ExpiredCodeException", "Invalid code provided, please request a code again.", 400)
    del user["Codes"][purpose]


def mask(value: str) -> str:
    """``alice@example.com`` → ``a***@e***`` as CodeDeliveryDetails shows it."""
    if "@" in value:
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain[:1]}***"
    return "+*******" + value[-4:]


def secret_hash(client_secret: str, username: str, client_id: str) -> str:
    digest = hmac.new(client_secret.encode(), (username + client_id).encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


_FILTER = re.compile(r'^\s*"?([\w:]+)"?\s*(=|\^=)\s*"(.*)"\s*$')


def filter_matcher(expression: str | None) -> Any:
    """ListUsers ``Filter``: ``attr = "v"`` or ``attr ^= "prefix"``."""
    if not expression:
        return lambda user: True
    m = _FILTER.match(expression)
    if m is None:
        raise AwsError("InvalidParameterException", "Error while parsing filter.", 400)
    name, op, value = m.groups()

    def matches(user: dict[str, Any]) -> bool:
        if name == "username":
            actual: str | None = user["Username"]
        elif name in ("status", "cognito:user_status"):
            actual = user["UserStatus"]
        else:
            actual = attributes(user).get(name)
        if actual is None:
            return False
        return actual == value if op == "=" else actual.startswith(value)

    return matches
