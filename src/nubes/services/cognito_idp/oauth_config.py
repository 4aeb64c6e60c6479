"""What the OAuth 2.0 side of a user pool is configured with: its domain (where the
hosted UI and ``/oauth2/*`` are served), resource servers with custom scopes, and
the checks an app client's OAuth settings get."""

from __future__ import annotations

import re
from typing import Any

import orjson

from nubes.aws.errors import AwsError
from nubes.services.base import RequestContext
from nubes.services.cognito_idp.custom_auth import CustomAuthFlows
from nubes.services.cognito_idp.store import DOMAINS, POOLS, RESOURCE_SERVERS, loads, pool_not_found
from nubes.storage.base import Txn
from nubes.storage.keys import pack

#: scopes every pool knows; custom scopes are ``{resource server}/{scope}``
STANDARD_SCOPES = frozenset({"openid", "email", "phone", "profile", "aws.cognito.signin.user.admin"})
OAUTH_FLOWS = frozenset({"code", "implicit", "client_credentials"})
_PREFIX = re.compile(r"^[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?$")
_CUSTOM = re.compile(r"^[a-z0-9](?:[a-z0-9\-.]{0,251}[a-z0-9])?$")


def custom_scopes(servers: list[dict[str, Any]]) -> set[str]:
    """``identifier/scope`` for every scope of the given resource servers."""
    return {f"{s['Identifier']}/{scope['ScopeName']}" for s in servers for scope in s.get("Scopes") or []}


class OAuthConfig(CustomAuthFlows):
    """Domains, resource servers and app-client OAuth checks."""

    # -- domains ------------------------------------------------------------------------

    def _domain_record(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        domain = params["Domain"]
        custom = params.get("CustomDomainConfig") or None
        if not (_CUSTOM if custom else _PREFIX).match(domain) or (not custom and re.search("aws|amazon|cognito", domain)):
            raise AwsError("InvalidParameterException", f"1 validation error detected: Value '{domain}' at 'domain' failed to satisfy "
                           "constraint: Member must satisfy regular expression pattern: ^[a-z0-9](?:[a-z0-9\\-]{0,61}[a-z0-9])?$", 400)  # fmt: skip
        record: dict[str, Any] = {
            "UserPoolId": params["UserPoolId"], "AWSAccountId": ctx.account_id, "Domain": domain,
            "S3Bucket": "aws-cognito-prod-nubes-assets", "CloudFrontDistribution": f"{domain}.auth.localhost" if not custom else domain,
            "Version": "1", "Status": "ACTIVE", "ManagedLoginVersion": params.get("ManagedLoginVersion") or 1,
            "Region": ctx.region,
        }  # fmt: skip
        if custom:
            record["CustomDomainConfig"] = custom
        return record

    async def create_user_pool_domain(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        record = self._domain_record(ctx, params)
        pool_id = params["UserPoolId"]
        field = "CustomDomain" if record.get("CustomDomainConfig") else "Domain"

        def create(txn: Txn) -> None:
            raw = txn.get(POOLS, pack(pool_id))
            if raw is None:
                raise pool_not_found(pool_id)
            pool = loads(raw)
            if pool.get(field):
                raise AwsError("InvalidParameterException", "User pool already has a domain configured.", 400)
            if not txn.insert(DOMAINS, pack(record["Domain"]), orjson.dumps(record)):
                raise AwsError("InvalidParameterException", "Domain already associated with another user pool.", 400)
            pool[field] = record["Domain"]
            txn.put(POOLS, pack(pool_id), orjson.dumps(pool))

        await self.app.store.write(create)
        out: dict[str, Any] = {"ManagedLoginVersion": record["ManagedLoginVersion"]}
        if record.get("CustomDomainConfig"):
            out["CloudFrontDomain"] = record["CloudFrontDistribution"]
        return out

    async def domain(self, name: str) -> dict[str, Any] | None:
        raw = await self.app.store.read(lambda txn: txn.get(DOMAINS, pack(name)))
        return loads(raw) if raw is not None else None

    async def describe_user_pool_domain(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        record = await self.domain(params["Domain"])
        if record is None:  # AWS answers an unknown domain with an empty description
            return {"DomainDescription": {}}
        return {"DomainDescription": {k: v for k, v in record.items() if k != "Region"}}

    async def update_user_pool_domain(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        record = await self.domain(params["Domain"])
        if record is None or record["UserPoolId"] != params["UserPoolId"]:
            raise AwsError("ResourceNotFoundException", f"Domain {params['Domain']} does not exist in user pool {params['UserPoolId']}.", 400)
        if params.get("ManagedLoginVersion") is not None:
            record["ManagedLoginVersion"] = params["ManagedLoginVersion"]
        if params.get("CustomDomainConfig") and record.get("CustomDomainConfig"):
            record["CustomDomainConfig"] = params["CustomDomainConfig"]
        await self.app.store.write(lambda txn: txn.put(DOMAINS, pack(record["Domain"]), orjson.dumps(record)))
        out: dict[str, Any] = {"ManagedLoginVersion": record["ManagedLoginVersion"]}
        if record.get("CustomDomainConfig"):
            out["CloudFrontDomain"] = record["CloudFrontDistribution"]
        return out

    async def delete_user_pool_domain(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name, pool_id = params["Domain"], params["UserPoolId"]

        def delete(txn: Txn) -> None:
            raw = txn.get(DOMAINS, pack(name))
            if raw is None or loads(raw)["UserPoolId"] != pool_id:
                raise AwsError("InvalidParameterException", "No such domain or user pool exists.", 400)
            txn.delete(DOMAINS, pack(name))
            pool_raw = txn.get(POOLS, pack(pool_id))
            if pool_raw is not None:
                pool = loads(pool_raw)
                for field in ("Domain", "CustomDomain"):
                    if pool.get(field) == name:
                        del pool[field]
                txn.put(POOLS, pack(pool_id), orjson.dumps(pool))

        await self.app.store.write(delete)
        return {}

    # -- resource servers ---------------------------------------------------------------------

    @staticmethod
    def _server(params: dict[str, Any]) -> dict[str, Any]:
        scopes = params.get("Scopes") or []
        names = [s.get("ScopeName") or "" for s in scopes]
        for name in names:
            if not re.fullmatch(r"[\x21\x23-\x2E\x30-\x5B\x5D-\x7E]+", name):
                raise AwsError("InvalidParameterException", f"1 validation error detected: Value '{name}' at 'scopes.member.scopeName' failed "
                               "to satisfy constraint: Member must satisfy regular expression pattern: [\\x21\\x23-\\x2E\\x30-\\x5B\\x5D-\\x7E]+", 400)  # fmt: skip
        if len(set(names)) != len(names):
            raise AwsError("InvalidParameterException", "Duplicate scopes are not allowed.", 400)
        return {"UserPoolId": params["UserPoolId"], "Identifier": params["Identifier"], "Name": params["Name"],
                "Scopes": [{"ScopeName": s.get("ScopeName"), "ScopeDescription": s.get("ScopeDescription")} for s in scopes]}  # fmt: skip

    async def create_resource_server(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self.db.pool(params["UserPoolId"])
        server = self._server(params)

        def create(txn: Txn) -> None:
            if not txn.insert(RESOURCE_SERVERS, pack(server["UserPoolId"], server["Identifier"]), orjson.dumps(server)):
                raise AwsError("InvalidParameterException", f"{server['Identifier']} already exists in user pool {server['UserPoolId']}.", 400)

        await self.app.store.write(create)
        return {"ResourceServer": server}

    async def _resource_server(self, pool_id: str, identifier: str) -> dict[str, Any]:
        await self.db.pool(pool_id)
        raw = await self.app.store.read(lambda txn: txn.get(RESOURCE_SERVERS, pack(pool_id, identifier)))
        if raw is None:
            raise AwsError("ResourceNotFoundException", f"Resource server {identifier} does not exist.", 400)
        return loads(raw)

    async def resource_servers(self, pool_id: str) -> list[dict[str, Any]]:
        rows = await self.app.store.read(lambda txn: txn.scan(RESOURCE_SERVERS, prefix=pack(pool_id)))
        return [loads(v) for _, v in rows]

    async def describe_resource_server(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return {"ResourceServer": await self._resource_server(params["UserPoolId"], params["Identifier"])}

    async def list_resource_servers(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self.db.pool(params["UserPoolId"])
        servers = await self.resource_servers(params["UserPoolId"])
        size = max(1, min(int(params.get("MaxResults") or 50), 50))
        token = str(params.get("NextToken") or "")
        start = int(token) if token.isdigit() and int(token) <= len(servers) else 0
        out: dict[str, Any] = {"ResourceServers": servers[start : start + size]}
        if start + size < len(servers):
            out["NextToken"] = str(start + size)
        return out

    async def update_resource_server(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self._resource_server(params["UserPoolId"], params["Identifier"])
        server = self._server(params)
        await self.app.store.write(lambda txn: txn.put(RESOURCE_SERVERS, pack(server["UserPoolId"], server["Identifier"]), orjson.dumps(server)))
        return {"ResourceServer": server}

    async def delete_resource_server(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self._resource_server(params["UserPoolId"], params["Identifier"])
        await self.app.store.write(lambda txn: txn.delete(RESOURCE_SERVERS, pack(params["UserPoolId"], params["Identifier"])))
        return {}

    # -- app client OAuth settings ------------------------------------------------------------

    async def _check_oauth_client(self, client: dict[str, Any]) -> None:
        """AWS's checks of AllowedOAuthFlows / AllowedOAuthScopes / CallbackURLs."""
        flows = set(client.get("AllowedOAuthFlows") or [])
        unknown = flows - OAUTH_FLOWS
        if unknown:
            raise AwsError("InvalidOAuthFlowException", f"{sorted(unknown)[0]} is not a valid OAuth flow.", 400)
        if "client_credentials" in flows and flows & {"code", "implicit"}:
            raise AwsError("InvalidOAuthFlowException", "client_credentials flow can not be selected along with code flow or implicit flow.", 400)
        if "client_credentials" in flows and not client.get("ClientSecret"):
            raise AwsError("InvalidOAuthFlowException", "client_credentials flow can not be selected if client does not have a client secret.", 400)
        scopes = set(client.get("AllowedOAuthScopes") or [])
        custom = scopes - STANDARD_SCOPES
        if custom:
            known = custom_scopes(await self.resource_servers(client["UserPoolId"]))
            missing = sorted(custom - known)
            if missing:
                raise AwsError("ScopeDoesNotExistException", f"Invalid scope requested: {missing[0]}", 400)
        if client.get("AllowedOAuthFlowsUserPoolClient") and not flows:
            raise AwsError("InvalidOAuthFlowException", "AllowedOAuthFlows must be set when AllowedOAuthFlowsUserPoolClient is true.", 400)
        if flows & {"code", "implicit"} and client.get("AllowedOAuthFlowsUserPoolClient") and not client.get("CallbackURLs"):
            raise AwsError("InvalidParameterException", "CallbackURLs cannot be empty when code or implicit flows are allowed.", 400)
        default = client.get("DefaultRedirectURI")
        if default and default not in (client.get("CallbackURLs") or []):
            raise AwsError("InvalidParameterException", "DefaultRedirectURI must be one of the CallbackURLs.", 400)
