"""ImportRestApi / PutRestApi from OpenAPI 3 and Swagger 2 (JSON and YAML), request
validators and models enforced by the data plane, binary payloads, 413."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from botocore.exceptions import ClientError

from nubes.testing import NubesServer

BINARY_ECHO = (
    "import base64\n"
    "def handler(event, context):\n"
    "    return {'statusCode': 200, 'headers': {'content-type': 'application/octet-stream'},\n"
    "            'body': event['body'] if event['isBase64Encoded'] else base64.b64encode(event['body'].encode()).decode(),\n"
    "            'isBase64Encoded': True}\n"
)

OPENAPI_YAML = """
openapi: 3.0.1
info: {title: pets, version: "1.2"}
x-amazon-apigateway-binary-media-types: [application/octet-stream]
x-amazon-apigateway-request-validators:
  all: {validateRequestBody: true, validateRequestParameters: true}
components:
  securitySchemes:
    key: {type: apiKey, name: x-api-key, in: header}
  schemas:
    Pet:
      type: object
      required: [name]
      properties: {name: {type: string}, age: {type: integer, minimum: 0}}
paths:
  /pets:
    post:
      x-amazon-apigateway-request-validator: all
      parameters:
        - {name: tenant, in: query, required: true, schema: {type: string}}
      requestBody:
        content:
          application/json: {schema: {$ref: "#/components/schemas/Pet"}}
      responses: {"200": {description: ok}}
      x-amazon-apigateway-integration:
        type: mock
        requestTemplates: {application/json: '{"statusCode": 200}'}
        responses:
          default:
            statusCode: "200"
            responseTemplates: {application/json: '{"created": true}'}
  /pets/{id}:
    get:
      security: [{key: []}]
      x-amazon-apigateway-integration:
        type: mock
        requestTemplates: {application/json: '{"statusCode": 200}'}
        responses: {default: {statusCode: "200", responseTemplates: {application/json: '{"id": "$input.params(''id'')"}'}}}
"""


def _call(url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def _paths(gw: Any, api_id: str) -> dict[str, list[str]]:
    items = gw.get_resources(restApiId=api_id, embed=["methods"])["items"]
    return {r["path"]: sorted(r.get("resourceMethods", {})) for r in items}


def test_import_openapi_yaml_with_validators_models_and_keys(nubes: NubesServer) -> None:
    gw = nubes.client("apigateway")
    api = gw.import_rest_api(body=OPENAPI_YAML.encode())
    assert api["name"] == "pets" and api["version"] == "1.2" and api["binaryMediaTypes"] == ["application/octet-stream"]
    assert _paths(gw, api["id"]) == {"/": [], "/pets": ["POST"], "/pets/{id}": ["GET"]}
    assert [m["name"] for m in gw.get_models(restApiId=api["id"])["items"]] == ["Pet"]
    validators = gw.get_request_validators(restApiId=api["id"])["items"]
    assert [(v["name"], v["validateRequestBody"]) for v in validators] == [("all", True)]
    pets = next(r for r in gw.get_resources(restApiId=api["id"])["items"] if r["path"] == "/pets")
    method = gw.get_method(restApiId=api["id"], resourceId=pets["id"], httpMethod="POST")
    assert method["requestValidatorId"] == validators[0]["id"] and method["requestModels"] == {"application/json": "Pet"}
    assert method["methodIntegration"]["type"] == "MOCK"
    gw.create_deployment(restApiId=api["id"], stageName="v1")
    base = f"{nubes.endpoint}/_nubes/execute-api/{api['id']}/v1"
    json_type = {"content-type": "application/json"}
    status, headers, body = _call(base + "/pets", "POST", b'{"name": "rex"}', json_type)
    assert (status, json.loads(body)) == (400, {"message": "Missing required request parameters: [tenant]"})
    assert headers["x-amzn-errortype"] == "BadRequestException"
    for bad in (b'{"age": 3}', b'{"name": "rex", "age": -1}', b"not json", b""):
        status, _, body = _call(base + "/pets?tenant=t", "POST", bad, json_type)
        assert (status, json.loads(body)) == (400, {"message": "Invalid request body"}), bad
    status, _, body = _call(base + "/pets?tenant=t", "POST", b'{"name": "rex", "age": 2}', json_type)
    assert (status, json.loads(body)) == (200, {"created": True})
    # the apiKey security scheme makes the method require a key
    assert _call(base + "/pets/7")[0] == 403


def test_import_swagger_json_and_put_rest_api_modes(nubes: NubesServer) -> None:
    gw = nubes.client("apigateway")
    swagger = {"swagger": "2.0", "info": {"title": "sw", "version": "1"},
               "paths": {"/a": {"get": {"x-amazon-apigateway-integration": {"type": "mock", "requestTemplates": {"application/json": '{"statusCode": 200}'},
                                                                            "responses": {"default": {"statusCode": "200"}}}}}}}  # fmt: skip
    api_id = gw.import_rest_api(body=json.dumps(swagger).encode())["id"]
    assert _paths(gw, api_id) == {"/": [], "/a": ["GET"]}
    more = {"openapi": "3.0.1", "info": {"title": "sw2", "version": "2"},
            "paths": {"/b/c": {"x-amazon-apigateway-any-method": {"x-amazon-apigateway-integration": {
                "type": "http_proxy", "httpMethod": "ANY", "uri": "http://127.0.0.1:9/x"}}}}}  # fmt: skip
    merged = gw.put_rest_api(restApiId=api_id, mode="merge", body=json.dumps(more).encode())
    assert merged["name"] == "sw2"
    assert _paths(gw, api_id) == {"/": [], "/a": ["GET"], "/b": [], "/b/c": ["ANY"]}
    gw.put_rest_api(restApiId=api_id, mode="overwrite", body=json.dumps(more).encode())
    assert _paths(gw, api_id) == {"/": [], "/b": [], "/b/c": ["ANY"]}
    resource = next(r for r in gw.get_resources(restApiId=api_id)["items"] if r["path"] == "/b/c")
    integration = gw.get_integration(restApiId=api_id, resourceId=resource["id"], httpMethod="ANY")
    assert integration["type"] == "HTTP_PROXY" and integration["uri"] == "http://127.0.0.1:9/x"


@pytest.mark.parametrize(
    ("doc", "where"),
    [
        ({"openapi": "3.0.1", "info": {"title": "x"}, "paths": {"/items": {"get": {"x-amazon-apigateway-integration": {"type": "lambda"}}}}},
         "paths./items.get.x-amazon-apigateway-integration.type"),
        ({"openapi": "3.0.1", "info": {"title": "x"}, "paths": {"/items": {"get": {"x-amazon-apigateway-integration": {"type": "aws_proxy", "httpMethod": "POST"}}}}},
         "paths./items.get.x-amazon-apigateway-integration.uri"),
        ({"openapi": "3.0.1", "info": {}, "paths": {}}, "info.title"),
        ({"info": {"title": "x"}, "paths": {}}, "openapi"),
        ({"openapi": "3.0.1", "info": {"title": "x"}, "paths": {"items": {}}}, "paths.items"),
        ({"openapi": "3.0.1", "info": {"title": "x"}, "paths": {"/a": {"get": {"security": [{"nope": []}]}}}}, "paths./a.get.security"),
    ],
)  # fmt: skip
def test_invalid_documents_name_the_path_and_store_nothing(nubes: NubesServer, doc: dict[str, Any], where: str) -> None:
    gw = nubes.client("apigateway")
    before = len(gw.get_rest_apis(limit=500)["items"])
    with pytest.raises(ClientError) as err:
        gw.import_rest_api(body=json.dumps(doc).encode())
    assert err.value.response["Error"]["Code"] == "BadRequestException"
    assert f"Invalid OpenAPI input: {where}" in err.value.response["Error"]["Message"]
    assert len(gw.get_rest_apis(limit=500)["items"]) == before


def test_put_rest_api_with_a_bad_document_changes_nothing(nubes: NubesServer) -> None:
    gw = nubes.client("apigateway")
    api_id = gw.import_rest_api(body=OPENAPI_YAML.encode())["id"]
    with pytest.raises(ClientError) as err:
        gw.put_rest_api(restApiId=api_id, mode="overwrite", body=b"openapi: 3.0.1\ninfo: {title: t}\npaths: {/x: {get: {x-amazon-apigateway-integration: {type: nope}}}}")
    assert "paths./x.get.x-amazon-apigateway-integration.type" in err.value.response["Error"]["Message"]
    with pytest.raises(ClientError):
        gw.put_rest_api(restApiId=api_id, body=b"{not: [valid")
    assert _paths(gw, api_id) == {"/": [], "/pets": ["POST"], "/pets/{id}": ["GET"]}


def test_models_and_validators_control_plane(nubes: NubesServer) -> None:
    gw = nubes.client("apigateway")
    api_id = gw.create_rest_api(name="models")["id"]
    model = gw.create_model(restApiId=api_id, name="Thing", contentType="application/json", schema='{"type": "object"}')
    assert gw.get_model(restApiId=api_id, modelName="Thing")["id"] == model["id"]
    for bad in ('{"type": "strung"}', "not json"):
        with pytest.raises(ClientError) as err:
            gw.create_model(restApiId=api_id, name="Bad", contentType="application/json", schema=bad)
        assert err.value.response["Error"]["Code"] == "BadRequestException"
    with pytest.raises(ClientError) as err:
        gw.create_model(restApiId=api_id, name="Thing", contentType="application/json")
    assert err.value.response["Error"]["Code"] == "ConflictException"
    updated = gw.update_model(restApiId=api_id, modelName="Thing", patchOperations=[{"op": "replace", "path": "/description", "value": "d"}])
    assert updated["description"] == "d"
    validator = gw.create_request_validator(restApiId=api_id, name="params", validateRequestParameters=True)
    changed = gw.update_request_validator(restApiId=api_id, requestValidatorId=validator["id"],
                                          patchOperations=[{"op": "replace", "path": "/validateRequestBody", "value": "true"}])  # fmt: skip
    assert changed["validateRequestBody"] is True and changed["validateRequestParameters"] is True
    gw.delete_request_validator(restApiId=api_id, requestValidatorId=validator["id"])
    gw.delete_model(restApiId=api_id, modelName="Thing")
    assert gw.get_models(restApiId=api_id)["items"] == [] and gw.get_request_validators(restApiId=api_id)["items"] == []


def _function(nubes: NubesServer, name: str, code: str) -> str:
    arn: str = nubes.create_function(code, name=name)["FunctionArn"]
    return arn


def test_binary_media_types_and_payload_limit(nubes: NubesServer) -> None:
    arn = _function(nubes, "rest-binary", BINARY_ECHO)
    uri = f"arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{arn}/invocations"
    doc = {"openapi": "3.0.1", "info": {"title": "bin"}, "x-amazon-apigateway-binary-media-types": ["application/octet-stream", "image/*"],
           "paths": {"/blob": {"post": {"x-amazon-apigateway-integration": {"type": "aws_proxy", "httpMethod": "POST", "uri": uri}}}}}  # fmt: skip
    gw = nubes.client("apigateway")
    api_id = gw.import_rest_api(body=json.dumps(doc).encode())["id"]
    gw.create_deployment(restApiId=api_id, stageName="s")
    url = f"{nubes.endpoint}/_nubes/execute-api/{api_id}/s/blob"
    payload = bytes(range(256))
    status, _, body = _call(url, "POST", payload, {"content-type": "application/octet-stream", "accept": "application/octet-stream"})
    assert (status, body) == (200, payload)
    # without an Accept the binary types cover, the base64 text comes back as it is
    status, _, body = _call(url, "POST", payload, {"content-type": "image/png", "accept": "application/json"})
    assert (status, body) == (200, base64.b64encode(payload))
    status, _, body = _call(url, "POST", b"x" * (10 * 1024 * 1024 + 1), {"content-type": "application/octet-stream"})
    assert (status, json.loads(body)) == (413, {"message": "Request Too Long"})


def test_export_round_trips_through_import(nubes: NubesServer) -> None:
    gw = nubes.client("apigateway")
    api_id = gw.import_rest_api(body=OPENAPI_YAML.encode())["id"]
    gw.create_deployment(restApiId=api_id, stageName="x")
    exported = gw.get_export(restApiId=api_id, stageName="x", exportType="oas30", accepts="application/yaml")
    assert exported["contentType"] == "application/yaml"
    again = gw.import_rest_api(body=exported["body"].read())
    assert _paths(gw, again["id"]) == {"/": [], "/pets": ["POST"], "/pets/{id}": ["GET"]}
    pets = next(r for r in gw.get_resources(restApiId=again["id"])["items"] if r["path"] == "/pets/{id}")
    assert gw.get_method(restApiId=again["id"], resourceId=pets["id"], httpMethod="GET")["apiKeyRequired"] is True
    swagger = json.loads(gw.get_export(restApiId=api_id, stageName="x", exportType="swagger")["body"].read())
    assert swagger["swagger"] == "2.0" and "Pet" in swagger["definitions"]
    assert _code_of(lambda: gw.get_export(restApiId=api_id, stageName="x", exportType="raml")) == "BadRequestException"
    v2 = nubes.client("apigatewayv2")
    http_id = v2.create_api(Name="exp", ProtocolType="HTTP", Target="arn:aws:lambda:us-east-1:000000000000:function:f")["ApiId"]
    doc = json.loads(v2.export_api(ApiId=http_id, Specification="OAS30", OutputType="JSON")["body"].read())
    assert doc["paths"]["$default"]["x-amazon-apigateway-any-method"]["x-amazon-apigateway-integration"]["type"] == "aws_proxy"
    reimported = v2.import_api(Body=json.dumps(doc))
    assert [r["RouteKey"] for r in v2.get_routes(ApiId=reimported["ApiId"])["Items"]] == ["$default"]


def _code_of(call: Any) -> str:
    with pytest.raises(ClientError) as err:
        call()
    return str(err.value.response["Error"]["Code"])
