"""SNS → Lambda: the function receives AWS's SNS event shape (signed, with attributes)."""

from __future__ import annotations

import io
import json
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

from nubes.testing.server import NubesServer

RECORDER = """
import json, os
def handler(event, context):
    with open(os.environ["OUT"], "a") as fh:
        fh.write(json.dumps(event) + "\\n")
"""


def _zip(source: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("app.py", source)
    return buf.getvalue()


def test_publish_invokes_lambda(nubes: NubesServer, tmp_path: Path) -> None:
    lam, sns = nubes.client("lambda"), nubes.client("sns")
    out = tmp_path / "events.jsonl"
    name = f"sns-fn-{uuid.uuid4().hex[:8]}"
    fn = lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler",
                             Role="arn:aws:iam::000000000000:role/lambda", Code={"ZipFile": _zip(RECORDER)},
                             Environment={"Variables": {"OUT": str(out)}})  # fmt: skip
    lam.get_waiter("function_active_v2").wait(
        FunctionName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 50}
    )
    topic = sns.create_topic(Name=f"t-{uuid.uuid4().hex[:8]}")["TopicArn"]
    sub = sns.subscribe(TopicArn=topic, Protocol="lambda", Endpoint=fn["FunctionArn"])[
        "SubscriptionArn"
    ]
    sent = sns.publish(TopicArn=topic, Message="to a function",
                       MessageAttributes={"k": {"DataType": "String", "StringValue": "v"}})  # fmt: skip
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not events:
        if out.exists():
            events = [json.loads(line) for line in out.read_text().splitlines() if line]
        time.sleep(0.1)
    assert events, "the function was not invoked"
    record = events[0]["Records"][0]
    assert record["EventSource"] == "aws:sns" and record["EventSubscriptionArn"] == sub
    message = record["Sns"]
    assert message["Type"] == "Notification" and message["MessageId"] == sent["MessageId"]
    assert message["Message"] == "to a function" and message["Subject"] is None
    assert message["MessageAttributes"] == {"k": {"Type": "String", "Value": "v"}}
    assert message["SigningCertUrl"].endswith("/_nubes/sns/SimpleNotificationService.pem")
