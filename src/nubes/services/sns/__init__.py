"""Amazon SNS: topics, filter policies, signed messages, durable fan-out to SQS,
Lambda, HTTP(S) and an email mailbox."""

from nubes.services.base import HttpRoute, ServiceSpec
from nubes.services.sns.provider import SnsProvider
from nubes.services.sns.signing import CERT_PATH

SERVICE = ServiceSpec(
    models=("sns",),
    provider=SnsProvider,
    http_routes=(
        HttpRoute("http_certificate", path=CERT_PATH.replace(".", r"\.") + "$"),
        HttpRoute("http_confirm", path=r"/_nubes/sns/confirm$"),
        HttpRoute("http_unsubscribe", path=r"/_nubes/sns/unsubscribe$"),
        HttpRoute("http_mailbox", path=r"/_nubes/sns/mailbox$"),
    ),
)
