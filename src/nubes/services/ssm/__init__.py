"""AWS Systems Manager Parameter Store."""

from nubes.services.base import ServiceSpec
from nubes.services.ssm.provider import SsmProvider

SERVICE = ServiceSpec(models=("ssm",), provider=SsmProvider)
