"""Shared fixtures of the console tests: a populated nubes, JSON helpers, and a
chromium page (Debian's chromium driven by playwright; the browser tests skip,
saying why, where either is missing)."""

from __future__ import annotations

import io
import json
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zipfile
from typing import Any

import pytest

from nubes.testing.server import NubesServer

CHROMIUM = os.environ.get("NUBES_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.fixture(scope="module")
def page() -> Any:
    """A chromium page, or a skip when chromium or playwright is not installed."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"chromium is not installed ({CHROMIUM})")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            tab = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            tab.on("pageerror", lambda exc: errors.append(str(exc)))
            tab.js_errors = errors
            yield tab
        finally:
            browser.close()

HANDLER = """
def handler(event, context):
    print("console-test saw", event)
    return {"echo": event}
"""

DEFINITION = {
    "StartAt": "Prepare",
    "States": {
        "Prepare": {"Type": "Pass", "Result": [1, 2], "ResultPath": "$.items", "Next": "Fan"},
        "Fan": {
            "Type": "Parallel",
            "Branches": [
                {"StartAt": "Left", "States": {"Left": {"Type": "Pass", "End": True}}},
                {
                    "StartAt": "Each",
                    "States": {
                        "Each": {
                            "Type": "Map",
                            "ItemsPath": "$.items",
                            "ItemProcessor": {
                                "StartAt": "Item",
                                "States": {"Item": {"Type": "Pass", "End": True}},
                            },
                            "End": True,
                        }
                    },
                },
            ],
            "Next": "Decide",
        },
        "Decide": {
            "Type": "Choice",
            "Choices": [{"Variable": "$[0].items[0]", "NumericEquals": 1, "Next": "Done"}],
            "Default": "Broken",
        },
        "Broken": {"Type": "Fail", "Error": "Nope"},
        "Done": {"Type": "Succeed"},
    },
}


def _zip(source: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", source)
    return buf.getvalue()


class ConsoleClient:
    """Requests to one server's console."""

    def __init__(self, nubes: NubesServer) -> None:
        self.endpoint = nubes.endpoint

    def get(
        self, path: str, method: str = "GET", body: bytes | None = None, console_header: bool = True
    ) -> tuple[int, str, bytes]:
        """Status, content type and body of a console request."""
        headers = {} if method == "GET" or not console_header else {"X-Nubes-Console": "1"}
        request = urllib.request.Request(
            self.endpoint + path, data=body, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.headers.get("Content-Type", ""), response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers.get("Content-Type", ""), error.read()

    def api(
        self, endpoint: str, method: str = "GET", body: bytes | None = None, **params: str
    ) -> Any:
        """A console API answer that must be JSON and 200."""
        qs = ("?" + urllib.parse.urlencode(params)) if params else ""
        status, kind, raw = self.get(f"/_nubes/console/api/{endpoint}{qs}", method, body)
        assert kind.startswith("application/json"), (endpoint, kind)
        assert status == 200, (endpoint, status, raw[:500])
        return json.loads(raw)


@pytest.fixture
def console(nubes: NubesServer) -> ConsoleClient:
    """A client of the session server's console."""
    return ConsoleClient(nubes)


@pytest.fixture(scope="module")
def world(nubes: NubesServer) -> dict[str, str]:
    """A function, table, queue, bucket, topic, state machine with a finished execution, a mail."""
    tag = uuid.uuid4().hex[:8]
    names = {"function": f"console-fn-{tag}", "table": f"console-table-{tag}", "queue": f"console-q-{tag}",
             "bucket": f"console-bucket-{tag}", "topic": f"console-topic-{tag}", "machine": f"console-sm-{tag}"}  # fmt: skip
    lam = nubes.client("lambda")
    lam.create_function(FunctionName=names["function"], Runtime="python3.12", Handler="app.handler", Timeout=30,
                        Role="arn:aws:iam::000000000000:role/lambda", Code={"ZipFile": _zip(HANDLER)})  # fmt: skip
    lam.get_waiter("function_active_v2").wait(
        FunctionName=names["function"], WaiterConfig={"Delay": 0.1, "MaxAttempts": 300}
    )
    lam.invoke(FunctionName=names["function"], Payload=b'{"first": 1}')
    ddb = nubes.client("dynamodb")
    ddb.create_table(TableName=names["table"], KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")  # fmt: skip
    for i in range(60):
        ddb.put_item(
            TableName=names["table"], Item={"pk": {"S": f"item-{i:02d}"}, "n": {"N": str(i)}}
        )
    sqs = nubes.client("sqs")
    url = sqs.create_queue(QueueName=names["queue"])["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="hello")
    s3 = nubes.client("s3")
    s3.create_bucket(Bucket=names["bucket"])
    s3.put_object(Bucket=names["bucket"], Key="docs/readme.txt", Body=b"console bytes")
    nubes.client("sns").create_topic(Name=names["topic"])
    sfn = nubes.client("stepfunctions")
    arn = sfn.create_state_machine(name=names["machine"], definition=json.dumps(DEFINITION),
                                   roleArn="arn:aws:iam::000000000000:role/sfn")["stateMachineArn"]  # fmt: skip
    execution = sfn.start_execution(stateMachineArn=arn, input="{}")["executionArn"]
    deadline = time.monotonic() + 30
    while (
        sfn.describe_execution(executionArn=execution)["status"] == "RUNNING"
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    ses = nubes.client("ses")
    ses.verify_email_identity(EmailAddress=f"from-{tag}@example.com")
    ses.send_email(Source=f"from-{tag}@example.com", Destination={"ToAddresses": [f"to-{tag}@example.com"]},
                   Message={"Subject": {"Data": f"Console {tag}"}, "Body": {"Text": {"Data": "hi there"}}})  # fmt: skip
    names.update(machine_arn=arn, execution_arn=execution, queue_url=url, tag=tag)
    return names
