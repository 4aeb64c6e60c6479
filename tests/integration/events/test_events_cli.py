"""EventBridge and Scheduler through the aws CLI, as a user would type it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

from nubes.testing.server import NubesServer


def _aws(nubes: NubesServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **nubes.env_vars()}
    return subprocess.run([sys.executable, "-m", "awscli", *args], capture_output=True, text=True,
                          env=env, timeout=60)  # fmt: skip


def test_cli_rule_put_events_and_schedule(nubes: NubesServer) -> None:
    rule = f"cli-{uuid.uuid4().hex[:8]}"
    out = _aws(nubes, "events", "put-rule", "--name", rule,
               "--event-pattern", json.dumps({"source": ["cli.app"]}))  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["RuleArn"].endswith(f":rule/{rule}")
    out = _aws(nubes, "events", "put-events", "--entries",
               json.dumps([{"Source": "cli.app", "DetailType": "t", "Detail": '{"a": 1}'}]))  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["FailedEntryCount"] == 0
    out = _aws(nubes, "events", "put-rule", "--name", rule, "--event-pattern", '{"source": "x"}')
    assert out.returncode != 0
    assert "InvalidEventPatternException" in out.stderr
    out = _aws(nubes, "events", "put-rule", "--name", f"{rule}-tick",
               "--schedule-expression", "cron(0 12 ? * MON-FRI *)")  # fmt: skip
    assert out.returncode == 0, out.stderr
    described = json.loads(_aws(nubes, "events", "describe-rule", "--name", f"{rule}-tick").stdout)
    assert described["ScheduleExpression"] == "cron(0 12 ? * MON-FRI *)"
    out = _aws(nubes, "scheduler", "create-schedule", "--name", rule,
               "--schedule-expression", "rate(5 minutes)",
               "--flexible-time-window", '{"Mode": "OFF"}',
               "--target", json.dumps({"Arn": "arn:aws:sqs:us-east-1:000000000000:q",
                                       "RoleArn": "arn:aws:iam::000000000000:role/r"}))  # fmt: skip
    assert out.returncode == 0, out.stderr
    schedules = json.loads(_aws(nubes, "scheduler", "list-schedules", "--name-prefix", rule).stdout)
    assert [s["Name"] for s in schedules["Schedules"]] == [rule]
