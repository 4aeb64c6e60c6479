"""Amazon CloudWatch metrics (PutMetricData, statistics, ListMetrics) and metric alarms."""

from nubes.services.base import ServiceSpec
from nubes.services.cloudwatch.provider import CloudWatchProvider

SERVICE = ServiceSpec(models=("cloudwatch",), provider=CloudWatchProvider)
