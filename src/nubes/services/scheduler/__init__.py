"""Amazon EventBridge Scheduler (botocore model ``scheduler``)."""

from nubes.services.base import ServiceSpec
from nubes.services.scheduler.provider import SchedulerProvider

SERVICE = ServiceSpec(models=("scheduler",), provider=SchedulerProvider)
