"""AWS STS: caller identity and temporary credentials that SigV4 accepts."""

from nubes.services.base import ServiceSpec
from nubes.services.sts.provider import StsProvider

SERVICE = ServiceSpec(models=("sts",), provider=StsProvider)
