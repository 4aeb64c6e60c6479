"""ImportApi / ReimportApi of HTTP APIs from OpenAPI 3: routes, Lambda integrations
with payloadFormatVersion, JWT authorizers, CORS; bad documents store nothing."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError

from nubes.testing import NubesServer

ECHO = "import json\ndef handler(event, context):\n    return {'statusCode': 200, 'body': json.dumps({'v': event['version'], 'route': event.get('routeKey')})}\n"


def _function(nubes: NubesServer, name: str) -> str:
    arn: str = nubes.create_function(ECHO, name=name)["FunctionArn"]
    return arn


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=30) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def _doc(arn: str, version: str = "2.0") -> str:
    uri = f"arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{arn}/invocations"
    integration = {"type": "aws_proxy", "httpMethod": "POST", "uri": uri, "payloadFormatVersion": version}
    return json.dumps({
        "openapi": "3.0.1", "info": {"title": "imported", "version": "1"},
        "x-amazon-apigateway-cors": {"allowOrigins": ["https://app.example"], "allowMethods": ["GET"], "maxAge": 60},
        "components": {"securitySchemes": {"jwt": {"type": "oauth2", "x-amazon-apigateway-authorizer": {
            "type": "jwt", "identitySource": "$request.header.Authorization",
            "jwtConfiguration": {"issuer": "https://issuer.example", "audience": ["aud1"]}}}}},
        "paths": {
            "/items/{id}": {"get": {"x-amazon-apigateway-integration": integration}},
            "/secret": {"get": {"security": [{"jwt": ["read"]}], "x-amazon-apigateway-integration": integration}},
        },
    })  # fmt: skip


def test_import_and_reimport_http_api(nubes: NubesServer) -> None:
    arn = _function(nubes, "http-import")
    v2 = nubes.client("apigatewayv2")
    api = v2.import_api(Body=_doc(arn))
    assert api["Name"] == "imported" and api["ProtocolType"] == "HTTP"
    assert api["CorsConfiguration"] == {"AllowOrigins": ["https://app.example"], "AllowMethods": ["GET"], "MaxAge": 60}
    routes = {r["RouteKey"]: r for r in v2.get_routes(ApiId=api["ApiId"])["Items"]}
    assert set(routes) == {"GET /items/{id}", "GET /secret"}
    assert routes["GET /secret"]["AuthorizationType"] == "JWT" and routes["GET /secret"]["AuthorizationScopes"] == ["read"]
    authorizers = v2.get_authorizers(ApiId=api["ApiId"])["Items"]
    assert [(a["Name"], a["JwtConfiguration"]["Audience"]) for a in authorizers] == [("jwt", ["aud1"])]
    assert routes["GET /secret"]["AuthorizerId"] == authorizers[0]["AuthorizerId"]
    integrations = v2.get_integrations(ApiId=api["ApiId"])["Items"]
    assert len(integrations) == 1 and integrations[0]["PayloadFormatVersion"] == "2.0"
    v2.create_stage(ApiId=api["ApiId"], StageName="$default", AutoDeploy=True)
    base = f"{nubes.endpoint}/_nubes/execute-api/{api['ApiId']}"
    status, _, body = _get(base + "/items/1")
    assert (status, json.loads(body)) == (200, {"v": "2.0", "route": "GET /items/{id}"})
    assert _get(base + "/secret")[0] == 401
    # reimport replaces the definition (payload 1.0 now, CORS gone) and the auto-deploy stage serves it
    reimported = v2.reimport_api(ApiId=api["ApiId"], Body=_doc(arn, "1.0").replace('"x-amazon-apigateway-cors"', '"x-unused"'))
    assert "CorsConfiguration" not in reimported
    status, _, body = _get(base + "/items/1")
    assert (status, json.loads(body)["v"]) == (200, "1.0")


@pytest.mark.parametrize(
    ("doc", "where"),
    [
        ({"openapi": "3.0.1", "info": {"title": "x"}, "paths": {"/a": {"get": {"x-amazon-apigateway-integration": {"type": "mock"}}}}},
         "paths./a.get.x-amazon-apigateway-integration.type"),
        ({"openapi": "3.0.1", "info": {"title": "x"}, "paths": {"/a": {"get": {"x-amazon-apigateway-integration": {"type": "aws_proxy", "uri": "u", "payloadFormatVersion": "3.0"}}}}},
         "paths./a.get.x-amazon-apigateway-integration.payloadFormatVersion"),
        ({"openapi": "3.0.1", "info": {"title": "x"}, "components": {"securitySchemes": {"j": {"x-amazon-apigateway-authorizer": {"type": "jwt"}}}}, "paths": {}},
         "securitySchemes.j.x-amazon-apigateway-authorizer.jwtConfiguration.issuer"),
    ],
)  # fmt: skip
def test_bad_http_api_documents(nubes: NubesServer, doc: dict[str, object], where: str) -> None:
    v2 = nubes.client("apigatewayv2")
    before = len(v2.get_apis()["Items"])
    with pytest.raises(ClientError) as err:
        v2.import_api(Body=json.dumps(doc))
    assert err.value.response["Error"]["Code"] == "BadRequestException"
    assert f"Invalid OpenAPI input: {where}" in err.value.response["Error"]["Message"]
    assert len(v2.get_apis()["Items"]) == before
