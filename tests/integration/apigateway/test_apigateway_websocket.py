"""WebSocket APIs: the @connections management API under the API's own stage URL
(IAM-authorized: SigV4 required, as on AWS)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from nubes.testing import NubesServer

#: answers every message with the caller's connection id
WHOAMI = "def handler(event, context):\n    return {'statusCode': 200, 'body': event['requestContext']['connectionId']}\n"
_MISMATCH = "The request signature we calculated does not match the signature you provided."


def _function(nubes: NubesServer, name: str, code: str) -> str:
    arn: str = nubes.create_function(code, name=name)["FunctionArn"]
    return arn


def _ws_api(nubes: NubesServer, name: str, arn: str, stage: str = "live") -> str:
    v2 = nubes.client("apigatewayv2")
    api_id: str = v2.create_api(Name=name, ProtocolType="WEBSOCKET", RouteSelectionExpression="$request.body.action")["ApiId"]
    integ = v2.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY", IntegrationUri=arn)["IntegrationId"]
    v2.create_route(ApiId=api_id, RouteKey="$default", Target=f"integrations/{integ}", RouteResponseSelectionExpression="$default")
    v2.create_stage(ApiId=api_id, StageName=stage, AutoDeploy=True)
    return api_id


@pytest.fixture(scope="module")
def whoami(nubes: NubesServer) -> str:
    return _function(nubes, "ws-whoami", WHOAMI)


@pytest.fixture
def socket(nubes: NubesServer, whoami: str) -> Iterator[tuple[str, ClientConnection, str]]:
    """(api id, an open client connection, its connection id)."""
    api_id = _ws_api(nubes, "conn-auth", whoami)
    with connect(f"ws://127.0.0.1:{nubes.port}/_nubes/execute-api/{api_id}/live") as ws:
        ws.send("{}")
        connection_id = str(ws.recv(timeout=20))
        yield api_id, ws, connection_id


def _call(url: str, method: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def _signed(url: str, method: str, body: bytes, *, key: str = "test", secret: str = "test",
            host: str | None = None) -> dict[str, str]:  # fmt: skip
    """SigV4 headers for ``execute-api`` (``host``: sign for a Host other than the URL's)."""
    request = AWSRequest(method=method, url=url, data=body, headers={"host": host} if host else {})
    SigV4Auth(Credentials(key, secret), "execute-api", "us-east-1").add_auth(request)
    return dict(request.headers.items())


def _quiet(ws: ClientConnection) -> None:
    """Nothing more arrives on ``ws`` (a refused push was not delivered)."""
    with pytest.raises(TimeoutError):
        ws.recv(timeout=0.5)


def test_stage_url_management_api_works_signed(nubes: NubesServer, socket: tuple[str, ClientConnection, str]) -> None:
    api_id, ws, connection_id = socket
    management = nubes.client("apigatewaymanagementapi", endpoint_url=f"{nubes.endpoint}/_nubes/execute-api/{api_id}/live")
    management.post_to_connection(ConnectionId=connection_id, Data=b"pushed")
    assert ws.recv(timeout=10) == "pushed"
    info = management.get_connection(ConnectionId=connection_id)
    assert info["Identity"]["SourceIp"] == "127.0.0.1" and info["ConnectedAt"] <= info["LastActiveAt"]
    with pytest.raises(ClientError) as err:
        management.post_to_connection(ConnectionId="AAAAAAAAAAAAAAAA", Data=b"x")
    assert (err.value.response["Error"]["Code"], err.value.response["ResponseMetadata"]["HTTPStatusCode"]) == ("GoneException", 410)
    management.delete_connection(ConnectionId=connection_id)
    with pytest.raises(ConnectionClosed):  # the server closed it
        ws.recv(timeout=10)


@pytest.mark.parametrize("method", ["POST", "GET", "DELETE"])
def test_stage_url_management_api_refuses_unsigned(nubes: NubesServer, socket: tuple[str, ClientConnection, str], method: str) -> None:
    api_id, ws, connection_id = socket
    url = f"{nubes.endpoint}/_nubes/execute-api/{api_id}/live/@connections/{quote(connection_id, safe='')}"
    status, headers, body = _call(url, method, b"sneaky" if method == "POST" else None)
    assert (status, json.loads(body)) == (403, {"message": "Missing Authentication Token"})
    assert headers["x-amzn-errortype"] == "MissingAuthenticationTokenException"
    _quiet(ws)  # not delivered, not closed
    ws.send("{}")
    assert ws.recv(timeout=20) == connection_id


def test_stage_url_management_api_refuses_bad_signatures(nubes: NubesServer, socket: tuple[str, ClientConnection, str]) -> None:
    api_id, ws, connection_id = socket
    url = f"{nubes.endpoint}/_nubes/execute-api/{api_id}/live/@connections/{quote(connection_id, safe='')}"
    wrong_secret = _signed(url, "POST", b"x", secret="not-the-secret")
    status, headers, body = _call(url, "POST", b"x", wrong_secret)
    assert status == 403 and json.loads(body)["message"].startswith(_MISMATCH)
    assert headers["x-amzn-errortype"] == "InvalidSignatureException"
    # a valid signature for another body does not cover this one
    status, _, body = _call(url, "POST", b"tampered", _signed(url, "POST", b"original"))
    assert status == 403 and json.loads(body)["message"].startswith(_MISMATCH)
    # ... nor for another connection
    other = _signed(url.rsplit("/", 1)[0] + "/AAAAAAAAAAAAAAAA", "POST", b"x")
    assert _call(url, "POST", b"x", other)[0] == 403
    status, headers, body = _call(url, "POST", b"x", _signed(url, "POST", b"x", key="AKIDUNKNOWN0000000"))
    assert (status, json.loads(body)) == (403, {"message": "The security token included in the request is invalid."})
    assert headers["x-amzn-errortype"] == "UnrecognizedClientException"
    malformed = {"authorization": "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/execute-api/aws4_request"}
    assert _call(url, "POST", b"x", malformed)[0] == 403
    _quiet(ws)
    status, _, _ = _call(url, "POST", b"signed", _signed(url, "POST", b"signed"))
    assert status == 200 and ws.recv(timeout=10) == "signed"


def test_api_host_url_management_api_checks_signatures(nubes: NubesServer, socket: tuple[str, ClientConnection, str]) -> None:
    """``{api}.execute-api.localhost/{stage}/@connections/{id}``, signed for that host, as SDKs
    send it: a literal ``@`` and the id's ``=`` escaped."""
    api_id, ws, connection_id = socket
    host = f"{api_id}.execute-api.localhost:{nubes.port}"
    base = f"http://127.0.0.1:{nubes.port}/live/@connections/"
    url = base + quote(connection_id, safe="")
    assert _call(url, "POST", b"x", {"host": host})[0] == 403
    assert _call(url, "POST", b"x", {**_signed(url, "POST", b"x", host=host, secret="nope"), "host": host})[0] == 403
    status, _, _ = _call(url, "POST", b"by-host", {**_signed(url, "POST", b"by-host", host=host), "host": host})
    assert status == 200 and ws.recv(timeout=10) == "by-host"
    gone = base + "bm9wZQ%3D%3D"  # an id with "=" in it, sent escaped and signed so
    status, headers, body = _call(gone, "GET", None, {**_signed(gone, "GET", b"", host=host), "host": host})
    assert (status, headers["x-amzn-errortype"], body) == (410, "GoneException", b"")


def test_connection_of_another_api_is_gone_here(nubes: NubesServer, whoami: str, socket: tuple[str, ClientConnection, str]) -> None:
    _, ws, connection_id = socket
    other_api = _ws_api(nubes, "conn-other", whoami)
    management = nubes.client("apigatewaymanagementapi", endpoint_url=f"{nubes.endpoint}/_nubes/execute-api/{other_api}/live")
    with pytest.raises(ClientError) as err:
        management.post_to_connection(ConnectionId=connection_id, Data=b"x")
    assert err.value.response["Error"]["Code"] == "GoneException"
    _quiet(ws)


def test_http_api_has_no_management_api(nubes: NubesServer) -> None:
    api_id = nubes.client("apigatewayv2").create_api(Name="plain-http", ProtocolType="HTTP")["ApiId"]
    nubes.client("apigatewayv2").create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)
    url = f"{nubes.endpoint}/_nubes/execute-api/{api_id}/@connections/abc"
    status, _, body = _call(url, "POST", b"x", _signed(url, "POST", b"x"))
    assert (status, json.loads(body)) == (404, {"message": "Not Found"})


def test_no_auth_server_takes_unsigned_management_calls(tmp_path: Path) -> None:
    """``nubes up --no-auth`` verifies no signatures, here as on every AWS endpoint."""
    with NubesServer(tmp_path, extra_args=["--no-auth"]) as server:
        v2 = server.client("apigatewayv2")
        api_id = v2.create_api(Name="open", ProtocolType="WEBSOCKET", RouteSelectionExpression="$request.body.action")["ApiId"]
        v2.create_stage(ApiId=api_id, StageName="live", AutoDeploy=True)
        with connect(f"ws://127.0.0.1:{server.port}/_nubes/execute-api/{api_id}/live") as ws:
            ws.send("{}")  # no route: API Gateway's Forbidden answer names the connection
            connection_id = json.loads(ws.recv(timeout=20))["connectionId"]
            url = f"{server.endpoint}/_nubes/execute-api/{api_id}/live/@connections/{quote(connection_id, safe='')}"
            assert _call(url, "POST", b"unsigned")[0] == 200
            assert ws.recv(timeout=10) == "unsigned"


def test_deleted_access_key_stops_signing_management_calls(nubes: NubesServer, socket: tuple[str, ClientConnection, str]) -> None:
    api_id, ws, connection_id = socket
    iam = nubes.client("iam")
    key = iam.create_access_key()["AccessKey"]
    url = f"{nubes.endpoint}/_nubes/execute-api/{api_id}/live/@connections/{quote(connection_id, safe='')}"
    signed = _signed(url, "POST", b"with-key", key=key["AccessKeyId"], secret=key["SecretAccessKey"])
    assert _call(url, "POST", b"with-key", signed)[0] == 200
    assert ws.recv(timeout=10) == "with-key"
    iam.delete_access_key(AccessKeyId=key["AccessKeyId"])
    signed = _signed(url, "POST", b"after", key=key["AccessKeyId"], secret=key["SecretAccessKey"])
    status, headers, _ = _call(url, "POST", b"after", signed)
    assert (status, headers["x-amzn-errortype"]) == (403, "UnrecognizedClientException")
    _quiet(ws)
