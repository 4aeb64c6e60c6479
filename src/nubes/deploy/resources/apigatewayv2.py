"""AWS::ApiGatewayV2::* (HTTP and WebSocket APIs): Api (Ref: ApiId; GetAtt ApiId,
ApiEndpoint), Stage, Integration, Route, RouteResponse, Authorizer, Deployment.
CloudFormation's property names equal the API's here, so the botocore input shapes
pick them."""

from __future__ import annotations

import json
from typing import Any

from nubes.aws.errors import AwsError
from nubes.deploy.resources.base import (
    HandlerContext,
    Outcome,
    ResourceHandler,
    api_params,
    ignore_missing,
)

_SERVICE = "apigatewayv2"


async def _delete(ctx: HandlerContext, operation: str, params: dict[str, Any]) -> None:
    try:
        await ctx.call(_SERVICE, operation, params)
    except AwsError as exc:
        ignore_missing(exc)


class Api(ResourceHandler):
    """An HTTP or WebSocket API, from properties or an OpenAPI ``Body``."""

    type_name = "AWS::ApiGatewayV2::Api"
    attributes = ("ApiId", "ApiEndpoint")
    replace_on = frozenset({"ProtocolType"})

    def _outcome(self, out: dict[str, Any]) -> Outcome:
        return Outcome(out["ApiId"], {"ApiId": out["ApiId"], "ApiEndpoint": out.get("ApiEndpoint", "")})

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        if "Body" in props:
            body = props["Body"] if isinstance(props["Body"], str) else json.dumps(props["Body"])
            params: dict[str, Any] = {"Body": body}
            if "FailOnWarnings" in props:
                params["FailOnWarnings"] = props["FailOnWarnings"]
            out = await ctx.call(_SERVICE, "ImportApi", params)
            rest = {k: v for k, v in api_params(_SERVICE, "UpdateApi", props).items() if k in ("Name", "Description", "CorsConfiguration", "DisableExecuteApiEndpoint")}
            if rest:
                out = await ctx.call(_SERVICE, "UpdateApi", {"ApiId": out["ApiId"], **rest})
            return self._outcome(out)
        return self._outcome(await ctx.call(_SERVICE, "CreateApi", api_params(_SERVICE, "CreateApi", props)))

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        if "Body" in props:
            body = props["Body"] if isinstance(props["Body"], str) else json.dumps(props["Body"])
            out = await ctx.call(_SERVICE, "ReimportApi", {"ApiId": physical_id, "Body": body})
        else:
            out = await ctx.call(_SERVICE, "UpdateApi", {**api_params(_SERVICE, "UpdateApi", props), "ApiId": physical_id})
        return self._outcome(out)

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        await _delete(ctx, "DeleteApi", {"ApiId": physical_id})


class _Child(ResourceHandler):
    """A sub-resource of an API, identified by ``ApiId`` and its own id member."""

    noun = ""  # "Integration", "Route", ...
    id_member = ""  # "IntegrationId", ...

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        out = await ctx.call(_SERVICE, f"Create{self.noun}", api_params(_SERVICE, f"Create{self.noun}", props))
        return Outcome(out[self.id_member], {self.id_member: out[self.id_member]})

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        params = {**api_params(_SERVICE, f"Update{self.noun}", props), self.id_member: physical_id}
        await ctx.call(_SERVICE, f"Update{self.noun}", params)
        return Outcome(physical_id, {self.id_member: physical_id})

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        await _delete(ctx, f"Delete{self.noun}", {"ApiId": props.get("ApiId", ""), self.id_member: physical_id})


class Integration(_Child):
    """An integration (Lambda proxy, HTTP, AWS service)."""

    type_name = "AWS::ApiGatewayV2::Integration"
    attributes = ("IntegrationId",)
    replace_on = frozenset({"ApiId"})
    noun, id_member = "Integration", "IntegrationId"


class Route(_Child):
    """A route (``GET /items``, ``$connect``)."""

    type_name = "AWS::ApiGatewayV2::Route"
    attributes = ("RouteId",)
    replace_on = frozenset({"ApiId"})
    noun, id_member = "Route", "RouteId"


class Authorizer(_Child):
    """A JWT or Lambda authorizer."""

    type_name = "AWS::ApiGatewayV2::Authorizer"
    attributes = ("AuthorizerId",)
    replace_on = frozenset({"ApiId"})
    noun, id_member = "Authorizer", "AuthorizerId"


class Deployment(_Child):
    """A deployment of the API's routes."""

    type_name = "AWS::ApiGatewayV2::Deployment"
    attributes = ("DeploymentId",)
    replace_on = frozenset({"ApiId"})
    noun, id_member = "Deployment", "DeploymentId"


class RouteResponse(ResourceHandler):
    """A WebSocket route response."""

    type_name = "AWS::ApiGatewayV2::RouteResponse"
    attributes = ("RouteResponseId",)
    replace_on = frozenset({"ApiId", "RouteId"})

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        out = await ctx.call(_SERVICE, "CreateRouteResponse", api_params(_SERVICE, "CreateRouteResponse", props))
        return Outcome(out["RouteResponseId"], {"RouteResponseId": out["RouteResponseId"]})

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        params = {**api_params(_SERVICE, "UpdateRouteResponse", props), "RouteResponseId": physical_id}
        await ctx.call(_SERVICE, "UpdateRouteResponse", params)
        return Outcome(physical_id, {"RouteResponseId": physical_id})

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        await _delete(ctx, "DeleteRouteResponse", {"ApiId": props.get("ApiId", ""), "RouteId": props.get("RouteId", ""), "RouteResponseId": physical_id})


class Stage(ResourceHandler):
    """A stage (``$default`` for HTTP APIs); Ref is the stage name."""

    type_name = "AWS::ApiGatewayV2::Stage"
    attributes = ()
    replace_on = frozenset({"ApiId", "StageName"})

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        await ctx.call(_SERVICE, "CreateStage", api_params(_SERVICE, "CreateStage", props))
        return Outcome(str(props["StageName"]))

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        await ctx.call(_SERVICE, "UpdateStage", {**api_params(_SERVICE, "UpdateStage", props), "StageName": physical_id})
        return Outcome(physical_id)

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        await _delete(ctx, "DeleteStage", {"ApiId": props.get("ApiId", ""), "StageName": physical_id})


HANDLERS = (Api, Integration, Route, RouteResponse, Authorizer, Deployment, Stage)
