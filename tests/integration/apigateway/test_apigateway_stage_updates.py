"""UpdateStage / UpdateApi edge cases and the GetStage(s) shapes that come back."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from nubes.testing import NubesServer


def _deployed(nubes: NubesServer) -> tuple[Any, str, str]:
    gw = nubes.client("apigateway")
    api = gw.create_rest_api(name="staged")
    gw.put_method(restApiId=api["id"], resourceId=api["rootResourceId"], httpMethod="GET", authorizationType="NONE")
    first = gw.create_deployment(restApiId=api["id"], stageName="prod", variables={"a": "1"})["id"]
    return gw, api["id"], first


def _code(call: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as err:
        call(**kwargs)
    return str(err.value.response["Error"]["Code"])


def test_rest_stage_patch_paths(nubes: NubesServer) -> None:
    gw, api_id, first = _deployed(nubes)
    second = gw.create_deployment(restApiId=api_id)["id"]
    stage = gw.update_stage(restApiId=api_id, stageName="prod", patchOperations=[
        {"op": "replace", "path": "/variables/b", "value": "2"}, {"op": "remove", "path": "/variables/a"},
        {"op": "replace", "path": "/deploymentId", "value": second}, {"op": "replace", "path": "/tracingEnabled", "value": "true"},
        {"op": "replace", "path": "/*/*/metrics/enabled", "value": "true"},
        {"op": "replace", "path": "/~1items/GET/throttling/rateLimit", "value": "12.5"},
        {"op": "replace", "path": "/*/*/logging/loglevel", "value": "INFO"},
        {"op": "replace", "path": "/description", "value": "live"}])  # fmt: skip
    assert stage["variables"] == {"b": "2"} and stage["deploymentId"] == second and stage["tracingEnabled"] is True
    assert stage["methodSettings"]["*/*"] == {"metricsEnabled": True, "loggingLevel": "INFO"}
    assert stage["methodSettings"]["~1items/GET"] == {"throttlingRateLimit": 12.5}
    assert gw.get_stages(restApiId=api_id)["item"][0]["description"] == "live"
    bad = [
        [{"op": "replace", "path": "/deploymentId", "value": "nope"}],
        [{"op": "replace", "path": "/notAField", "value": "x"}],
        [{"op": "replace", "path": "/tracingEnabled", "value": "maybe"}],
        [{"op": "replace", "path": "/*/*/logging/loglevel", "value": "LOUD"}],
        [{"op": "copy", "path": "/description", "value": "x"}],
        [{"op": "replace", "path": "/description", "value": "changed"}, {"op": "replace", "path": "/bogus", "value": "x"}],
    ]
    for ops in bad:
        assert _code(gw.update_stage, restApiId=api_id, stageName="prod", patchOperations=ops) == "BadRequestException", ops
    # a refused patch changes nothing, even its valid first operation
    assert gw.get_stage(restApiId=api_id, stageName="prod")["description"] == "live"
    assert _code(gw.update_stage, restApiId=api_id, stageName="nope", patchOperations=[]) == "NotFoundException"
    assert first != second


def test_v2_update_stage_and_api_checks(nubes: NubesServer) -> None:
    v2 = nubes.client("apigatewayv2")
    api_id = v2.create_api(Name="v2-staged", ProtocolType="HTTP", Version="2024-01")["ApiId"]
    assert v2.get_api(ApiId=api_id)["Version"] == "2024-01"
    v2.create_stage(ApiId=api_id, StageName="dev", AutoDeploy=True)
    assert _code(v2.update_stage, ApiId=api_id, StageName="dev", DeploymentId="nope") == "BadRequestException"
    deployment = v2.create_deployment(ApiId=api_id)["DeploymentId"]
    assert _code(v2.update_stage, ApiId=api_id, StageName="dev", DeploymentId=deployment) == "BadRequestException"
    stage = v2.update_stage(ApiId=api_id, StageName="dev", AutoDeploy=False, DeploymentId=deployment, StageVariables={"k": "v"})
    assert stage["DeploymentId"] == deployment and stage["StageVariables"] == {"k": "v"}
    updated = v2.update_api(ApiId=api_id, Name="renamed", Version="2024-02")
    assert updated["Name"] == "renamed" and updated["Version"] == "2024-02" and updated["ProtocolType"] == "HTTP"
    assert v2.get_stage(ApiId=api_id, StageName="dev")["StageName"] == "dev"  # the API document is still whole
    assert _code(v2.update_api, ApiId=api_id, RouteSelectionExpression="$request.body.action") == "BadRequestException"
    ws = v2.create_api(Name="ws-staged", ProtocolType="WEBSOCKET", RouteSelectionExpression="$request.body.action")["ApiId"]
    assert _code(v2.update_api, ApiId=ws, CorsConfiguration={"AllowOrigins": ["*"]}) == "BadRequestException"
