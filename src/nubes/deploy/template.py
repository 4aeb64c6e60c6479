"""Loading CloudFormation templates: JSON or YAML, short-form tags → long form.

``!Ref x`` becomes ``{"Ref": "x"}``, ``!GetAtt a.b`` becomes
``{"Fn::GetAtt": ["a", "b"]}``, ``!Condition c`` becomes ``{"Condition": "c"}`` and
every other ``!Name`` becomes ``{"Fn::Name": ...}``. Parse errors are reported as
CloudFormation reports them: ``Template format error: YAML not well-formed.
(line L, column C)``.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from nubes.aws.errors import AwsError

#: short-form tags whose long form is ``Fn::<name>``
_FN_TAGS = (
    "Sub", "If", "Join", "Select", "Split", "FindInMap", "ImportValue", "GetAZs",
    "Base64", "Cidr", "Equals", "And", "Or", "Not", "ToJsonString", "Length",
    "Transform", "ForEach", "Contains", "EachMemberEquals", "EachMemberIn", "RefAll", "ValueOf",
    "ValueOfAll",
)  # fmt: skip


def template_error(message: str) -> AwsError:
    """CloudFormation's ValidationError (the code every template problem uses)."""
    return AwsError("ValidationError", message, 400)


@cache
def _loader() -> Any:
    """SafeLoader with CloudFormation's tags, and dates kept as strings (AWS reads
    ``2010-09-09`` as the string it wrote, never a date object).

    Built on the first YAML template: importing PyYAML at server start-up cost
    time and memory every run, most of which never see a YAML template.
    """
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def node_value(loader: Loader, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            return loader.construct_scalar(node)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node, deep=True)
        raise yaml.constructor.ConstructorError(None, None, "unexpected node", node.start_mark)

    def fn_constructor(name: str) -> Any:
        def construct(loader: Loader, node: yaml.Node) -> dict[str, Any]:
            return {name: node_value(loader, node)}

        return construct

    def getatt(loader: Loader, node: yaml.Node) -> dict[str, Any]:
        value = node_value(loader, node)
        if isinstance(value, str):
            # ``!GetAtt Res.Attr.Sub`` — the logical id never has a dot, the attribute may.
            resource, _, attribute = value.partition(".")
            return {"Fn::GetAtt": [resource, attribute]}
        return {"Fn::GetAtt": value}

    def construct_mapping(loader: Loader, node: yaml.MappingNode, deep: bool = False) -> Any:
        # CloudFormation rejects duplicate keys rather than keeping the last one.
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"Duplicate key {key}", key_node.start_mark)
            seen.add(key)
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    # Remove the timestamp resolver from our subclass only: copy the table first.
    Loader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    Loader.add_constructor("tag:yaml.org,2002:map", lambda ld, n: construct_mapping(ld, n, True))  # type: ignore[arg-type]
    Loader.add_constructor("!Ref", fn_constructor("Ref"))
    Loader.add_constructor("!Condition", fn_constructor("Condition"))
    Loader.add_constructor("!GetAtt", getatt)
    for tag in _FN_TAGS:
        Loader.add_constructor(f"!{tag}", fn_constructor(f"Fn::{tag}"))
    return Loader


def _parse_yaml(text: str) -> Any:
    import yaml

    try:
        return yaml.load(text, Loader=_loader())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise template_error(f"Template format error: YAML not well-formed.{where}") from None


def parse_template(body: str | bytes) -> dict[str, Any]:
    """Parse a template body (JSON or YAML) into a dict in long form."""
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    stripped = text.lstrip()
    if not stripped:
        raise template_error("Template format error: unsupported structure.")
    if stripped.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise template_error(
                f"Template format error: JSON not well-formed. (line {exc.lineno}, column {exc.colno})"
            ) from None
    else:
        data = _parse_yaml(text)
    if not isinstance(data, dict):
        raise template_error("Template format error: unsupported structure.")
    return data


def dump_template(template: dict[str, Any]) -> str:
    """Serialize a template as JSON (what GetTemplate returns for processed templates)."""
    return json.dumps(template, indent=2, default=str)
