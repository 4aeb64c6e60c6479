"""AWS::Cognito::UserPool (Ref: pool id; GetAtt Arn, ProviderName, ProviderURL,
UserPoolId), UserPoolClient (Ref: client id; GetAtt ClientId, ClientSecret, Name),
UserPoolGroup (Ref: group name), UserPoolDomain (Ref: domain) and
UserPoolResourceServer (Ref: identifier)."""

from __future__ import annotations

from typing import Any

from nubes.aws.errors import AwsError
from nubes.deploy.resources.base import (
    HandlerContext,
    Outcome,
    ResourceHandler,
    api_params,
    ignore_missing,
)

_SERVICE = "cognito-idp"


async def _delete(ctx: HandlerContext, operation: str, params: dict[str, Any]) -> None:
    try:
        await ctx.call(_SERVICE, operation, params)
    except AwsError as exc:
        ignore_missing(exc)


class UserPool(ResourceHandler):
    """A user pool; ``UserPoolName`` is the API's ``PoolName``."""

    type_name = "AWS::Cognito::UserPool"
    attributes = ("Arn", "ProviderName", "ProviderURL", "UserPoolId")
    replace_on = frozenset({"UsernameAttributes", "AliasAttributes", "Schema"})

    def _outcome(self, ctx: HandlerContext, pool: dict[str, Any]) -> Outcome:
        pool_id = pool["Id"]
        provider = f"cognito-idp.{ctx.region}.amazonaws.com/{pool_id}"
        return Outcome(pool_id, {"Arn": pool.get("Arn") or ctx.arn("cognito-idp", f"userpool/{pool_id}"),
                                 "ProviderName": provider, "ProviderURL": f"https://{provider}", "UserPoolId": pool_id})

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        params = api_params(_SERVICE, "CreateUserPool", props, rename={"UserPoolName": "PoolName", "UserPoolTags": "UserPoolTags"})
        params.setdefault("PoolName", ctx.physical_name(128))
        pool = (await ctx.call(_SERVICE, "CreateUserPool", params))["UserPool"]
        return self._outcome(ctx, pool)

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        params = api_params(_SERVICE, "UpdateUserPool", props)
        await ctx.call(_SERVICE, "UpdateUserPool", {**params, "UserPoolId": physical_id})
        pool = (await ctx.call(_SERVICE, "DescribeUserPool", {"UserPoolId": physical_id}))["UserPool"]
        return self._outcome(ctx, pool)

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        await _delete(ctx, "DeleteUserPool", {"UserPoolId": physical_id})


class UserPoolClient(ResourceHandler):
    """An app client of a user pool."""

    type_name = "AWS::Cognito::UserPoolClient"
    attributes = ("ClientId", "ClientSecret", "Name")
    replace_on = frozenset({"UserPoolId", "GenerateSecret"})

    def _outcome(self, client: dict[str, Any]) -> Outcome:
        return Outcome(client["ClientId"], {"ClientId": client["ClientId"], "ClientSecret": client.get("ClientSecret", ""),
                                            "Name": client.get("ClientName", "")})

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        params = api_params(_SERVICE, "CreateUserPoolClient", props)
        params.setdefault("ClientName", ctx.logical_id)
        return self._outcome((await ctx.call(_SERVICE, "CreateUserPoolClient", params))["UserPoolClient"])

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        params = {**api_params(_SERVICE, "UpdateUserPoolClient", props), "ClientId": physical_id}
        return self._outcome((await ctx.call(_SERVICE, "UpdateUserPoolClient", params))["UserPoolClient"])

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        await _delete(ctx, "DeleteUserPoolClient", {"UserPoolId": props.get("UserPoolId", ""), "ClientId": physical_id})


class UserPoolGroup(ResourceHandler):
    """A group in a user pool."""

    type_name = "AWS::Cognito::UserPoolGroup"
    attributes = ()
    replace_on = frozenset({"UserPoolId", "GroupName"})

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        params = api_params(_SERVICE, "CreateGroup", props)
        params.setdefault("GroupName", ctx.physical_name(128))
        await ctx.call(_SERVICE, "CreateGroup", params)
        return Outcome(params["GroupName"])

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        await ctx.call(_SERVICE, "UpdateGroup", {**api_params(_SERVICE, "UpdateGroup", props), "GroupName": physical_id})
        return Outcome(physical_id)

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        await _delete(ctx, "DeleteGroup", {"UserPoolId": props.get("UserPoolId", ""), "GroupName": physical_id})


class UserPoolDomain(ResourceHandler):
    """A hosted UI domain prefix."""

    type_name = "AWS::Cognito::UserPoolDomain"
    attributes = ("CloudFrontDistribution",)
    replace_on = frozenset({"UserPoolId", "Domain"})

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        out = await ctx.call(_SERVICE, "CreateUserPoolDomain", api_params(_SERVICE, "CreateUserPoolDomain", props))
        return Outcome(str(props["Domain"]), {"CloudFrontDistribution": out.get("CloudFrontDomain", "")})

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        await ctx.call(_SERVICE, "UpdateUserPoolDomain", api_params(_SERVICE, "UpdateUserPoolDomain", props))
        return Outcome(physical_id, {"CloudFrontDistribution": ""})

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        await _delete(ctx, "DeleteUserPoolDomain", {"UserPoolId": props.get("UserPoolId", ""), "Domain": physical_id})


class UserPoolResourceServer(ResourceHandler):
    """A resource server: the custom scopes (``identifier/scope``) clients are granted."""

    type_name = "AWS::Cognito::UserPoolResourceServer"
    attributes = ()
    replace_on = frozenset({"UserPoolId", "Identifier"})

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        await ctx.call(_SERVICE, "CreateResourceServer", api_params(_SERVICE, "CreateResourceServer", props))
        return Outcome(str(props["Identifier"]))

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        # UpdateResourceServer replaces the whole server: scopes left out are removed
        params = {**api_params(_SERVICE, "UpdateResourceServer", props), "Identifier": physical_id}
        params.setdefault("Scopes", [])
        await ctx.call(_SERVICE, "UpdateResourceServer", params)
        return Outcome(physical_id)

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        await _delete(ctx, "DeleteResourceServer", {"UserPoolId": props.get("UserPoolId", ""), "Identifier": physical_id})


HANDLERS = (UserPool, UserPoolClient, UserPoolGroup, UserPoolDomain, UserPoolResourceServer)
