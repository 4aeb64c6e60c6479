"""Amazon CloudWatch Logs: log groups, streams and events; function logs land here."""

from nubes.services.base import ServiceSpec
from nubes.services.logs.provider import LogsProvider

SERVICE = ServiceSpec(models=("logs",), provider=LogsProvider)
