"""SES v1 and v2 as applications use them: identities, templates, sending, the
mailbox, and the SMTP relay."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from nubes.testing import NubesServer, free_port


def _mailbox(server: NubesServer, email: str | None = None) -> list[dict[str, object]]:
    url = server.endpoint + "/_nubes/ses" + (f"?email={email}" if email else "")
    with urllib.request.urlopen(url) as resp:
        messages: list[dict[str, object]] = json.loads(resp.read())["messages"]
        return messages


def test_v1_send_requires_a_verified_sender(nubes: NubesServer) -> None:
    ses = nubes.client("ses")
    message = {"Subject": {"Data": "hi"}, "Body": {"Text": {"Data": "hello"}}}
    with pytest.raises(ClientError) as err:
        ses.send_email(Source="nobody@unverified.test", Destination={"ToAddresses": ["a@x.test"]}, Message=message)
    assert err.value.response["Error"]["Code"] == "MessageRejected"
    ses.verify_email_identity(EmailAddress="sender@v1.test")
    attrs = ses.get_identity_verification_attributes(Identities=["sender@v1.test"])["VerificationAttributes"]
    assert attrs["sender@v1.test"]["VerificationStatus"] == "Success"
    message_id = ses.send_email(Source="sender@v1.test", Destination={"ToAddresses": ["to1@v1.test"]}, Message=message)["MessageId"]
    got = [m for m in _mailbox(nubes, "to1@v1.test") if m["Id"] == message_id]
    assert got and got[0]["Subject"] == "hi" and got[0]["Text"].strip() == "hello"  # type: ignore[union-attr]
    assert "sender@v1.test" in ses.list_identities()["Identities"]
    assert ses.get_send_quota()["SentLast24Hours"] >= 1


def test_v1_templates_and_raw(nubes: NubesServer) -> None:
    ses = nubes.client("ses")
    ses.verify_domain_identity(Domain="tmpl.test")
    ses.create_template(Template={"TemplateName": "welcome", "SubjectPart": "Hi {{name}}", "TextPart": "Code {{code}}"})
    with pytest.raises(ClientError) as err:
        ses.create_template(Template={"TemplateName": "welcome", "SubjectPart": "x"})
    assert err.value.response["Error"]["Code"] == "AlreadyExists"
    ses.send_templated_email(Source="app@tmpl.test", Destination={"ToAddresses": ["t@tmpl.test"]},
                             Template="welcome", TemplateData=json.dumps({"name": "Ana", "code": 42}))  # fmt: skip
    got = _mailbox(nubes, "t@tmpl.test")[-1]
    assert got["Subject"] == "Hi Ana" and "Code 42" in str(got["Text"])
    with pytest.raises(ClientError) as err:
        ses.send_templated_email(Source="app@tmpl.test", Destination={"ToAddresses": ["t@tmpl.test"]}, Template="nope", TemplateData="{}")
    assert err.value.response["Error"]["Code"] == "TemplateDoesNotExist"
    raw = b"From: app@tmpl.test\r\nTo: r@tmpl.test\r\nSubject: raw one\r\n\r\nraw body\r\n"
    ses.send_raw_email(RawMessage={"Data": raw})
    got = _mailbox(nubes, "r@tmpl.test")[-1]
    assert got["Subject"] == "raw one"


def test_v2_identities_templates_send(nubes: NubesServer) -> None:
    v2 = nubes.client("sesv2")
    out = v2.create_email_identity(EmailIdentity="v2.test")
    assert out["IdentityType"] == "DOMAIN" and out["VerifiedForSendingStatus"] is True
    with pytest.raises(ClientError) as err:
        v2.create_email_identity(EmailIdentity="v2.test")
    assert err.value.response["Error"]["Code"] == "AlreadyExistsException"
    assert v2.get_email_identity(EmailIdentity="v2.test")["VerificationStatus"] == "SUCCESS"
    v2.create_email_template(TemplateName="notify", TemplateContent={"Subject": "Inspection {{id}}", "Html": "<b>{{id}}</b>"})
    assert v2.get_email_template(TemplateName="notify")["TemplateContent"]["Subject"] == "Inspection {{id}}"
    v2.send_email(FromEmailAddress="ops@v2.test", Destination={"ToAddresses": ["boss@v2.test"]},
                  Content={"Template": {"TemplateName": "notify", "TemplateData": '{"id": "I-7"}'}})  # fmt: skip
    got = _mailbox(nubes, "boss@v2.test")[-1]
    assert got["Subject"] == "Inspection I-7" and "<b>I-7</b>" in str(got["Html"])
    v2.send_email(FromEmailAddress="ops@v2.test", Destination={"ToAddresses": ["s@v2.test"]},
                  Content={"Simple": {"Subject": {"Data": "plain"}, "Body": {"Text": {"Data": "txt"}}}})  # fmt: skip
    assert _mailbox(nubes, "s@v2.test")[-1]["Subject"] == "plain"
    with pytest.raises(ClientError) as err:
        v2.get_email_template(TemplateName="missing")
    assert err.value.response["Error"]["Code"] == "NotFoundException"
    assert v2.get_account()["SendQuota"]["Max24HourSend"] == 200.0


class _SmtpSink:
    """A minimal SMTP server collecting messages, for the relay test."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[bytes] = []
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 sink\r\n")
        data: list[bytes] = []
        in_data = False
        while line := await reader.readline():
            if in_data:
                if line == b".\r\n":
                    self.messages.append(b"".join(data))
                    in_data = False
                    writer.write(b"250 ok\r\n")
                else:
                    data.append(line)
                continue
            verb = line[:4].upper()
            if verb == b"DATA":
                in_data, data = True, []
                writer.write(b"354 go\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                break
            elif verb == b"EHLO":
                writer.write(b"250 sink\r\n")
            else:
                writer.write(b"250 ok\r\n")
        await writer.drain()
        writer.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", self.port))
        self.ready.set()
        self.loop.run_forever()
        server.close()

    def __enter__(self) -> _SmtpSink:
        self.thread.start()
        self.ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


def test_smtp_relay(tmp_path: Path) -> None:
    with _SmtpSink() as sink, NubesServer(tmp_path / "d", extra_args=["--smtp-relay", f"127.0.0.1:{sink.port}"]) as server:
        ses = server.client("sesv2")
        ses.create_email_identity(EmailIdentity="relay.test")
        ses.send_email(FromEmailAddress="a@relay.test", Destination={"ToAddresses": ["b@relay.test"]},
                       Content={"Simple": {"Subject": {"Data": "relayed"}, "Body": {"Text": {"Data": "over smtp"}}}})  # fmt: skip
        assert any(b"Subject: relayed" in m for m in sink.messages)
        assert _mailbox(server)[-1]["Subject"] == "relayed"


def test_sns_email_subscriptions_go_through_ses(nubes: NubesServer) -> None:
    sns = nubes.client("sns")
    topic = sns.create_topic(Name="mail-topic")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="email", Endpoint="ops@sns-mail.test")
    import time

    deadline = time.time() + 10
    while time.time() < deadline and not _mailbox(nubes, "ops@sns-mail.test"):
        time.sleep(0.1)
    confirmation = _mailbox(nubes, "ops@sns-mail.test")
    assert confirmation and confirmation[0]["Subject"] == "AWS Notification - Subscription Confirmation"
    assert confirmation[0]["Source"] == "no-reply@sns.amazonaws.com"
