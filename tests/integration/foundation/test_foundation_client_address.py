"""The client address services see is the connection's peer, as on AWS: a local
process cannot rewrite it with X-Forwarded-For (API Gateway's sourceIp)."""

from __future__ import annotations

import io
import json
import urllib.request
import zipfile

from nubes.testing import NubesServer

SOURCE_IP = (
    "import json\n"
    "def handler(event, context):\n"
    "    return {'statusCode': 200, 'body': json.dumps(event['requestContext']['http']['sourceIp'])}\n"
)


def test_forwarded_headers_do_not_change_source_ip(nubes: NubesServer) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", SOURCE_IP)
    lam = nubes.client("lambda")
    arn = lam.create_function(FunctionName="source-ip", Runtime="python3.12", Handler="app.handler",
                              Role="arn:aws:iam::000000000000:role/x", Code={"ZipFile": buf.getvalue()})["FunctionArn"]  # fmt: skip
    lam.get_waiter("function_active_v2").wait(FunctionName="source-ip")
    api = nubes.client("apigatewayv2").create_api(Name="source-ip", ProtocolType="HTTP", Target=arn)
    url = f"{nubes.endpoint}/_nubes/execute-api/{api['ApiId']}/whoami"
    forged = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https", "Forwarded": "for=203.0.113.9"}
    for headers in ({}, forged):
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as resp:
            assert json.loads(resp.read()) == "127.0.0.1"
