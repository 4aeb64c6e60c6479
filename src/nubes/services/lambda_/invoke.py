"""Invoke: synchronous, asynchronous (the durable queue) and DryRun.

A function is invocable while it is still ``Pending``: its code is unpacked before
CreateFunction answers, and the state turns Active milliseconds later, so scripts
that create and immediately invoke work (AWS would answer ResourceConflictException).
"""

from __future__ import annotations

import base64
import logging
from typing import TYPE_CHECKING, Any

import orjson

from nubes.aws.errors import AwsError
from nubes.events.async_invoke import (
    AsyncInvoker,
    AsyncTarget,
    event_record,
    retry_delays_from_tags,
)
from nubes.services.base import RequestContext
from nubes.services.lambda_.common import LambdaBase, qualified_arn
from nubes.services.lambda_.models import (
    LATEST,
    MAX_ASYNC_PAYLOAD,
    MAX_SYNC_PAYLOAD,
    FunctionRef,
    error,
    invalid,
)
from nubes.services.lambda_.telemetry import Telemetry

if TYPE_CHECKING:
    from nubes.runtime.spec import FunctionSpec, InvocationResult

log = logging.getLogger(__name__)

_TAIL_BYTES = 4096


def check_payload(payload: bytes, limit: int) -> bytes:
    """Size and JSON checks AWS makes before anything runs; returns the payload to send."""
    if len(payload) > limit:
        raise AwsError("RequestTooLargeException",
                       f"Request must be smaller than {limit} bytes for the InvokeFunction operation", 413,
                       fields={"Type": "User"})  # fmt: skip
    if not payload.strip():
        return b"{}"
    try:
        orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise error("InvalidRequestContentException",
                    f"Could not parse request body into json: Could not parse payload into json: {exc}", 400) from None  # fmt: skip
    return payload


class InvokeMixin(LambdaBase):
    """Invoke and what runs functions for the rest of nubes (async queue, event sources, URLs)."""

    telemetry: Telemetry
    async_invoker: AsyncInvoker

    def runtime_or_error(self) -> Any:
        """The runtime manager, or a ServiceException explaining why there is none."""
        if self.runtime is None:
            raise AwsError("ServiceException", f"The function runtime is not available: {self.runtime_error}", 500,
                           sender_fault=False, fields={"Type": "Service"})  # fmt: skip
        return self.runtime

    runtime_error: str = "not started"

    async def invoke(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref = self.ref(ctx, params)
        kind = params.get("InvocationType") or "RequestResponse"
        if kind not in ("RequestResponse", "Event", "DryRun"):
            raise invalid(f"Unsupported InvocationType: {kind}")
        payload = bytes(params.get("Payload") or b"")
        _, config, version, spec = await self.invocation(ref)
        ctx.response_headers["x-amzn-RequestId"] = ctx.request_id
        if config.get("State") == "Failed":
            raise error("ResourceConflictException",
                        "The operation cannot be performed at this time. The function is currently in the "
                        "following state: Failed", 409)  # fmt: skip
        if kind == "DryRun":
            check_payload(payload, MAX_SYNC_PAYLOAD)
            return {"StatusCode": 204}
        if kind == "Event":
            payload = check_payload(payload, MAX_ASYNC_PAYLOAD)
            record = event_record(region=ref.region, function_name=ref.name, qualifier=ref.qualifier,
                                  payload=payload, request_id=ctx.request_id,
                                  client_context=params.get("ClientContext"))  # fmt: skip
            await self.async_invoker.enqueue(record)
            return {"StatusCode": 202}
        payload = check_payload(payload, MAX_SYNC_PAYLOAD)
        result = await self.run(spec, payload, ctx.request_id, client_context=params.get("ClientContext"))
        out: dict[str, Any] = {"StatusCode": 200, "Payload": result.payload, "ExecutedVersion": version}
        if result.function_error:
            out["FunctionError"] = result.function_error
        if params.get("LogType") == "Tail":
            out["LogResult"] = base64.b64encode(result.log_tail.encode()[-_TAIL_BYTES:]).decode()
        return out

    async def run(self, spec: FunctionSpec, payload: bytes, request_id: str, *,
                  client_context: str | None = None, identity: dict[str, Any] | None = None) -> InvocationResult:  # fmt: skip
        """Run one invocation on the runtime, counting it for metrics."""
        runtime = self.runtime_or_error()
        self.telemetry.started(spec)
        try:
            result: InvocationResult = await runtime.invoke(
                spec, payload, request_id=request_id, client_context=client_context, identity=identity
            )
        except AwsError as exc:
            if exc.status == 429:
                self.telemetry.throttled(spec)
            raise
        finally:
            self.telemetry.finished(spec)
        return result

    async def invoke_function(self, region: str, name: str, qualifier: str | None, payload: bytes,
                              request_id: str) -> tuple[InvocationResult, str]:  # fmt: skip
        """A synchronous invocation from inside nubes (event sources, function URLs):
        (result, executed version)."""
        _, _, version, spec = await self.invocation(FunctionRef(name, region, qualifier))
        result = await self.run(spec, payload, request_id)
        return result, version

    # -- the async queue's callbacks ----------------------------------------------------------

    async def async_target(self, item: dict[str, Any]) -> AsyncTarget | None:
        """Resolve a queued event's function (None if it was deleted)."""
        ref = FunctionRef(item["function"], item["region"], item.get("qualifier"))
        try:
            doc, config, version = await self.resolve(ref, route=True)
        except AwsError:
            return None
        eic = (doc.get("event_invoke") or {}).get(ref.qualifier or LATEST) or {}
        return AsyncTarget(
            function_arn=qualified_arn(ref.region, self.account, ref.name, version),
            version=version, timeout_s=float(config.get("Timeout") or 3), event_invoke_config=eic,
            dead_letter_arn=(config.get("DeadLetterConfig") or {}).get("TargetArn"),
            retry_delays=retry_delays_from_tags(doc.get("tags") or {}),
        )  # fmt: skip

    async def async_run(self, item: dict[str, Any], target: AsyncTarget) -> InvocationResult:
        """Run one attempt of a queued event (same version the target resolved)."""
        ref = FunctionRef(item["function"], item["region"], None if target.version == LATEST else target.version)
        doc, config, version = await self.resolve(ref)
        spec = self.function_spec(doc, config, version, item.get("qualifier"))
        return await self.run(spec, item["payload"].encode(), item["request_id"],
                              client_context=item.get("client_context"))  # fmt: skip
