"""The Lambda provider: the operation mixins plus start/stop and nubes's own routes."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import orjson

from nubes.aws.protocol.types import WireResponse
from nubes.events.async_invoke import AsyncInvoker
from nubes.services.base import HttpRequest
from nubes.services.lambda_ import code as codes
from nubes.services.lambda_ import store as st
from nubes.services.lambda_.extras import ExtrasMixin
from nubes.services.lambda_.functions import FunctionsMixin
from nubes.services.lambda_.invoke import InvokeMixin
from nubes.services.lambda_.layers import LayersMixin
from nubes.services.lambda_.mappings import MappingsMixin
from nubes.services.lambda_.telemetry import Telemetry
from nubes.services.lambda_.urls import UrlsMixin
from nubes.services.lambda_.versions import VersionsMixin
from nubes.storage.keys import unpack

log = logging.getLogger(__name__)


class LambdaProvider(
    InvokeMixin, VersionsMixin, FunctionsMixin, ExtrasMixin, LayersMixin, UrlsMixin, MappingsMixin
):
    """AWS Lambda: functions, versions, aliases, layers, URLs, invocations, event sources."""

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self.telemetry = Telemetry(app)
        self.async_invoker = AsyncInvoker(app, self.async_target, self.async_run)

    async def start(self) -> None:
        """Start the runtime (if it can), the telemetry flusher, the async worker, pollers."""
        try:
            from nubes.runtime.manager import RuntimeManager

            self.runtime = RuntimeManager(
                self.app.settings, platform_env=self.platform_env(), aws_hosts=self.aws_hosts(),
                on_logs=self.telemetry.on_logs, on_invocation=self.telemetry.on_invocation,
            )  # fmt: skip
            await self.runtime.start()
        except Exception as exc:  # the server still serves the API; Invoke explains
            log.exception("the function runtime could not start")
            self.runtime = None
            self.runtime_error = f"{type(exc).__name__}: {exc}"
        self.app.spawn(self.telemetry.run(), name="lambda-telemetry")
        self.app.spawn(self.forget_targets_on_change(), name="lambda-targets")
        self.app.spawn(self.async_invoker.run_forever(), name="lambda-async")
        await self.start_mappings()
        await self._settle_leftovers()

    async def stop(self) -> None:
        """Flush telemetry and stop every function instance."""
        await self.stop_mappings()
        try:
            await asyncio.wait_for(self.telemetry.flush(), 5.0)
        except Exception:
            log.exception("flushing function telemetry at shutdown failed")
        if self.runtime is not None:
            await self.runtime.stop()

    async def _settle_leftovers(self) -> None:
        """Functions left Pending/InProgress by a stop between create and settle."""
        docs = await self.app.store.read(lambda txn: txn.scan(st.FUNCTIONS))
        for key, raw in docs:
            config = orjson.loads(raw)["config"]
            if config.get("State") == "Pending" or config.get("LastUpdateStatus") == "InProgress":
                region, name = unpack(key)
                await self._settle(str(region), str(name))

    # -- nubes's own HTTP routes ----------------------------------------------------------

    async def serve_code(self, request: HttpRequest, match: re.Match[str]) -> WireResponse:
        """GetFunction's ``Code.Location``: the function's zip."""
        path = codes.zip_path(self.data_dir, match.group("hex"))
        if path is None:
            return WireResponse(404, {"Content-Type": "application/json"}, b'{"message":"no such code"}')
        data = await asyncio.to_thread(path.read_bytes)
        return WireResponse(200, {"Content-Type": "application/zip"}, data)

    async def serve_usage(self, request: HttpRequest, match: re.Match[str]) -> WireResponse:
        """``/_nubes/usage``: requests and GB-seconds per function."""
        await self.telemetry.flush_metrics()
        return WireResponse(200, {"Content-Type": "application/json"}, orjson.dumps(await self.usage()))

    async def usage(self) -> dict[str, Any]:
        """Usage per function (all regions) with the runtime's live numbers."""
        rows = await self.app.store.read(lambda txn: txn.scan(st.USAGE))
        live = self.runtime.stats() if self.runtime is not None else {}
        functions = []
        total = {"requests": 0, "gb_seconds": 0.0, "errors": 0, "throttles": 0}
        for key, raw in rows:
            region, name = unpack(key)
            doc = orjson.loads(raw)
            for k in total:
                total[k] += doc.get(k, 0)
            now = live.get(str(name), {})
            functions.append({"function": name, "region": region, **doc,
                              "instances": now.get("instances", 0), "busy": now.get("busy", 0)})  # fmt: skip
        total["gb_seconds"] = round(float(total["gb_seconds"]), 6)
        return {"functions": functions, "total": total}
