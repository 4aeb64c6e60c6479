"""``sam build && sam deploy --resolve-s3`` and ``sam delete`` against nubes, with the
SAM CLI found on PATH or in ``NUBES_SAM`` (skipped when neither has it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from nubes.testing.server import NubesServer

SAM = os.environ.get("NUBES_SAM") or shutil.which("sam")
RUNTIME = f"python{sys.version_info.major}.{sys.version_info.minor}"

TEMPLATE = f"""
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Resources:
  Hello:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/
      Handler: app.handler
      Runtime: {RUNTIME}
      Role: arn:aws:iam::000000000000:role/hello
      Environment: {{Variables: {{WORD: deployed}}}}
Outputs:
  Fn: {{Value: !Ref Hello}}
"""


@pytest.mark.skipif(SAM is None, reason="the SAM CLI is not installed")
def test_sam_build_deploy_delete(nubes: NubesServer, tmp_path: Path) -> None:
    assert SAM is not None
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text(
        "import os\ndef handler(event, context):\n    return os.environ['WORD']\n"
    )
    (tmp_path / "src" / "requirements.txt").write_text("")
    (tmp_path / "template.yaml").write_text(TEMPLATE)
    env = {
        **os.environ,
        **nubes.env_vars(),
        "SAM_CLI_TELEMETRY": "0",
        "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
    }
    name = f"sam-{uuid.uuid4().hex[:8]}"

    def sam(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [SAM, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )

    built = sam("build")
    assert built.returncode == 0, built.stdout + built.stderr
    deployed = sam(
        "deploy",
        "--stack-name",
        name,
        "--resolve-s3",
        "--capabilities",
        "CAPABILITY_IAM",
        "--no-confirm-changeset",
        "--region",
        nubes.region,
    )
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert f"Successfully created/updated stack - {name}" in deployed.stdout
    cfn = nubes.client("cloudformation")
    managed = cfn.describe_stacks(StackName="aws-sam-cli-managed-default")["Stacks"][0]
    assert {"Key": "ManagedStackSource", "Value": "AwsSamCli"} in managed["Tags"]
    function = cfn.describe_stacks(StackName=name)["Stacks"][0]["Outputs"][0]["OutputValue"]
    assert nubes.client("lambda").invoke(FunctionName=function)["Payload"].read() == b'"deployed"'
    deleted = sam("delete", "--stack-name", name, "--no-prompts", "--region", nubes.region)
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    assert name not in [s["StackName"] for s in cfn.describe_stacks()["Stacks"]]
