"""API Gateway as front ends use it: HTTP APIs with Lambda proxy and JWT/Lambda
authorizers and CORS, REST APIs with proxy, mock and service integrations and
Cognito authorizers, WebSocket APIs with @connections pushes."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from websockets.sync.client import connect

from nubes.testing import NubesServer

ECHO = (
    "import json\n"
    "def handler(event, context):\n"
    "    if event.get('queryStringParameters', {}) and (event.get('queryStringParameters') or {}).get('fail'):\n"
    "        raise RuntimeError('boom')\n"
    "    return {'statusCode': 201, 'headers': {'x-echo': 'yes'}, 'body': json.dumps(event), 'cookies': ['a=1', 'b=2']}\n"
)
WS = (
    "import json, os, boto3\n"
    "def handler(event, context):\n"
    "    rc = event['requestContext']\n"
    "    if rc['eventType'] != 'MESSAGE':\n"
    "        return {'statusCode': 200}\n"
    "    body = json.loads(event['body'])\n"
    "    if body.get('action') == 'shout':\n"
    "        client = boto3.client('apigatewaymanagementapi')\n"
    "        client.post_to_connection(ConnectionId=rc['connectionId'], Data=body['text'].upper().encode())\n"
    "        return {'statusCode': 200}\n"
    "    return {'statusCode': 200, 'body': 'echo:' + event['body']}\n"
)


def _function(nubes: NubesServer, name: str, code: str) -> str:
    arn: str = nubes.create_function(code, name=name)["FunctionArn"]
    return arn


def _call(url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def test_http_api_lambda_proxy(nubes: NubesServer) -> None:
    arn = _function(nubes, "http-echo", ECHO)
    v2 = nubes.client("apigatewayv2")
    api = v2.create_api(Name="quick", ProtocolType="HTTP", Target=arn)
    base = f"{nubes.endpoint}/_nubes/execute-api/{api['ApiId']}"
    status, headers, body = _call(base + "/things/7?x=1&x=2", "POST", b'{"a": 1}', {"content-type": "application/json", "cookie": "c=3"})
    assert status == 201 and headers["x-echo"] == "yes"
    event = json.loads(body)
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert event["rawPath"] == "/things/7" and event["queryStringParameters"] == {"x": "1,2"}
    assert event["body"] == '{"a": 1}' and event["isBase64Encoded"] is False and event["cookies"] == ["c=3"]
    assert event["requestContext"]["http"]["method"] == "POST" and event["requestContext"]["apiId"] == api["ApiId"]
    status, _, body = _call(base + "/x?fail=1")
    assert (status, json.loads(body)) == (500, {"message": "Internal Server Error"})


def test_http_api_routes_stages_and_payload_1(nubes: NubesServer) -> None:
    arn = _function(nubes, "http-routes", ECHO)
    v2 = nubes.client("apigatewayv2")
    api_id = v2.create_api(Name="routed", ProtocolType="HTTP")["ApiId"]
    i1 = v2.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY", IntegrationUri=arn, PayloadFormatVersion="1.0")["IntegrationId"]
    v2.create_route(ApiId=api_id, RouteKey="GET /items/{id}", Target=f"integrations/{i1}")
    v2.create_stage(ApiId=api_id, StageName="dev", AutoDeploy=True, StageVariables={"color": "blue"})
    status, _, body = _call(f"{nubes.endpoint}/_nubes/execute-api/{api_id}/dev/items/42")
    event = json.loads(body)
    assert status == 201 and event["version"] == "1.0" and event["pathParameters"] == {"id": "42"}
    assert event["resource"] == "/items/{id}" and event["stageVariables"] == {"color": "blue"}
    assert _call(f"{nubes.endpoint}/_nubes/execute-api/{api_id}/dev/nothing")[0] == 404


def test_http_api_jwt_authorizer_with_cognito_and_cors(nubes: NubesServer) -> None:
    arn = _function(nubes, "http-jwt", ECHO)
    idp = nubes.client("cognito-idp")
    pool_id = idp.create_user_pool(PoolName="api")["UserPool"]["Id"]
    client_id = idp.create_user_pool_client(UserPoolId=pool_id, ClientName="c", ExplicitAuthFlows=["ALLOW_ADMIN_USER_PASSWORD_AUTH"])["UserPoolClient"]["ClientId"]
    idp.admin_create_user(UserPoolId=pool_id, Username="ann", MessageAction="SUPPRESS")
    idp.admin_set_user_password(UserPoolId=pool_id, Username="ann", Password="Passw0rd!x", Permanent=True)
    token = idp.admin_initiate_auth(UserPoolId=pool_id, ClientId=client_id, AuthFlow="ADMIN_USER_PASSWORD_AUTH",
                                    AuthParameters={"USERNAME": "ann", "PASSWORD": "Passw0rd!x"})["AuthenticationResult"]["IdToken"]  # fmt: skip
    v2 = nubes.client("apigatewayv2")
    api_id = v2.create_api(Name="secure", ProtocolType="HTTP", Target=arn,
                           CorsConfiguration={"AllowOrigins": ["https://app.test"], "AllowMethods": ["GET", "POST"], "AllowHeaders": ["authorization"]})["ApiId"]  # fmt: skip
    auth = v2.create_authorizer(ApiId=api_id, AuthorizerType="JWT", Name="cognito", IdentitySource=["$request.header.Authorization"],
                                JwtConfiguration={"Issuer": f"{nubes.endpoint}/{pool_id}", "Audience": [client_id]})["AuthorizerId"]  # fmt: skip
    route = next(r for r in v2.get_routes(ApiId=api_id)["Items"] if r["RouteKey"] == "$default")
    v2.update_route(ApiId=api_id, RouteId=route["RouteId"], AuthorizationType="JWT", AuthorizerId=auth)
    url = f"{nubes.endpoint}/_nubes/execute-api/{api_id}/me"
    status, headers, body = _call(url)
    assert (status, json.loads(body)) == (401, {"message": "Unauthorized"})
    assert _call(url, headers={"authorization": "Bearer not.a.jwt"})[0] == 401
    status, headers, body = _call(url, headers={"authorization": f"Bearer {token}", "origin": "https://app.test"})
    assert status == 201 and headers["access-control-allow-origin"] == "https://app.test"
    claims = json.loads(body)["requestContext"]["authorizer"]["jwt"]["claims"]
    assert claims["cognito:username"] == "ann" and claims["aud"] == client_id
    status, headers, _ = _call(url, "OPTIONS", headers={"origin": "https://app.test", "access-control-request-method": "POST"})
    assert status == 204 and headers["access-control-allow-methods"] == "GET,POST"


def test_http_api_lambda_authorizer(nubes: NubesServer) -> None:
    arn = _function(nubes, "http-echo-2", ECHO)
    auth_arn = _function(nubes, "authz", "def handler(event, context):\n"
                         "    ok = event['headers'].get('x-token') == 'let-me-in'\n"
                         "    return {'isAuthorized': ok, 'context': {'who': 'tester'}}\n")  # fmt: skip
    v2 = nubes.client("apigatewayv2")
    api_id = v2.create_api(Name="lambda-auth", ProtocolType="HTTP", Target=arn)["ApiId"]
    auth = v2.create_authorizer(ApiId=api_id, AuthorizerType="REQUEST", Name="fn", IdentitySource=["$request.header.x-token"],
                                AuthorizerUri=f"arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{auth_arn}/invocations",
                                AuthorizerPayloadFormatVersion="2.0", EnableSimpleResponses=True)["AuthorizerId"]  # fmt: skip
    route = v2.get_routes(ApiId=api_id)["Items"][0]
    v2.update_route(ApiId=api_id, RouteId=route["RouteId"], AuthorizationType="CUSTOM", AuthorizerId=auth)
    url = f"{nubes.endpoint}/_nubes/execute-api/{api_id}/"
    assert _call(url)[0] == 401
    assert _call(url, headers={"x-token": "wrong"})[0] == 403
    status, _, body = _call(url, headers={"x-token": "let-me-in"})
    assert status == 201 and json.loads(body)["requestContext"]["authorizer"]["lambda"] == {"who": "tester"}


def _rest_api(nubes: NubesServer) -> tuple[Any, str, str]:
    gw = nubes.client("apigateway")
    api = gw.create_rest_api(name="rest")
    return gw, api["id"], api["rootResourceId"]


def test_rest_api_proxy_mock_and_missing_token(nubes: NubesServer) -> None:
    arn = _function(nubes, "rest-echo", ECHO)
    gw, api_id, root = _rest_api(nubes)
    items = gw.create_resource(restApiId=api_id, parentId=root, pathPart="items")["id"]
    item = gw.create_resource(restApiId=api_id, parentId=items, pathPart="{id}")["id"]
    gw.put_method(restApiId=api_id, resourceId=item, httpMethod="GET", authorizationType="NONE")
    gw.put_integration(restApiId=api_id, resourceId=item, httpMethod="GET", type="AWS_PROXY", integrationHttpMethod="POST",
                       uri=f"arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{arn}/invocations")  # fmt: skip
    gw.put_method(restApiId=api_id, resourceId=items, httpMethod="POST", authorizationType="NONE")
    gw.put_integration(restApiId=api_id, resourceId=items, httpMethod="POST", type="MOCK",
                       requestTemplates={"application/json": '{"statusCode": 200}'})  # fmt: skip
    gw.put_method_response(restApiId=api_id, resourceId=items, httpMethod="POST", statusCode="200")
    gw.put_integration_response(restApiId=api_id, resourceId=items, httpMethod="POST", statusCode="200",
                                responseTemplates={"application/json": '{"got": "$input.params(\'q\')", "id": "$context.requestId"}'})  # fmt: skip
    gw.create_deployment(restApiId=api_id, stageName="prod", variables={"v": "1"})
    base = f"{nubes.endpoint}/_nubes/execute-api/{api_id}/prod"
    status, _, body = _call(base + "/items/9?q=z")
    event = json.loads(body)
    assert status == 201 and event["resource"] == "/items/{id}" and event["pathParameters"] == {"id": "9"}
    assert event["requestContext"]["stage"] == "prod" and event["stageVariables"] == {"v": "1"}
    assert event["multiValueQueryStringParameters"] == {"q": ["z"]}
    status, _, body = _call(base + "/items?q=hello", "POST", b"{}", {"content-type": "application/json"})
    assert status == 200 and json.loads(body)["got"] == "hello"
    status, _, body = _call(base + "/nothing/here")
    assert (status, json.loads(body)) == (403, {"message": "Missing Authentication Token"})
    status, _, body = _call(base + "/items/1?fail=1")
    assert (status, json.loads(body)) == (502, {"message": "Internal server error"})


def test_rest_api_aws_integration_to_sqs(nubes: NubesServer) -> None:
    sqs = nubes.client("sqs")
    queue_url = sqs.create_queue(QueueName="from-api")["QueueUrl"]
    gw, api_id, root = _rest_api(nubes)
    res = gw.create_resource(restApiId=api_id, parentId=root, pathPart="jobs")["id"]
    gw.put_method(restApiId=api_id, resourceId=res, httpMethod="POST", authorizationType="NONE")
    template = "Action=SendMessage&QueueUrl=$util.urlEncode('" + queue_url + "')&MessageBody=$util.urlEncode($input.body)"
    gw.put_integration(restApiId=api_id, resourceId=res, httpMethod="POST", type="AWS", integrationHttpMethod="POST",
                       uri="arn:aws:apigateway:us-east-1:sqs:action/SendMessage",
                       requestTemplates={"application/json": template})  # fmt: skip
    gw.put_integration_response(restApiId=api_id, resourceId=res, httpMethod="POST", statusCode="200",
                                responseTemplates={"application/json": '{"queued": true}'})  # fmt: skip
    gw.create_deployment(restApiId=api_id, stageName="v1")
    status, _, body = _call(f"{nubes.endpoint}/_nubes/execute-api/{api_id}/v1/jobs", "POST", b'{"job": 1}', {"content-type": "application/json"})
    assert (status, json.loads(body)) == (200, {"queued": True})
    messages = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=2)["Messages"]
    assert json.loads(messages[0]["Body"]) == {"job": 1}


def test_rest_api_cognito_authorizer(nubes: NubesServer) -> None:
    arn = _function(nubes, "rest-secure", ECHO)
    idp = nubes.client("cognito-idp")
    pool = idp.create_user_pool(PoolName="rest")["UserPool"]
    client_id = idp.create_user_pool_client(UserPoolId=pool["Id"], ClientName="c", ExplicitAuthFlows=["ALLOW_ADMIN_USER_PASSWORD_AUTH"])["UserPoolClient"]["ClientId"]
    idp.admin_create_user(UserPoolId=pool["Id"], Username="rob", MessageAction="SUPPRESS")
    idp.admin_set_user_password(UserPoolId=pool["Id"], Username="rob", Password="Passw0rd!x", Permanent=True)
    token = idp.admin_initiate_auth(UserPoolId=pool["Id"], ClientId=client_id, AuthFlow="ADMIN_USER_PASSWORD_AUTH",
                                    AuthParameters={"USERNAME": "rob", "PASSWORD": "Passw0rd!x"})["AuthenticationResult"]["IdToken"]  # fmt: skip
    gw, api_id, root = _rest_api(nubes)
    auth = gw.create_authorizer(restApiId=api_id, name="pool", type="COGNITO_USER_POOLS", providerARNs=[pool["Arn"]],
                                identitySource="method.request.header.Authorization")["id"]  # fmt: skip
    gw.put_method(restApiId=api_id, resourceId=root, httpMethod="GET", authorizationType="COGNITO_USER_POOLS", authorizerId=auth)
    gw.put_integration(restApiId=api_id, resourceId=root, httpMethod="GET", type="AWS_PROXY", integrationHttpMethod="POST",
                       uri=f"arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{arn}/invocations")  # fmt: skip
    gw.create_deployment(restApiId=api_id, stageName="prod")
    url = f"{nubes.endpoint}/_nubes/execute-api/{api_id}/prod/"
    assert _call(url)[0] == 401
    status, _, body = _call(url, headers={"authorization": token})
    assert status == 201
    assert json.loads(body)["requestContext"]["authorizer"]["claims"]["cognito:username"] == "rob"


def test_websocket_api_routes_and_connections(nubes: NubesServer) -> None:
    arn = _function(nubes, "ws-handler", WS)
    v2 = nubes.client("apigatewayv2")
    api_id = v2.create_api(Name="ws", ProtocolType="WEBSOCKET", RouteSelectionExpression="$request.body.action")["ApiId"]
    integ = v2.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY", IntegrationUri=arn)["IntegrationId"]
    for key in ("$connect", "$disconnect", "shout"):
        v2.create_route(ApiId=api_id, RouteKey=key, Target=f"integrations/{integ}")
    v2.create_route(ApiId=api_id, RouteKey="$default", Target=f"integrations/{integ}", RouteResponseSelectionExpression="$default")
    v2.create_stage(ApiId=api_id, StageName="live", AutoDeploy=True)
    url = f"ws://127.0.0.1:{nubes.port}/_nubes/execute-api/{api_id}/live"
    with connect(url) as ws:
        ws.send(json.dumps({"action": "shout", "text": "hello"}))
        assert ws.recv(timeout=20) == "HELLO"
        ws.send(json.dumps({"action": "other"}))
        assert ws.recv(timeout=20) == 'echo:{"action": "other"}'
    management = nubes.client("apigatewaymanagementapi")
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as err:
        management.post_to_connection(ConnectionId="nope", Data=b"x")
    assert err.value.response["Error"]["Code"] == "GoneException"
