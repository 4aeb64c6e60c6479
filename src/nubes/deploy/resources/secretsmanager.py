"""AWS::SecretsManager::Secret — Ref is the secret ARN; GetAtt Id (the ARN)."""

from __future__ import annotations

import json
from typing import Any

from nubes.aws.errors import AwsError
from nubes.deploy.resources.base import (
    HandlerContext,
    Outcome,
    ResourceHandler,
    ignore_missing,
    random_suffix,
    tags_list,
)

_GENERATE_OPTIONS = (
    "PasswordLength", "ExcludeCharacters", "ExcludeNumbers", "ExcludePunctuation",
    "ExcludeUppercase", "ExcludeLowercase", "IncludeSpace", "RequireEachIncludedType",
)  # fmt: skip


class Secret(ResourceHandler):
    """A Secrets Manager secret, with ``GenerateSecretString`` support."""

    type_name = "AWS::SecretsManager::Secret"
    attributes = ("Id",)
    replace_on = frozenset({"Name"})
    name_property = "Name"

    async def _secret_string(self, ctx: HandlerContext, props: dict[str, Any]) -> str | None:
        if "SecretString" in props:
            return str(props["SecretString"])
        spec = props.get("GenerateSecretString")
        if spec is None:
            return None
        options = {k: spec[k] for k in _GENERATE_OPTIONS if k in spec}
        password = (await ctx.call("secretsmanager", "GetRandomPassword", options))["RandomPassword"]
        template = spec.get("SecretStringTemplate")
        key = spec.get("GenerateStringKey")
        if template is not None and key:
            document = json.loads(template)
            document[key] = password
            return json.dumps(document)
        return str(password)

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        name = props.get("Name") or f"{ctx.logical_id}-{random_suffix(12)}"
        params: dict[str, Any] = {"Name": name}
        value = await self._secret_string(ctx, props)
        if value is not None:
            params["SecretString"] = value
        for key in ("Description", "KmsKeyId"):
            if key in props:
                params[key] = props[key]
        if props.get("Tags"):
            params["Tags"] = tags_list(props["Tags"])
        arn = (await ctx.call("secretsmanager", "CreateSecret", params))["ARN"]
        return Outcome(arn, {"Id": arn})

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        params: dict[str, Any] = {"SecretId": physical_id}
        if props.get("SecretString") != old.get("SecretString") or props.get("GenerateSecretString") != old.get("GenerateSecretString"):
            value = await self._secret_string(ctx, props)
            if value is not None:
                params["SecretString"] = value
        for key in ("Description", "KmsKeyId"):
            if props.get(key) != old.get(key) and key in props:
                params[key] = props[key]
        if len(params) > 1:
            await ctx.call("secretsmanager", "UpdateSecret", params)
        return Outcome(physical_id, {"Id": physical_id})

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        try:
            await ctx.call("secretsmanager", "DeleteSecret", {"SecretId": physical_id, "ForceDeleteWithoutRecovery": True})
        except AwsError as exc:
            ignore_missing(exc)


HANDLERS = (Secret,)
