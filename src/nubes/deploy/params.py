"""Template parameters: declared types, defaults and constraints, checked against
the values a CreateStack/UpdateStack call gives, with CloudFormation's messages.

Values stay strings as CloudFormation keeps them (``Ref`` of a ``Number`` is the
string given); list types become lists of strings. ``AWS::SSM::Parameter::Value<...>``
parameters resolve to the SSM parameter's value, looked up by the engine: here
they are only recorded in :attr:`ResolvedParameters.ssm`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from nubes.deploy.template import template_error

_SCALAR_TYPES = {"String", "Number"}
_LIST_TYPES = {"List<Number>", "CommaDelimitedList"}
_SSM_TYPE = re.compile(r"^AWS::SSM::Parameter::Value<(.+)>$")
_SSM_NAME_TYPE = "AWS::SSM::Parameter::Name"
_AWS_LIST_TYPE = re.compile(r"^List<(AWS::[A-Za-z0-9:]+)>$")
_AWS_TYPE = re.compile(r"^AWS::[A-Za-z0-9]+::[A-Za-z0-9:]+$")
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")

#: what DescribeStacks shows for a NoEcho parameter
MASK = "****"


@dataclass
class ResolvedParameters:
    """Parameter values for one stack operation."""

    #: logical name → value (str, or list of str for list types)
    values: dict[str, Any] = field(default_factory=dict)
    #: the strings as given (or defaulted), for DescribeStacks
    given: dict[str, str] = field(default_factory=dict)
    #: names of NoEcho parameters (shown masked)
    no_echo: set[str] = field(default_factory=set)
    #: logical name → SSM parameter name, for ``AWS::SSM::Parameter::Value<...>``
    ssm: dict[str, str] = field(default_factory=dict)


def check_declarations(declared: dict[str, Any]) -> None:
    """Reject parameter declarations CloudFormation would reject."""
    if not isinstance(declared, dict):
        raise template_error("Template format error: Parameters must be an object")
    if len(declared) > 200:
        raise template_error("Template format error: Parameter count 201 is greater than max allowed 200")
    for name, decl in declared.items():
        if not isinstance(decl, dict) or "Type" not in decl:
            raise template_error("Template format error: Every Parameters object must contain a Type member.")
        kind = decl["Type"]
        if not _known_type(kind):
            raise template_error(f"Template format error: Unrecognized parameter type: {kind}")
        if not re.match(r"^[A-Za-z0-9]+$", str(name)):
            raise template_error(f"Template format error: Parameter name {name} is non alphanumeric.")


def _known_type(kind: Any) -> bool:
    if not isinstance(kind, str):
        return False
    if kind in _SCALAR_TYPES or kind in _LIST_TYPES or kind == _SSM_NAME_TYPE:
        return True
    return bool(_SSM_TYPE.match(kind) or _AWS_LIST_TYPE.match(kind) or _AWS_TYPE.match(kind))


def _is_list_type(kind: str) -> bool:
    if kind in _LIST_TYPES or _AWS_LIST_TYPE.match(kind):
        return True
    ssm = _SSM_TYPE.match(kind)
    return bool(ssm and (ssm.group(1).startswith("List<") or ssm.group(1) == "CommaDelimitedList"))


def _split_list(value: str) -> list[str]:
    return [] if value == "" else [part.strip() for part in value.split(",")]


def resolve_parameters(
    declared: dict[str, Any],
    given: dict[str, str],
    previous: dict[str, str] | None = None,
    use_previous: set[str] | None = None,
) -> ResolvedParameters:
    """Check ``given`` (name → string) against the declarations and apply defaults.

    ``use_previous`` names take their value from ``previous`` (UpdateStack's
    ``UsePreviousValue``).
    """
    declared = declared or {}
    check_declarations(declared)
    unknown = [name for name in given if name not in declared]
    if unknown:
        raise template_error(f"Parameters: [{', '.join(unknown)}] do not exist in the template")
    out = ResolvedParameters()
    missing: list[str] = []
    for name, decl in declared.items():
        if use_previous and name in use_previous:
            if previous is None or name not in previous:
                raise template_error(f"Invalid input for parameter key {name}. Cannot specify usePreviousValue as true for a parameter key not in the previous template")
            raw: Any = previous[name]
        elif name in given:
            raw = given[name]
        elif "Default" in decl:
            raw = decl["Default"]
        else:
            missing.append(name)
            continue
        text = _as_text(raw)
        kind = decl["Type"]
        _check_constraints(name, decl, text, kind)
        out.given[name] = text
        if str(decl.get("NoEcho", "false")).lower() == "true":
            out.no_echo.add(name)
        ssm = _SSM_TYPE.match(kind)
        if ssm:
            out.ssm[name] = text
            out.values[name] = text
        else:
            out.values[name] = _split_list(text) if _is_list_type(kind) else text
    if missing:
        raise template_error(f"Parameters: [{', '.join(missing)}] must have values")
    return out


def _as_text(raw: Any) -> str:
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, list):
        return ",".join(_as_text(v) for v in raw)
    return str(raw)


def _fail(name: str, decl: dict[str, Any], message: str) -> None:
    description = decl.get("ConstraintDescription")
    if description:
        raise template_error(f"Parameter '{name}' failed to satisfy constraint: {description}")
    raise template_error(message)


def _check_constraints(name: str, decl: dict[str, Any], text: str, kind: str) -> None:
    """AllowedValues, AllowedPattern, lengths and number bounds (per list item for lists)."""
    items = _split_list(text) if _is_list_type(kind) else [text]
    numeric = kind in ("Number", "List<Number>")
    for item in items:
        if numeric and not _NUMBER.match(item.strip()):
            raise template_error(f"Parameter '{name}' must be a number")
        allowed = decl.get("AllowedValues")
        if allowed is not None and item not in [_as_text(v) for v in allowed]:
            _fail(name, decl, f"Parameter '{name}' must be one of AllowedValues")
        pattern = decl.get("AllowedPattern")
        if pattern is not None and not re.fullmatch(str(pattern), item):
            _fail(name, decl, f"Parameter '{name}' must match pattern {pattern}")
        if "MinLength" in decl and len(item) < int(decl["MinLength"]):
            _fail(name, decl, f"Parameter '{name}' must contain at least {decl['MinLength']} characters")
        if "MaxLength" in decl and len(item) > int(decl["MaxLength"]):
            _fail(name, decl, f"Parameter '{name}' must contain at most {decl['MaxLength']} characters")
        if numeric and "MinValue" in decl and float(item) < float(decl["MinValue"]):
            _fail(name, decl, f"Parameter '{name}' must be a number not less than {decl['MinValue']}")
        if numeric and "MaxValue" in decl and float(item) > float(decl["MaxValue"]):
            _fail(name, decl, f"Parameter '{name}' must be a number not greater than {decl['MaxValue']}")


def describe_parameters(resolved: ResolvedParameters, ssm_values: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The ``Parameters`` list of DescribeStacks (NoEcho values masked)."""
    out = []
    for name, text in resolved.given.items():
        entry: dict[str, Any] = {"ParameterKey": name, "ParameterValue": MASK if name in resolved.no_echo else text}
        if name in resolved.ssm and ssm_values and name in ssm_values:
            entry["ResolvedValue"] = ssm_values[name]
        out.append(entry)
    return out
