"""SES v1 and v2: identities, templates, sending into the nubes mailbox (or an
SMTP relay), quotas. Serves both botocore models with one provider; ``SendEmail``
exists in both, with different shapes, and ``ctx.service`` tells them apart."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import re
import secrets
import uuid
from typing import Any

import orjson

from nubes.aws.errors import AwsError
from nubes.aws.protocol.types import WireResponse
from nubes.services.base import HttpRequest, Provider, RequestContext
from nubes.services.ses import mail
from nubes.storage.base import Txn
from nubes.storage.keys import pack

IDENTITIES = "ses.identities"
TEMPLATES = "ses.templates"
#: the mailbox: every message sent, in order (``GET /_nubes/ses``)
MAILBOX = "ses.mailbox"
MAX_24H = 200.0
MAX_RATE = 1.0
#: AWS's own senders (Cognito's default, SNS email) need no verified identity
_EXEMPT_SENDERS = {"no-reply@verificationemail.com", "no-reply@sns.amazonaws.com"}


def _now() -> float:
    return dt.datetime.now(dt.UTC).timestamp()


def _address(value: str) -> str:
    """``Name <a@b.c>`` → ``a@b.c``."""
    m = re.search(r"<([^>]+)>", value)
    return (m.group(1) if m else value).strip()


class SesProvider(Provider):
    """Mail is captured, never sent to the internet unless ``--smtp-relay`` is set."""

    # -- identities ---------------------------------------------------------------

    async def _add_identity(self, ctx: RequestContext, identity: str, tags: list[dict[str, str]] | None = None) -> dict[str, Any]:
        kind = "DOMAIN" if "@" not in identity else "EMAIL_ADDRESS"
        record = {"Identity": identity, "Type": kind, "Status": "Success", "Token": secrets.token_urlsafe(32)[:44],
                  "Created": _now(), "Tags": tags or []}  # fmt: skip

        def add(txn: Txn) -> dict[str, Any]:
            raw = txn.get(IDENTITIES, pack(ctx.region, identity.lower()))
            if raw is not None:
                return dict(orjson.loads(raw))
            txn.put(IDENTITIES, pack(ctx.region, identity.lower()), orjson.dumps(record))
            return record

        return await self.app.store.write(add)

    async def _identities(self, ctx: RequestContext) -> list[dict[str, Any]]:
        rows = await self.app.store.read(lambda txn: txn.scan(IDENTITIES, prefix=pack(ctx.region)))
        return [orjson.loads(v) for _, v in rows]

    async def _identity(self, ctx: RequestContext, identity: str) -> dict[str, Any] | None:
        raw = await self.app.store.read(lambda txn: txn.get(IDENTITIES, pack(ctx.region, identity.lower())))
        return None if raw is None else dict(orjson.loads(raw))

    async def _delete_identity(self, ctx: RequestContext, identity: str) -> bool:
        return await self.app.store.write(lambda txn: txn.delete(IDENTITIES, pack(ctx.region, identity.lower())))

    async def verify_email_identity(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self._add_identity(ctx, params["EmailAddress"])
        return {}

    async def verify_email_address(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self._add_identity(ctx, params["EmailAddress"])
        return {}

    async def verify_domain_identity(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        record = await self._add_identity(ctx, params["Domain"])
        return {"VerificationToken": record["Token"]}

    async def list_identities(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        wanted = {"EmailAddress": "EMAIL_ADDRESS", "Domain": "DOMAIN"}.get(params.get("IdentityType") or "")
        names = [r["Identity"] for r in await self._identities(ctx) if wanted is None or r["Type"] == wanted]
        return _paged(names, params, "MaxItems", "Identities")

    async def list_verified_email_addresses(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return {"VerifiedEmailAddresses": [r["Identity"] for r in await self._identities(ctx) if r["Type"] == "EMAIL_ADDRESS"]}

    async def get_identity_verification_attributes(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        attrs: dict[str, Any] = {}
        for identity in params["Identities"]:
            record = await self._identity(ctx, identity)
            if record is not None:
                attrs[identity] = {"VerificationStatus": record["Status"], "VerificationToken": record["Token"]}
        return {"VerificationAttributes": attrs}

    async def delete_identity(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self._delete_identity(ctx, params["Identity"])
        return {}

    async def delete_verified_email_address(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self._delete_identity(ctx, params["EmailAddress"])
        return {}

    async def create_email_identity(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        identity = params["EmailIdentity"]
        if await self._identity(ctx, identity) is not None:
            raise AwsError("AlreadyExistsException", f"Email identity {identity} already exist.", 400)
        record = await self._add_identity(ctx, identity, params.get("Tags"))
        return {"IdentityType": record["Type"], "VerifiedForSendingStatus": True,
                "DkimAttributes": _dkim(record)}  # fmt: skip

    async def get_email_identity(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        identity = params["EmailIdentity"]
        record = await self._identity(ctx, identity)
        if record is None:
            raise AwsError("NotFoundException", f"Email identity {identity} does not exist.", 404)
        return {
            "IdentityType": record["Type"], "FeedbackForwardingStatus": True, "VerifiedForSendingStatus": True,
            "DkimAttributes": _dkim(record), "MailFromAttributes": {"BehaviorOnMxFailure": "USE_DEFAULT_VALUE"},
            "Policies": {}, "Tags": record.get("Tags", []), "VerificationStatus": "SUCCESS",
        }  # fmt: skip

    async def list_email_identities(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        items = [{"IdentityType": r["Type"], "IdentityName": r["Identity"], "SendingEnabled": True,
                  "VerificationStatus": "SUCCESS"} for r in await self._identities(ctx)]  # fmt: skip
        return _paged(items, params, "PageSize", "EmailIdentities")

    async def delete_email_identity(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        if not await self._delete_identity(ctx, params["EmailIdentity"]):
            raise AwsError("NotFoundException", f"Email identity {params['EmailIdentity']} does not exist.", 404)
        return {}

    # -- templates ------------------------------------------------------------------

    async def _put_template(self, ctx: RequestContext, name: str, content: dict[str, Any], create: bool) -> None:
        v2 = ctx.service == "sesv2"

        def put(txn: Txn) -> None:
            key = pack(ctx.region, name)
            exists = txn.get(TEMPLATES, key) is not None
            if create and exists:
                raise AwsError("AlreadyExistsException", f"Template {name} already exists.", 400) if v2 else \
                    AwsError("AlreadyExists", f"Template {name} already exists.", 400)  # fmt: skip
            if not create and not exists:
                raise _no_template(name, v2)
            txn.put(TEMPLATES, key, orjson.dumps({"Name": name, "Created": _now(), **content}))

        await self.app.store.write(put)

    async def _template(self, ctx: RequestContext, name: str) -> dict[str, Any]:
        raw = await self.app.store.read(lambda txn: txn.get(TEMPLATES, pack(ctx.region, name)))
        if raw is None:
            raise _no_template(name, ctx.service == "sesv2")
        return dict(orjson.loads(raw))

    async def create_template(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        t = params["Template"]
        await self._put_template(ctx, t["TemplateName"], {"Subject": t.get("SubjectPart"), "Text": t.get("TextPart"), "Html": t.get("HtmlPart")}, True)
        return {}

    async def update_template(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        t = params["Template"]
        await self._put_template(ctx, t["TemplateName"], {"Subject": t.get("SubjectPart"), "Text": t.get("TextPart"), "Html": t.get("HtmlPart")}, False)
        return {}

    async def get_template(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        t = await self._template(ctx, params["TemplateName"])
        return {"Template": {"TemplateName": t["Name"], "SubjectPart": t.get("Subject"), "TextPart": t.get("Text"), "HtmlPart": t.get("Html")}}

    async def delete_template(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self.app.store.write(lambda txn: txn.delete(TEMPLATES, pack(ctx.region, params["TemplateName"])))
        return {}

    async def list_templates(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        rows = await self.app.store.read(lambda txn: txn.scan(TEMPLATES, prefix=pack(ctx.region)))
        items = [{"Name": t["Name"], "CreatedTimestamp": t["Created"]} for t in (orjson.loads(v) for _, v in rows)]
        return _paged(items, params, "MaxItems", "TemplatesMetadata")

    async def create_email_template(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self._put_template(ctx, params["TemplateName"], dict(params["TemplateContent"]), True)
        return {}

    async def update_email_template(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self._put_template(ctx, params["TemplateName"], dict(params["TemplateContent"]), False)
        return {}

    async def get_email_template(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        t = await self._template(ctx, params["TemplateName"])
        return {"TemplateName": t["Name"], "TemplateContent": {k: t.get(k) for k in ("Subject", "Text", "Html")}}

    async def delete_email_template(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        if not await self.app.store.write(lambda txn: txn.delete(TEMPLATES, pack(ctx.region, params["TemplateName"]))):
            raise _no_template(params["TemplateName"], True)
        return {}

    async def list_email_templates(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        rows = await self.app.store.read(lambda txn: txn.scan(TEMPLATES, prefix=pack(ctx.region)))
        items = [{"TemplateName": t["Name"], "CreatedTimestamp": t["Created"]} for t in (orjson.loads(v) for _, v in rows)]
        return _paged(items, params, "PageSize", "TemplatesMetadata")

    # -- sending --------------------------------------------------------------------

    async def _check_sender(self, ctx: RequestContext, source: str) -> None:
        address = _address(source)
        if address.lower() in _EXEMPT_SENDERS:
            return
        domain = address.rpartition("@")[2]
        if await self._identity(ctx, address) is None and await self._identity(ctx, domain) is None:
            raise AwsError("MessageRejected", f"Email address is not verified. The following identities failed the check in region {ctx.region.upper()}: {source}", 400)

    async def _deliver(self, ctx: RequestContext, source: str, recipients: list[str], raw: bytes,
                       summary: dict[str, Any]) -> str:  # fmt: skip
        """Check, store in the mailbox (durably) and relay; returns the MessageId."""
        if not recipients:
            raise AwsError("InvalidParameterValue", "Missing final '@domain'", 400) if ctx.service == "ses" else \
                AwsError("BadRequestException", "Missing final recipients", 400)  # fmt: skip
        if len(recipients) > 50:
            raise AwsError("InvalidParameterValue", "Recipient count exceeds 50.", 400)
        await self._check_sender(ctx, source)
        message_id = f"{uuid.uuid4().hex[:16]}-{uuid.uuid4()}-000000"
        record = {"Id": message_id, "Region": ctx.region, "Source": source, "Destination": recipients,
                  "Timestamp": _now(), "Raw": base64.b64encode(raw).decode(), **summary}  # fmt: skip
        await self.app.store.write(lambda txn: txn.append(MAILBOX, orjson.dumps(record)))
        if self.app.settings.smtp_relay:
            await asyncio.to_thread(mail.relay, self.app.settings.smtp_relay, _address(source), recipients, raw)
        return message_id

    async def send_email(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        if ctx.service == "sesv2":
            return await self._send_email_v2(ctx, params)
        dest = params.get("Destination") or {}
        msg = params["Message"]
        text = (msg.get("Body") or {}).get("Text", {}).get("Data")
        html = (msg.get("Body") or {}).get("Html", {}).get("Data")
        subject = (msg.get("Subject") or {}).get("Data", "")
        return {"MessageId": await self._simple(ctx, params["Source"], dest, params.get("ReplyToAddresses") or [], subject, text, html)}

    async def _simple(self, ctx: RequestContext, source: str, dest: dict[str, Any], reply_to: list[str],
                      subject: str, text: str | None, html: str | None) -> str:  # fmt: skip
        to, cc, bcc = dest.get("ToAddresses") or [], dest.get("CcAddresses") or [], dest.get("BccAddresses") or []
        raw = mail.build_mime(source, to, cc, reply_to, subject, text, html)
        summary = {"Subject": subject, "Text": text, "Html": html, "To": to, "Cc": cc, "Bcc": bcc}
        return await self._deliver(ctx, source, to + cc + bcc, raw, summary)

    async def send_templated_email(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        t = await self._template(ctx, params["Template"])
        data = mail.template_data(params.get("TemplateData"))
        return {"MessageId": await self._simple(
            ctx, params["Source"], params.get("Destination") or {}, params.get("ReplyToAddresses") or [],
            mail.render(t.get("Subject"), data) or "", mail.render(t.get("Text"), data), mail.render(t.get("Html"), data),
        )}  # fmt: skip

    async def send_bulk_templated_email(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        t = await self._template(ctx, params["Template"])
        default = mail.template_data(params.get("DefaultTemplateData"))
        status = []
        for dest in params["Destinations"]:
            data = {**default, **mail.template_data(dest.get("ReplacementTemplateData"))}
            message_id = await self._simple(
                ctx, params["Source"], dest["Destination"], params.get("ReplyToAddresses") or [],
                mail.render(t.get("Subject"), data) or "", mail.render(t.get("Text"), data), mail.render(t.get("Html"), data),
            )  # fmt: skip
            status.append({"Status": "Success", "MessageId": message_id})
        return {"Status": status}

    async def send_raw_email(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        raw: bytes = params["RawMessage"]["Data"]
        summary = mail.parse_raw(raw)
        source = params.get("Source") or summary["From"]
        recipients = params.get("Destinations") or (summary["To"] + summary["Cc"] + summary["Bcc"])
        return {"MessageId": await self._deliver(ctx, source, recipients, raw, summary)}

    async def _send_email_v2(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        content = params["Content"]
        dest = params.get("Destination") or {}
        reply_to = params.get("ReplyToAddresses") or []
        if "Raw" in content:
            raw: bytes = content["Raw"]["Data"]
            summary = mail.parse_raw(raw)
            source = params.get("FromEmailAddress") or summary["From"]
            recipients = (dest.get("ToAddresses") or []) + (dest.get("CcAddresses") or []) + (dest.get("BccAddresses") or []) \
                or summary["To"] + summary["Cc"] + summary["Bcc"]  # fmt: skip
            return {"MessageId": await self._deliver(ctx, source, recipients, raw, summary)}
        source = params.get("FromEmailAddress")
        if not source:
            raise AwsError("BadRequestException", "FromEmailAddress is required", 400)
        if "Template" in content:
            spec = content["Template"]
            data = mail.template_data(spec.get("TemplateData"))
            if spec.get("TemplateContent"):
                t = dict(spec["TemplateContent"])
            else:
                name = spec.get("TemplateName") or str(spec.get("TemplateArn", "")).rpartition("/")[2]
                t = await self._template(ctx, name)
            subject = mail.render(t.get("Subject"), data) or ""
            return {"MessageId": await self._simple(ctx, source, dest, reply_to, subject,
                                                    mail.render(t.get("Text"), data), mail.render(t.get("Html"), data))}  # fmt: skip
        simple = content.get("Simple")
        if simple is None:
            raise AwsError("BadRequestException", "Content must contain Simple, Raw or Template", 400)
        body = simple.get("Body") or {}
        return {"MessageId": await self._simple(
            ctx, source, dest, reply_to, (simple.get("Subject") or {}).get("Data", ""),
            (body.get("Text") or {}).get("Data"), (body.get("Html") or {}).get("Data"),
        )}  # fmt: skip

    # -- quotas -------------------------------------------------------------------------

    async def _sent_last_24h(self) -> int:
        since = _now() - 86400

        def count(txn: Txn) -> int:
            return sum(1 for _, raw in txn.read_log(MAILBOX, limit=100000) if orjson.loads(raw)["Timestamp"] >= since)

        return await self.app.store.read(count)

    async def get_send_quota(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return {"Max24HourSend": MAX_24H, "MaxSendRate": MAX_RATE, "SentLast24Hours": float(await self._sent_last_24h())}

    async def get_send_statistics(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        sent = await self._sent_last_24h()
        point = {"Timestamp": _now(), "DeliveryAttempts": sent, "Bounces": 0, "Complaints": 0, "Rejects": 0}
        return {"SendDataPoints": [point] if sent else []}

    async def get_account(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "SendQuota": {"Max24HourSend": MAX_24H, "MaxSendRate": MAX_RATE, "SentLast24Hours": float(await self._sent_last_24h())},
            "SendingEnabled": True, "ProductionAccessEnabled": False, "EnforcementStatus": "HEALTHY",
            "DedicatedIpAutoWarmupEnabled": False,
        }  # fmt: skip

    # -- the mailbox ----------------------------------------------------------------------

    async def http_mailbox(self, request: HttpRequest, match: re.Match[str]) -> WireResponse:
        """``GET /_nubes/ses[?email=a@b]``: captured messages; ``DELETE`` empties it."""
        from urllib.parse import parse_qs

        if request.method == "DELETE":
            await self.app.store.write(lambda txn: txn.trim_log(MAILBOX, before=txn.log_bounds(MAILBOX)[1] + 1))
            return WireResponse(204, {}, b"")
        query = parse_qs(request.query_string.decode())
        emails = query.get("email")
        email = emails[0] if emails else None
        rows = await self.app.store.read(lambda txn: txn.read_log(MAILBOX, limit=100000))
        messages = []
        for _, raw in rows:
            record = orjson.loads(raw)
            if email and email not in record["Destination"] and _address(record["Source"]) != email:
                continue
            record.pop("Raw", None)
            messages.append(record)
        return WireResponse(200, {"Content-Type": "application/json"}, orjson.dumps({"messages": messages}))


def _no_template(name: str, v2: bool) -> AwsError:
    if v2:
        return AwsError("NotFoundException", f"Template {name} does not exist.", 404)
    return AwsError("TemplateDoesNotExist", f"Template {name} does not exist.", 400, fields={"TemplateName": name})


def _dkim(record: dict[str, Any]) -> dict[str, Any]:
    return {"SigningEnabled": False, "Status": "NOT_STARTED", "Tokens": [], "SigningAttributesOrigin": "AWS_SES"}


def _paged(items: list[Any], params: dict[str, Any], size_key: str, out_key: str) -> dict[str, Any]:
    size = int(params.get(size_key) or 1000)
    start = int(params["NextToken"]) if str(params.get("NextToken", "")).isdigit() else 0
    out: dict[str, Any] = {out_key: items[start : start + size]}
    if start + size < len(items):
        out["NextToken"] = str(start + size)
    return out
