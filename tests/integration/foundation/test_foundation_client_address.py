"""The client address services see is the connection's peer, as on AWS: a local
process cannot rewrite it with X-Forwarded-For (API Gateway's sourceIp)."""

from __future__ import annotations

import json
import urllib.request

from nubes.testing import NubesServer

SOURCE_IP = (
    "import json\n"
    "def handler(event, context):\n"
    "    return {'statusCode': 200, 'body': json.dumps(event['requestContext']['http']['sourceIp'])}\n"
)


def test_forwarded_headers_do_not_change_source_ip(nubes: NubesServer) -> None:
    arn = nubes.create_function(SOURCE_IP)["FunctionArn"]
    api = nubes.client("apigatewayv2").create_api(Name="source-ip", ProtocolType="HTTP", Target=arn)
    url = f"{nubes.endpoint}/_nubes/execute-api/{api['ApiId']}/whoami"
    forged = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https", "Forwarded": "for=203.0.113.9"}
    for headers in ({}, forged):
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as resp:
            assert json.loads(resp.read()) == "127.0.0.1"


def test_create_function_helper_makes_an_active_function_from_files(nubes: NubesServer) -> None:
    """``NubesServer.create_function``: what users' own tests use to set up a function."""
    made = nubes.create_function({"pkg/__init__.py": "", "pkg/mod.py": "def go(e, c):\n    return {'got': e}\n"},
                                 handler="pkg.mod.go", Environment={"Variables": {"K": "v"}})  # fmt: skip
    config = nubes.client("lambda").get_function(FunctionName=made["FunctionName"])["Configuration"]
    assert (config["State"], config["Handler"], config["Environment"]["Variables"]) == ("Active", "pkg.mod.go", {"K": "v"})
    out = nubes.client("lambda").invoke(FunctionName=made["FunctionArn"], Payload=b'{"a": 1}')
    assert json.loads(out["Payload"].read()) == {"got": {"a": 1}}
