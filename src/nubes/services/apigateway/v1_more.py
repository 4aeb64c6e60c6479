"""API Gateway v1 (REST APIs), the rest of the control plane: import from
OpenAPI / Swagger, request validators, models, and tags of either generation."""

from __future__ import annotations

from typing import Any

import orjson

from nubes.aws.errors import AwsError
from nubes.services.apigateway import openapi
from nubes.services.apigateway.schema import check_schema
from nubes.services.apigateway.store import ApiStore, new_id, not_found, page
from nubes.services.apigateway.v1 import _public_api, apply_patch
from nubes.services.base import RequestContext


class RestApiExtras:
    """ImportRestApi, PutRestApi, request validators, models."""

    def __init__(self, apis: ApiStore) -> None:
        self.apis = apis

    # -- import ------------------------------------------------------------------------

    async def import_rest_api(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        parts = openapi.read_rest_api(openapi.load_document(params.get("body")))
        api = openapi.new_rest_api(parts)
        await self.apis.put(api)
        return _public_api(api)

    async def put_rest_api(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        # read and check the whole document first: a bad one changes nothing
        parts = openapi.read_rest_api(openapi.load_document(params.get("body")))
        mode = params.get("mode") or "merge"

        def change(api: dict[str, Any]) -> dict[str, Any]:
            openapi.merge_rest_api(api, parts, mode)
            return _public_api(api)

        out: dict[str, Any] = await self.apis.change(params["restApiId"], False, change)
        return out

    # -- request validators --------------------------------------------------------------

    async def create_request_validator(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        def create(api: dict[str, Any]) -> dict[str, Any]:
            validator = {"id": new_id(6), "name": params.get("name") or "",
                         "validateRequestBody": bool(params.get("validateRequestBody")),
                         "validateRequestParameters": bool(params.get("validateRequestParameters"))}  # fmt: skip
            api["Validators"][validator["id"]] = validator
            return validator

        out: dict[str, Any] = await self.apis.change(params["restApiId"], False, create)
        return out

    async def get_request_validator(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        api = await self.apis.get(params["restApiId"], False)
        found = api["Validators"].get(params["requestValidatorId"])
        if found is None:
            raise not_found("Request Validator identifier", False)
        return dict(found)

    async def get_request_validators(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        api = await self.apis.get(params["restApiId"], False)
        return page(list(api["Validators"].values()), params, "items", size_key="limit", token_key="position")

    async def update_request_validator(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        def update(api: dict[str, Any]) -> dict[str, Any]:
            found = api["Validators"].get(params["requestValidatorId"])
            if found is None:
                raise not_found("Request Validator identifier", False)
            for op in params.get("patchOperations") or []:
                if op.get("path") not in ("/name", "/validateRequestBody", "/validateRequestParameters"):
                    raise AwsError("BadRequestException", f"Invalid patch path '{op.get('path')}' specified for op '{op.get('op')}'", 400)
            apply_patch(found, params.get("patchOperations") or [])
            for key in ("validateRequestBody", "validateRequestParameters"):
                if isinstance(found.get(key), str):
                    found[key] = found[key] == "true"
            return dict(found)

        out: dict[str, Any] = await self.apis.change(params["restApiId"], False, update)
        return out

    async def delete_request_validator(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        def delete(api: dict[str, Any]) -> None:
            if api["Validators"].pop(params["requestValidatorId"], None) is None:
                raise not_found("Request Validator identifier", False)

        await self.apis.change(params["restApiId"], False, delete)
        return {}

    # -- models -------------------------------------------------------------------------

    async def create_model(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = str(params.get("name") or "")
        if not name.isalnum():
            raise AwsError("BadRequestException", "Model name must be alphanumeric", 400)
        schema = params.get("schema")
        if schema is not None:
            _parse_schema(schema)

        def create(api: dict[str, Any]) -> dict[str, Any]:
            if name in api["Models"]:
                raise AwsError("ConflictException", "Model name already exists for this REST API", 409)
            model = {"id": new_id(6), "name": name, "contentType": params["contentType"]}
            for key in ("description", "schema"):
                if params.get(key) is not None:
                    model[key] = params[key]
            api["Models"][name] = model
            return model

        out: dict[str, Any] = await self.apis.change(params["restApiId"], False, create)
        return out

    async def get_model(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        api = await self.apis.get(params["restApiId"], False)
        found = api["Models"].get(params["modelName"])
        if found is None:
            raise not_found("model name", False)
        return dict(found)

    async def get_models(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        api = await self.apis.get(params["restApiId"], False)
        return page(sorted(api["Models"].values(), key=lambda m: m["name"]), params, "items", size_key="limit", token_key="position")

    async def update_model(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        def update(api: dict[str, Any]) -> dict[str, Any]:
            found = api["Models"].get(params["modelName"])
            if found is None:
                raise not_found("model name", False)
            for op in params.get("patchOperations") or []:
                if op.get("path") not in ("/schema", "/description"):
                    raise AwsError("BadRequestException", f"Invalid patch path '{op.get('path')}' specified for op '{op.get('op')}'", 400)
                if op.get("path") == "/schema":
                    _parse_schema(op.get("value"))
            apply_patch(found, params.get("patchOperations") or [])
            return dict(found)

        out: dict[str, Any] = await self.apis.change(params["restApiId"], False, update)
        return out

    async def delete_model(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        def delete(api: dict[str, Any]) -> None:
            if api["Models"].pop(params["modelName"], None) is None:
                raise not_found("model name", False)

        await self.apis.change(params["restApiId"], False, delete)
        return {}


def _parse_schema(schema: Any) -> dict[str, Any]:
    try:
        doc = orjson.loads(str(schema))
    except orjson.JSONDecodeError:
        raise AwsError("BadRequestException", "Invalid model schema specified: not valid JSON", 400) from None
    if not isinstance(doc, dict):
        raise AwsError("BadRequestException", "Invalid model schema specified: a schema is a JSON object", 400)
    problem = check_schema(doc)
    if problem:
        raise AwsError("BadRequestException", f"Invalid model schema specified: {problem}", 400)
    return doc
