"""Custom resources (``AWS::CloudFormation::CustomResource`` and ``Custom::*``):
the request goes to the ``ServiceToken`` (a Lambda function or an SNS topic), and
the provider answers by PUTting a response document to ``ResponseURL``.

The ResponseURL is nubes' own ``/_nubes/cloudformation/responses/{request id}``;
the CloudFormation provider stores what arrives there in ``cloudformation.responses``
and wakes the waiting handler. Ref is the PhysicalResourceId the provider returned;
``Fn::GetAtt`` reads the keys of its ``Data``.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import orjson

from nubes.aws.errors import AwsError
from nubes.deploy.resources.base import HandlerContext, Outcome, ResourceHandler
from nubes.storage.keys import pack

RESPONSES = "cloudformation.responses"
RESPONSE_PATH = "/_nubes/cloudformation/responses/"
_DEFAULT_TIMEOUT = 3600.0


def response_topic(request_id: str) -> str:
    """The bus name woken when a response for ``request_id`` arrives."""
    return f"cloudformation.response:{request_id}"


def failed(message: str) -> AwsError:
    """A custom resource failure, reported verbatim in the stack events."""
    return AwsError("CustomResourceFailed", message)


class CustomResource(ResourceHandler):
    """Create/Update/Delete requests sent to a provider function or topic."""

    type_name = "AWS::CloudFormation::CustomResource"
    attributes = None  # any key of the response's Data
    replace_on = frozenset({"ServiceToken"})

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        response = await self._request(ctx, "Create", props)
        physical_id = response.get("PhysicalResourceId")
        if not physical_id:
            raise failed("Invalid PhysicalResourceId")
        return Outcome(str(physical_id), dict(response.get("Data") or {}))

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        response = await self._request(ctx, "Update", props, physical_id=physical_id, old=old)
        return Outcome(str(response.get("PhysicalResourceId") or physical_id), dict(response.get("Data") or {}))

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        await self._request(ctx, "Delete", props, physical_id=physical_id)

    async def _request(self, ctx: HandlerContext, request_type: str, props: dict[str, Any], *,
                       physical_id: str | None = None, old: dict[str, Any] | None = None) -> dict[str, Any]:
        token = props.get("ServiceToken")
        if not isinstance(token, str) or not token.startswith("arn:"):
            raise failed("ServiceToken must be the ARN of a Lambda function or an SNS topic")
        request_id = str(uuid.uuid4())
        event: dict[str, Any] = {
            "RequestType": request_type, "ServiceToken": token,
            "ResponseURL": f"{ctx.app.settings.endpoint}{RESPONSE_PATH}{request_id}",
            "StackId": ctx.stack_id, "RequestId": request_id, "LogicalResourceId": ctx.logical_id,
            "ResourceType": ctx.resource_type or self.type_name, "ResourceProperties": _strings(props),
        }  # fmt: skip
        if physical_id is not None:
            event["PhysicalResourceId"] = physical_id
        if old is not None:
            event["OldResourceProperties"] = _strings(old)
        timeout = float(props.get("ServiceTimeout") or _DEFAULT_TIMEOUT)
        invocation = asyncio.ensure_future(self._send(ctx, token, event))
        try:
            response = await self._await_response(ctx, request_id, invocation, timeout)
        finally:
            if not invocation.done():
                invocation.cancel()
        if response.get("Status") != "SUCCESS":
            reason = response.get("Reason") or "no reason given"
            raise failed(f"Received response status [FAILED] from custom resource. Message returned: {reason} (RequestId: {request_id})")
        return response

    async def _send(self, ctx: HandlerContext, token: str, event: dict[str, Any]) -> str | None:
        """Deliver the request; returns a function error message when the provider
        function failed (it may still have answered before failing)."""
        payload = json.dumps(event).encode()
        if token.split(":")[2] == "sns":
            await ctx.call("sns", "Publish", {"TopicArn": token, "Message": payload.decode()})
            return None
        out = await ctx.call("lambda", "Invoke", {"FunctionName": token, "Payload": payload})
        if out.get("FunctionError"):
            body = out.get("Payload") or b""
            return body.decode(errors="replace") if isinstance(body, bytes) else str(body)
        return None

    async def _await_response(self, ctx: HandlerContext, request_id: str, invocation: asyncio.Future[str | None],
                              timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        key = pack(request_id)
        while True:
            raw = await ctx.app.store.read(lambda txn: txn.get(RESPONSES, key))
            if raw is not None:
                await ctx.app.store.write(lambda txn: txn.delete(RESPONSES, key))
                response: dict[str, Any] = orjson.loads(raw)
                return response
            if invocation.done():
                error = invocation.exception()
                if error is not None:
                    raise error
                message = invocation.result()
                if message is not None:
                    # The function failed and never answered: waiting out the hour
                    # CloudFormation would wait helps nobody locally.
                    raise failed(f"The custom resource provider function failed without responding: {message}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise failed("CloudFormation did not receive a response from your Custom Resource. Please check your logs for requestId [" + request_id + "].")
            await ctx.app.bus.wait(response_topic(request_id), min(remaining, 0.5 if invocation.done() else 5.0))


def _strings(props: dict[str, Any]) -> dict[str, Any]:
    """CloudFormation passes custom resource properties with scalars as strings."""

    def convert(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, list):
            return [convert(v) for v in value]
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(value)
        return value

    result: dict[str, Any] = convert(props)
    return result


HANDLERS = (CustomResource,)
