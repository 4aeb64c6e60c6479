"""``nubes up --deploy TEMPLATE``: the README's first command — the server starts,
deploys the example app, and prints its API URL, the console URL and how to sign in."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

from nubes.testing.server import NubesServer

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "inspections" / "template.yaml"


def test_up_deploys_the_example_and_says_how_to_use_it(tmp_path: Path) -> None:
    with NubesServer(tmp_path / "data", extra_args=["--deploy", str(EXAMPLE)]) as server:
        deadline = time.monotonic() + 90
        while "Console" not in server.logs() and "deploy of" not in server.logs() and time.monotonic() < deadline:
            time.sleep(0.2)
        logs = server.logs()
        assert "inspections deployed" in logs, logs
        stack = server.client("cloudformation").describe_stacks(StackName="inspections")["Stacks"][0]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
        api_id = outputs["ApiUrl"].split("//")[1].split(".")[0]
        assert f"http://{api_id}.execute-api.localhost:{server.port}" in logs
        assert f"{server.endpoint}/_nubes/console" in logs
        assert f"cognito-idp sign-up --client-id {outputs['UserPoolClientId']}" in logs
        # the issuer parameter got the real endpoint, so the authorizer trusts this pool's tokens
        params = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
        assert params["NubesEndpoint"] == server.endpoint
        request = urllib.request.Request(f"{server.endpoint}/_nubes/execute-api/{api_id}/inspections")
        try:
            urllib.request.urlopen(request, timeout=10)
            raise AssertionError("the API answered without a token")
        except urllib.error.HTTPError as exc:
            assert exc.code == 401
