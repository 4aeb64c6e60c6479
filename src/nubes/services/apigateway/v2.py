"""API Gateway v2 (HTTP and WebSocket APIs): the control plane."""

from __future__ import annotations

import copy
from typing import Any

from nubes.aws.errors import AwsError
from nubes.services.apigateway.stage_patch import api_update_v2, check_stage_v2
from nubes.services.apigateway.store import ApiStore, new_id, not_found, now, page
from nubes.services.base import RequestContext

_SNAPSHOT_KEYS = ("Routes", "Integrations", "Authorizers", "RouteResponses", "CorsConfiguration",
                  "ProtocolType", "RouteSelectionExpression", "Name", "DisableExecuteApiEndpoint")  # fmt: skip


def _endpoint(ctx: RequestContext, api_id: str, protocol: str) -> str:
    port = ctx.app.settings.port
    scheme = "ws" if protocol == "WEBSOCKET" else "http"
    return f"{scheme}://{api_id}.execute-api.localhost:{port}"


def _public(api: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in api.items() if k not in ("Version", "Routes", "Integrations", "Authorizers", "Stages",
                                                      "RouteResponses", "Revision", "Id", "ApiVersion")} | {"ApiId": api["Id"]}  # fmt: skip
    if api.get("ApiVersion") is not None:
        out["Version"] = api["ApiVersion"]  # the stored "Version" is the generation (1/2)
    return out


class HttpApis:
    """Apis, routes, integrations, authorizers, stages, deployments of v2."""

    def __init__(self, apis: ApiStore) -> None:
        self.apis = apis

    # -- apis ---------------------------------------------------------------------

    async def create_api(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        protocol = params["ProtocolType"]
        if protocol == "WEBSOCKET" and not params.get("RouteSelectionExpression"):
            raise AwsError("BadRequestException", "RouteSelectionExpression is required for WEBSOCKET APIs", 400)
        api_id = new_id()
        api: dict[str, Any] = {
            "Version": 2, "Id": api_id, "Name": params["Name"], "ProtocolType": protocol,
            "RouteSelectionExpression": params.get("RouteSelectionExpression") or "${request.method} ${request.path}",
            "ApiKeySelectionExpression": params.get("ApiKeySelectionExpression") or "$request.header.x-api-key",
            "CreatedDate": now(), "ApiEndpoint": _endpoint(ctx, api_id, protocol), "Tags": params.get("Tags") or {},
            "Routes": {}, "Integrations": {}, "Authorizers": {}, "Stages": {}, "RouteResponses": {},
        }  # fmt: skip
        for key in ("Description", "CorsConfiguration", "DisableExecuteApiEndpoint", "DisableSchemaValidation", "IpAddressType"):
            if key in params:
                api[key] = params[key]
        if params.get("Version") is not None:
            api["ApiVersion"] = params["Version"]
        if params.get("Target") and protocol == "HTTP":
            integration_id = new_id(7)
            api["Integrations"][integration_id] = {
                "IntegrationId": integration_id, "IntegrationType": "AWS_PROXY", "IntegrationMethod": "POST",
                "IntegrationUri": params["Target"], "PayloadFormatVersion": "2.0", "TimeoutInMillis": 30000,
                "ConnectionType": "INTERNET",
            }  # fmt: skip
            route_id = new_id(7)
            key = params.get("RouteKey") or "$default"
            api["Routes"][route_id] = {"RouteId": route_id, "RouteKey": key, "Target": f"integrations/{integration_id}",
                                       "AuthorizationType": "NONE", "ApiKeyRequired": False}  # fmt: skip
            api["Stages"]["$default"] = {"StageName": "$default", "AutoDeploy": True, "CreatedDate": now(),
                                         "LastUpdatedDate": now(), "StageVariables": {}, "DefaultRouteSettings": {}}  # fmt: skip
        await self.apis.put(api)
        await self._auto_deploy(api_id)
        return _public(api)

    async def get_api(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return _public(await self.apis.get(params["ApiId"], True))

    async def get_apis(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return page([_public(a) for a in await self.apis.all(2)], params, "Items")

    async def update_api(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        def change(api: dict[str, Any]) -> dict[str, Any]:
            api.update(api_update_v2(api, params))
            return _public(api)

        out: dict[str, Any] = await self.apis.change(params["ApiId"], True, change)
        await self._auto_deploy(params["ApiId"])
        return out

    async def delete_api(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self.apis.get(params["ApiId"], True)
        await self.apis.delete(params["ApiId"])
        return {}

    async def delete_cors_configuration(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self.apis.change(params["ApiId"], True, lambda api: api.pop("CorsConfiguration", None))
        await self._auto_deploy(params["ApiId"])
        return {}

    # -- children (routes, integrations, authorizers, route responses) --------------------

    async def _create_child(self, params: dict[str, Any], kind: str, id_key: str, defaults: dict[str, Any]) -> dict[str, Any]:
        child_id = new_id(7)

        def change(api: dict[str, Any]) -> dict[str, Any]:
            child = {**defaults, **{k: v for k, v in params.items() if k != "ApiId"}, id_key: child_id}
            if kind == "Routes" and any(r["RouteKey"] == child["RouteKey"] for r in api["Routes"].values()):
                raise AwsError("ConflictException", f"Route with key {child['RouteKey']} already exists for this API", 409)
            api[kind][child_id] = child
            return child

        out: dict[str, Any] = await self.apis.change(params["ApiId"], True, change)
        await self._auto_deploy(params["ApiId"])
        return out

    async def _get_child(self, params: dict[str, Any], kind: str, id_key: str, label: str) -> dict[str, Any]:
        api = await self.apis.get(params["ApiId"], True)
        child = api[kind].get(params[id_key])
        if child is None:
            raise not_found(f"{label} identified by {params[id_key]}", True)
        return dict(child)

    async def _update_child(self, params: dict[str, Any], kind: str, id_key: str, label: str) -> dict[str, Any]:
        def change(api: dict[str, Any]) -> dict[str, Any]:
            child = api[kind].get(params[id_key])
            if child is None:
                raise not_found(f"{label} identified by {params[id_key]}", True)
            child.update({k: v for k, v in params.items() if k != "ApiId"})
            return dict(child)

        out: dict[str, Any] = await self.apis.change(params["ApiId"], True, change)
        await self._auto_deploy(params["ApiId"])
        return out

    async def _delete_child(self, params: dict[str, Any], kind: str, id_key: str, label: str) -> dict[str, Any]:
        def change(api: dict[str, Any]) -> None:
            if api[kind].pop(params[id_key], None) is None:
                raise not_found(f"{label} identified by {params[id_key]}", True)

        await self.apis.change(params["ApiId"], True, change)
        await self._auto_deploy(params["ApiId"])
        return {}

    async def _list_children(self, params: dict[str, Any], kind: str) -> dict[str, Any]:
        api = await self.apis.get(params["ApiId"], True)
        return page(list(api[kind].values()), params, "Items")

    async def create_route(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return await self._create_child(params, "Routes", "RouteId", {"AuthorizationType": "NONE", "ApiKeyRequired": False})

    async def get_route(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return await self._get_child(params, "Routes", "RouteId", "Route")

    async def get_routes(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return await self._list_children(params, "Routes")

    async def update_route(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return await self._update_child(params, "Routes", "RouteId", "Route")

    async def delete_route(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return await self._delete_child(params, "Routes", "RouteId", "Route")

    async def create_integration(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        defaults = {"ConnectionType": "INTERNET", "TimeoutInMillis": 30000, "IntegrationMethod": "POST",
                    "PayloadFormatVersion": "2.0" if params.get("IntegrationType") == "AWS_PROXY" else "1.0"}  # fmt: skip
        api = await self.apis.get(params["ApiId"], True)
        if api["ProtocolType"] == "WEBSOCKET":
            defaults["PayloadFormatVersion"] = "1.0"
        return await self._create_child(params, "Integrations", "IntegrationId", defaults)

    async def get_integration(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return await self._get_child(params, "Integrations", "IntegrationId", "Integration")

    async def get_integrations(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return await self._list_children(params, "Integrations")

    async def update_integration(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return await self._update_child(params, "Integrations", "IntegrationId", "Integration")

    async def delete_integration(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return await self._delete_child(params, "Integrations", "IntegrationId", "Integration")

    async def create_authorizer_v2(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("AuthorizerType") == "JWT" and not (params.get("JwtConfiguration") or {}).get("Issuer"):
            raise AwsError("BadRequestException", "JwtConfiguration.Issuer is required for JWT authorizers", 400)
        return await self._create_child(params, "Authorizers", "AuthorizerId", {})

    async def get_authorizer_v2(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return await self._get_child(params, "Authorizers", "AuthorizerId", "Authorizer")

    async def get_authorizers_v2(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return await self._list_children(params, "Authorizers")

    async def update_authorizer_v2(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return await self._update_child(params, "Authorizers", "AuthorizerId", "Authorizer")

    async def delete_authorizer_v2(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return await self._delete_child(params, "Authorizers", "AuthorizerId", "Authorizer")

    async def create_route_response(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return await self._create_child(params, "RouteResponses", "RouteResponseId", {})

    async def get_route_responses(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return await self._list_children(params, "RouteResponses")

    # -- stages and deployments -------------------------------------------------------

    async def create_stage_v2(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = params["StageName"]

        def change(api: dict[str, Any]) -> dict[str, Any]:
            if name in api["Stages"]:
                raise AwsError("ConflictException", f"Stage {name} already exists", 409)
            stage = {"StageVariables": {}, "DefaultRouteSettings": {}, "AutoDeploy": False,
                     **{k: v for k, v in params.items() if k != "ApiId"}, "CreatedDate": now(), "LastUpdatedDate": now()}  # fmt: skip
            api["Stages"][name] = stage
            return dict(stage)

        out: dict[str, Any] = await self.apis.change(params["ApiId"], True, change)
        await self._auto_deploy(params["ApiId"])
        return out

    async def get_stage_v2(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        api = await self.apis.get(params["ApiId"], True)
        stage = api["Stages"].get(params["StageName"])
        if stage is None:
            raise not_found(f"Stage identified by {params['StageName']}", True)
        return dict(stage)

    async def get_stages_v2(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return page(list((await self.apis.get(params["ApiId"], True))["Stages"].values()), params, "Items")

    async def update_stage_v2(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        deployments = {d["Id"] for d in await self.apis.deployments(params["ApiId"])}

        def change(api: dict[str, Any]) -> dict[str, Any]:
            stage = api["Stages"].get(params["StageName"])
            if stage is None:
                raise not_found(f"Stage identified by {params['StageName']}", True)
            check_stage_v2(api, stage, params, deployments)
            stage.update({k: v for k, v in params.items() if k != "ApiId"})
            stage["LastUpdatedDate"] = now()
            return dict(stage)

        out: dict[str, Any] = await self.apis.change(params["ApiId"], True, change)
        await self._auto_deploy(params["ApiId"])
        return out

    async def delete_stage_v2(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        def change(api: dict[str, Any]) -> None:
            if api["Stages"].pop(params["StageName"], None) is None:
                raise not_found(f"Stage identified by {params['StageName']}", True)

        await self.apis.change(params["ApiId"], True, change)
        return {}

    async def create_deployment_v2(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        api = await self.apis.get(params["ApiId"], True)
        deployment = self._snapshot(api, params.get("Description"), auto=False)
        await self.apis.save_deployment(api["Id"], deployment)
        if params.get("StageName"):
            await self.apis.change(api["Id"], True, lambda a: _point(a, params["StageName"], deployment["Id"]))
        return _deployment_view(deployment)

    async def get_deployment_v2(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        deployment = await self.apis.deployment(params["ApiId"], params["DeploymentId"])
        if deployment is None:
            raise not_found(f"Deployment identified by {params['DeploymentId']}", True)
        return _deployment_view(deployment)

    async def get_deployments_v2(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self.apis.get(params["ApiId"], True)
        return page([_deployment_view(d) for d in await self.apis.deployments(params["ApiId"])], params, "Items")

    async def delete_deployment_v2(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        api = await self.apis.get(params["ApiId"], True)
        if any(s.get("DeploymentId") == params["DeploymentId"] for s in api["Stages"].values()):
            raise AwsError("BadRequestException", "Active stages pointing to this deployment must be moved or deleted", 400)
        if not await self.apis.delete_deployment(api["Id"], params["DeploymentId"]):
            raise not_found(f"Deployment identified by {params['DeploymentId']}", True)
        return {}

    def _snapshot(self, api: dict[str, Any], description: str | None, auto: bool) -> dict[str, Any]:
        return {"Id": new_id(6), "CreatedDate": now(), "Description": description, "AutoDeployed": auto,
                "Snapshot": copy.deepcopy({k: api.get(k) for k in _SNAPSHOT_KEYS})}  # fmt: skip

    async def _auto_deploy(self, api_id: str) -> None:
        """Stages with AutoDeploy serve every change at once, through a new deployment."""
        api = await self.apis.find(api_id)
        if api is None or not any(s.get("AutoDeploy") for s in api["Stages"].values()):
            return
        deployment = self._snapshot(api, "Automatic deployment", auto=True)
        await self.apis.save_deployment(api_id, deployment)

        def point(a: dict[str, Any]) -> None:
            for name, stage in a["Stages"].items():
                if stage.get("AutoDeploy"):
                    _point(a, name, deployment["Id"])

        await self.apis.change(api_id, True, point)


def _point(api: dict[str, Any], stage_name: str, deployment_id: str) -> None:
    stage = api["Stages"].get(stage_name)
    if stage is None:
        raise not_found(f"Stage identified by {stage_name}", True)
    stage["DeploymentId"] = deployment_id
    stage["LastDeploymentStatusMessage"] = f"Successfully deployed stage with deployment ID '{deployment_id}'"


def _deployment_view(d: dict[str, Any]) -> dict[str, Any]:
    return {"DeploymentId": d["Id"], "CreatedDate": d["CreatedDate"], "Description": d.get("Description"),
            "DeploymentStatus": "DEPLOYED", "AutoDeployed": d.get("AutoDeployed", False)}  # fmt: skip
