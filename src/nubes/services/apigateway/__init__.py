"""Amazon API Gateway: REST (v1), HTTP and WebSocket (v2) APIs, the execute-api
data plane and the @connections management API."""

from nubes.services.apigateway.provider import ApiGatewayProvider
from nubes.services.base import HttpRoute, ServiceSpec, WebSocketRoute

_HOST = r"(?P<api>[a-z0-9]+)\.execute-api\.(?:localhost|[a-z0-9-]+\.amazonaws\.com)"
_PATH = r"^/_nubes/execute-api/(?P<api>[a-z0-9]+)(?P<rest>/.*)?$"

SERVICE = ServiceSpec(
    models=("apigateway", "apigatewayv2", "apigatewaymanagementapi"),
    provider=ApiGatewayProvider,
    http_routes=(HttpRoute("execute_api", host=_HOST), HttpRoute("execute_api", path=_PATH)),
    websocket_routes=(WebSocketRoute("execute_api_ws", host=_HOST), WebSocketRoute("execute_api_ws", path=_PATH)),
)
