"""Where Cognito keeps pools, clients, users, groups and sessions, and the
lookups the operations share."""

from __future__ import annotations

import secrets
import string
import time
from typing import Any

import orjson

from nubes.app import App
from nubes.aws.errors import AwsError
from nubes.storage.base import Txn
from nubes.storage.keys import pack

POOLS = "cognito.pools"
CLIENTS = "cognito.clients"
USERS = "cognito.users"
#: (pool, attribute, value) → username, for sign-in by email/phone
ALIASES = "cognito.aliases"
GROUPS = "cognito.groups"
#: (pool, group, username) and (pool, username, group)
MEMBERS = "cognito.members"
USER_GROUPS = "cognito.user_groups"
REFRESH = "cognito.refresh"
#: challenge sessions (SRP, NEW_PASSWORD_REQUIRED, MFA, custom challenges)
SESSIONS = "cognito.sessions"
#: user pool domain prefix → {Domain, UserPoolId, ...}
DOMAINS = "cognito.domains"
#: (pool, identifier) → resource server
RESOURCE_SERVERS = "cognito.resource_servers"
#: authorization codes the hosted UI hands out (single use)
AUTH_CODES = "cognito.auth_codes"
#: hosted UI sign-in sessions (the ``cognito`` cookie)
LOGIN_SESSIONS = "cognito.login_sessions"


def random_id(length: int, alphabet: str = string.ascii_lowercase + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def loads(raw: bytes) -> dict[str, Any]:
    value: dict[str, Any] = orjson.loads(raw)
    return value


def pool_not_found(pool_id: str) -> AwsError:
    return AwsError("ResourceNotFoundException", f"User pool {pool_id} does not exist.", 400)


def user_not_found() -> AwsError:
    return AwsError("UserNotFoundException", "User does not exist.", 400)


class CognitoStore:
    """Typed access to the tables above."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def pool(self, pool_id: str) -> dict[str, Any]:
        raw = await self.app.store.read(lambda txn: txn.get(POOLS, pack(pool_id)))
        if raw is None:
            raise pool_not_found(pool_id)
        return loads(raw)

    async def client(self, client_id: str) -> dict[str, Any]:
        raw = await self.app.store.read(lambda txn: txn.get(CLIENTS, pack(client_id)))
        if raw is None:
            raise AwsError("ResourceNotFoundException", f"User pool client {client_id} does not exist.", 400)
        return loads(raw)

    @staticmethod
    def find_user(txn: Txn, pool: dict[str, Any], name: str) -> dict[str, Any] | None:
        """A user by username, or by email/phone when the pool signs in with them."""
        raw = txn.get(USERS, pack(pool["Id"], name))
        if raw is not None:
            return loads(raw)
        for attribute in set(pool.get("UsernameAttributes") or []) | set(pool.get("AliasAttributes") or []):
            attr = "email" if attribute == "email" else "phone_number" if attribute == "phone_number" else attribute
            target = txn.get(ALIASES, pack(pool["Id"], attr, name))
            if target is not None:
                raw = txn.get(USERS, pack(pool["Id"], target.decode()))
                if raw is not None:
                    return loads(raw)
        return None

    async def user(self, pool: dict[str, Any], name: str) -> dict[str, Any]:
        user = await self.app.store.read(lambda txn: self.find_user(txn, pool, name))
        if user is None:
            raise user_not_found()
        return user

    @staticmethod
    def put_user(txn: Txn, pool: dict[str, Any], user: dict[str, Any], old: dict[str, Any] | None = None) -> None:
        """Save a user and keep its alias entries in step."""
        user["UserLastModifiedDate"] = time.time()
        txn.put(USERS, pack(pool["Id"], user["Username"]), orjson.dumps(user))
        aliases = set(pool.get("UsernameAttributes") or []) | set(pool.get("AliasAttributes") or [])
        new_attrs = {a["Name"]: a["Value"] for a in user.get("Attributes", [])}
        old_attrs = {a["Name"]: a["Value"] for a in (old or {}).get("Attributes", [])}
        for attr in aliases:
            if old_attrs.get(attr) and old_attrs.get(attr) != new_attrs.get(attr):
                txn.delete(ALIASES, pack(pool["Id"], attr, old_attrs[attr]))
            if new_attrs.get(attr):
                holder = txn.get(ALIASES, pack(pool["Id"], attr, new_attrs[attr]))
                if holder is not None and holder.decode() != user["Username"]:
                    raise AwsError("AliasExistsException" if pool.get("AliasAttributes") else "UsernameExistsException",
                                   "An account with the given email already exists.", 400)  # fmt: skip
                txn.put(ALIASES, pack(pool["Id"], attr, new_attrs[attr]), user["Username"].encode())

    @staticmethod
    def delete_user(txn: Txn, pool: dict[str, Any], user: dict[str, Any]) -> None:
        pool_id = pool["Id"]
        txn.delete(USERS, pack(pool_id, user["Username"]))
        for item in user.get("Attributes", []):
            holder = txn.get(ALIASES, pack(pool_id, item["Name"], item["Value"]))
            if holder is not None and holder.decode() == user["Username"]:
                txn.delete(ALIASES, pack(pool_id, item["Name"], item["Value"]))
        for key, _ in txn.scan(USER_GROUPS, prefix=pack(pool_id, user["Username"])):
            group = key[len(pack(pool_id, user["Username"])):]
            txn.delete(USER_GROUPS, key)
            txn.delete(MEMBERS, pack(pool_id) + group + pack(user["Username"]))

    @staticmethod
    def groups_of(txn: Txn, pool_id: str, username: str) -> list[str]:
        """Group names by precedence (lowest first), as cognito:groups lists them."""
        found = []
        prefix = pack(pool_id, username)
        for key, _ in txn.scan(USER_GROUPS, prefix=prefix):
            raw = txn.get(GROUPS, pack(pool_id) + key[len(prefix):])
            if raw is not None:
                group = loads(raw)
                found.append((group.get("Precedence", 1 << 30), group["GroupName"]))
        return [name for _, name in sorted(found)]
