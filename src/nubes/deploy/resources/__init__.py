"""Resource handlers, one module per service; :func:`handler_for` finds one by type."""

from __future__ import annotations

from functools import cache

from nubes.deploy.resources import (
    apigateway,
    apigatewayv2,
    cloudwatch,
    cognito,
    custom,
    dynamodb,
    events,
    iam,
    kms,
    lambda_,
    lambda_extra,
    logs,
    s3,
    scheduler,
    secretsmanager,
    ses,
    sns,
    sqs,
    ssm,
    stacks,
    stepfunctions,
)
from nubes.deploy.resources.base import ResourceHandler

_MODULES = (
    apigateway, apigatewayv2, cloudwatch, cognito, custom, dynamodb, events, iam, kms, lambda_, lambda_extra, logs, s3, scheduler,
    secretsmanager, ses, sns, sqs, ssm, stacks, stepfunctions,
)  # fmt: skip


@cache
def _registry() -> dict[str, ResourceHandler]:
    out: dict[str, ResourceHandler] = {}
    for module in _MODULES:
        for cls in module.HANDLERS:
            out[cls.type_name] = cls()
    return out


def handler_for(type_name: str) -> ResourceHandler | None:
    """The handler of a resource type, or None when nubes does not support it."""
    registry = _registry()
    handler = registry.get(type_name)
    if handler is None and (type_name.startswith("Custom::") or type_name == "AWS::CloudFormation::CustomResource"):
        handler = registry.get("AWS::CloudFormation::CustomResource")
    return handler


def supported_types() -> list[str]:
    """Every resource type nubes can deploy, sorted."""
    return sorted(_registry())
