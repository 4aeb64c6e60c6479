"""The SNS provider: topics and subscriptions here; publishing and delivery in their modules."""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from nubes.aws.errors import AwsError
from nubes.services.base import RequestContext
from nubes.services.sns.delivery import SIGNAL, timestamp
from nubes.services.sns.messages import compile_filter_policy
from nubes.services.sns.models import (
    DEFAULT_DELIVERY_POLICY,
    DELIVERED_PROTOCOLS,
    DELIVERY_QUEUE,
    PROTOCOLS,
    SUBSCRIPTION_ATTRIBUTES,
    SUBSCRIPTIONS_TABLE,
    TOPIC_ATTRIBUTES,
    TOPICS_TABLE,
    Subscription,
    Topic,
    check_topic_name,
    default_topic_policy,
    invalid,
    subscription_not_found,
    topic_not_found,
)
from nubes.services.sns.publishing import PublishOps
from nubes.services.sns.web import WebOps
from nubes.storage.base import Txn

PAGE = 100


def _page_token(key: bytes) -> str:
    return key.decode()


def validate_subscription_attribute(protocol: str, name: str, value: str) -> str:
    """Check one subscription attribute as AWS does; returns it normalised."""
    if name not in SUBSCRIPTION_ATTRIBUTES:
        raise invalid("AttributeName")
    if name == "RawMessageDelivery":
        if value.lower() not in ("true", "false"):
            raise invalid(
                "Attributes Reason: RawMessageDelivery: Invalid value ["
                + value
                + "]. Must be true or false."
            )
        if protocol not in ("sqs", "http", "https", "firehose") and value.lower() == "true":
            raise invalid(
                f"Attributes Reason: Delivery protocol [{protocol}] does not support raw message delivery."
            )
        return value.lower()
    if name == "FilterPolicy" and value:
        compile_filter_policy(value)
    if name == "FilterPolicyScope" and value not in ("MessageAttributes", "MessageBody"):
        raise invalid(
            "Attributes Reason: FilterPolicyScope: Invalid value ["
            + value
            + "]. Please use either MessageBody or MessageAttributes"
        )
    if name in ("RedrivePolicy", "DeliveryPolicy") and value:
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict):
            raise invalid(f"{name}: failed to parse JSON.")
        if name == "RedrivePolicy":
            target = str(doc.get("deadLetterTargetArn", ""))
            if not target.startswith("arn:aws:sqs:") or target.count(":") != 5:
                raise invalid("RedrivePolicy: deadLetterTargetArn is an invalid arn")
    return value


class SnsProvider(PublishOps, WebOps):
    """Amazon SNS: topics, subscriptions, durable fan-out."""

    async def start(self) -> None:
        """Start the delivery workers."""
        self.start_delivery()

    # -- topics -----------------------------------------------------------------------

    async def create_topic(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Create a topic, or return the existing one when its attributes match."""
        name: str = params["Name"]
        attrs = {k: str(v) for k, v in (params.get("Attributes") or {}).items()}
        fifo = attrs.get("FifoTopic", "false").lower() == "true"
        check_topic_name(name, fifo)
        if name.endswith(".fifo") and not fifo:
            raise invalid(
                "Fifo Topic names must end with .fifo and must be made up of only uppercase and lowercase ASCII letters, numbers, underscores, and hyphens, and must be between 1 and 256 characters long."
            )
        for attr in attrs:
            if attr not in TOPIC_ATTRIBUTES:
                raise invalid("Attributes Reason: Unknown attribute " + attr)
        if fifo:
            attrs["FifoTopic"] = "true"
            attrs.setdefault("ContentBasedDeduplication", "false")
        tags = {t["Key"]: t["Value"] for t in params.get("Tags") or []}
        topic = Topic(ctx.arn("sns", name), attrs, tags)

        def create(txn: Txn) -> Topic:
            raw = txn.get(TOPICS_TABLE, topic.arn.encode())
            if raw is None:
                txn.put(TOPICS_TABLE, topic.arn.encode(), topic.dump())
                return topic
            existing = Topic.load(raw)
            if any(existing.attributes.get(k, "false" if k == "ContentBasedDeduplication" else "") != v
                   for k, v in attrs.items()):  # fmt: skip
                raise invalid("Attributes Reason: Topic already exists with different attributes")
            return existing

        stored = await self.app.store.write(create)
        self.forget(stored.arn)
        return {"TopicArn": stored.arn}

    async def delete_topic(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Delete a topic and its subscriptions (deleting a missing topic succeeds, as on AWS)."""
        arn = params["TopicArn"]

        def delete(txn: Txn) -> None:
            txn.delete(TOPICS_TABLE, arn.encode())
            txn.delete_prefix(SUBSCRIPTIONS_TABLE, f"{arn}:".encode())

        await self.app.store.write(delete)
        self.forget(arn)
        return {}

    async def list_topics(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Topics of the caller's region and account, 100 per page."""
        prefix = f"arn:aws:sns:{ctx.region}:{ctx.account_id}:".encode()
        start = params["NextToken"].encode() + b"\x00" if params.get("NextToken") else None
        rows = await self.app.store.read(
            lambda txn: txn.scan(TOPICS_TABLE, prefix=prefix, start=start, limit=PAGE + 1)
        )
        out: dict[str, Any] = {"Topics": [{"TopicArn": key.decode()} for key, _ in rows[:PAGE]]}
        if len(rows) > PAGE:
            out["NextToken"] = _page_token(rows[PAGE - 1][0])
        return out

    async def get_topic_attributes(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        """Stored attributes plus the ones AWS computes (owner, counts, policies)."""
        topic = await self.topic_of(ctx, params["TopicArn"])
        subs = await self.subscriptions_of(topic.arn)
        confirmed = sum(1 for s in subs if s.confirmed)
        attrs = {
            "TopicArn": topic.arn, "Owner": topic.account,
            "Policy": default_topic_policy(topic.arn, topic.account), "DisplayName": "",
            "SubscriptionsConfirmed": str(confirmed), "SubscriptionsPending": str(len(subs) - confirmed),
            "SubscriptionsDeleted": "0", "EffectiveDeliveryPolicy": DEFAULT_DELIVERY_POLICY,
        }  # fmt: skip
        attrs.update(topic.attributes)
        if "DeliveryPolicy" in topic.attributes:
            attrs["EffectiveDeliveryPolicy"] = topic.attributes["DeliveryPolicy"]
        return {"Attributes": attrs}

    async def set_topic_attributes(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        """Change one settable topic attribute."""
        topic = await self.topic_of(ctx, params["TopicArn"])
        name, value = params["AttributeName"], str(params.get("AttributeValue") or "")
        if name not in TOPIC_ATTRIBUTES or name == "FifoTopic":
            raise invalid("AttributeName")
        if name == "ContentBasedDeduplication" and not topic.fifo:
            raise invalid(
                "ContentBasedDeduplication Reason: Content based deduplication can only be set for FIFO topics"
            )
        if name == "SignatureVersion" and value not in ("1", "2"):
            raise invalid("SignatureVersion")
        await self._update_topic(topic.arn, lambda t: t.attributes.__setitem__(name, value))
        return {}

    async def _update_topic(self, arn: str, change: Any) -> Topic:
        def update(txn: Txn) -> Topic:
            raw = txn.get(TOPICS_TABLE, arn.encode())
            if raw is None:
                raise topic_not_found()
            topic = Topic.load(raw)
            change(topic)
            txn.put(TOPICS_TABLE, arn.encode(), topic.dump())
            return topic

        topic = await self.app.store.write(update)
        self.forget(arn)
        return topic

    # -- subscriptions ----------------------------------------------------------------

    @staticmethod
    def _check_endpoint(protocol: str, endpoint: str) -> None:
        if protocol not in PROTOCOLS:
            raise invalid(f"Amazon SNS does not support this protocol string: {protocol}")
        if protocol not in DELIVERED_PROTOCOLS:
            raise AwsError(
                "NotImplemented",
                f"nubes does not deliver to the {protocol} protocol",
                501,
                sender_fault=False,
            )
        if protocol == "sqs" and not (
            endpoint.startswith("arn:aws:sqs:") and endpoint.count(":") == 5
        ):
            raise invalid("SQS endpoint ARN")
        if protocol == "lambda" and not endpoint.startswith("arn:aws:lambda:"):
            raise invalid("Lambda endpoint ARN")
        if protocol in ("http", "https") and not endpoint.lower().startswith(f"{protocol}://"):
            raise invalid("Endpoint must match the specified protocol")
        if protocol in ("email", "email-json") and "@" not in endpoint:
            raise invalid("Email address")

    async def subscribe(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Subscribe an endpoint; SQS and Lambda are confirmed at once, HTTP(S) and
        email get a SubscriptionConfirmation with a token."""
        topic = await self.topic_of(ctx, params["TopicArn"])
        protocol, endpoint = params["Protocol"], str(params.get("Endpoint") or "")
        self._check_endpoint(protocol, endpoint)
        attrs = {
            k: validate_subscription_attribute(protocol, k, str(v))
            for k, v in (params.get("Attributes") or {}).items()
        }
        for sub in await self.subscriptions_of(topic.arn):
            if sub.protocol == protocol and sub.endpoint == endpoint:
                if any(sub.attributes.get(k, "") != v for k, v in attrs.items()):
                    raise invalid(
                        "Attributes Reason: Subscription already exists with different attributes"
                    )
                return {
                    "SubscriptionArn": sub.arn
                    if sub.confirmed or params.get("ReturnSubscriptionArn")
                    else "pending confirmation"
                }
        sub = Subscription.new(topic, protocol, endpoint, attrs)
        sub.confirmed = protocol in ("sqs", "lambda")
        confirm = {"k": "c", "sub": sub.arn, "id": str(uuid.uuid4()), "ts": timestamp(),
                   "ep": ctx.endpoint or self.app.settings.endpoint}  # fmt: skip

        def create(txn: Txn) -> None:
            txn.put(SUBSCRIPTIONS_TABLE, sub.arn.encode(), sub.dump())
            if not sub.confirmed:
                txn.enqueue(DELIVERY_QUEUE, orjson.dumps(confirm), now=time.time())

        await self.app.store.write(create)
        self.forget(topic.arn)
        if not sub.confirmed:
            self.app.bus.wake(SIGNAL)
        shown = (
            sub.arn
            if sub.confirmed or params.get("ReturnSubscriptionArn")
            else "pending confirmation"
        )
        return {"SubscriptionArn": shown}

    async def confirm_subscription(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        """Confirm with the token sent in the SubscriptionConfirmation."""
        topic = await self.topic_of(ctx, params["TopicArn"])
        return {"SubscriptionArn": await self.confirm(topic.arn, params["Token"])}

    async def confirm(self, topic_arn: str, token: str) -> str:
        """Mark the subscription with ``token`` confirmed; returns its ARN."""
        match = next((s for s in await self.subscriptions_of(topic_arn) if s.token == token), None)
        if match is None:
            self.forget(topic_arn)
            match = next(
                (s for s in await self.subscriptions_of(topic_arn) if s.token == token), None
            )
        if match is None:
            raise invalid("Token")
        await self._update_subscription(match.arn, lambda s: setattr(s, "confirmed", True))
        return match.arn

    async def _update_subscription(self, arn: str, change: Any) -> Subscription:
        def update(txn: Txn) -> Subscription:
            raw = txn.get(SUBSCRIPTIONS_TABLE, arn.encode())
            if raw is None:
                raise subscription_not_found()
            sub = Subscription.load(raw)
            change(sub)
            txn.put(SUBSCRIPTIONS_TABLE, arn.encode(), sub.dump())
            return sub

        sub = await self.app.store.write(update)
        self.forget(sub.topic_arn)
        return sub

    async def unsubscribe(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Delete a subscription."""
        await self.remove_subscription(params["SubscriptionArn"])
        return {}

    async def remove_subscription(self, arn: str) -> None:
        """Delete a subscription by ARN (also the UnsubscribeURL's action)."""
        if arn.count(":") != 6 or not arn.startswith("arn:aws:sns:"):
            raise invalid("SubscriptionArn")
        await self.app.store.write(lambda txn: txn.delete(SUBSCRIPTIONS_TABLE, arn.encode()))
        self.forget(arn.rsplit(":", 1)[0])

    @staticmethod
    def _listed(sub: Subscription) -> dict[str, Any]:
        return {"SubscriptionArn": sub.listed_arn, "Owner": sub.owner, "Protocol": sub.protocol,
                "Endpoint": sub.endpoint, "TopicArn": sub.topic_arn}  # fmt: skip

    async def _list_subscriptions(self, prefix: bytes, token: str | None) -> dict[str, Any]:
        start = token.encode() + b"\x00" if token else None
        rows = await self.app.store.read(
            lambda txn: txn.scan(SUBSCRIPTIONS_TABLE, prefix=prefix, start=start, limit=PAGE + 1)
        )
        out: dict[str, Any] = {
            "Subscriptions": [self._listed(Subscription.load(raw)) for _, raw in rows[:PAGE]]
        }
        if len(rows) > PAGE:
            out["NextToken"] = _page_token(rows[PAGE - 1][0])
        return out

    async def list_subscriptions(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        """Subscriptions of the caller's region and account, 100 per page."""
        prefix = f"arn:aws:sns:{ctx.region}:{ctx.account_id}:".encode()
        return await self._list_subscriptions(prefix, params.get("NextToken"))

    async def list_subscriptions_by_topic(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        """A topic's subscriptions, 100 per page."""
        topic = await self.topic_of(ctx, params["TopicArn"])
        return await self._list_subscriptions(f"{topic.arn}:".encode(), params.get("NextToken"))

    async def get_subscription_attributes(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        """Stored attributes plus the ones AWS computes."""
        sub = await self.load_subscription(params["SubscriptionArn"])
        if sub is None:
            raise subscription_not_found()
        attrs = {
            "SubscriptionArn": sub.arn, "TopicArn": sub.topic_arn, "Owner": sub.owner, "Protocol": sub.protocol,
            "Endpoint": sub.endpoint, "ConfirmationWasAuthenticated": "true" if sub.confirmed else "false",
            "PendingConfirmation": "false" if sub.confirmed else "true", "RawMessageDelivery": "false",
            "SubscriptionPrincipal": f"arn:aws:iam::{sub.owner}:root",
        }  # fmt: skip
        if sub.protocol in ("http", "https"):
            attrs["EffectiveDeliveryPolicy"] = (
                sub.attributes.get("DeliveryPolicy") or DEFAULT_DELIVERY_POLICY
            )
        attrs.update({k: v for k, v in sub.attributes.items() if v != ""})
        if "FilterPolicy" in attrs:
            attrs.setdefault("FilterPolicyScope", "MessageAttributes")
        return {"Attributes": attrs}

    async def set_subscription_attributes(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        """Change one subscription attribute (validated as AWS does)."""
        sub = await self.load_subscription(params["SubscriptionArn"])
        if sub is None:
            raise subscription_not_found()
        name = params["AttributeName"]
        value = validate_subscription_attribute(
            sub.protocol, name, str(params.get("AttributeValue") or "")
        )

        def change(s: Subscription) -> None:
            if value == "" and name in ("FilterPolicy", "RedrivePolicy", "DeliveryPolicy"):
                s.attributes.pop(name, None)
            else:
                s.attributes[name] = value

        await self._update_subscription(sub.arn, change)
        return {}

    # -- tags and permissions ---------------------------------------------------------

    async def _tagged(self, arn: str) -> Topic:
        topic = await self.load_topic(arn)
        if topic is None:
            raise AwsError("ResourceNotFound", "Resource does not exist", 404)
        return topic

    async def tag_resource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Add or replace tags of a topic (at most 50)."""
        topic = await self._tagged(params["ResourceArn"])
        tags = {t["Key"]: t["Value"] for t in params.get("Tags") or []}
        if len({**topic.tags, **tags}) > 50:
            raise AwsError(
                "TagLimitExceeded",
                "Could not complete request: tag quota of per resource exceeded",
                400,
            )
        await self._update_topic(topic.arn, lambda t: t.tags.update(tags))
        return {}

    async def untag_resource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Remove tags of a topic."""
        topic = await self._tagged(params["ResourceArn"])
        keys = list(params.get("TagKeys") or [])
        await self._update_topic(topic.arn, lambda t: [t.tags.pop(k, None) for k in keys])
        return {}

    async def list_tags_for_resource(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        """A topic's tags."""
        topic = await self._tagged(params["ResourceArn"])
        return {"Tags": [{"Key": k, "Value": v} for k, v in topic.tags.items()]}

    async def add_permission(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Add a statement to the topic's policy."""
        topic = await self.topic_of(ctx, params["TopicArn"])
        label = params["Label"]
        statement = {"Sid": label, "Effect": "Allow",
                     "Principal": {"AWS": [f"arn:aws:iam::{a}:root" for a in params["AWSAccountId"]]},
                     "Action": [f"SNS:{a}" for a in params["ActionName"]], "Resource": topic.arn}  # fmt: skip

        def add(t: Topic) -> None:
            policy = orjson.loads(
                t.attributes.get("Policy") or default_topic_policy(t.arn, t.account)
            )
            if any(s.get("Sid") == label for s in policy["Statement"]):
                raise invalid("Statement already exists")
            policy["Statement"].append(statement)
            t.attributes["Policy"] = orjson.dumps(policy).decode()

        await self._update_topic(topic.arn, add)
        return {}

    async def remove_permission(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        """Remove a statement from the topic's policy."""
        topic = await self.topic_of(ctx, params["TopicArn"])
        label = params["Label"]

        def remove(t: Topic) -> None:
            policy = orjson.loads(
                t.attributes.get("Policy") or default_topic_policy(t.arn, t.account)
            )
            policy["Statement"] = [s for s in policy["Statement"] if s.get("Sid") != label]
            t.attributes["Policy"] = orjson.dumps(policy).decode()

        await self._update_topic(topic.arn, remove)
        return {}
