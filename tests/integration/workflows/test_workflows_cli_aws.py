"""The aws CLI against nubes' Step Functions, as a user would type it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from nubes.testing.server import NubesServer


def _aws(nubes: NubesServer, *args: str) -> Any:
    env = {**os.environ, **nubes.env_vars()}
    out = subprocess.run([sys.executable, "-m", "awscli", "stepfunctions", *args],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout) if out.stdout.strip() else {}


def test_aws_cli_session(nubes: NubesServer, tmp_path: Path) -> None:
    definition = tmp_path / "machine.json"
    definition.write_text(json.dumps({"StartAt": "Hello", "States": {"Hello": {
        "Type": "Pass", "Parameters": {"greeting.$": "States.Format('hello {}', $.name)"},
        "End": True}}}))
    name = f"cli-{uuid.uuid4().hex[:8]}"
    created = _aws(nubes, "create-state-machine", "--name", name, "--definition",
                   f"file://{definition}", "--role-arn", "arn:aws:iam::000000000000:role/x")
    arn = created["stateMachineArn"]
    started = _aws(nubes, "start-execution", "--state-machine-arn", arn, "--input",
                   '{"name": "cli"}')
    deadline = time.time() + 20
    while True:
        desc = _aws(nubes, "describe-execution", "--execution-arn", started["executionArn"])
        if desc["status"] != "RUNNING" or time.time() > deadline:
            break
        time.sleep(0.1)
    assert desc["status"] == "SUCCEEDED"
    assert json.loads(desc["output"]) == {"greeting": "hello cli"}
    listed = _aws(nubes, "list-executions", "--state-machine-arn", arn)
    assert [e["name"] for e in listed["executions"]] == [started["executionArn"].split(":")[-1]]
    result = _aws(nubes, "validate-state-machine-definition", "--definition",
                  f"file://{definition}")
    assert result["result"] == "OK"
