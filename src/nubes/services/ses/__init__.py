"""Amazon SES v1 and v2, with a mailbox at ``/_nubes/ses`` and an optional SMTP relay."""

from nubes.services.base import HttpRoute, ServiceSpec
from nubes.services.ses.provider import SesProvider

SERVICE = ServiceSpec(
    models=("sesv2", "ses"),
    provider=SesProvider,
    http_routes=(HttpRoute("http_mailbox", path=r"^/_nubes/ses/?$", methods=("GET", "DELETE")),),
)
