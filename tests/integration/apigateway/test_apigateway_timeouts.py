"""An HTTP API integration that outlives its TimeoutInMillis: API Gateway answers
503 Service Unavailable, as on AWS (the function would answer 200 after 2.5 s)."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
import zipfile

from nubes.testing import NubesServer

SLOW = "import time\ndef handler(event, context):\n    time.sleep(2.5)\n    return {'statusCode': 200, 'body': 'late'}\n"


def test_http_api_integration_timeout_is_503(nubes: NubesServer) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", SLOW)
    lam = nubes.client("lambda")
    arn = lam.create_function(FunctionName="slow-http", Runtime="python3.12", Handler="app.handler", Timeout=10,
                              Role="arn:aws:iam::000000000000:role/x", Code={"ZipFile": buf.getvalue()})["FunctionArn"]  # fmt: skip
    lam.get_waiter("function_active_v2").wait(FunctionName="slow-http")
    v2 = nubes.client("apigatewayv2")
    api_id = v2.create_api(Name="slow", ProtocolType="HTTP")["ApiId"]
    integ = v2.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY", IntegrationUri=arn, PayloadFormatVersion="2.0",
                                  TimeoutInMillis=500)["IntegrationId"]  # fmt: skip
    v2.create_route(ApiId=api_id, RouteKey="GET /slow", Target=f"integrations/{integ}")
    v2.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)
    try:
        urllib.request.urlopen(f"{nubes.endpoint}/_nubes/execute-api/{api_id}/slow", timeout=30)
        raise AssertionError("expected 503")
    except urllib.error.HTTPError as err:
        assert (err.code, json.loads(err.read())) == (503, {"message": "Service Unavailable"})
