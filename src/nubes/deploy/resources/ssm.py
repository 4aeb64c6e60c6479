"""AWS::SSM::Parameter — Ref is the parameter name; GetAtt Type and Value."""

from __future__ import annotations

import secrets
import string
from typing import Any

from nubes.aws.errors import AwsError
from nubes.deploy.resources.base import (
    HandlerContext,
    Outcome,
    ResourceHandler,
    ignore_missing,
    tags_list,
)


def _generated_name(ctx: HandlerContext) -> str:
    # CloudFormation names unnamed parameters ``CFN-{logical id}-{random}``.
    random = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(12))
    return f"CFN-{ctx.logical_id}-{random}"


class SsmParameter(ResourceHandler):
    """A Parameter Store parameter."""

    type_name = "AWS::SSM::Parameter"
    attributes = ("Type", "Value")
    replace_on = frozenset({"Name"})
    name_property = "Name"

    def _put(self, name: str, props: dict[str, Any], overwrite: bool) -> dict[str, Any]:
        kind = props.get("Type")
        if kind not in ("String", "StringList"):
            raise AwsError("ValidationError", f"Parameter type {kind} is not supported. CloudFormation supports String and StringList.")
        params: dict[str, Any] = {"Name": name, "Value": str(props["Value"]), "Type": kind, "Overwrite": overwrite}
        for key in ("Description", "AllowedPattern", "Tier", "DataType", "Policies"):
            if key in props:
                params[key] = props[key]
        return params

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        name = props.get("Name") or _generated_name(ctx)
        params = self._put(name, props, overwrite=False)
        if props.get("Tags"):
            params["Tags"] = tags_list(props["Tags"])
        await ctx.call("ssm", "PutParameter", params)
        return Outcome(name, {"Type": props["Type"], "Value": str(props["Value"])})

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        await ctx.call("ssm", "PutParameter", self._put(physical_id, props, overwrite=True))
        return Outcome(physical_id, {"Type": props["Type"], "Value": str(props["Value"])})

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        try:
            await ctx.call("ssm", "DeleteParameter", {"Name": physical_id})
        except AwsError as exc:
            ignore_missing(exc, "ParameterNotFound")


HANDLERS = (SsmParameter,)
