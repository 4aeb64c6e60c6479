"""End to end: deploy the inspections app with ``nubes deploy`` and walk its whole
flow as a client would — sign up, sign in, create, validate, upload a photo, approve,
read the mail, hear the WebSocket pushes.

Runs against the ``nubes`` fixture (``pip install nubes`` brings the pytest plugin).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

APP = Path(__file__).resolve().parents[1]
PASSWORD = "inspect-me-1"


def _until(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class App:
    """The deployed app's URLs and a signed-in HTTP client."""

    def __init__(self, nubes: Any, outputs: dict[str, str]) -> None:
        self.nubes = nubes
        self.outputs = outputs
        api_id = outputs["ApiUrl"].split("//")[1].split(".")[0]
        ws_id = outputs["WebSocketUrl"].split("//")[1].split(".")[0]
        self.api = f"{nubes.endpoint}/_nubes/execute-api/{api_id}"
        self.ws = f"ws://127.0.0.1:{nubes.port}/_nubes/execute-api/{ws_id}/live"
        self.token = ""

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        """An HTTP API request; returns (status, JSON body)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.api + path, data=data, method=method)
        request.add_header("content-type", "application/json")
        if (token if token is not None else self.token):
            request.add_header("authorization", "Bearer " + (token if token is not None else self.token))
        try:
            with urllib.request.urlopen(request, timeout=15) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def item(self, item_id: str) -> dict[str, Any]:
        status, body = self.call("GET", f"/inspections/{item_id}")
        assert status == 200, body
        return dict(body)


def deploy(nubes: Any, stack: str) -> dict[str, str]:
    """``nubes deploy`` as a user runs it; returns the stack's Outputs."""
    cmd = [sys.executable, "-m", "nubes", "deploy", str(APP / "template.yaml"), "--stack-name", stack,
           "--port", str(nubes.port)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    stacks = nubes.client("cloudformation").describe_stacks(StackName=stack)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0]["Outputs"]}


@pytest.fixture(scope="module")
def app(nubes: Any) -> Iterator[App]:
    """The app deployed once for this module, with a signed-up, signed-in inspector."""
    deployed = App(nubes, deploy(nubes, "inspections-e2e"))
    idp = nubes.client("cognito-idp")
    email = f"inspector-{uuid.uuid4().hex[:6]}@example.com"
    signed_up = idp.sign_up(ClientId=deployed.outputs["UserPoolClientId"], Username=email, Password=PASSWORD)
    assert signed_up["UserConfirmed"] is True  # the PreSignUp function confirmed it
    auth = idp.initiate_auth(ClientId=deployed.outputs["UserPoolClientId"], AuthFlow="USER_PASSWORD_AUTH",
                             AuthParameters={"USERNAME": email, "PASSWORD": PASSWORD})  # fmt: skip
    deployed.token = auth["AuthenticationResult"]["IdToken"]
    yield deployed


def _next_message(ws: ClientConnection, kind: str, item_id: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        if message.get("type") == kind and message.get("id") == item_id:
            return dict(message)


def test_api_needs_a_token(app: App) -> None:
    status, _ = app.call("GET", "/inspections", token="")
    assert status == 401
    status, _ = app.call("GET", "/inspections", token="not-a-jwt")
    assert status == 401


def test_create_list_and_validate(app: App) -> None:
    with connect(app.ws, open_timeout=10) as ws:
        status, created = app.call("POST", "/inspections", {"site": "Bridge 7", "findings": ["rust on girder"]})
        assert status == 201 and created["status"] == "NEW"
        assert created["inspector"].startswith("inspector-")
        bad_status, bad = app.call("POST", "/inspections", {"site": "", "findings": []})
        assert bad_status == 201
        pushed = _next_message(ws, "validated", created["id"])
        assert pushed["status"] == "VALID"
    _until(lambda: app.item(created["id"])["status"] == "VALID", what="validation")
    invalid = _until(lambda: (i := app.item(bad["id"]))["status"] == "INVALID" and i, what="invalid")
    assert "site is required" in invalid["problems"]
    _, listed = app.call("GET", "/inspections")
    assert {created["id"], bad["id"]} <= {i["id"] for i in listed["items"]}


def test_photo_upload_is_post_processed(app: App) -> None:
    _, created = app.call("POST", "/inspections", {"site": "Tunnel 2", "findings": ["crack"]})
    status, presigned = app.call("POST", f"/inspections/{created['id']}/photos", {"name": "crack.jpg"})
    assert status == 200 and presigned["key"].startswith(f"photos/{created['id']}/")
    photo = b"\xff\xd8\xff\xe0" + b"jpeg" * 100
    put = urllib.request.Request(presigned["url"], data=photo, method="PUT", headers={"content-type": "image/jpeg"})
    with urllib.request.urlopen(put, timeout=15) as resp:
        assert resp.status == 200
    item = _until(lambda: (i := app.item(created["id"]))["photos"] and i, what="post-processing")
    assert item["photos"][0] == {"key": presigned["key"], "size": len(photo), "content_type": "image/jpeg"}
    s3 = app.nubes.client("s3")
    name = presigned["key"].rsplit("/", 1)[1]
    meta = s3.get_object(Bucket=app.outputs["PhotosBucket"], Key=f"processed/{created['id']}/{name}.json")
    assert json.loads(meta["Body"].read())["size"] == len(photo)


def test_approval_workflow_mails_and_pushes(app: App) -> None:
    _, created = app.call("POST", "/inspections", {"site": "Dam 1", "findings": ["spillway ok"]})
    item_id = created["id"]
    status, _ = app.call("POST", f"/inspections/{item_id}/approve", {"approved": True})
    assert status == 409  # nothing waits for an approval yet
    with connect(app.ws, open_timeout=10) as ws:
        status, _ = app.call("POST", f"/inspections/{item_id}/submit")
        assert status == 202
        _next_message(ws, "approval_requested", item_id)
        assert app.item(item_id)["status"] == "PENDING_APPROVAL"
        status, decision = app.call("POST", f"/inspections/{item_id}/approve", {"approved": True})
        assert status == 200 and decision["approved"] is True
        pushed = _next_message(ws, "decision", item_id)
        assert pushed["status"] == "APPROVED"
    assert app.item(item_id)["status"] == "APPROVED"

    def mail() -> Any:
        with urllib.request.urlopen(app.nubes.endpoint + "/_nubes/ses?email=supervisor@example.com") as resp:
            messages = json.loads(resp.read())["messages"]
        return [m for m in messages if item_id in json.dumps(m)]

    sent = _until(mail, what="the SES notification")
    assert "approved" in json.dumps(sent[0])


def test_failed_post_processing_goes_to_the_dead_letter_queue(app: App) -> None:
    _, created = app.call("POST", "/inspections", {"site": "Pier 4", "findings": ["ok"]})
    _, presigned = app.call("POST", f"/inspections/{created['id']}/photos",
                            {"name": "notes.txt", "content_type": "text/plain"})  # fmt: skip
    put = urllib.request.Request(presigned["url"], data=b"not a photo", method="PUT",
                                 headers={"content-type": "text/plain"})  # fmt: skip
    with urllib.request.urlopen(put, timeout=15) as resp:
        assert resp.status == 200
    sqs = app.nubes.client("sqs")

    def dead_letters() -> Any:
        got = sqs.receive_message(QueueUrl=app.outputs["PhotoDeadLetterQueueUrl"], WaitTimeSeconds=2,
                                  MaxNumberOfMessages=10).get("Messages", [])  # fmt: skip
        return [m for m in got if presigned["key"] in m["Body"]]

    dead = _until(dead_letters, timeout=60, what="the dead-lettered upload")
    assert json.loads(dead[0]["Body"])["Records"][0]["s3"]["object"]["key"] == presigned["key"]
    assert app.item(created["id"])["photos"] == []
