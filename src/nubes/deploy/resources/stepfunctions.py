"""AWS::StepFunctions::StateMachine — Ref is the ARN; GetAtt Arn, Name,
StateMachineRevisionId."""

from __future__ import annotations

import json
from typing import Any

from nubes.aws.errors import AwsError
from nubes.deploy.resources.base import (
    HandlerContext,
    Outcome,
    ResourceHandler,
    ignore_missing,
    tags_list,
)


def definition_text(props: dict[str, Any]) -> str:
    """``Definition`` (object) or ``DefinitionString``, with ``DefinitionSubstitutions``
    applied to ``${name}`` placeholders."""
    if "Definition" in props:
        text = json.dumps(props["Definition"])
    elif "DefinitionString" in props:
        text = str(props["DefinitionString"])
    else:
        raise AwsError("InvalidRequest", "nubes needs Definition or DefinitionString for a state machine (DefinitionS3Location is not supported)")
    for key, value in (props.get("DefinitionSubstitutions") or {}).items():
        replacement = value if isinstance(value, str) else json.dumps(value)
        text = text.replace("${" + key + "}", replacement)
    return text


class StateMachine(ResourceHandler):
    """A Step Functions state machine."""

    type_name = "AWS::StepFunctions::StateMachine"
    attributes = ("Arn", "Name", "StateMachineRevisionId")
    replace_on = frozenset({"StateMachineName", "StateMachineType"})
    name_property = "StateMachineName"

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        name = props.get("StateMachineName") or ctx.physical_name(80)
        params: dict[str, Any] = {"name": name, "definition": definition_text(props), "roleArn": props.get("RoleArn", "")}
        if props.get("StateMachineType"):
            params["type"] = props["StateMachineType"]
        if props.get("LoggingConfiguration"):
            params["loggingConfiguration"] = _lower_keys(props["LoggingConfiguration"])
        if props.get("TracingConfiguration"):
            params["tracingConfiguration"] = _lower_keys(props["TracingConfiguration"])
        if props.get("Tags"):
            params["tags"] = [{"key": t["Key"], "value": t["Value"]} for t in tags_list(props["Tags"])]
        out = await ctx.call("stepfunctions", "CreateStateMachine", params)
        arn = out["stateMachineArn"]
        return Outcome(arn, {"Arn": arn, "Name": name, "StateMachineRevisionId": out.get("stateMachineVersionArn") or arn})

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        params: dict[str, Any] = {"stateMachineArn": physical_id, "definition": definition_text(props)}
        if props.get("RoleArn"):
            params["roleArn"] = props["RoleArn"]
        if props.get("LoggingConfiguration"):
            params["loggingConfiguration"] = _lower_keys(props["LoggingConfiguration"])
        out = await ctx.call("stepfunctions", "UpdateStateMachine", params)
        name = physical_id.rsplit(":", 1)[-1]
        return Outcome(physical_id, {"Arn": physical_id, "Name": name, "StateMachineRevisionId": out.get("revisionId") or physical_id})

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        try:
            await ctx.call("stepfunctions", "DeleteStateMachine", {"stateMachineArn": physical_id})
        except AwsError as exc:
            ignore_missing(exc, "StateMachineDoesNotExist")


def _lower_keys(value: Any) -> Any:
    """CloudFormation spells these shapes in PascalCase, the API in camelCase."""
    if isinstance(value, dict):
        return {k[:1].lower() + k[1:]: _lower_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_lower_keys(v) for v in value]
    return value


HANDLERS = (StateMachine,)
