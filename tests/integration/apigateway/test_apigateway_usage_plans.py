"""API keys and usage plans on REST APIs: the control plane through boto3 and the
data plane's 403 / throttle 429 / quota 429 answers through plain HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from botocore.exceptions import ClientError

from nubes.testing import NubesServer


def _call(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=b"{}", method="POST", headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def _keyed_api(nubes: NubesServer, stage: str = "prod") -> tuple[Any, str, str]:
    gw = nubes.client("apigateway")
    api = gw.create_rest_api(name="keyed")
    res = gw.create_resource(restApiId=api["id"], parentId=api["rootResourceId"], pathPart="ping")["id"]
    gw.put_method(restApiId=api["id"], resourceId=res, httpMethod="POST", authorizationType="NONE", apiKeyRequired=True)
    gw.put_integration(restApiId=api["id"], resourceId=res, httpMethod="POST", type="MOCK",
                       requestTemplates={"application/json": '{"statusCode": 200}'})  # fmt: skip
    gw.put_integration_response(restApiId=api["id"], resourceId=res, httpMethod="POST", statusCode="200",
                                responseTemplates={"application/json": '{"pong": true}'})  # fmt: skip
    gw.create_deployment(restApiId=api["id"], stageName=stage)
    return gw, api["id"], f"{nubes.endpoint}/_nubes/execute-api/{api['id']}/{stage}/ping"


def test_api_key_crud_and_include_value(nubes: NubesServer) -> None:
    gw = nubes.client("apigateway")
    key = gw.create_api_key(name="k-crud", enabled=True, value="v" * 24, tags={"team": "a"})
    assert key["value"] == "v" * 24 and key["enabled"] is True
    assert "value" not in gw.get_api_key(apiKey=key["id"])
    assert gw.get_api_key(apiKey=key["id"], includeValue=True)["value"] == "v" * 24
    listed = gw.get_api_keys(nameQuery="k-crud", includeValues=True)["items"]
    assert [k["value"] for k in listed] == ["v" * 24]
    updated = gw.update_api_key(apiKey=key["id"], patchOperations=[{"op": "replace", "path": "/enabled", "value": "false"},
                                                                   {"op": "replace", "path": "/name", "value": "renamed"}])  # fmt: skip
    assert updated["enabled"] is False and updated["name"] == "renamed"
    with pytest.raises(ClientError) as err:
        gw.create_api_key(name="dup", value="v" * 24)
    assert err.value.response["Error"]["Code"] == "ConflictException"
    with pytest.raises(ClientError) as err:
        gw.create_api_key(name="short", value="tooshort")
    assert err.value.response["Error"]["Code"] == "BadRequestException"
    gw.delete_api_key(apiKey=key["id"])
    with pytest.raises(ClientError) as err:
        gw.get_api_key(apiKey=key["id"])
    assert err.value.response["Error"]["Code"] == "NotFoundException"


def test_usage_plan_enforces_key_and_quota(nubes: NubesServer) -> None:
    gw, api_id, url = _keyed_api(nubes)
    key = gw.create_api_key(name="quota-key", enabled=True)
    plan = gw.create_usage_plan(name="small", apiStages=[{"apiId": api_id, "stage": "prod"}],
                                quota={"limit": 3, "period": "DAY"})  # fmt: skip
    assert plan["quota"] == {"limit": 3, "offset": 0, "period": "DAY"} or plan["quota"]["limit"] == 3
    assert _call(url) == (403, {"message": "Forbidden"})
    assert _call(url, {"x-api-key": key["value"]}) == (403, {"message": "Forbidden"})  # not in the plan yet
    plan_key = gw.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")
    assert plan_key["id"] == key["id"] and plan_key["type"] == "API_KEY"
    assert [k["id"] for k in gw.get_usage_plan_keys(usagePlanId=plan["id"])["items"]] == [key["id"]]
    assert _call(url, {"x-api-key": "x" * 30}) == (403, {"message": "Forbidden"})
    for _ in range(3):
        assert _call(url, {"x-api-key": key["value"]}) == (200, {"pong": True})
    assert _call(url, {"x-api-key": key["value"]}) == (429, {"message": "Limit Exceeded"})
    import datetime as dt

    today = dt.datetime.now(dt.UTC).date().isoformat()
    usage = gw.get_usage(usagePlanId=plan["id"], startDate=today, endDate=today)
    assert usage["items"] == {key["id"]: [[3, 0]]}
    # raising the quota lets the key through again; disabling the key shuts it out
    gw.update_usage_plan(usagePlanId=plan["id"], patchOperations=[{"op": "replace", "path": "/quota/limit", "value": "10"}])
    assert gw.get_usage_plan(usagePlanId=plan["id"])["quota"]["limit"] == 10
    assert _call(url, {"x-api-key": key["value"]})[0] == 200
    gw.update_api_key(apiKey=key["id"], patchOperations=[{"op": "replace", "path": "/enabled", "value": "false"}])
    assert _call(url, {"x-api-key": key["value"]}) == (403, {"message": "Forbidden"})
    gw.delete_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"])
    assert gw.get_usage_plan_keys(usagePlanId=plan["id"])["items"] == []
    gw.delete_usage_plan(usagePlanId=plan["id"])
    with pytest.raises(ClientError):
        gw.get_usage_plan(usagePlanId=plan["id"])


def test_usage_plan_throttle(nubes: NubesServer) -> None:
    gw, api_id, url = _keyed_api(nubes, "beta")
    key = gw.create_api_key(name="throttled", enabled=True)
    plan = gw.create_usage_plan(name="slow", apiStages=[{"apiId": api_id, "stage": "beta"}],
                                throttle={"rateLimit": 0.01, "burstLimit": 2})  # fmt: skip
    gw.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")
    answers = [_call(url, {"x-api-key": key["value"]}) for _ in range(3)]
    assert answers == [(200, {"pong": True}), (200, {"pong": True}), (429, {"message": "Too Many Requests"})]


def test_usage_plan_bad_input(nubes: NubesServer) -> None:
    gw = nubes.client("apigateway")
    with pytest.raises(ClientError) as err:
        gw.create_usage_plan(name="bad", apiStages=[{"apiId": "nosuchapi", "stage": "prod"}])
    assert err.value.response["Error"]["Code"] == "BadRequestException"
    with pytest.raises(ClientError) as err:
        gw.create_usage_plan(name="bad", quota={"limit": 1, "period": "YEAR"})
    # the wire layer refuses the value outside the model's enum before the provider sees it
    assert err.value.response["Error"]["Code"] in ("BadRequestException", "ValidationException")
    assert not [p for p in gw.get_usage_plans()["items"] if p["name"] == "bad"]


def test_per_method_throttle_of_an_api_stage(nubes: NubesServer) -> None:
    gw, api_id, url = _keyed_api(nubes, "gamma")
    key = gw.create_api_key(name="per-method", enabled=True)
    plan = gw.create_usage_plan(name="per-method", throttle={"rateLimit": 1000, "burstLimit": 1000},
                                apiStages=[{"apiId": api_id, "stage": "gamma",
                                            "throttle": {"/ping/POST": {"rateLimit": 0.01, "burstLimit": 1}}}])  # fmt: skip
    gw.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")
    answers = [_call(url, {"x-api-key": key["value"]})[0] for _ in range(2)]
    assert answers == [200, 429]


AUTHORIZER = (
    "def handler(event, context):\n"
    "    return {'principalId': 'u', 'usageIdentifierKey': event['authorizationToken'],\n"
    "            'policyDocument': {'Version': '2012-10-17', 'Statement': [\n"
    "                {'Effect': 'Allow', 'Action': 'execute-api:Invoke', 'Resource': event['methodArn']}]}}\n"
)


def test_api_key_from_a_lambda_authorizer(nubes: NubesServer) -> None:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", AUTHORIZER)
    lam = nubes.client("lambda")
    arn = lam.create_function(FunctionName="usage-authorizer", Runtime="python3.12", Handler="app.handler",
                              Role="arn:aws:iam::000000000000:role/x", Code={"ZipFile": buf.getvalue()})["FunctionArn"]  # fmt: skip
    lam.get_waiter("function_active_v2").wait(FunctionName="usage-authorizer")
    gw = nubes.client("apigateway")
    api = gw.create_rest_api(name="authorizer-keys", apiKeySource="AUTHORIZER")
    auth = gw.create_authorizer(restApiId=api["id"], name="keys", type="TOKEN", identitySource="method.request.header.Authorization",
                                authorizerUri=f"arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{arn}/invocations",
                                authorizerResultTtlInSeconds=0)  # fmt: skip
    root = api["rootResourceId"]
    gw.put_method(restApiId=api["id"], resourceId=root, httpMethod="POST", authorizationType="CUSTOM", authorizerId=auth["id"], apiKeyRequired=True)
    gw.put_integration(restApiId=api["id"], resourceId=root, httpMethod="POST", type="MOCK", requestTemplates={"application/json": '{"statusCode": 200}'})
    gw.put_integration_response(restApiId=api["id"], resourceId=root, httpMethod="POST", statusCode="200",
                                responseTemplates={"application/json": '{"ok": true}'})  # fmt: skip
    gw.create_deployment(restApiId=api["id"], stageName="prod")
    key = gw.create_api_key(name="from-authorizer", enabled=True)
    plan = gw.create_usage_plan(name="authorizer-plan", apiStages=[{"apiId": api["id"], "stage": "prod"}])
    gw.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")
    url = f"{nubes.endpoint}/_nubes/execute-api/{api['id']}/prod/"
    assert _call(url, {"Authorization": key["value"]}) == (200, {"ok": True})
    # an x-api-key header does not count when the key source is the authorizer
    assert _call(url, {"Authorization": "x" * 30, "x-api-key": key["value"]}) == (403, {"message": "Forbidden"})
