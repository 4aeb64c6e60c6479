"""AWS::IAM::Role (Ref: role name; GetAtt Arn, RoleId), Policy (inline policy on
roles/users/groups) and ManagedPolicy (Ref: policy ARN; GetAtt PolicyArn)."""

from __future__ import annotations

from typing import Any

from nubes.aws.errors import AwsError
from nubes.deploy.resources.base import (
    HandlerContext,
    Outcome,
    ResourceHandler,
    as_int,
    ignore_missing,
    json_text,
    random_suffix,
    tags_list,
)

_MISSING = ("NoSuchEntity", "NoSuchEntityException")


class Role(ResourceHandler):
    """A role with managed policy attachments and inline policies."""

    type_name = "AWS::IAM::Role"
    attributes = ("Arn", "RoleId")
    replace_on = frozenset({"RoleName", "Path"})
    name_property = "RoleName"

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        name = props.get("RoleName") or ctx.physical_name(64)
        params: dict[str, Any] = {"RoleName": name, "AssumeRolePolicyDocument": json_text(props["AssumeRolePolicyDocument"])}
        for key in ("Path", "Description", "PermissionsBoundary"):
            if key in props:
                params[key] = props[key]
        if "MaxSessionDuration" in props:
            params["MaxSessionDuration"] = as_int(props["MaxSessionDuration"])
        if props.get("Tags"):
            params["Tags"] = tags_list(props["Tags"])
        role = (await ctx.call("iam", "CreateRole", params))["Role"]
        await self._sync_policies(ctx, name, props, {})
        return Outcome(name, {"Arn": role["Arn"], "RoleId": role["RoleId"]})

    async def _sync_policies(self, ctx: HandlerContext, name: str, props: dict[str, Any], old: dict[str, Any]) -> None:
        before, after = set(old.get("ManagedPolicyArns") or []), set(props.get("ManagedPolicyArns") or [])
        for arn in sorted(before - after):
            await ctx.call("iam", "DetachRolePolicy", {"RoleName": name, "PolicyArn": arn})
        for arn in sorted(after - before):
            await ctx.call("iam", "AttachRolePolicy", {"RoleName": name, "PolicyArn": arn})
        old_inline = {p["PolicyName"]: p for p in old.get("Policies") or []}
        new_inline = {p["PolicyName"]: p for p in props.get("Policies") or []}
        for policy_name in old_inline.keys() - new_inline.keys():
            await ctx.call("iam", "DeleteRolePolicy", {"RoleName": name, "PolicyName": policy_name})
        for policy_name, policy in new_inline.items():
            if old_inline.get(policy_name) != policy:
                await ctx.call("iam", "PutRolePolicy", {"RoleName": name, "PolicyName": policy_name, "PolicyDocument": json_text(policy["PolicyDocument"])})

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        if props.get("AssumeRolePolicyDocument") != old.get("AssumeRolePolicyDocument"):
            await ctx.call("iam", "UpdateAssumeRolePolicy", {"RoleName": physical_id, "PolicyDocument": json_text(props["AssumeRolePolicyDocument"])})
        if props.get("Description") != old.get("Description") or props.get("MaxSessionDuration") != old.get("MaxSessionDuration"):
            params: dict[str, Any] = {"RoleName": physical_id, "Description": props.get("Description", "")}
            if "MaxSessionDuration" in props:
                params["MaxSessionDuration"] = as_int(props["MaxSessionDuration"])
            await ctx.call("iam", "UpdateRole", params)
        await self._sync_policies(ctx, physical_id, props, old)
        role = (await ctx.call("iam", "GetRole", {"RoleName": physical_id}))["Role"]
        return Outcome(physical_id, {"Arn": role["Arn"], "RoleId": role["RoleId"]})

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        try:
            attached = await ctx.call("iam", "ListAttachedRolePolicies", {"RoleName": physical_id})
            for policy in attached.get("AttachedPolicies", []):
                await ctx.call("iam", "DetachRolePolicy", {"RoleName": physical_id, "PolicyArn": policy["PolicyArn"]})
            inline = await ctx.call("iam", "ListRolePolicies", {"RoleName": physical_id})
            for policy_name in inline.get("PolicyNames", []):
                await ctx.call("iam", "DeleteRolePolicy", {"RoleName": physical_id, "PolicyName": policy_name})
            await ctx.call("iam", "DeleteRole", {"RoleName": physical_id})
        except AwsError as exc:
            ignore_missing(exc, *_MISSING)


class Policy(ResourceHandler):
    """An inline policy put on each listed role, user and group."""

    type_name = "AWS::IAM::Policy"
    attributes = ("Id",)

    _TARGETS = (("Roles", "RoleName", "Role"), ("Users", "UserName", "User"), ("Groups", "GroupName", "Group"))

    async def _put(self, ctx: HandlerContext, props: dict[str, Any]) -> None:
        document = json_text(props["PolicyDocument"])
        for key, param, kind in self._TARGETS:
            for target in props.get(key) or []:
                await ctx.call("iam", f"Put{kind}Policy", {param: target, "PolicyName": props["PolicyName"], "PolicyDocument": document})

    async def _remove(self, ctx: HandlerContext, props: dict[str, Any], keep: dict[str, Any] | None = None) -> None:
        for key, param, kind in self._TARGETS:
            for target in props.get(key) or []:
                if keep and target in (keep.get(key) or []) and keep.get("PolicyName") == props.get("PolicyName"):
                    continue
                try:
                    await ctx.call("iam", f"Delete{kind}Policy", {param: target, "PolicyName": props["PolicyName"]})
                except AwsError as exc:
                    ignore_missing(exc, *_MISSING)

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        await self._put(ctx, props)
        physical = f"{ctx.stack_name[:5]}-{ctx.logical_id[:5]}-{random_suffix(12)}"
        return Outcome(physical, {"Id": physical})

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        await self._remove(ctx, old, keep=props)
        await self._put(ctx, props)
        return Outcome(physical_id, {"Id": physical_id})

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        await self._remove(ctx, props)


class ManagedPolicy(ResourceHandler):
    """A customer managed policy, attached to the listed roles, users and groups."""

    type_name = "AWS::IAM::ManagedPolicy"
    attributes = ("PolicyArn", "PolicyId", "DefaultVersionId", "AttachmentCount", "IsAttachable", "CreateDate", "UpdateDate")
    replace_on = frozenset({"ManagedPolicyName", "Path", "Description"})
    name_property = "ManagedPolicyName"

    _TARGETS = (("Roles", "RoleName", "Role"), ("Users", "UserName", "User"), ("Groups", "GroupName", "Group"))

    async def _attach(self, ctx: HandlerContext, arn: str, props: dict[str, Any], verb: str, skip: dict[str, Any] | None = None) -> None:
        for key, param, kind in self._TARGETS:
            for target in props.get(key) or []:
                if skip and target in (skip.get(key) or []):
                    continue
                try:
                    await ctx.call("iam", f"{verb}{kind}Policy", {param: target, "PolicyArn": arn})
                except AwsError as exc:
                    if verb == "Attach":
                        raise
                    ignore_missing(exc, *_MISSING)

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        name = props.get("ManagedPolicyName") or ctx.physical_name(128)
        params: dict[str, Any] = {"PolicyName": name, "PolicyDocument": json_text(props["PolicyDocument"])}
        for key in ("Path", "Description"):
            if key in props:
                params[key] = props[key]
        policy = (await ctx.call("iam", "CreatePolicy", params))["Policy"]
        await self._attach(ctx, policy["Arn"], props, "Attach")
        return Outcome(policy["Arn"], {"PolicyArn": policy["Arn"], "PolicyId": policy.get("PolicyId", ""), "DefaultVersionId": policy.get("DefaultVersionId", "v1")})

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        version = None
        if props.get("PolicyDocument") != old.get("PolicyDocument"):
            versions = (await ctx.call("iam", "ListPolicyVersions", {"PolicyArn": physical_id})).get("Versions", [])
            for stale in [v for v in versions if not v.get("IsDefaultVersion")][: max(len(versions) - 4, 0)]:
                await ctx.call("iam", "DeletePolicyVersion", {"PolicyArn": physical_id, "VersionId": stale["VersionId"]})
            created = await ctx.call("iam", "CreatePolicyVersion", {"PolicyArn": physical_id, "PolicyDocument": json_text(props["PolicyDocument"]), "SetAsDefault": True})
            version = created["PolicyVersion"]["VersionId"]
        await self._attach(ctx, physical_id, old, "Detach", skip=props)
        await self._attach(ctx, physical_id, props, "Attach", skip=old)
        return Outcome(physical_id, {"PolicyArn": physical_id, "DefaultVersionId": version or "v1"})

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        await self._attach(ctx, physical_id, props, "Detach")
        try:
            versions = (await ctx.call("iam", "ListPolicyVersions", {"PolicyArn": physical_id})).get("Versions", [])
            for version in versions:
                if not version.get("IsDefaultVersion"):
                    await ctx.call("iam", "DeletePolicyVersion", {"PolicyArn": physical_id, "VersionId": version["VersionId"]})
            await ctx.call("iam", "DeletePolicy", {"PolicyArn": physical_id})
        except AwsError as exc:
            ignore_missing(exc, *_MISSING)


HANDLERS = (Role, Policy, ManagedPolicy)
