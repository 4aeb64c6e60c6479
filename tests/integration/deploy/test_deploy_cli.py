"""``aws cloudformation deploy`` (the aws CLI's change set flow) against nubes."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from nubes.testing.server import NubesServer

TEMPLATE = """
Parameters:
  Value: {Type: String}
Resources:
  P:
    Type: AWS::SSM::Parameter
    Properties: {Name: !Sub "/${AWS::StackName}/p", Type: String, Value: !Ref Value}
Outputs:
  Name: {Value: !Ref P}
"""


def _aws(nubes: NubesServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **nubes.env_vars()}
    return subprocess.run(
        ["aws", "--endpoint-url", nubes.endpoint, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def _wait_for_a_new_change_set_name(nubes: NubesServer, stack: str) -> None:
    """Wait until ``aws cloudformation deploy`` would name a change set unlike the stack's existing ones.

    The CLI names change sets ``awscli-cloudformation-package-deploy-<unix second>``, and the executed
    (EXECUTE_COMPLETE) or empty (FAILED) change set stays on the stack as on AWS; a second deploy within
    the same second would get AlreadyExistsException, from AWS and from nubes alike. So wait for the
    clock to pass the newest such name (at most a second), not a fixed time.
    """
    prefix = "awscli-cloudformation-package-deploy-"
    summaries = nubes.client("cloudformation").list_change_sets(StackName=stack)["Summaries"]
    taken = [
        int(c["ChangeSetName"][len(prefix) :])
        for c in summaries
        if c["ChangeSetName"].startswith(prefix)
    ]
    while taken and int(time.time()) <= max(taken):
        time.sleep(0.05)


@pytest.mark.skipif(shutil.which("aws") is None, reason="the aws CLI is not installed")
def test_aws_cloudformation_deploy(nubes: NubesServer, tmp_path: Path) -> None:
    template = tmp_path / "template.yaml"
    template.write_text(TEMPLATE)
    name = f"cli-{uuid.uuid4().hex[:8]}"
    first = _aws(
        nubes,
        "cloudformation",
        "deploy",
        "--stack-name",
        name,
        "--template-file",
        str(template),
        "--parameter-overrides",
        "Value=one",
    )
    assert first.returncode == 0, first.stderr
    assert f"Successfully created/updated stack - {name}" in first.stdout
    ssm = nubes.client("ssm")
    assert ssm.get_parameter(Name=f"/{name}/p")["Parameter"]["Value"] == "one"
    _wait_for_a_new_change_set_name(nubes, name)
    again = _aws(
        nubes,
        "cloudformation",
        "deploy",
        "--stack-name",
        name,
        "--template-file",
        str(template),
        "--parameter-overrides",
        "Value=one",
        "--no-fail-on-empty-changeset",
    )
    assert again.returncode == 0, again.stderr
    assert "No changes to deploy" in again.stdout + again.stderr
    _wait_for_a_new_change_set_name(nubes, name)
    changed = _aws(
        nubes,
        "cloudformation",
        "deploy",
        "--stack-name",
        name,
        "--template-file",
        str(template),
        "--parameter-overrides",
        "Value=two",
    )
    assert changed.returncode == 0, changed.stderr
    assert ssm.get_parameter(Name=f"/{name}/p")["Parameter"]["Value"] == "two"
    deleted = _aws(nubes, "cloudformation", "delete-stack", "--stack-name", name)
    assert deleted.returncode == 0, deleted.stderr
    waited = _aws(nubes, "cloudformation", "wait", "stack-delete-complete", "--stack-name", name)
    assert waited.returncode == 0, waited.stderr
