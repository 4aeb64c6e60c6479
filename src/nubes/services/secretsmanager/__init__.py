"""AWS Secrets Manager."""

from nubes.services.base import ServiceSpec
from nubes.services.secretsmanager.provider import SecretsManagerProvider

SERVICE = ServiceSpec(models=("secretsmanager",), provider=SecretsManagerProvider)
