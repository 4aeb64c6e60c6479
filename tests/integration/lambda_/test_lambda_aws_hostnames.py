"""Code inside functions reaches nubes by AWS's real names over HTTPS, and AWS's
public Powertools layer ARNs resolve to a real layer."""

from __future__ import annotations

import base64
import io
import json
import zipfile

from nubes.testing import NubesServer

CODE = '''
import json, urllib.request, boto3

def handler(event, context):
    sts = boto3.client("sts", endpoint_url="https://sts.us-east-1.amazonaws.com", region_name="us-east-1")
    url = "https://cognito-idp.us-east-1.amazonaws.com/" + event["pool"] + "/.well-known/jwks.json"
    with urllib.request.urlopen(url, timeout=10) as resp:
        keys = json.loads(resp.read())["keys"]
    return {"account": sts.get_caller_identity()["Account"], "kid": keys[0]["kid"]}
'''


def _zip(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return buf.getvalue()


def test_https_to_amazonaws_hostnames_inside_a_function(nubes: NubesServer) -> None:
    pool_id = nubes.client("cognito-idp").create_user_pool(PoolName="hosts")["UserPool"]["Id"]
    lam = nubes.client("lambda")
    lam.create_function(FunctionName="aws-hosts", Runtime="python3.13", Handler="app.handler", Timeout=30,
                        Role="arn:aws:iam::000000000000:role/x", Code={"ZipFile": _zip({"app.py": CODE})})  # fmt: skip
    lam.get_waiter("function_active_v2").wait(FunctionName="aws-hosts")
    out = lam.invoke(FunctionName="aws-hosts", Payload=json.dumps({"pool": pool_id}).encode())
    body = json.loads(out["Payload"].read())
    assert "FunctionError" not in out, body
    assert body["account"] == "000000000000"
    assert body["kid"]


TOKEN_CODE = '''
import base64, json, urllib.parse, urllib.request

def handler(event, context):
    basic = base64.b64encode(f"{event['id']}:{event['secret']}".encode()).decode()
    request = urllib.request.Request(
        f"https://{event['domain']}.auth.us-east-1.amazoncognito.com/oauth2/token",
        data=urllib.parse.urlencode({"grant_type": "client_credentials", "scope": "orders/read"}).encode(),
        headers={"Authorization": "Basic " + basic, "Content-Type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())
'''


def test_machine_token_from_a_cognito_domain_inside_a_function(nubes: NubesServer) -> None:
    """The machine-to-machine pattern: a function fetches a client_credentials token
    from its pool's hosted domain by the domain's real amazoncognito.com name."""
    idp = nubes.client("cognito-idp")
    pool_id = idp.create_user_pool(PoolName="m2m")["UserPool"]["Id"]
    idp.create_user_pool_domain(UserPoolId=pool_id, Domain="m2m-orders")
    idp.create_resource_server(UserPoolId=pool_id, Identifier="orders", Name="orders",
                               Scopes=[{"ScopeName": "read", "ScopeDescription": "read orders"}])  # fmt: skip
    client = idp.create_user_pool_client(
        UserPoolId=pool_id, ClientName="worker", GenerateSecret=True, AllowedOAuthFlows=["client_credentials"],
        AllowedOAuthScopes=["orders/read"], AllowedOAuthFlowsUserPoolClient=True,
    )["UserPoolClient"]  # fmt: skip
    lam = nubes.client("lambda")
    lam.create_function(FunctionName="m2m-token", Runtime="python3.12", Handler="app.handler", Timeout=30,
                        Role="arn:aws:iam::000000000000:role/x", Code={"ZipFile": _zip({"app.py": TOKEN_CODE})})  # fmt: skip
    lam.get_waiter("function_active_v2").wait(FunctionName="m2m-token")
    event = {"domain": "m2m-orders", "id": client["ClientId"], "secret": client["ClientSecret"]}
    out = lam.invoke(FunctionName="m2m-token", Payload=json.dumps(event).encode())
    body = json.loads(out["Payload"].read())
    assert "FunctionError" not in out, body
    assert body["token_type"] == "Bearer" and body["access_token"].count(".") == 2
    claims = json.loads(base64.urlsafe_b64decode(body["access_token"].split(".")[1] + "=="))
    assert (claims["client_id"], claims["scope"], claims["token_use"]) == (client["ClientId"], "orders/read", "access")


def test_public_powertools_layer_arn(nubes: NubesServer) -> None:
    lam = nubes.client("lambda")
    code = "from aws_lambda_powertools import Logger\nlogger = Logger()\ndef handler(e, c):\n    import aws_lambda_powertools\n    return aws_lambda_powertools.__file__\n"
    arn = "arn:aws:lambda:us-east-1:017000801446:layer:AWSLambdaPowertoolsPythonV3-python312-x86_64:7"
    lam.create_function(FunctionName="with-powertools", Runtime="python3.12", Handler="app.handler", Timeout=30,
                        Layers=[arn], Role="arn:aws:iam::000000000000:role/x", Code={"ZipFile": _zip({"app.py": code})})  # fmt: skip
    lam.get_waiter("function_active_v2").wait(FunctionName="with-powertools")
    out = lam.invoke(FunctionName="with-powertools")
    location = json.loads(out["Payload"].read())
    assert "FunctionError" not in out, location
    assert "/layers/public/" in location
    assert lam.get_function(FunctionName="with-powertools")["Configuration"]["Layers"][0]["Arn"] == arn
