"""Amazon SQS: standard and FIFO queues, long polling, dead-letter queues and redrive."""

from nubes.services.base import ServiceSpec
from nubes.services.sqs.provider import SqsProvider
from nubes.services.sqs.query import relax_receive_attribute_names

relax_receive_attribute_names()

SERVICE = ServiceSpec(models=("sqs",), provider=SqsProvider)
