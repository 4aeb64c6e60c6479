"""AWS_IAM routes (HTTP API) and methods (REST API): a SigV4 signature for
``execute-api`` is required, checked against the path as the client signed it
(``=``, ``@`` and ``:`` sent as they are or escaped), and the caller reaches the
function in the event."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
import zipfile

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from nubes.testing import NubesServer

ECHO = "import json\ndef handler(event, context):\n    return {'statusCode': 200, 'body': json.dumps(event)}\n"


def _call(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def _signed(url: str, secret: str = "test") -> dict[str, str]:
    request = AWSRequest(method="GET", url=url, data=b"")
    SigV4Auth(Credentials("test", secret), "execute-api", "us-east-1").add_auth(request)
    return dict(request.headers.items())


def test_http_api_iam_route(nubes: NubesServer) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", ECHO)
    lam = nubes.client("lambda")
    arn = lam.create_function(FunctionName="iam-echo", Runtime="python3.12", Handler="app.handler",
                              Role="arn:aws:iam::000000000000:role/x", Code={"ZipFile": buf.getvalue()})["FunctionArn"]  # fmt: skip
    lam.get_waiter("function_active_v2").wait(FunctionName="iam-echo")
    v2 = nubes.client("apigatewayv2")
    api_id = v2.create_api(Name="iam", ProtocolType="HTTP", Target=arn)["ApiId"]
    route = v2.get_routes(ApiId=api_id)["Items"][0]
    v2.update_route(ApiId=api_id, RouteId=route["RouteId"], AuthorizationType="AWS_IAM")
    base = f"{nubes.endpoint}/_nubes/execute-api/{api_id}"

    status, headers, _ = _call(base + "/items/1")
    assert (status, headers["x-amzn-errortype"]) == (403, "MissingAuthenticationTokenException")
    status, headers, _ = _call(base + "/items/1", _signed(base + "/items/1", secret="wrong"))
    assert (status, headers["x-amzn-errortype"]) == (403, "InvalidSignatureException")
    for path in ("/items/a=b@c:d", "/items/a%3Db%40c%3Ad", "/items/plain"):
        status, _, body = _call(base + path, _signed(base + path))
        assert status == 200, (path, body)
        event = json.loads(body)
        assert event["rawPath"] in ("/items/a=b@c:d", "/items/plain")
        iam = event["requestContext"]["authorizer"]["iam"]
        assert iam["accessKey"] == "test" and iam["accountId"] == "000000000000"


def test_rest_api_iam_method(nubes: NubesServer) -> None:
    gw = nubes.client("apigateway")
    api = gw.create_rest_api(name="iam-rest")
    resource = gw.create_resource(restApiId=api["id"], parentId=api["rootResourceId"], pathPart="{id}")["id"]
    gw.put_method(restApiId=api["id"], resourceId=resource, httpMethod="GET", authorizationType="AWS_IAM")
    gw.put_integration(restApiId=api["id"], resourceId=resource, httpMethod="GET", type="MOCK",
                       requestTemplates={"application/json": '{"statusCode": 200}'})  # fmt: skip
    gw.put_integration_response(restApiId=api["id"], resourceId=resource, httpMethod="GET", statusCode="200",
                                responseTemplates={"application/json": '{"caller": "$context.identity.accessKey"}'})  # fmt: skip
    gw.put_method_response(restApiId=api["id"], resourceId=resource, httpMethod="GET", statusCode="200")
    gw.create_deployment(restApiId=api["id"], stageName="live")
    url = f"{nubes.endpoint}/_nubes/execute-api/{api['id']}/live/key=value"
    status, headers, body = _call(url)
    assert (status, json.loads(body), headers["x-amzn-errortype"]) == (403, {"message": "Missing Authentication Token"},
                                                                       "MissingAuthenticationTokenException")  # fmt: skip
    status, _, body = _call(url, _signed(url))
    assert status == 200, body
