"""SNS through the aws CLI, as a user types it."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

from nubes.testing.server import NubesServer


def test_aws_cli_topic_to_queue(nubes: NubesServer, tmp_path: Path) -> None:
    env = {**os.environ, **nubes.env_vars(), "AWS_CONFIG_FILE": str(tmp_path / "none"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}  # fmt: skip

    def aws(*args: str) -> Any:
        out = subprocess.run(["aws", *args, "--output", "json", "--endpoint-url", nubes.endpoint],
                             env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout) if out.stdout.strip() else {}

    suffix = uuid.uuid4().hex[:8]
    topic = aws("sns", "create-topic", "--name", f"cli-{suffix}")["TopicArn"]
    url = aws("sqs", "create-queue", "--queue-name", f"cli-sub-{suffix}")["QueueUrl"]
    arn = aws("sqs", "get-queue-attributes", "--queue-url", url, "--attribute-names", "QueueArn")[
        "Attributes"
    ]["QueueArn"]
    aws("sns", "subscribe", "--topic-arn", topic, "--protocol", "sqs", "--notification-endpoint", arn,
        "--attributes", "RawMessageDelivery=true")  # fmt: skip
    sent = aws("sns", "publish", "--topic-arn", topic, "--message", "hello from the cli")
    assert sent["MessageId"]
    got = aws("sqs", "receive-message", "--queue-url", url, "--wait-time-seconds", "5")
    assert got["Messages"][0]["Body"] == "hello from the cli"
    topics = aws("sns", "list-topics")["Topics"]
    assert {"TopicArn": topic} in topics
