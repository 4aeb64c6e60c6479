"""Cognito user pools: pools, app clients, users, groups (sign-in flows are in
``auth``), JWKS and OpenID documents."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import orjson

from nubes.app import App
from nubes.aws.errors import AwsError
from nubes.aws.protocol.types import WireResponse
from nubes.services.base import HttpRequest, RequestContext
from nubes.services.cognito_idp import tokens, users
from nubes.services.cognito_idp.hosted_accounts import HostedAccounts
from nubes.services.cognito_idp.mfa import mfa_settings
from nubes.services.cognito_idp.store import (
    CLIENTS,
    DOMAINS,
    GROUPS,
    MEMBERS,
    POOLS,
    RESOURCE_SERVERS,
    USER_GROUPS,
    USERS,
    CognitoStore,
    loads,
    pool_not_found,
    random_id,
    user_not_found,
)
from nubes.storage.base import Txn
from nubes.storage.keys import pack, unpack

_PRIVATE = ("Kid", "PrivateKey", "Issuer")
_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _page(items: list[Any], params: dict[str, Any], key: str, size_key: str = "MaxResults", token_key: str = "NextToken") -> dict[str, Any]:
    size = int(params.get(size_key) or 60)
    start = int(params[token_key]) if str(params.get(token_key, "")).isdigit() else 0
    out: dict[str, Any] = {key: items[start : start + size]}
    if start + size < len(items):
        out[token_key if token_key != "PaginationToken" else "PaginationToken"] = str(start + size)
    return out


class CognitoProvider(HostedAccounts):
    """All of ``cognito-idp`` that nubes implements."""

    def __init__(self, app: App) -> None:
        super().__init__(app)
        self.db = CognitoStore(app)

    # -- pools --------------------------------------------------------------------

    async def create_user_pool(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        self._check_pool_mfa(params)
        pool_id = f"{ctx.region}_{random_id(9, _ALNUM)}"
        kid, pem = tokens.new_signing_key()
        now = time.time()
        policy = {"MinimumLength": 8, "RequireUppercase": True, "RequireLowercase": True, "RequireNumbers": True,
                  "RequireSymbols": True, "TemporaryPasswordValidityDays": 7}  # fmt: skip
        policy.update((params.get("Policies") or {}).get("PasswordPolicy") or {})
        pool = {
            **{k: v for k, v in params.items() if k not in ("PoolName", "Policies", "UserPoolTags")},
            "Id": pool_id, "Name": params["PoolName"], "Arn": ctx.arn("cognito-idp", f"userpool/{pool_id}"),
            "Policies": {"PasswordPolicy": policy}, "CreationDate": now, "LastModifiedDate": now,
            "LambdaConfig": params.get("LambdaConfig") or {}, "MfaConfiguration": params.get("MfaConfiguration") or "OFF",
            "UserPoolTags": params.get("UserPoolTags") or {}, "Status": "Enabled",
            "Kid": kid, "PrivateKey": pem, "Issuer": f"{self.app.settings.endpoint}/{pool_id}",
        }  # fmt: skip
        await self.app.store.write(lambda txn: txn.put(POOLS, pack(pool_id), orjson.dumps(pool)))
        return {"UserPool": await self._describe_pool(pool)}

    async def _describe_pool(self, pool: dict[str, Any]) -> dict[str, Any]:
        count = await self.app.store.read(lambda txn: txn.count(USERS, prefix=pack(pool["Id"])))
        out = {k: v for k, v in pool.items() if k not in _PRIVATE}
        out["EstimatedNumberOfUsers"] = count
        return out

    async def describe_user_pool(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return {"UserPool": await self._describe_pool(await self.db.pool(params["UserPoolId"]))}

    async def update_user_pool(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        pool = await self.db.pool(params["UserPoolId"])
        for key, value in params.items():
            if key == "Policies":
                pool["Policies"]["PasswordPolicy"].update(value.get("PasswordPolicy") or {})
            elif key != "UserPoolId":
                pool[key] = value
        pool["LastModifiedDate"] = time.time()
        if "MfaConfiguration" in params:
            self._check_pool_mfa(pool)
        await self.app.store.write(lambda txn: txn.put(POOLS, pack(pool["Id"]), orjson.dumps(pool)))
        return {}

    async def list_user_pools(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        rows = await self.app.store.read(lambda txn: txn.scan(POOLS))
        pools = [loads(v) for _, v in rows]
        items = [{"Id": p["Id"], "Name": p["Name"], "LambdaConfig": p.get("LambdaConfig") or {}, "Status": "Enabled",
                  "LastModifiedDate": p["LastModifiedDate"], "CreationDate": p["CreationDate"]}
                 for p in pools if p["Id"].startswith(ctx.region + "_")]  # fmt: skip
        return _page(items, params, "UserPools")

    async def delete_user_pool(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        pool_id = params["UserPoolId"]

        def delete(txn: Txn) -> None:
            if not txn.delete(POOLS, pack(pool_id)):
                raise pool_not_found(pool_id)
            for table in (USERS, GROUPS, MEMBERS, USER_GROUPS, RESOURCE_SERVERS):
                txn.delete_prefix(table, pack(pool_id))
            for table in (CLIENTS, DOMAINS):
                for key, raw in txn.scan(table):
                    if loads(raw)["UserPoolId"] == pool_id:
                        txn.delete(table, key)

        await self.app.store.write(delete)
        return {}

    # -- clients --------------------------------------------------------------------

    async def create_user_pool_client(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        pool = await self.db.pool(params["UserPoolId"])
        now = time.time()
        client = {**params, "ClientId": random_id(26), "CreationDate": now, "LastModifiedDate": now,
                  "UserPoolId": pool["Id"]}  # fmt: skip
        client.pop("GenerateSecret", None)
        if params.get("GenerateSecret"):
            client["ClientSecret"] = random_id(51)
        client.setdefault("ExplicitAuthFlows", ["ALLOW_REFRESH_TOKEN_AUTH", "ALLOW_USER_SRP_AUTH", "ALLOW_CUSTOM_AUTH"])
        client.setdefault("RefreshTokenValidity", 30)
        await self._check_oauth_client(client)
        await self.app.store.write(lambda txn: txn.put(CLIENTS, pack(client["ClientId"]), orjson.dumps(client)))
        return {"UserPoolClient": client}

    async def describe_user_pool_client(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        client = await self.db.client(params["ClientId"])
        if client["UserPoolId"] != params["UserPoolId"]:
            raise AwsError("ResourceNotFoundException", f"User pool client {params['ClientId']} does not exist.", 400)
        return {"UserPoolClient": client}

    async def update_user_pool_client(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        client = (await self.describe_user_pool_client(ctx, params))["UserPoolClient"]
        client.update({k: v for k, v in params.items() if k not in ("UserPoolId", "ClientId")})
        client["LastModifiedDate"] = time.time()
        await self._check_oauth_client(client)
        await self.app.store.write(lambda txn: txn.put(CLIENTS, pack(client["ClientId"]), orjson.dumps(client)))
        return {"UserPoolClient": client}

    async def list_user_pool_clients(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self.db.pool(params["UserPoolId"])
        rows = await self.app.store.read(lambda txn: txn.scan(CLIENTS))
        items = [{"ClientId": c["ClientId"], "UserPoolId": c["UserPoolId"], "ClientName": c.get("ClientName")}
                 for c in (loads(v) for _, v in rows) if c["UserPoolId"] == params["UserPoolId"]]  # fmt: skip
        return _page(items, params, "UserPoolClients")

    async def delete_user_pool_client(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self.describe_user_pool_client(ctx, params)
        await self.app.store.write(lambda txn: txn.delete(CLIENTS, pack(params["ClientId"])))
        return {}

    # -- users (admin) --------------------------------------------------------------

    def _schema(self, pool: dict[str, Any]) -> set[str]:
        names = {a["Name"] for a in pool.get("Schema") or []}
        return names | {n if n.startswith("custom:") else f"custom:{n}" for n in names}

    def _public_user(self, user: dict[str, Any], *, admin: bool = True) -> dict[str, Any]:
        out = {"Username": user["Username"], "UserCreateDate": user["UserCreateDate"],
               "UserLastModifiedDate": user["UserLastModifiedDate"], "Enabled": user.get("Enabled", True),
               "UserStatus": user["UserStatus"]}  # fmt: skip
        out["UserAttributes" if admin else "Attributes"] = user.get("Attributes", [])
        return out

    async def admin_create_user(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        pool = await self.db.pool(params["UserPoolId"])
        username = params["Username"]
        temporary = params.get("TemporaryPassword") or f"Tmp{random_id(8, _ALNUM)}1!"
        users.check_password(pool["Policies"]["PasswordPolicy"], temporary)
        now = time.time()
        user: dict[str, Any] = {"Username": self._username_for(pool, username), "Attributes": [{"Name": "sub", "Value": str(uuid.uuid4())}],
                                "UserCreateDate": now, "UserLastModifiedDate": now, "Enabled": True,
                                "UserStatus": "FORCE_CHANGE_PASSWORD"}  # fmt: skip
        user_attrs = list(params.get("UserAttributes") or [])
        if user["Username"] != username and not any(a["Name"] == "email" for a in user_attrs) and "@" in username:
            user_attrs.append({"Name": "email", "Value": username})
        users.set_attributes(user, user_attrs, self._schema(pool))
        users.set_password(user, pool["Id"].split("_", 1)[1], temporary)
        await self._trigger(pool, "PreSignUp_AdminCreateUser", user, params.get("ClientMetadata"),
                            {"validationData": params.get("ValidationData")})  # fmt: skip

        def create(txn: Txn) -> None:
            if self.db.find_user(txn, pool, username) is not None and params.get("MessageAction") != "RESEND":
                raise AwsError("UsernameExistsException", "User account already exists", 400)
            self.db.put_user(txn, pool, user)

        await self.app.store.write(create)
        if params.get("MessageAction") != "SUPPRESS":
            email = users.attributes(user).get("email")
            if email:
                await self._send_code_email(ctx, pool, user, "CustomMessage_AdminCreateUser", temporary,
                                            subject="Your temporary password",
                                            body=f"Your username is {username} and temporary password is {temporary}.")  # fmt: skip
        return {"User": self._public_user(user, admin=False)}

    def _username_for(self, pool: dict[str, Any], given: str) -> str:
        """Pools that sign in with email/phone name users by a fresh sub-like id."""
        if pool.get("UsernameAttributes") and ("@" in given or given.startswith("+")):
            return str(uuid.uuid4())
        return given

    async def admin_get_user(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        pool = await self.db.pool(params["UserPoolId"])
        user = await self.db.user(pool, params["Username"])
        out = self._public_user(user)
        out["MFAOptions"] = []
        out.update(mfa_settings(user))
        return out

    async def admin_delete_user(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        pool = await self.db.pool(params["UserPoolId"])

        def delete(txn: Txn) -> None:
            user = self.db.find_user(txn, pool, params["Username"])
            if user is None:
                raise user_not_found()
            self.db.delete_user(txn, pool, user)

        await self.app.store.write(delete)
        return {}

    async def _admin_change(self, params: dict[str, Any], change: Any) -> None:
        pool = await self.db.pool(params["UserPoolId"])

        def update(txn: Txn) -> None:
            user = self.db.find_user(txn, pool, params["Username"])
            if user is None:
                raise user_not_found()
            old = orjson.loads(orjson.dumps(user))
            change(pool, user)
            self.db.put_user(txn, pool, user, old)

        await self.app.store.write(update)

    async def admin_confirm_sign_up(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self._admin_change(params, lambda pool, user: user.update(UserStatus="CONFIRMED"))
        return {}

    async def admin_set_user_password(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        pool = await self.db.pool(params["UserPoolId"])
        users.check_password(pool["Policies"]["PasswordPolicy"], params["Password"])

        def change(pool: dict[str, Any], user: dict[str, Any]) -> None:
            users.set_password(user, pool["Id"].split("_", 1)[1], params["Password"])
            user["UserStatus"] = "CONFIRMED" if params.get("Permanent") else "FORCE_CHANGE_PASSWORD"

        await self._admin_change(params, change)
        return {}

    async def admin_update_user_attributes(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self._admin_change(params, lambda pool, user: users.set_attributes(user, params["UserAttributes"], self._schema(pool)))
        return {}

    async def admin_delete_user_attributes(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        names = set(params["UserAttributeNames"])
        await self._admin_change(params, lambda pool, user: user.update(Attributes=[a for a in user["Attributes"] if a["Name"] not in names]))
        return {}

    async def admin_disable_user(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self._admin_change(params, lambda pool, user: user.update(Enabled=False))
        return {}

    async def admin_enable_user(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self._admin_change(params, lambda pool, user: user.update(Enabled=True))
        return {}

    async def admin_reset_user_password(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self._admin_change(params, lambda pool, user: user.update(UserStatus="RESET_REQUIRED"))
        return {}

    async def admin_user_global_sign_out(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self._admin_change(params, lambda pool, user: user.update(SignedOutAt=time.time()))
        return {}

    async def list_users(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        pool = await self.db.pool(params["UserPoolId"])
        matches = users.filter_matcher(params.get("Filter"))
        rows = await self.app.store.read(lambda txn: txn.scan(USERS, prefix=pack(pool["Id"])))
        wanted = params.get("AttributesToGet")
        items = []
        for _, raw in rows:
            user = loads(raw)
            if not matches(user):
                continue
            item = self._public_user(user, admin=False)
            if wanted is not None:
                item["Attributes"] = [a for a in item["Attributes"] if a["Name"] in wanted]
            items.append(item)
        return _page(items, params, "Users", "Limit", "PaginationToken")

    # -- groups ---------------------------------------------------------------------

    async def create_group(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        pool = await self.db.pool(params["UserPoolId"])
        now = time.time()
        group = {**params, "CreationDate": now, "LastModifiedDate": now}

        def create(txn: Txn) -> None:
            if not txn.insert(GROUPS, pack(pool["Id"], params["GroupName"]), orjson.dumps(group)):
                raise AwsError("GroupExistsException", "A group with the name already exists.", 400)

        await self.app.store.write(create)
        return {"Group": group}

    async def _group(self, pool_id: str, name: str) -> dict[str, Any]:
        raw = await self.app.store.read(lambda txn: txn.get(GROUPS, pack(pool_id, name)))
        if raw is None:
            raise AwsError("ResourceNotFoundException", "Group not found.", 400)
        return loads(raw)

    async def get_group(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self.db.pool(params["UserPoolId"])
        return {"Group": await self._group(params["UserPoolId"], params["GroupName"])}

    async def list_groups(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self.db.pool(params["UserPoolId"])
        rows = await self.app.store.read(lambda txn: txn.scan(GROUPS, prefix=pack(params["UserPoolId"])))
        return _page([loads(v) for _, v in rows], params, "Groups", "Limit")

    async def update_group(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        group = await self._group(params["UserPoolId"], params["GroupName"])
        group.update({k: v for k, v in params.items() if v is not None})
        group["LastModifiedDate"] = time.time()
        await self.app.store.write(lambda txn: txn.put(GROUPS, pack(params["UserPoolId"], params["GroupName"]), orjson.dumps(group)))
        return {"Group": group}

    async def delete_group(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        pool_id, name = params["UserPoolId"], params["GroupName"]
        await self._group(pool_id, name)

        def delete(txn: Txn) -> None:
            txn.delete(GROUPS, pack(pool_id, name))
            for key, _ in txn.scan(MEMBERS, prefix=pack(pool_id, name)):
                username = key[len(pack(pool_id, name)):]
                txn.delete(MEMBERS, key)
                txn.delete(USER_GROUPS, pack(pool_id) + username + pack(name))

        await self.app.store.write(delete)
        return {}

    async def admin_add_user_to_group(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        pool = await self.db.pool(params["UserPoolId"])
        await self._group(pool["Id"], params["GroupName"])
        user = await self.db.user(pool, params["Username"])

        def add(txn: Txn) -> None:
            txn.put(MEMBERS, pack(pool["Id"], params["GroupName"], user["Username"]), b"")
            txn.put(USER_GROUPS, pack(pool["Id"], user["Username"], params["GroupName"]), b"")

        await self.app.store.write(add)
        return {}

    async def admin_remove_user_from_group(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        pool = await self.db.pool(params["UserPoolId"])
        user = await self.db.user(pool, params["Username"])

        def remove(txn: Txn) -> None:
            txn.delete(MEMBERS, pack(pool["Id"], params["GroupName"], user["Username"]))
            txn.delete(USER_GROUPS, pack(pool["Id"], user["Username"], params["GroupName"]))

        await self.app.store.write(remove)
        return {}

    async def admin_list_groups_for_user(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        pool = await self.db.pool(params["UserPoolId"])
        user = await self.db.user(pool, params["Username"])
        names = await self.app.store.read(lambda txn: self.db.groups_of(txn, pool["Id"], user["Username"]))
        return _page([await self._group(pool["Id"], n) for n in names], params, "Groups", "Limit")

    async def list_users_in_group(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        pool = await self.db.pool(params["UserPoolId"])
        prefix = pack(pool["Id"], params["GroupName"])
        rows = await self.app.store.read(lambda txn: txn.scan(MEMBERS, prefix=prefix))
        found = []
        for key, _ in rows:
            username = str(unpack(key)[-1])
            found.append(self._public_user(await self.db.user(pool, username), admin=False))
        return _page(found, params, "Users", "Limit")

    # -- JWKS / OpenID ----------------------------------------------------------------

    async def http_well_known(self, request: HttpRequest, match: re.Match[str]) -> WireResponse:
        """``/{pool}/.well-known/jwks.json`` and ``openid-configuration``."""
        try:
            pool = await self.db.pool(match.group("pool"))
        except AwsError:
            return WireResponse(404, {"Content-Type": "application/json"}, b'{"message":"User pool not found"}')
        if match.group("doc") == "jwks.json":
            doc = tokens.jwks(pool["Kid"], pool["PrivateKey"])
        else:
            hosted = f"{self.app.settings.endpoint}/_nubes/cognito/{pool['Domain']}" if pool.get("Domain") else None
            doc = tokens.openid_configuration(pool["Issuer"], hosted)
        return WireResponse(200, {"Content-Type": "application/json"}, orjson.dumps(doc))
