"""The machine-to-machine pattern end to end: a service gets a client_credentials
token for a resource server scope from the pool domain, and calls an HTTP API
whose JWT authorizer requires that scope per route."""

from __future__ import annotations

import json
import uuid

import httpx

from nubes.testing import NubesServer

ECHO = "import json\ndef handler(event, context):\n    return {'statusCode': 200, 'body': json.dumps(event['requestContext']['authorizer'])}\n"


def test_client_credentials_token_passes_a_scoped_jwt_authorizer(nubes: NubesServer) -> None:
    arn = nubes.create_function(ECHO, name=f"orders-{uuid.uuid4().hex[:6]}")["FunctionArn"]

    idp = nubes.client("cognito-idp")
    pool_id = idp.create_user_pool(PoolName="m2m")["UserPool"]["Id"]
    domain = f"m2m-{uuid.uuid4().hex[:8]}"
    idp.create_user_pool_domain(Domain=domain, UserPoolId=pool_id)
    idp.create_resource_server(UserPoolId=pool_id, Identifier="orders", Name="Orders",
                               Scopes=[{"ScopeName": "read", "ScopeDescription": "r"}, {"ScopeName": "write", "ScopeDescription": "w"}])  # fmt: skip
    client = idp.create_user_pool_client(UserPoolId=pool_id, ClientName="svc", GenerateSecret=True, AllowedOAuthFlowsUserPoolClient=True,
                                         AllowedOAuthFlows=["client_credentials"], AllowedOAuthScopes=["orders/read", "orders/write"])["UserPoolClient"]  # fmt: skip

    v2 = nubes.client("apigatewayv2")
    api_id = v2.create_api(Name="orders", ProtocolType="HTTP")["ApiId"]
    integration = v2.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY", IntegrationUri=arn, PayloadFormatVersion="2.0")["IntegrationId"]
    auth = v2.create_authorizer(ApiId=api_id, AuthorizerType="JWT", Name="pool", IdentitySource=["$request.header.Authorization"],
                                JwtConfiguration={"Issuer": f"{nubes.endpoint}/{pool_id}", "Audience": [client["ClientId"]]})["AuthorizerId"]  # fmt: skip
    for key, scope in (("GET /orders", "orders/read"), ("POST /orders", "orders/write")):
        v2.create_route(ApiId=api_id, RouteKey=key, Target=f"integrations/{integration}", AuthorizationType="JWT",
                        AuthorizerId=auth, AuthorizationScopes=[scope])  # fmt: skip
    v2.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)

    token_url = f"http://127.0.0.1:{nubes.port}/oauth2/token"
    host = {"Host": f"{domain}.auth.localhost:{nubes.port}"}
    out = httpx.post(token_url, headers=host, auth=(client["ClientId"], client["ClientSecret"]),
                     data={"grant_type": "client_credentials", "scope": "orders/read"})  # fmt: skip
    assert out.status_code == 200, out.text
    bearer = {"Authorization": f"Bearer {out.json()['access_token']}"}
    url = f"{nubes.endpoint}/_nubes/execute-api/{api_id}/orders"
    read = httpx.get(url, headers=bearer)
    assert read.status_code == 200, read.text
    claims = json.loads(read.text)["jwt"]["claims"]
    assert claims["client_id"] == client["ClientId"] and claims["scope"] == "orders/read"
    assert httpx.post(url, headers=bearer).status_code == 403  # orders/write was not granted
    assert httpx.get(url).status_code == 401
