"""Amazon SQS: standard and FIFO queues, long polling, dead-letter queues and redrive."""

from nubes.aws.spec import on_model_load
from nubes.services.base import ServiceSpec
from nubes.services.sqs.provider import SqsProvider
from nubes.services.sqs.query import relax_receive_attribute_names

# the model loads with SQS's first request, not at start-up
on_model_load("sqs", relax_receive_attribute_names)

SERVICE = ServiceSpec(models=("sqs",), provider=SqsProvider)
