"""From a template body and parameters to a validated plan, before anything is
created: parse, run transforms, check the structure, resolve parameters (SSM
types included), evaluate Conditions, check references and build the
dependency graph. Every problem is a ValidationError with CloudFormation's wording.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from nubes.aws.errors import AwsError
from nubes.deploy import graph
from nubes.deploy.foreach import expand_foreach
from nubes.deploy.intrinsics import SUPPORTED_FUNCTIONS, Evaluator, StackInfo
from nubes.deploy.params import ResolvedParameters, resolve_parameters
from nubes.deploy.resources import handler_for
from nubes.deploy.rules import check_rules
from nubes.deploy.sam import (
    INCLUDE,
    LANGUAGE_EXTENSIONS,
    apply_top_level_include,
    check_transforms,
    has_serverless,
    transform_serverless,
    transforms,
)
from nubes.deploy.template import parse_template, template_error

SECTIONS = {
    "AWSTemplateFormatVersion", "Description", "Metadata", "Parameters", "Rules", "Mappings",
    "Conditions", "Transform", "Resources", "Outputs", "Hooks",
}  # fmt: skip
RESOURCE_KEYS = {
    "Type", "Properties", "DependsOn", "Metadata", "Condition", "DeletionPolicy",
    "UpdateReplacePolicy", "CreationPolicy", "UpdatePolicy", "Version",
}  # fmt: skip
IAM_TYPES = {"AWS::IAM::Role", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::User",
             "AWS::IAM::Group", "AWS::IAM::AccessKey", "AWS::IAM::InstanceProfile",
             "AWS::IAM::UserToGroupAddition"}  # fmt: skip
MAX_RESOURCES = 500
_SUB_ATTRIBUTE = re.compile(r"\$\{([A-Za-z0-9]+)\.([A-Za-z0-9.]+)\}")
_NAMED_IAM = {"RoleName", "ManagedPolicyName", "UserName", "GroupName", "InstanceProfileName"}

#: loads an ``AWS::Include`` snippet (or TemplateURL) from S3
Fetch = Callable[[str], Awaitable[bytes]]
#: looks up an SSM parameter value by name
SsmLookup = Callable[[str], Awaitable[str]]


@dataclass
class Plan:
    """A validated template ready to run."""

    template: dict[str, Any]
    parameters: ResolvedParameters
    #: parameter values for ``Ref`` (SSM-typed parameters resolved)
    values: dict[str, Any]
    stack: StackInfo
    active: list[str]
    deps: dict[str, set[str]]
    conditions: dict[str, bool] = field(default_factory=dict)
    ssm_values: dict[str, str] = field(default_factory=dict)

    def evaluator(self, resolver: Any = None) -> Evaluator:
        """An evaluator over this plan's template and parameters."""
        return Evaluator(self.template, self.values, self.stack, resolver)


async def expand_template(body: str | bytes, given: dict[str, str], stack: StackInfo, fetch: Fetch | None) -> dict[str, Any]:
    """Parse ``body`` and run its transforms (AWS::Include, then SAM)."""
    template = parse_template(body)
    check_transforms(template)
    if INCLUDE in transforms(template) or _has_include(template):
        if fetch is None:
            raise template_error("Template format error: AWS::Include needs S3")
        _resolve_locations(template, given, stack)
        cache: dict[str, dict[str, Any]] = {}
        for location in _include_locations(template):
            cache[location] = parse_template(await fetch(location))
        template = apply_top_level_include(template, cache.__getitem__)
    if LANGUAGE_EXTENSIONS in transforms(template):
        template = _language_extensions(template, given, stack)
    if has_serverless(template):
        template = transform_serverless(
            template, dict(given), region=stack.region, account_id=stack.account_id, partition=stack.partition
        )
    return template


def _language_extensions(template: dict[str, Any], given: dict[str, str], stack: StackInfo) -> dict[str, Any]:
    """Expand ``Fn::ForEach`` loops (with the parameter values known now) and drop
    the transform from the list."""
    declared = template.get("Parameters") or {}
    values = resolve_parameters(declared, {k: v for k, v in given.items() if k in declared}).values
    expanded = expand_foreach(template, Evaluator(template, values, stack))
    remaining = [t for t in transforms(expanded) if t != LANGUAGE_EXTENSIONS]
    if remaining:
        expanded["Transform"] = remaining if len(remaining) > 1 else remaining[0]
    else:
        expanded.pop("Transform", None)
    return expanded


def _resolve_locations(template: dict[str, Any], given: dict[str, str], stack: StackInfo) -> None:
    """Evaluate include Locations written with intrinsics (``!Sub s3://${Bucket}/x``)
    against the parameters and pseudo parameters, in place."""
    declared = template.get("Parameters") or {}
    values: dict[str, Any] = {n: given.get(n, d.get("Default")) for n, d in declared.items() if isinstance(d, dict)}
    evaluator = Evaluator(template, {k: v for k, v in values.items() if v is not None}, stack)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("Name") == INCLUDE and isinstance(node.get("Parameters"), dict):
                location = node["Parameters"].get("Location")
                if isinstance(location, dict):
                    node["Parameters"]["Location"] = evaluator.evaluate(location)
            for item in node.values():
                walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(template)


def _has_include(value: Any) -> bool:
    """Whether any ``Fn::Transform``/``Transform`` names AWS::Include."""
    if isinstance(value, dict):
        for key, item in value.items():
            specs = item if isinstance(item, list) else [item]
            if key in ("Fn::Transform", "Transform") and any(isinstance(x, dict) and x.get("Name") == INCLUDE for x in specs):
                return True
            if _has_include(item):
                return True
    elif isinstance(value, list):
        return any(_has_include(item) for item in value)
    return False


def _include_locations(value: Any) -> list[str]:
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, item in node.items():
                if key in ("Fn::Transform", "Transform") and isinstance(item, dict | list):
                    for spec in item if isinstance(item, list) else [item]:
                        if isinstance(spec, dict) and spec.get("Name") == INCLUDE:
                            location = (spec.get("Parameters") or {}).get("Location")
                            if isinstance(location, str):
                                found.append(location)
                walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(value)
    return found


def check_structure(template: dict[str, Any]) -> None:
    """Top-level sections and resource entries, as CloudFormation checks them."""
    unknown = [k for k in template if k not in SECTIONS]
    if unknown:
        raise template_error(f"Template format error: Invalid template property or properties [{', '.join(map(str, unknown))}]")
    version = template.get("AWSTemplateFormatVersion")
    if version is not None and str(version) != "2010-09-09":
        raise template_error(f"Template format error: Unsupported template version: {version}")
    resources = template.get("Resources")
    if not isinstance(resources, dict) or not resources:
        raise template_error("Template format error: At least one Resources member must be defined.")
    if len(resources) > MAX_RESOURCES:
        raise template_error(f"Template format error: Number of resources, {len(resources)}, is greater than maximum allowed, {MAX_RESOURCES}")
    for logical_id, resource in resources.items():
        if not isinstance(logical_id, str) or not logical_id.isalnum():
            raise template_error(f"Template format error: Resource name {logical_id} is non alphanumeric.")
        if not isinstance(resource, dict) or not isinstance(resource.get("Type"), str):
            raise template_error("Template format error: Every Resources object must contain a Type member.")
        for key in resource:
            if key not in RESOURCE_KEYS:
                raise template_error(f"Template format error: Invalid template resource property '{key}'")
        if "Properties" in resource and not isinstance(resource["Properties"], dict):
            raise template_error(f"Template format error: [/Resources/{logical_id}/Properties] resource properties must be an object")
    outputs = template.get("Outputs") or {}
    for name, output in outputs.items():
        if not isinstance(output, dict) or "Value" not in output:
            raise template_error(f"Template format error: Every Outputs member must contain a Value object, the Outputs member {name} does not.")


def check_functions(template: dict[str, Any]) -> None:
    """Every ``Fn::`` key names a function CloudFormation has (checked before
    anything is created, not when the resource using it is reached)."""
    supported = set(SUPPORTED_FUNCTIONS)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if len(node) == 1:
                (key,) = node
                if isinstance(key, str) and key.startswith("Fn::") and key not in supported:
                    raise template_error(
                        f"Template format error: Encountered unsupported function: {key} "
                        f"Supported functions are: [{', '.join(SUPPORTED_FUNCTIONS)}]"
                    )
            for item in node.values():
                walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for section in ("Resources", "Outputs", "Conditions"):
        walk(template.get(section) or {})


def check_get_atts(template: dict[str, Any]) -> None:
    """Every ``Fn::GetAtt`` names an attribute its resource type has."""
    resources = template.get("Resources") or {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if len(node) == 1 and "Fn::GetAtt" in node:
                args = node["Fn::GetAtt"]
                if isinstance(args, str):
                    args = args.split(".", 1)
                if isinstance(args, list) and len(args) == 2 and all(isinstance(a, str) for a in args):
                    _check_attribute(resources, args[0], args[1])
            if len(node) == 1 and "Fn::Sub" in node:
                _check_sub(resources, node["Fn::Sub"])
            for item in node.values():
                walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(resources)
    walk(template.get("Outputs") or {})


def _check_sub(resources: dict[str, Any], args: Any) -> None:
    """``${Resource.Attribute}`` in a Fn::Sub string is a GetAtt too."""
    text, variables = (args[0], args[1]) if isinstance(args, list) and len(args) == 2 else (args, {})
    if not isinstance(text, str) or not isinstance(variables, dict):
        return
    for match in _SUB_ATTRIBUTE.finditer(text):
        logical_id, attribute = match.group(1), match.group(2)
        if f"{logical_id}.{attribute}" not in variables and logical_id in resources:
            _check_attribute(resources, logical_id, attribute)


def _check_attribute(resources: dict[str, Any], logical_id: str, attribute: str) -> None:
    resource = resources.get(logical_id)
    if not isinstance(resource, dict):
        raise template_error(f"Template error: instance of Fn::GetAtt references undefined resource {logical_id}")
    handler = handler_for(str(resource.get("Type")))
    if handler is None or handler.attributes is None:
        return
    if attribute not in handler.attributes:
        raise template_error(f"Template error: resource {logical_id} does not support attribute type {attribute} in Fn::GetAtt")


def required_capabilities(template: dict[str, Any], expanded: bool) -> list[str]:
    """Capabilities a CreateStack/UpdateStack must acknowledge."""
    needed: list[str] = []
    resources = (template.get("Resources") or {}).values()
    iam = [r for r in resources if isinstance(r, dict) and r.get("Type") in IAM_TYPES]
    if any(_NAMED_IAM & set((r.get("Properties") or {}).keys()) for r in iam):
        needed.append("CAPABILITY_NAMED_IAM")
    elif iam:
        needed.append("CAPABILITY_IAM")
    if expanded:
        needed.append("CAPABILITY_AUTO_EXPAND")
    return needed


def check_capabilities(needed: list[str], given: list[str]) -> None:
    """InsufficientCapabilitiesException unless ``given`` covers ``needed``
    (NAMED_IAM covers IAM)."""
    have = set(given)
    if "CAPABILITY_NAMED_IAM" in have:
        have.add("CAPABILITY_IAM")
    missing = [c for c in needed if c not in have]
    if missing:
        raise AwsError("InsufficientCapabilitiesException", f"Requires capabilities : [{', '.join(missing)}]", 400)


async def plan(
    template: dict[str, Any],
    given: dict[str, str],
    stack: StackInfo,
    *,
    previous: dict[str, str] | None = None,
    use_previous: set[str] | None = None,
    ssm: SsmLookup | None = None,
) -> Plan:
    """Validate an expanded template against parameters; build the dependency graph."""
    check_structure(template)
    check_functions(template)
    resolved = resolve_parameters(template.get("Parameters") or {}, given, previous, use_previous)
    values = dict(resolved.values)
    ssm_values: dict[str, str] = {}
    for name, path in resolved.ssm.items():
        if ssm is None:
            raise template_error(f"Unable to fetch parameters [{path}] from parameter store for this account.")
        ssm_values[name] = await ssm(path)
        values[name] = ssm_values[name].split(",") if "List<" in template["Parameters"][name]["Type"] else ssm_values[name]
    result = Plan(template, resolved, values, stack, [], {}, ssm_values=ssm_values)
    evaluator = result.evaluator()
    check_rules(template, evaluator)
    result.conditions = {name: evaluator.condition(name) for name in evaluator.condition_defs}
    result.active = [lid for lid in template["Resources"] if evaluator.resource_active(lid)]
    result.deps = graph.dependencies(template, result.active, evaluator.condition)
    graph.creation_layers(result.deps)  # raises on a cycle before anything runs
    graph.check_outputs(template, result.active, evaluator.condition)
    check_get_atts(template)
    return result


def template_parameters(template: dict[str, Any]) -> list[dict[str, Any]]:
    """The Parameters list of ValidateTemplate / GetTemplateSummary."""
    out = []
    for name, decl in (template.get("Parameters") or {}).items():
        entry: dict[str, Any] = {
            "ParameterKey": name,
            "NoEcho": str(decl.get("NoEcho", "false")).lower() == "true",
            "Description": decl.get("Description", ""),
        }
        if "Default" in decl:
            entry["DefaultValue"] = str(decl["Default"])
        out.append(entry)
    return out
