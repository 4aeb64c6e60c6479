"""AWS Lambda: the function API, invocations (sync, async, URLs) and event sources."""

from nubes.services.base import HttpRoute, ServiceSpec
from nubes.services.lambda_.provider import LambdaProvider
from nubes.services.lambda_.urls import HOST_PATTERN, PATH_PATTERN

SERVICE = ServiceSpec(
    models=("lambda",),
    provider=LambdaProvider,
    http_routes=(
        HttpRoute("serve_usage", path=r"^/_nubes/usage/?$"),
        HttpRoute("serve_code", path=r"^/_nubes/lambda/code/(?P<hex>[0-9a-f]{64})\.zip$"),
        HttpRoute("serve_function_url", path=PATH_PATTERN),
        HttpRoute("serve_function_url", host=HOST_PATTERN),
    ),
)
