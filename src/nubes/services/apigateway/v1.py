"""API Gateway v1 (REST APIs): the control plane. v1's wire names are camelCase
(``id``, ``resourceMethods``), so records are kept in them."""

from __future__ import annotations

import copy
from typing import Any

from nubes.aws.errors import AwsError
from nubes.services.apigateway.stage_patch import patch_stage
from nubes.services.apigateway.store import ApiStore, new_id, not_found, now, page
from nubes.services.base import RequestContext


def _unescape(part: str) -> str:
    return part.replace("~1", "/").replace("~0", "~")


def apply_patch(target: dict[str, Any], operations: list[dict[str, Any]]) -> None:
    """API Gateway's ``patchOperations`` (``replace``/``add``/``remove`` on ``/a/b``)."""
    for op in operations or []:
        parts = [_unescape(p) for p in str(op.get("path", "")).strip("/").split("/") if p]
        if not parts:
            continue
        node = target
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        key = parts[-1]
        value: Any = op.get("value")
        if op.get("op") == "remove":
            if isinstance(node.get(key), list) and value is not None:
                node[key] = [v for v in node[key] if v != value]
            else:
                node.pop(key, None)
        elif isinstance(node.get(key), list) and op.get("op") == "add":
            node[key].append(value)
        else:
            if value in ("true", "false") and isinstance(node.get(key), bool):
                value = value == "true"
            node[key] = value


def _public_api(api: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in api.items() if k in ("id", "name", "description", "createdDate", "version", "binaryMediaTypes",
                                                  "minimumCompressionSize", "apiKeySource", "endpointConfiguration",
                                                  "policy", "tags", "disableExecuteApiEndpoint", "rootResourceId")}  # fmt: skip


def _resource_view(resource: dict[str, Any], embed: bool = True) -> dict[str, Any]:
    out = {k: v for k, v in resource.items() if k != "resourceMethods"}
    if resource.get("resourceMethods"):
        out["resourceMethods"] = resource["resourceMethods"] if embed else {m: {} for m in resource["resourceMethods"]}
    return out


class RestApis:
    """Rest APIs, resources, methods, integrations, deployments, stages, authorizers."""

    def __init__(self, apis: ApiStore) -> None:
        self.apis = apis

    # -- apis ---------------------------------------------------------------------

    async def create_rest_api(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        api_id = new_id()
        root = new_id(10)
        api: dict[str, Any] = {
            "Version": 1, "Id": api_id, "id": api_id, "name": params["name"], "createdDate": now(), "rootResourceId": root,
            "apiKeySource": params.get("apiKeySource") or "HEADER", "tags": params.get("tags") or {},
            "endpointConfiguration": params.get("endpointConfiguration") or {"types": ["EDGE"]},
            "disableExecuteApiEndpoint": bool(params.get("disableExecuteApiEndpoint")),
            "Resources": {root: {"id": root, "path": "/"}}, "Authorizers": {}, "Stages": {}, "Validators": {}, "Models": {},
        }  # fmt: skip
        for key in ("description", "version", "binaryMediaTypes", "minimumCompressionSize", "policy"):
            if key in params:
                api[key] = params[key]
        await self.apis.put(api)
        return _public_api(api)

    async def get_rest_api(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return _public_api(await self.apis.get(params["restApiId"], False))

    async def get_rest_apis(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return page([_public_api(a) for a in await self.apis.all(1)], params, "items", size_key="limit", token_key="position")

    async def update_rest_api(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        def change(api: dict[str, Any]) -> dict[str, Any]:
            apply_patch(api, params.get("patchOperations") or [])
            return _public_api(api)

        out: dict[str, Any] = await self.apis.change(params["restApiId"], False, change)
        return out

    async def delete_rest_api(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self.apis.get(params["restApiId"], False)
        await self.apis.delete(params["restApiId"])
        return {}

    # -- resources and methods ----------------------------------------------------------

    async def create_resource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        def change(api: dict[str, Any]) -> dict[str, Any]:
            parent = api["Resources"].get(params["parentId"])
            if parent is None:
                raise not_found("Resource identifier", False)
            path = parent["path"].rstrip("/") + "/" + params["pathPart"]
            if any(r["path"] == path for r in api["Resources"].values()):
                raise AwsError("ConflictException", f"Another resource with the same parent already has this name: {params['pathPart']}", 409)
            resource = {"id": new_id(6), "parentId": parent["id"], "pathPart": params["pathPart"], "path": path}
            api["Resources"][resource["id"]] = resource
            return dict(resource)

        out: dict[str, Any] = await self.apis.change(params["restApiId"], False, change)
        return out

    async def get_resources(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        api = await self.apis.get(params["restApiId"], False)
        embed = "methods" in (params.get("embed") or [])
        items = [_resource_view(r, embed) for r in sorted(api["Resources"].values(), key=lambda r: r["path"])]
        return page(items, params, "items", size_key="limit", token_key="position")

    async def get_resource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        api = await self.apis.get(params["restApiId"], False)
        resource = api["Resources"].get(params["resourceId"])
        if resource is None:
            raise not_found("Resource identifier", False)
        return _resource_view(resource)

    async def delete_resource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        def change(api: dict[str, Any]) -> None:
            resource = api["Resources"].get(params["resourceId"])
            if resource is None:
                raise not_found("Resource identifier", False)
            for rid, other in list(api["Resources"].items()):
                if other["path"] == resource["path"] or other["path"].startswith(resource["path"].rstrip("/") + "/"):
                    api["Resources"].pop(rid)

        await self.apis.change(params["restApiId"], False, change)
        return {}

    async def _method_change(self, params: dict[str, Any], fn: Any) -> dict[str, Any]:
        def change(api: dict[str, Any]) -> dict[str, Any]:
            resource = api["Resources"].get(params["resourceId"])
            if resource is None:
                raise not_found("Resource identifier", False)
            return dict(fn(api, resource.setdefault("resourceMethods", {})))

        out: dict[str, Any] = await self.apis.change(params["restApiId"], False, change)
        return out

    @staticmethod
    def _method(methods: dict[str, Any], http_method: str) -> dict[str, Any]:
        method = methods.get(http_method)
        if method is None:
            raise not_found("Method identifier", False)
        return dict(method) if not isinstance(method, dict) else method

    async def put_method(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        def put(api: dict[str, Any], methods: dict[str, Any]) -> dict[str, Any]:
            method = {k: v for k, v in params.items() if k not in ("restApiId", "resourceId")}
            method.setdefault("apiKeyRequired", False)
            methods[params["httpMethod"]] = method
            return method

        return await self._method_change(params, put)

    async def get_method(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return await self._method_change(params, lambda api, methods: self._method(methods, params["httpMethod"]))

    async def update_method(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        def update(api: dict[str, Any], methods: dict[str, Any]) -> dict[str, Any]:
            method = self._method(methods, params["httpMethod"])
            apply_patch(method, params.get("patchOperations") or [])
            return method

        return await self._method_change(params, update)

    async def delete_method(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self._method_change(params, lambda api, methods: methods.pop(params["httpMethod"], None) or {})
        return {}

    async def put_method_response(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        def put(api: dict[str, Any], methods: dict[str, Any]) -> dict[str, Any]:
            method = self._method(methods, params["httpMethod"])
            response = {k: v for k, v in params.items() if k in ("statusCode", "responseParameters", "responseModels")}
            method.setdefault("methodResponses", {})[params["statusCode"]] = response
            return response

        return await self._method_change(params, put)

    async def get_method_response(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        def get(api: dict[str, Any], methods: dict[str, Any]) -> dict[str, Any]:
            found = self._method(methods, params["httpMethod"]).get("methodResponses", {}).get(params["statusCode"])
            if found is None:
                raise not_found("Response type", False)
            return dict(found)

        return await self._method_change(params, get)

    async def put_integration(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        def put(api: dict[str, Any], methods: dict[str, Any]) -> dict[str, Any]:
            method = self._method(methods, params["httpMethod"])
            integration = {k: v for k, v in params.items() if k not in ("restApiId", "resourceId", "httpMethod")}
            if "integrationHttpMethod" in integration:
                integration["httpMethod"] = integration.pop("integrationHttpMethod")
            integration.setdefault("passthroughBehavior", "WHEN_NO_MATCH")
            integration.setdefault("timeoutInMillis", 29000)
            integration.setdefault("cacheNamespace", params["resourceId"])
            if integration.get("type") in ("AWS_PROXY", "HTTP_PROXY"):
                integration.setdefault("integrationResponses", {})
            method["methodIntegration"] = integration
            return integration

        return await self._method_change(params, put)

    async def get_integration(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        def get(api: dict[str, Any], methods: dict[str, Any]) -> dict[str, Any]:
            integration = self._method(methods, params["httpMethod"]).get("methodIntegration")
            if integration is None:
                raise not_found("Integration identifier", False)
            return dict(integration)

        return await self._method_change(params, get)

    async def update_integration(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        def update(api: dict[str, Any], methods: dict[str, Any]) -> dict[str, Any]:
            integration = self._method(methods, params["httpMethod"]).get("methodIntegration")
            if integration is None:
                raise not_found("Integration identifier", False)
            apply_patch(integration, params.get("patchOperations") or [])
            return dict(integration)

        return await self._method_change(params, update)

    async def delete_integration(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self._method_change(params, lambda api, methods: self._method(methods, params["httpMethod"]).pop("methodIntegration", None) or {})
        return {}

    async def put_integration_response(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        def put(api: dict[str, Any], methods: dict[str, Any]) -> dict[str, Any]:
            integration = self._method(methods, params["httpMethod"]).get("methodIntegration")
            if integration is None:
                raise not_found("Integration identifier", False)
            response = {k: v for k, v in params.items() if k not in ("restApiId", "resourceId", "httpMethod")}
            integration.setdefault("integrationResponses", {})[params["statusCode"]] = response
            return response

        return await self._method_change(params, put)

    async def get_integration_response(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        def get(api: dict[str, Any], methods: dict[str, Any]) -> dict[str, Any]:
            integration = self._method(methods, params["httpMethod"]).get("methodIntegration") or {}
            found = integration.get("integrationResponses", {}).get(params["statusCode"])
            if found is None:
                raise not_found("Response type", False)
            return dict(found)

        return await self._method_change(params, get)

    # -- deployments and stages -------------------------------------------------------------

    async def create_deployment(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        api = await self.apis.get(params["restApiId"], False)
        if not any(r.get("resourceMethods") for r in api["Resources"].values()):
            raise AwsError("BadRequestException", "The REST API doesn't contain any methods", 400)
        deployment = {"Id": new_id(6), "CreatedDate": now(), "Description": params.get("description"),
                      "Snapshot": copy.deepcopy({k: api.get(k) for k in ("Resources", "Authorizers", "binaryMediaTypes",
                                                                          "apiKeySource", "Validators", "Models")})}  # fmt: skip
        await self.apis.save_deployment(api["Id"], deployment)
        if params.get("stageName"):
            name = params["stageName"]

            def point(a: dict[str, Any]) -> None:
                stage = a["Stages"].setdefault(name, {"stageName": name, "createdDate": now(), "variables": {},
                                                      "description": params.get("stageDescription")})  # fmt: skip
                stage["deploymentId"] = deployment["Id"]
                stage["DeploymentId"] = deployment["Id"]
                stage["lastUpdatedDate"] = now()
                if params.get("variables"):
                    stage["variables"] = params["variables"]

            await self.apis.change(api["Id"], False, point)
        return {"id": deployment["Id"], "createdDate": deployment["CreatedDate"], "description": deployment["Description"]}

    async def get_deployments(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        items = [{"id": d["Id"], "createdDate": d["CreatedDate"], "description": d.get("Description")}
                 for d in await self.apis.deployments(params["restApiId"])]  # fmt: skip
        return page(items, params, "items", size_key="limit", token_key="position")

    async def get_deployment(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        d = await self.apis.deployment(params["restApiId"], params["deploymentId"])
        if d is None:
            raise not_found("Deployment identifier", False)
        return {"id": d["Id"], "createdDate": d["CreatedDate"], "description": d.get("Description")}

    async def delete_deployment(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        api = await self.apis.get(params["restApiId"], False)
        if any(s.get("DeploymentId") == params["deploymentId"] for s in api["Stages"].values()):
            raise AwsError("BadRequestException", "Active stages pointing to this deployment must be moved or deleted", 400)
        if not await self.apis.delete_deployment(api["Id"], params["deploymentId"]):
            raise not_found("Deployment identifier", False)
        return {}

    async def create_stage(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        if await self.apis.deployment(params["restApiId"], params["deploymentId"]) is None:
            raise AwsError("BadRequestException", "Invalid deployment identifier specified", 400)

        def create(api: dict[str, Any]) -> dict[str, Any]:
            if params["stageName"] in api["Stages"]:
                raise AwsError("ConflictException", "Stage already exists", 409)
            stage = {k: v for k, v in params.items() if k != "restApiId"}
            stage.update(createdDate=now(), lastUpdatedDate=now(), DeploymentId=params["deploymentId"])
            stage.setdefault("variables", {})
            api["Stages"][params["stageName"]] = stage
            return _stage_view(stage)

        out: dict[str, Any] = await self.apis.change(params["restApiId"], False, create)
        return out

    async def get_stage(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        api = await self.apis.get(params["restApiId"], False)
        stage = api["Stages"].get(params["stageName"])
        if stage is None:
            raise not_found("stage identifier", False)
        return _stage_view(stage)

    async def get_stages(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        api = await self.apis.get(params["restApiId"], False)
        return {"item": [_stage_view(s) for s in api["Stages"].values()]}

    async def update_stage(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        deployments = {d["Id"] for d in await self.apis.deployments(params["restApiId"])}

        def change(api: dict[str, Any]) -> dict[str, Any]:
            stage = api["Stages"].get(params["stageName"])
            if stage is None:
                raise not_found("stage identifier", False)
            patch_stage(stage, params.get("patchOperations") or [], deployments)
            stage["DeploymentId"] = stage.get("deploymentId")
            stage["lastUpdatedDate"] = now()
            return _stage_view(stage)

        out: dict[str, Any] = await self.apis.change(params["restApiId"], False, change)
        return out

    async def delete_stage(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        def change(api: dict[str, Any]) -> None:
            if api["Stages"].pop(params["stageName"], None) is None:
                raise not_found("stage identifier", False)

        await self.apis.change(params["restApiId"], False, change)
        return {}

    # -- authorizers --------------------------------------------------------------------------

    async def create_authorizer(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        def create(api: dict[str, Any]) -> dict[str, Any]:
            authorizer = {k: v for k, v in params.items() if k != "restApiId"}
            authorizer["id"] = new_id(6)
            authorizer.setdefault("authorizerResultTtlInSeconds", 300)
            api["Authorizers"][authorizer["id"]] = authorizer
            return dict(authorizer)

        out: dict[str, Any] = await self.apis.change(params["restApiId"], False, create)
        return out

    async def get_authorizer(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        api = await self.apis.get(params["restApiId"], False)
        found = api["Authorizers"].get(params["authorizerId"])
        if found is None:
            raise not_found("Authorizer identifier", False)
        return dict(found)

    async def get_authorizers(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        api = await self.apis.get(params["restApiId"], False)
        return page(list(api["Authorizers"].values()), params, "items", size_key="limit", token_key="position")

    async def delete_authorizer(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self.apis.change(params["restApiId"], False, lambda api: api["Authorizers"].pop(params["authorizerId"], None))
        return {}


def _stage_view(stage: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in stage.items() if k != "DeploymentId"}
