"""The web console's route: no AWS model, only ``/_nubes/console`` (see ``nubes.console``)."""

from nubes.services.base import HttpRoute, ServiceSpec
from nubes.services.console.provider import ConsoleProvider

SERVICE = ServiceSpec(
    models=(),
    provider=ConsoleProvider,
    http_routes=(
        HttpRoute(
            "http_console",
            path=r"^/_nubes/console(?P<rest>/.*)?$",
            methods=("GET", "POST", "DELETE"),
        ),
    ),
)
