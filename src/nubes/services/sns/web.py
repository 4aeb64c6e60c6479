"""What SNS serves over plain HTTP: the signing certificate, the SubscribeURL and
UnsubscribeURL links (token-authenticated, so unsigned), and the email mailbox."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

import orjson

from nubes.aws.errors import AwsError
from nubes.aws.protocol.types import WireResponse
from nubes.services.base import HttpRequest
from nubes.services.sns.base import SnsBase
from nubes.services.sns.models import MAILBOX_TABLE

_NS = "http://sns.amazonaws.com/doc/2010-03-31/"


def _xml(operation: str, result: str, request_id: str = "nubes") -> WireResponse:
    body = (f'<{operation}Response xmlns="{_NS}"><{operation}Result>{result}</{operation}Result>'
            f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{operation}Response>")  # fmt: skip
    return WireResponse(200, {"Content-Type": "text/xml"}, body.encode())


def _error(error: AwsError) -> WireResponse:
    body = (f'<ErrorResponse xmlns="{_NS}"><Error><Type>Sender</Type><Code>{escape(error.code)}</Code>'
            f"<Message>{escape(error.message)}</Message></Error></ErrorResponse>")  # fmt: skip
    return WireResponse(error.status or 400, {"Content-Type": "text/xml"}, body.encode())


def _query(request: HttpRequest) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.query_string.decode("latin-1")).items()}


class WebOps(SnsBase):
    """HTTP routes of the SNS provider (see ``SERVICE.http_routes``)."""

    async def confirm(self, topic_arn: str, token: str) -> str:  # implemented by the provider
        raise NotImplementedError

    async def remove_subscription(self, arn: str) -> None:  # implemented by the provider
        raise NotImplementedError

    async def http_certificate(self, request: HttpRequest, match: re.Match[str]) -> WireResponse:
        """The PEM certificate that verifies message signatures (SigningCertURL)."""
        return WireResponse(
            200, {"Content-Type": "application/x-pem-file"}, self.signer.certificate_pem()
        )

    async def http_confirm(self, request: HttpRequest, match: re.Match[str]) -> WireResponse:
        """SubscribeURL: confirm a subscription by its token."""
        query = _query(request)
        try:
            arn = await self.confirm(query.get("TopicArn", ""), query.get("Token", ""))
        except AwsError as error:
            return _error(error)
        return _xml("ConfirmSubscription", f"<SubscriptionArn>{escape(arn)}</SubscriptionArn>")

    async def http_unsubscribe(self, request: HttpRequest, match: re.Match[str]) -> WireResponse:
        """UnsubscribeURL: remove the subscription named in the link."""
        try:
            await self.remove_subscription(_query(request).get("SubscriptionArn", ""))
        except AwsError as error:
            return _error(error)
        return _xml("Unsubscribe", "")

    async def http_mailbox(self, request: HttpRequest, match: re.Match[str]) -> WireResponse:
        """The emails SNS "sent": ``GET`` lists them (``?to=`` filters), ``DELETE`` empties it."""
        if request.method == "DELETE":
            await self.app.store.write(lambda txn: txn.delete_prefix(MAILBOX_TABLE))
            return WireResponse(204, {}, b"")
        to = _query(request).get("to")
        rows = await self.app.store.read(lambda txn: txn.scan(MAILBOX_TABLE))
        mails: list[dict[str, Any]] = [orjson.loads(raw) for _, raw in rows]
        if to:
            mails = [m for m in mails if m["to"] == to]
        return WireResponse(
            200, {"Content-Type": "application/json"}, orjson.dumps({"messages": mails})
        )
