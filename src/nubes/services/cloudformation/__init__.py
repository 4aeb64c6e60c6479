"""AWS CloudFormation: stacks and change sets over the deploy engine."""

from nubes.deploy.resources.custom import RESPONSE_PATH
from nubes.services.base import HttpRoute, ServiceSpec
from nubes.services.cloudformation.provider import CloudFormationProvider

SERVICE = ServiceSpec(
    models=("cloudformation",),
    provider=CloudFormationProvider,
    http_routes=(HttpRoute("custom_resource_response", path=RESPONSE_PATH + r"(?P<request_id>[A-Za-z0-9-]+)$"),),
)
