"""Amazon EventBridge (botocore model ``events``)."""

from nubes.services.base import ServiceSpec
from nubes.services.events.provider import EventsProvider

SERVICE = ServiceSpec(models=("events",), provider=EventsProvider)
