"""AWS::Lambda::* — Function, Permission, Version, Alias, EventSourceMapping, Url,
EventInvokeConfig and LayerVersion, with Ref/GetAtt values as CloudFormation
documents them."""

from __future__ import annotations

import asyncio
import io
import zipfile
from typing import Any

from nubes.aws.errors import AwsError
from nubes.deploy.resources.base import (
    HandlerContext,
    Outcome,
    ResourceHandler,
    as_int,
    ignore_missing,
    random_suffix,
    tags_map,
)
from nubes.deploy.resources.cfnresponse_module import SOURCE as CFNRESPONSE

_CONFIG = (
    "Role", "Handler", "Runtime", "Description", "Timeout", "MemorySize", "Environment", "Layers",
    "TracingConfig", "DeadLetterConfig", "VpcConfig", "KmsKeyArn", "EphemeralStorage", "LoggingConfig",
    "ImageConfig", "FileSystemConfigs", "SnapStart", "RuntimeManagementConfig",
)  # fmt: skip
_CREATE_ONLY = ("PackageType", "Architectures", "CodeSigningConfigArn")


def inline_zip(code: str, runtime: str) -> bytes:
    """The zip CloudFormation builds from ``ZipFile`` source: ``index.py`` (with
    ``cfnresponse``) for Python, ``index.js`` otherwise."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        if runtime.startswith("python"):
            archive.writestr(zipfile.ZipInfo("index.py", (2020, 1, 1, 0, 0, 0)), code)
            archive.writestr(zipfile.ZipInfo("cfnresponse.py", (2020, 1, 1, 0, 0, 0)), CFNRESPONSE)
        else:
            archive.writestr(zipfile.ZipInfo("index.js", (2020, 1, 1, 0, 0, 0)), code)
    return buffer.getvalue()


def _code(props: dict[str, Any]) -> dict[str, Any]:
    code = dict(props.get("Code") or {})
    if "ZipFile" in code:
        return {"ZipFile": inline_zip(str(code["ZipFile"]), str(props.get("Runtime", "python")))}
    return {k: code[k] for k in ("S3Bucket", "S3Key", "S3ObjectVersion", "ImageUri") if k in code}


def _config(props: dict[str, Any]) -> dict[str, Any]:
    out = {k: props[k] for k in _CONFIG if k in props}
    for key in ("Timeout", "MemorySize"):
        if key in out:
            out[key] = as_int(out[key])
    return out


class Function(ResourceHandler):
    """A function; waits until it is Active, as CloudFormation does."""

    type_name = "AWS::Lambda::Function"
    attributes = ("Arn", "SnapStartResponse", "SnapStartResponse.ApplyOn", "SnapStartResponse.OptimizationStatus")
    replace_on = frozenset({"FunctionName", "PackageType"})
    name_property = "FunctionName"

    async def _settle(self, ctx: HandlerContext, name: str) -> dict[str, Any]:
        for _ in range(600):
            config = await ctx.call("lambda", "GetFunctionConfiguration", {"FunctionName": name})
            if config.get("State") not in ("Pending",) and config.get("LastUpdateStatus") != "InProgress":
                if config.get("State") == "Failed":
                    raise AwsError("InvalidRequest", config.get("StateReason") or "The function failed to become Active")
                return config
            await asyncio.sleep(0.1)
        raise AwsError("GeneralServiceException", f"Function {name} did not become Active")

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        name = props.get("FunctionName") or ctx.physical_name(64)
        params: dict[str, Any] = {"FunctionName": name, "Code": _code(props), **_config(props)}
        for key in _CREATE_ONLY:
            if key in props:
                params[key] = props[key]
        if props.get("Tags"):
            params["Tags"] = tags_map(props["Tags"])
        result = await ctx.call("lambda", "CreateFunction", params)
        await self._settle(ctx, name)
        if "ReservedConcurrentExecutions" in props:
            await ctx.call("lambda", "PutFunctionConcurrency", {"FunctionName": name, "ReservedConcurrentExecutions": as_int(props["ReservedConcurrentExecutions"])})
        return Outcome(name, {"Arn": result["FunctionArn"]})

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        if props.get("Code") != old.get("Code") or (props.get("Runtime") != old.get("Runtime") and "ZipFile" in (props.get("Code") or {})):
            await ctx.call("lambda", "UpdateFunctionCode", {"FunctionName": physical_id, **_code(props)})
            await self._settle(ctx, physical_id)
        config, before = _config(props), _config(old)
        if config != before:
            changes = dict(config)
            for key in before:
                if key not in config:
                    changes[key] = {"Environment": {"Variables": {}}, "Layers": [], "Description": ""}.get(key)
            await ctx.call("lambda", "UpdateFunctionConfiguration", {"FunctionName": physical_id, **{k: v for k, v in changes.items() if v is not None}})
            await self._settle(ctx, physical_id)
        if props.get("ReservedConcurrentExecutions") != old.get("ReservedConcurrentExecutions"):
            if "ReservedConcurrentExecutions" in props:
                await ctx.call("lambda", "PutFunctionConcurrency", {"FunctionName": physical_id, "ReservedConcurrentExecutions": as_int(props["ReservedConcurrentExecutions"])})
            else:
                await ctx.call("lambda", "DeleteFunctionConcurrency", {"FunctionName": physical_id})
        config_now = await ctx.call("lambda", "GetFunctionConfiguration", {"FunctionName": physical_id})
        return Outcome(physical_id, {"Arn": config_now["FunctionArn"]})

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        try:
            await ctx.call("lambda", "DeleteFunction", {"FunctionName": physical_id})
        except AwsError as exc:
            ignore_missing(exc)


class Permission(ResourceHandler):
    """A statement in a function's resource policy; every change replaces it."""

    type_name = "AWS::Lambda::Permission"
    attributes = ()
    replace_always = True

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        statement_id = f"{ctx.stack_name}-{ctx.logical_id}-{random_suffix(12)}"[-100:]
        params: dict[str, Any] = {"StatementId": statement_id}
        for key in ("FunctionName", "Action", "Principal", "SourceArn", "SourceAccount", "EventSourceToken",
                    "FunctionUrlAuthType", "PrincipalOrgID", "InvokedViaFunctionUrl"):
            if key in props:
                params[key] = props[key]
        await ctx.call("lambda", "AddPermission", params)
        # The function name is kept in the physical id so delete needs nothing else.
        return Outcome(f"{props['FunctionName']}|{statement_id}", ref=statement_id)

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        function, _, statement_id = physical_id.rpartition("|")
        try:
            await ctx.call("lambda", "RemovePermission", {"FunctionName": function or props.get("FunctionName", ""), "StatementId": statement_id})
        except AwsError as exc:
            ignore_missing(exc)


class Version(ResourceHandler):
    """A published version; Ref is the version ARN."""

    type_name = "AWS::Lambda::Version"
    attributes = ("FunctionArn", "Version")
    replace_on = frozenset({"FunctionName", "Description", "CodeSha256", "RuntimePolicy"})

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        params: dict[str, Any] = {k: props[k] for k in ("FunctionName", "Description", "CodeSha256") if k in props}
        out = await ctx.call("lambda", "PublishVersion", params)
        arn = out["FunctionArn"]
        return Outcome(arn, {"Version": out["Version"], "FunctionArn": arn})

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        return Outcome(physical_id, {"Version": physical_id.rsplit(":", 1)[-1], "FunctionArn": physical_id})

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        function, _, version = physical_id.rpartition(":")
        try:
            await ctx.call("lambda", "DeleteFunction", {"FunctionName": function, "Qualifier": version})
        except AwsError as exc:
            ignore_missing(exc)


class Alias(ResourceHandler):
    """A function alias; Ref is the alias ARN."""

    type_name = "AWS::Lambda::Alias"
    attributes = ("AliasArn",)
    replace_on = frozenset({"FunctionName", "Name"})

    def _params(self, props: dict[str, Any]) -> dict[str, Any]:
        return {k: props[k] for k in ("FunctionName", "FunctionVersion", "Name", "Description", "RoutingConfig") if k in props}

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        out = await ctx.call("lambda", "CreateAlias", self._params(props))
        return Outcome(out["AliasArn"], {"AliasArn": out["AliasArn"]})

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        out = await ctx.call("lambda", "UpdateAlias", self._params(props))
        return Outcome(out["AliasArn"], {"AliasArn": out["AliasArn"]})

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        function = physical_id.rsplit(":", 1)[0]
        try:
            await ctx.call("lambda", "DeleteAlias", {"FunctionName": function, "Name": physical_id.rsplit(":", 1)[-1]})
        except AwsError as exc:
            ignore_missing(exc)


HANDLERS = (Function, Permission, Version, Alias)
