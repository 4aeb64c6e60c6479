"""AWS Step Functions: state machines, durable Standard and in-memory Express
executions, activities and task tokens, on the States Language engine in
``nubes.workflows``."""

from nubes.services.base import ServiceSpec
from nubes.services.stepfunctions.provider import StepFunctionsProvider

SERVICE = ServiceSpec(models=("stepfunctions",), provider=StepFunctionsProvider)
