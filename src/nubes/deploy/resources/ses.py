"""AWS::SES::Template (Ref: template name) and AWS::SES::EmailIdentity (Ref: the
identity)."""

from __future__ import annotations

from typing import Any

from nubes.aws.errors import AwsError
from nubes.deploy.resources.base import (
    HandlerContext,
    Outcome,
    ResourceHandler,
    api_params,
    ignore_missing,
)


class Template(ResourceHandler):
    """An email template (SES v1 API)."""

    type_name = "AWS::SES::Template"
    attributes = ("Id",)

    def needs_replacement(self, props: dict[str, Any], old: dict[str, Any]) -> bool:
        return bool((props.get("Template") or {}).get("TemplateName") != (old.get("Template") or {}).get("TemplateName"))

    def _template(self, ctx: HandlerContext, props: dict[str, Any]) -> dict[str, Any]:
        template = dict(props.get("Template") or {})
        template.setdefault("TemplateName", ctx.physical_name(64))
        return template

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        template = self._template(ctx, props)
        await ctx.call("ses", "CreateTemplate", {"Template": template})
        return Outcome(template["TemplateName"], {"Id": template["TemplateName"]})

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        template = {**self._template(ctx, props), "TemplateName": physical_id}
        await ctx.call("ses", "UpdateTemplate", {"Template": template})
        return Outcome(physical_id, {"Id": physical_id})

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        try:
            await ctx.call("ses", "DeleteTemplate", {"TemplateName": physical_id})
        except AwsError as exc:
            ignore_missing(exc, "TemplateDoesNotExist")


class EmailIdentity(ResourceHandler):
    """An email address or domain identity (SES v2 API)."""

    type_name = "AWS::SES::EmailIdentity"
    attributes = ("DkimDNSTokenName1", "DkimDNSTokenName2", "DkimDNSTokenName3",
                  "DkimDNSTokenValue1", "DkimDNSTokenValue2", "DkimDNSTokenValue3")
    replace_on = frozenset({"EmailIdentity"})

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        params = api_params("sesv2", "CreateEmailIdentity", props)
        out = await ctx.call("sesv2", "CreateEmailIdentity", params)
        tokens = (out.get("DkimAttributes") or {}).get("Tokens") or []
        attributes: dict[str, Any] = {}
        for index in range(3):
            token = tokens[index] if index < len(tokens) else ""
            attributes[f"DkimDNSTokenName{index + 1}"] = f"{token}._domainkey.{props['EmailIdentity']}" if token else ""
            attributes[f"DkimDNSTokenValue{index + 1}"] = f"{token}.dkim.amazonses.com" if token else ""
        return Outcome(str(props["EmailIdentity"]), attributes)

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        return Outcome(physical_id, {k: "" for k in self.attributes or ()})

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        try:
            await ctx.call("sesv2", "DeleteEmailIdentity", {"EmailIdentity": physical_id})
        except AwsError as exc:
            ignore_missing(exc)


HANDLERS = (Template, EmailIdentity)
