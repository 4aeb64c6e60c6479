"""Messages: building MIME from SES's simple and templated forms, rendering
templates, and handing mail to an SMTP relay."""

from __future__ import annotations

import re
import smtplib
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import formatdate, getaddresses, make_msgid
from typing import Any

import orjson

from nubes.aws.errors import AwsError

_VAR = re.compile(r"\{\{\{?\s*([A-Za-z0-9_.\-]+)\s*\}?\}\}")


def render(template: str | None, data: dict[str, Any]) -> str | None:
    """Replace ``{{name}}`` / ``{{a.b}}`` with values from ``data``, as SES's
    Handlebars templates do for plain substitutions (missing values render empty)."""
    if template is None:
        return None

    def value(match: re.Match[str]) -> str:
        node: Any = data
        for part in match.group(1).split("."):
            if not isinstance(node, dict) or part not in node:
                return ""
            node = node[part]
        return "" if node is None else str(node)

    return _VAR.sub(value, template)


def template_data(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise AwsError("InvalidParameterValue", "Template data must be a valid JSON object.", 400) from None
    if not isinstance(data, dict):
        raise AwsError("InvalidParameterValue", "Template data must be a valid JSON object.", 400)
    return data


def build_mime(source: str, to: list[str], cc: list[str], reply_to: list[str], subject: str,
               text: str | None, html: str | None) -> bytes:  # fmt: skip
    """A MIME message like the one SES builds from SendEmail's simple content."""
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = source
    if to:
        msg["To"] = ", ".join(to)
    if cc:
        msg["Cc"] = ", ".join(cc)
    if reply_to:
        msg["Reply-To"] = ", ".join(reply_to)
    msg["Subject"] = subject
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(domain="email.amazonses.com")
    msg["MIME-Version"] = "1.0"
    if text is not None:
        msg.set_content(text)
    if html is not None:
        if text is None:
            msg.set_content(html, subtype="html")
        else:
            msg.add_alternative(html, subtype="html")
    if text is None and html is None:
        msg.set_content("")
    return msg.as_bytes()


def parse_raw(raw: bytes) -> dict[str, Any]:
    """From, recipients, subject and bodies of a raw MIME message."""
    msg = message_from_bytes(raw, policy=policy.default)
    text = html = None
    for part in msg.walk():
        if part.is_multipart():
            continue
        kind = part.get_content_type()
        if kind == "text/plain" and text is None:
            text = part.get_content()
        elif kind == "text/html" and html is None:
            html = part.get_content()
    return {
        "From": str(msg.get("From", "")),
        "To": [a for _, a in getaddresses(msg.get_all("To", []))],
        "Cc": [a for _, a in getaddresses(msg.get_all("Cc", []))],
        "Bcc": [a for _, a in getaddresses(msg.get_all("Bcc", []))],
        "Subject": str(msg.get("Subject", "")),
        "Text": text,
        "Html": html,
    }


def relay(host_port: str, source: str, recipients: list[str], raw: bytes) -> None:
    """Hand a message to an SMTP server (blocking; run it off the event loop)."""
    host, _, port = host_port.rpartition(":")
    with smtplib.SMTP(host or host_port, int(port or 25), timeout=30) as smtp:
        smtp.sendmail(source, recipients, raw)
