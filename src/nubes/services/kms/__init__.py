"""AWS KMS: keys, aliases and real authenticated encryption."""

from nubes.services.base import ServiceSpec
from nubes.services.kms.provider import KmsProvider

SERVICE = ServiceSpec(models=("kms",), provider=KmsProvider)
