"""Function URLs with ``AuthType=AWS_IAM``: the SigV4 signature is verified, as on AWS."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from nubes.testing.server import NubesServer

WHO = ("import json\ndef handler(e, c):\n    return {'statusCode': 200, 'body': json.dumps({"
       "'path': e['rawPath'], 'iam': e['requestContext'].get('authorizer', {}).get('iam'),"
       " 'account': e['requestContext']['accountId'], 'body': e.get('body')})}\n")  # fmt: skip


def _send(request: AWSRequest) -> tuple[int, dict[str, str], Any]:
    prepared = request.prepare()
    req = urllib.request.Request(prepared.url, data=prepared.body or None, method=prepared.method,
                                 headers=dict(prepared.headers.items()))  # fmt: skip
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, json.loads(err.read())


def _signed(url: str, body: bytes, key: str = "test", secret: str = "test", service: str = "lambda") -> AWSRequest:
    request = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(key, secret), service, "us-east-1").add_auth(request)
    return request


def _iam_url(nubes: NubesServer, make_function: Callable[..., str]) -> str:
    lam = nubes.client("lambda")
    name = make_function({"app.py": WHO})
    config = lam.create_function_url_config(FunctionName=name, AuthType="AWS_IAM")
    url_id = config["FunctionUrl"].split("//")[1].split(".")[0]
    return f"{nubes.endpoint}/_nubes/lambda-url/{url_id}"


def test_a_good_signature_reaches_the_function_with_the_callers_identity(
    nubes: NubesServer, make_function: Callable[..., str]
) -> None:
    base = _iam_url(nubes, make_function)
    status, _, body = _send(_signed(f"{base}/items/7?x=1&y=a%20b", b'{"k": 1}'))
    assert status == 200
    assert body["path"] == "/items/7" and body["body"] == '{"k": 1}'
    assert body["account"] == "000000000000"
    assert body["iam"]["accessKey"] == "test" and body["iam"]["userArn"] == "arn:aws:iam::000000000000:root"
    # paths the client escapes (a space, unicode) or leaves as they are (':', '@')
    for path in ("/a%20b/%C3%A9t%C3%A9", "/user:1@x,y"):
        status, _, body = _send(_signed(f"{base}{path}", b"{}"))
        assert status == 200, (path, body)
    # a presigned URL is a signature too
    request = AWSRequest(method="GET", url=f"{base}/presigned")
    SigV4QueryAuth(Credentials("test", "test"), "lambda", "us-east-1", expires=60).add_auth(request)
    status, _, body = _send(request)
    assert status == 200 and body["path"] == "/presigned"


def test_a_tampered_signature_gets_awss_403(nubes: NubesServer, make_function: Callable[..., str]) -> None:
    base = _iam_url(nubes, make_function)
    tampered_body = _signed(f"{base}/items", b'{"amount": 1}')
    tampered_body.data = b'{"amount": 1000}'
    tampered_path = _signed(f"{base}/items", b"{}")
    tampered_path.url = f"{base}/admin"
    wrong_secret = _signed(f"{base}/items", b"{}", secret="not-the-secret")
    for request in (tampered_body, tampered_path, wrong_secret):
        status, headers, body = _send(request)
        assert status == 403
        assert headers["x-amzn-errortype"] == "InvalidSignatureException"
        assert body["message"].startswith("The request signature we calculated does not match")
    status, headers, body = _send(_signed(f"{base}/items", b"{}", service="execute-api"))
    assert (status, headers["x-amzn-errortype"]) == (403, "InvalidSignatureException")
    assert body == {"message": "Credential should be scoped to correct service: 'lambda'. "}
    status, headers, body = _send(_signed(f"{base}/items", b"{}", key="AKIDNOSUCHKEY"))
    assert (status, headers["x-amzn-errortype"]) == (403, "UnrecognizedClientException")
    assert body == {"message": "The security token included in the request is invalid."}


def test_no_signature_is_forbidden(nubes: NubesServer, make_function: Callable[..., str]) -> None:
    base = _iam_url(nubes, make_function)
    status, _, body = _send(AWSRequest(method="POST", url=f"{base}/items", data=b"{}"))
    assert (status, body) == (403, {"Message": "Forbidden"})
