"""AWS::CloudFormation::Stack (nested stacks: Ref is the child stack id, GetAtt
``Outputs.Name``), AWS::CloudFormation::WaitConditionHandle and AWS::CDK::Metadata."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from nubes.aws.errors import AwsError
from nubes.deploy.resources.base import (
    HandlerContext,
    Outcome,
    ResourceHandler,
    random_suffix,
    tags_list,
)
from nubes.deploy.resources.custom import RESPONSE_PATH

_CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_text(v) for v in value)
    return str(value)


def embedded_failure(message: str) -> AwsError:
    """A nested stack operation failed (reported verbatim in the parent's events)."""
    return AwsError("EmbeddedStackFailed", message)


class NestedStack(ResourceHandler):
    """A child stack created from ``TemplateURL`` with ``Parameters``."""

    type_name = "AWS::CloudFormation::Stack"
    attributes = None  # Outputs.<name>

    def _request(self, props: dict[str, Any]) -> dict[str, Any]:
        params: dict[str, Any] = {
            "TemplateURL": props["TemplateURL"], "Capabilities": _CAPABILITIES,
            "Parameters": [{"ParameterKey": k, "ParameterValue": _text(v)} for k, v in (props.get("Parameters") or {}).items()],
        }  # fmt: skip
        if props.get("Tags"):
            params["Tags"] = tags_list(props["Tags"])
        if props.get("NotificationARNs"):
            params["NotificationARNs"] = props["NotificationARNs"]
        return params

    async def _settle(self, ctx: HandlerContext, stack_id: str) -> dict[str, Any]:
        while True:
            stack: dict[str, Any] = (await ctx.call("cloudformation", "DescribeStacks", {"StackName": stack_id}))["Stacks"][0]
            if not stack["StackStatus"].endswith("_IN_PROGRESS"):
                return stack
            await asyncio.sleep(0.2)

    def _outcome(self, stack: dict[str, Any]) -> Outcome:
        outputs = {f"Outputs.{o['OutputKey']}": o["OutputValue"] for o in stack.get("Outputs") or []}
        return Outcome(stack["StackId"], outputs)

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        name = f"{ctx.stack_name}-{ctx.logical_id}-{random_suffix(12)}"[-128:].lstrip("-0123456789") or "nested"
        out = await ctx.call("cloudformation", "CreateStack", {"StackName": name, **self._request(props)})
        stack = await self._settle(ctx, out["StackId"])
        if stack["StackStatus"] != "CREATE_COMPLETE":
            raise embedded_failure(f"Embedded stack {out['StackId']} was not successfully created: {stack.get('StackStatusReason', stack['StackStatus'])}")
        return self._outcome(stack)

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        try:
            await ctx.call("cloudformation", "UpdateStack", {"StackName": physical_id, **self._request(props)})
        except AwsError as exc:
            if exc.message != "No updates are to be performed.":
                raise
        stack = await self._settle(ctx, physical_id)
        if stack["StackStatus"] not in ("UPDATE_COMPLETE", "CREATE_COMPLETE"):
            raise embedded_failure(f"Embedded stack {physical_id} was not successfully updated. Currently in {stack['StackStatus']} with reason: {stack.get('StackStatusReason', '')}")
        return self._outcome(stack)

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        await ctx.call("cloudformation", "DeleteStack", {"StackName": physical_id})
        stack = await self._settle(ctx, physical_id)
        if stack["StackStatus"] != "DELETE_COMPLETE":
            raise embedded_failure(f"Embedded stack {physical_id} was not successfully deleted: {stack.get('StackStatusReason', '')}")


class WaitConditionHandle(ResourceHandler):
    """A URL to signal; nubes accepts signals at it (nothing waits on them)."""

    type_name = "AWS::CloudFormation::WaitConditionHandle"
    attributes = ()

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        return Outcome(f"{ctx.app.settings.endpoint}{RESPONSE_PATH}{uuid.uuid4()}")

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        return Outcome(physical_id)


class CdkMetadata(ResourceHandler):
    """The CDK's analytics resource: CloudFormation only records it."""

    type_name = "AWS::CDK::Metadata"
    attributes = ()

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        return Outcome(f"{ctx.stack_id.rsplit('/', 1)[-1]}-{ctx.logical_id}")

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        return Outcome(physical_id)


HANDLERS = (NestedStack, WaitConditionHandle, CdkMetadata)
