"""``/_nubes/``: the platform's own endpoints (health; services add more as raw routes)."""

from __future__ import annotations

from typing import Any

import orjson

from nubes.app import App
from nubes.aws.protocol.types import WireResponse


def json_response(doc: Any, status: int = 200) -> WireResponse:
    """A JSON response for platform endpoints."""
    return WireResponse(status, {"Content-Type": "application/json"}, orjson.dumps(doc))


class PlatformRoutes:
    """Answers the endpoints the platform itself owns."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def handle(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str]
    ) -> WireResponse | None:
        """The response, or None when another route (a service's) should answer."""
        if path in ("/_nubes/health", "/_nubes/health/"):
            return json_response(self.health())
        return None

    def health(self) -> dict[str, Any]:
        """Version, services and their state, store backend."""
        state = "running" if self.app.started else "starting"
        return {
            "version": self.app.version,
            "status": state,
            "store": self.app.settings.store_backend,
            "broker": self.app.settings.broker.split("://")[0],
            "services": {name: state for name in sorted(self.app.specs)},
            "endpoint": self.app.settings.endpoint,
            "tls_endpoint": self.app.tls_endpoint,
            "ca_bundle": self.app.ca_bundle,
            "region": self.app.settings.default_region,
            "account_id": self.app.settings.account_id,
        }
