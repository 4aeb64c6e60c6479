"""Durable fan-out: the worker that delivers the records Publish wrote.

Publish writes its delivery records into a store queue in the same transaction
as the publish: for a standard topic one record listing every matching
subscription, for a FIFO topic one per subscription (in the message group's
order). This worker leases them, delivers to SQS (batched per queue), Lambda,
HTTP(S) or the email mailbox, and acks. Subscriptions still to be retried are
written back (a new record, same transaction as the ack) to become visible after
their backoff; after the last attempt, or at once for a client-side error as AWS
does, the message goes to the subscription's dead-letter queue. A crash between
lease and ack redelivers: at-least-once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable
from typing import Any

import orjson

from nubes.aws.errors import AwsError
from nubes.services.sns.base import SnsBase
from nubes.services.sns.messages import (
    NotificationTexts,
    confirmation,
    message_for,
    new_message_id,
    notification,
    notification_to_sign,
    signature_key,
    sqs_attributes,
)
from nubes.services.sns.models import (
    DELIVERY_QUEUE,
    FIFO_DELIVERY_QUEUE,
    MAILBOX_TABLE,
    Subscription,
)
from nubes.services.sns.signing import SigningJob
from nubes.storage.base import QueueMessage, Txn

log = logging.getLogger(__name__)

SIGNAL = "sns:deliveries"
#: a leased delivery reappears after this long if the node dies mid-delivery
LEASE_SECONDS = 60.0
BATCH = 250
HTTP_TIMEOUT = 15.0
#: notifications per internal SendMessageBatch call
SQS_CHUNK = 250
#: SQS and Lambda targets: attempts before the dead-letter queue (server-side errors)
SERVICE_ATTEMPTS = 10


#: one delivery: a leased record, its document, one of its subscriptions
Job = tuple[QueueMessage, dict[str, Any], Subscription]
#: (record id, subscription ARN) → None when done (delivered, dead-lettered, dropped),
#: else seconds before that subscription's next attempt
Outcomes = dict[tuple[int, str], float | None]


def _targets(doc: dict[str, Any]) -> list[str]:
    """The subscriptions a delivery record is for: a standard topic's record lists
    all a message matched; FIFO and confirmation records name one."""
    return list(doc["subs"]) if "subs" in doc else [doc["sub"]]


def _settle(
    txn: Txn, queue: str, batch: list[QueueMessage], docs: list[dict[str, Any]], outcomes: Outcomes
) -> None:
    """Ack what is done; what must be retried becomes visible again after its delay.
    A record for several subscriptions is replaced by one for those still pending,
    remembering how often each was tried (in the same transaction: nothing is lost)."""
    later = time.time()
    for record, doc in zip(batch, docs, strict=True):
        targets = _targets(doc)
        retry = {arn: d for arn in targets if (d := outcomes.get((record.id, arn))) is not None}
        if not retry:
            txn.ack(queue, record.id, record.lease_token)
        elif "subs" not in doc:
            txn.set_visible_at(queue, record.id, later + retry[targets[0]], record.lease_token)
        elif txn.ack(queue, record.id, record.lease_token):
            tries = dict(doc.get("tries") or {})
            for arn in retry:
                tries[arn] = int(tries.get(arn, 0)) + record.receive_count
            again = {**doc, "subs": list(retry), "tries": tries}
            txn.enqueue(
                queue, orjson.dumps(again), now=later, delay=min(retry.values()), group=record.group
            )


#: the sender AWS uses for SNS email notifications
SNS_SENDER = "no-reply@sns.amazonaws.com"


class DeliveryFailed(Exception):
    """One delivery attempt failed; ``retry`` False for client-side errors."""

    def __init__(self, reason: str, *, retry: bool = True) -> None:
        super().__init__(reason)
        self.retry = retry


def timestamp(now: float | None = None) -> str:
    """SNS's Timestamp format: ISO 8601 UTC with milliseconds."""
    moment = dt.datetime.fromtimestamp(time.time() if now is None else now, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _arn_parts(arn: str) -> tuple[str, str, str]:
    parts = arn.split(":")
    if len(parts) < 6:
        raise DeliveryFailed(f"invalid endpoint ARN {arn}", retry=False)
    return parts[3], parts[4], parts[5]


def _signs(sub: Subscription) -> bool:
    """Whether deliveries to ``sub`` carry a signed JSON notification."""
    if sub.protocol in ("sqs", "http", "https"):
        return not sub.raw
    return sub.protocol in ("lambda", "email-json")


class DeliveryOps(SnsBase):
    """The delivery workers of the SNS provider."""

    def start_delivery(self) -> None:
        """Start the workers for standard and FIFO topics' delivery records."""
        self.app.spawn(self._deliver_forever(DELIVERY_QUEUE, fifo=False), name="sns-delivery")
        self.app.spawn(
            self._deliver_forever(FIFO_DELIVERY_QUEUE, fifo=True), name="sns-delivery-fifo"
        )

    async def _deliver_forever(self, queue: str, *, fifo: bool) -> None:
        while True:
            try:
                if not await self._deliver_batch(queue, fifo):
                    nxt = await self.app.store.read(lambda txn: txn.next_visible_at(queue))
                    wait = 5.0 if nxt is None else min(5.0, max(0.001, nxt - time.time()))
                    await self.app.bus.wait(SIGNAL, wait)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("SNS delivery pass failed")
                await asyncio.sleep(1.0)

    async def _deliver_batch(self, queue: str, fifo: bool) -> bool:
        now = time.time()
        batch: list[QueueMessage] = await self.app.store.write(
            lambda txn: txn.lease(
                queue, now=now, visibility=LEASE_SECONDS, limit=BATCH, exclusive_groups=fifo
            )
        )
        if not batch:
            return False
        docs = [orjson.loads(record.value) for record in batch]
        outcomes: Outcomes = {}
        work: list[Job] = []
        for record, doc in zip(batch, docs, strict=True):
            for arn in _targets(doc):
                sub = await self._subscription(arn)
                if sub is None:
                    outcomes[(record.id, arn)] = None  # unsubscribed meanwhile
                else:
                    work.append((record, doc, sub))
        await self._presign(work)
        if fifo:  # one group's records, in order
            for job in work:
                outcomes.update(await self._attempt(job))
        else:
            # notifications to the same queue go as SendMessageBatch calls: far fewer writes
            to_sqs: dict[str, list[Job]] = {}
            texts = NotificationTexts(self.signer)
            jobs: list[Awaitable[Outcomes]] = []
            for job in work:
                if job[1]["k"] == "n" and job[2].protocol == "sqs":
                    to_sqs.setdefault(job[2].endpoint, []).append(job)
                else:
                    jobs.append(self._attempt(job))
            for items in to_sqs.values():
                # the internal client takes more than AWS's 10 per call: one write per queue
                jobs.extend(
                    self._sqs_batch(items[i : i + SQS_CHUNK], texts)
                    for i in range(0, len(items), SQS_CHUNK)
                )
            for result in await asyncio.gather(*jobs):
                outcomes.update(result)
        await self.app.store.write(lambda txn: _settle(txn, queue, batch, docs, outcomes))
        return True

    async def _presign(self, work: list[Job]) -> None:
        """Make the signatures this pass's notifications need (one per message, shared
        by its subscribers) ahead of them, in a thread and on the loop at once (see
        ``SigningJob``): RSA takes ~0.3 ms and releases the GIL, so two run in parallel,
        and the loop serves requests between its own. ``notification`` then finds them
        in the signer's cache."""
        versions: dict[str, str] = {}
        pending: dict[tuple[str, tuple[str, str]], str] = {}
        for _, doc, sub in work:
            if doc["k"] != "n" or not _signs(sub):
                continue
            version = versions.get(sub.topic_arn)
            if version is None:
                topic = await self.load_topic(sub.topic_arn)
                version = versions[sub.topic_arn] = topic.signature_version if topic else "1"
            key = signature_key(doc["m"], sub.protocol)
            if (version, key) not in pending and self.signer.cached(version, key) is None:
                pending[(version, key)] = notification_to_sign(doc["m"], sub.protocol)
        if not pending:
            return
        job = SigningJob(self.signer, [(text, version) for (version, _), text in pending.items()])
        if len(pending) > 1:
            helper = asyncio.ensure_future(asyncio.to_thread(job.sign_from_front))
            while job.sign_one_from_back():
                await asyncio.sleep(0)  # requests get their turn between signatures
            await helper
        else:
            job.sign_one_from_back()
        for (version, key), signature in zip(pending, job.signatures, strict=True):
            self.signer.remember(version, key, signature)

    async def _subscription(self, arn: str) -> Subscription | None:
        sub = await self.cached_subscription(arn)
        return sub if sub is not None else await self.load_subscription(arn)

    async def _attempt(self, job: Job) -> Outcomes:
        """Deliver one record to one subscription (see ``Outcomes``)."""
        record, doc, sub = job
        try:
            if doc["k"] == "c":
                await self._send_confirmation(sub, doc)
            else:
                await self._send(sub, doc["m"])
            return {(record.id, sub.arn): None}
        except DeliveryFailed as failure:
            return {(record.id, sub.arn): await self._failed(job, failure)}

    async def _failed(self, job: Job, failure: DeliveryFailed) -> float | None:
        record, doc, sub = job
        attempt = record.receive_count + int((doc.get("tries") or {}).get(sub.arn, 0))
        attempts, delay = self._retry_policy(sub, attempt)
        if failure.retry and attempt < attempts:
            return delay
        log.info("SNS delivery to %s failed for good: %s", sub.arn, failure)
        if doc["k"] != "c":
            await self._dead_letter(sub, doc["m"])
        return None

    async def _sqs_batch(self, items: list[Job], texts: NotificationTexts) -> Outcomes:
        """Notifications for one queue in one internal SendMessageBatch (``texts``: the
        pass's notifications, serialized once per message for all its subscribers)."""
        entries = []
        versions: dict[str, str] = {}
        for n, (_, doc, sub) in enumerate(items):
            version = versions.get(sub.topic_arn)
            if version is None:
                topic = await self.load_topic(sub.topic_arn)
                version = versions[sub.topic_arn] = (
                    topic.signature_version if topic is not None else "1"
                )
            entries.append({"Id": str(n), **self._sqs_params(sub, doc["m"], version, texts)})
        region, account, name = _arn_parts(items[0][2].endpoint)
        params = {"QueueUrl": f"{self.app.settings.endpoint}/{account}/{name}", "Entries": entries}
        failures: dict[int, DeliveryFailed] = {}
        try:
            result = await self._internal("sqs", "SendMessageBatch", params, region)
            for failed in result.get("Failed") or []:
                failures[int(failed["Id"])] = DeliveryFailed(f"{failed['Code']}: {failed.get('Message')}",
                                                             retry=not failed.get("SenderFault", True))  # fmt: skip
        except AwsError as error:
            failures = {n: DeliveryFailed(f"{error.code}: {error.message}", retry=not error.sender_fault)
                        for n in range(len(items))}  # fmt: skip
        outcomes: Outcomes = {}
        for n, job in enumerate(items):
            failure = failures.get(n)
            outcomes[(job[0].id, job[2].arn)] = (
                None if failure is None else await self._failed(job, failure)
            )
        return outcomes

    def _retry_policy(self, sub: Subscription, attempt: int) -> tuple[int, float]:
        """(attempts allowed, delay before the next one)."""
        if sub.protocol not in ("http", "https"):
            return SERVICE_ATTEMPTS, min(60.0, 0.5 * 2**attempt)
        policy: dict[str, Any] = {}
        raw = sub.attributes.get("DeliveryPolicy")
        if raw:
            policy = orjson.loads(raw).get("healthyRetryPolicy") or {}
        retries = int(policy.get("numRetries", 3))
        # nubes' default backoff is 1, 2, 4 s (AWS waits 20 s); a DeliveryPolicy's targets win
        low = float(policy.get("minDelayTarget", 1))
        high = float(policy.get("maxDelayTarget", max(low, 4)))
        return retries + 1, min(high, low * 2 ** (attempt - 1))

    # -- protocols --------------------------------------------------------------------

    async def _send(self, sub: Subscription, message: dict[str, Any]) -> None:
        topic = await self.load_topic(sub.topic_arn)
        version = topic.signature_version if topic is not None else "1"
        if sub.protocol == "sqs":
            await self._to_sqs(sub.endpoint, self._sqs_params(sub, message, version))
        elif sub.protocol == "lambda":
            record = {"EventSource": "aws:sns", "EventVersion": "1.0", "EventSubscriptionArn": sub.arn,
                      "Sns": notification(message, sub, self.signer, version, lambda_style=True)}  # fmt: skip
            region = _arn_parts(sub.endpoint)[0]
            params = {"FunctionName": sub.endpoint, "InvocationType": "Event",
                      "Payload": orjson.dumps({"Records": [record]})}  # fmt: skip
            await self._call("lambda", "Invoke", params, region)
        elif sub.protocol in ("http", "https"):
            if sub.raw:
                body = message_for(message, sub.protocol).encode()
                headers = {"x-amz-sns-rawdelivery": "true"}
            else:
                body = orjson.dumps(notification(message, sub, self.signer, version))
                headers = {}
            headers.update({"x-amz-sns-message-type": "Notification", "x-amz-sns-message-id": message["id"],
                            "x-amz-sns-topic-arn": sub.topic_arn, "x-amz-sns-subscription-arn": sub.arn})  # fmt: skip
            await self._post(sub.endpoint, body, headers)
        elif sub.protocol in ("email", "email-json"):
            if sub.protocol == "email":
                text = message_for(message, "email")
            else:
                text = orjson.dumps(notification(message, sub, self.signer, version)).decode()
            await self._mail(sub, message.get("subject") or "AWS Notification Message", text)
        else:
            raise DeliveryFailed(f"nubes does not deliver to {sub.protocol}", retry=False)

    def _sqs_params(
        self,
        sub: Subscription,
        message: dict[str, Any],
        version: str,
        texts: NotificationTexts | None = None,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if sub.raw:
            params["MessageBody"] = message_for(message, "sqs")
            if message.get("attrs"):
                params["MessageAttributes"] = sqs_attributes(message["attrs"])
        elif texts is not None:
            params["MessageBody"] = texts.json(message, sub, version)
        else:
            params["MessageBody"] = orjson.dumps(
                notification(message, sub, self.signer, version)
            ).decode()
        if sub.endpoint.endswith(".fifo"):
            params["MessageGroupId"] = message.get("group") or "default"
            params["MessageDeduplicationId"] = message.get("dedup") or message["id"]
        return params

    async def _to_sqs(self, queue_arn: str, params: dict[str, Any]) -> None:
        region, account, name = _arn_parts(queue_arn)
        params = {"QueueUrl": f"{self.app.settings.endpoint}/{account}/{name}", **params}
        await self._call("sqs", "SendMessage", params, region)

    async def _internal(
        self, service: str, operation: str, params: dict[str, Any], region: str
    ) -> dict[str, Any]:
        """``app.call`` with a cheap request id: uuid4 reads the OS's entropy pool per
        call, a costly syscall at thousands of deliveries per second."""
        ctx = self.app.context(service, operation, region=region, request_id=new_message_id())
        return await self.app.dispatch(ctx, params)

    async def _call(
        self, service: str, operation: str, params: dict[str, Any], region: str
    ) -> None:
        try:
            await self._internal(service, operation, params, region)
        except AwsError as error:
            raise DeliveryFailed(
                f"{error.code}: {error.message}", retry=not error.sender_fault
            ) from None

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        headers = {**headers, "Content-Type": "text/plain; charset=UTF-8",
                   "User-Agent": "Amazon Simple Notification Service Agent"}  # fmt: skip

        def post() -> int:
            request = urllib.request.Request(url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
                    return int(response.status)
            except urllib.error.HTTPError as error:
                return int(error.code)

        try:
            status = await asyncio.to_thread(post)
        except (OSError, ValueError) as error:
            raise DeliveryFailed(f"POST {url}: {error}") from None
        if not 200 <= status < 300:
            raise DeliveryFailed(f"POST {url}: HTTP {status}", retry=status >= 500 or status == 429)

    async def _mail(self, sub: Subscription, subject: str, text: str) -> None:
        """Email goes out through SES — into its mailbox (``/_nubes/ses``) or its SMTP
        relay — and is also kept in SNS's own mailbox (``/_nubes/sns/mailbox``)."""
        mail = {"to": sub.endpoint, "subject": subject, "body": text, "topic": sub.topic_arn,
                "subscription": sub.arn, "timestamp": timestamp()}  # fmt: skip
        key = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}".encode()
        await self.app.store.write(lambda txn: txn.put(MAILBOX_TABLE, key, orjson.dumps(mail)))
        region = sub.topic_arn.split(":")[3] if sub.topic_arn.count(":") >= 5 else None
        try:
            await self.app.call("sesv2", "SendEmail", {
                "FromEmailAddress": SNS_SENDER, "Destination": {"ToAddresses": [sub.endpoint]},
                "Content": {"Simple": {"Subject": {"Data": subject}, "Body": {"Text": {"Data": text}}}},
            }, region=region)  # fmt: skip
        except AwsError as err:
            log.warning("SNS email to %s was not handed to SES: %s", sub.endpoint, err)

    async def _send_confirmation(self, sub: Subscription, doc: dict[str, Any]) -> None:
        if sub.confirmed:
            return
        topic = await self.load_topic(sub.topic_arn)
        version = topic.signature_version if topic is not None else "1"
        body = confirmation(sub, doc["id"], doc["ts"], doc["ep"], self.signer, version)
        if sub.protocol in ("email", "email-json"):
            text = (f"You have chosen to subscribe to the topic:\n{sub.topic_arn}\n\nTo confirm this "
                    f"subscription, click or visit the link below:\n{body['SubscribeURL']}\n")  # fmt: skip
            await self._mail(sub, "AWS Notification - Subscription Confirmation", text)
            return
        headers = {"x-amz-sns-message-type": "SubscriptionConfirmation", "x-amz-sns-message-id": doc["id"],
                   "x-amz-sns-topic-arn": sub.topic_arn}  # fmt: skip
        await self._post(sub.endpoint, orjson.dumps(body), headers)

    async def _dead_letter(self, sub: Subscription, message: dict[str, Any]) -> None:
        raw = sub.attributes.get("RedrivePolicy")
        if not raw:
            return
        target = orjson.loads(raw).get("deadLetterTargetArn", "")
        topic = await self.load_topic(sub.topic_arn)
        params = self._sqs_params(sub, message, topic.signature_version if topic else "1")
        if target.endswith(".fifo"):
            params["MessageGroupId"] = message.get("group") or "default"
            params["MessageDeduplicationId"] = message.get("dedup") or message["id"]
        else:
            params.pop("MessageGroupId", None)
            params.pop("MessageDeduplicationId", None)
        try:
            await self._to_sqs(target, params)
        except DeliveryFailed as failure:
            log.warning("SNS dead-letter queue %s refused a message: %s", target, failure)
