"""Evaluating intrinsic functions, pseudo parameters, Conditions and Mappings.

An :class:`Evaluator` is built per stack operation from the template, the
resolved parameter values and a :class:`ResourceResolver` that knows the
physical ids and attributes of resources created so far. ``evaluate`` turns a
template fragment (resource properties, an output) into plain data;
``Ref: AWS::NoValue`` and ``Fn::If`` branches that yield it drop the property or
list item that held them, as CloudFormation does.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from nubes.deploy.template import template_error

SUPPORTED_FUNCTIONS = (
    "Fn::Base64", "Fn::GetAtt", "Fn::GetAZs", "Fn::ImportValue", "Fn::Join", "Fn::Split",
    "Fn::FindInMap", "Fn::Select", "Ref", "Fn::Equals", "Fn::If", "Fn::Not", "Condition",
    "Fn::And", "Fn::Or", "Fn::Sub", "Fn::Cidr", "Fn::Length", "Fn::ToJsonString",
)  # fmt: skip

PSEUDO_PARAMETERS = (
    "AWS::AccountId", "AWS::NotificationARNs", "AWS::NoValue", "AWS::Partition",
    "AWS::Region", "AWS::StackId", "AWS::StackName", "AWS::URLSuffix",
)  # fmt: skip

_SUB_VAR = re.compile(r"\$\{([^}]*)\}")
_SUB_NAME = re.compile(r"^[A-Za-z0-9_.:]+$")


class _NoValue:
    """The value of ``Ref: AWS::NoValue``: removes whatever holds it."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE: Any = _NoValue()


class ResourceResolver(Protocol):
    """What the evaluator asks about resources (answered by the engine)."""

    def ref(self, logical_id: str) -> Any:
        """The resource's ``Ref`` value (usually its physical id)."""

    def get_att(self, logical_id: str, attribute: str) -> Any:
        """The value of ``Fn::GetAtt [logical_id, attribute]``."""

    def import_value(self, name: str) -> Any:
        """The value exported under ``name`` by some stack."""


class NoResources:
    """A resolver for contexts that may not reference resources (Conditions)."""

    def ref(self, logical_id: str) -> Any:
        raise template_error(f"Template format error: Unresolved resource dependencies [{logical_id}] in the Resources block of the template")

    def get_att(self, logical_id: str, attribute: str) -> Any:
        raise template_error(f"Template error: instance of Fn::GetAtt references undefined resource {logical_id}")

    def import_value(self, name: str) -> Any:
        raise template_error(f"No export named {name} found.")


@dataclass
class StackInfo:
    """The values of the pseudo parameters for one stack."""

    stack_name: str
    stack_id: str
    region: str = "us-east-1"
    account_id: str = "000000000000"
    partition: str = "aws"
    url_suffix: str = "amazonaws.com"
    notification_arns: list[str] = field(default_factory=list)

    def pseudo(self, name: str) -> Any:
        """The value of a pseudo parameter (``AWS::Region`` ...)."""
        values: dict[str, Any] = {
            "AWS::AccountId": self.account_id,
            "AWS::NotificationARNs": list(self.notification_arns),
            "AWS::NoValue": NO_VALUE,
            "AWS::Partition": self.partition,
            "AWS::Region": self.region,
            "AWS::StackId": self.stack_id,
            "AWS::StackName": self.stack_name,
            "AWS::URLSuffix": self.url_suffix,
        }
        return values[name]


def strip_no_value(value: Any) -> Any:
    """Remove ``AWS::NoValue`` from dicts and lists (recursively)."""
    if isinstance(value, dict):
        return {k: strip_no_value(v) for k, v in value.items() if v is not NO_VALUE}
    if isinstance(value, list):
        return [strip_no_value(v) for v in value if v is not NO_VALUE]
    return value


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class Evaluator:
    """Evaluates template fragments for one stack."""

    def __init__(
        self,
        template: dict[str, Any],
        parameters: dict[str, Any],
        stack: StackInfo,
        resolver: ResourceResolver | None = None,
    ) -> None:
        self.template = template
        self.parameters = parameters
        self.stack = stack
        self.resolver: ResourceResolver = resolver or NoResources()
        self.mappings: dict[str, Any] = template.get("Mappings") or {}
        self.condition_defs: dict[str, Any] = template.get("Conditions") or {}
        self._conditions: dict[str, bool] = {}
        self._evaluating: set[str] = set()
        self.resources: dict[str, Any] = template.get("Resources") or {}
        self._handlers: dict[str, Callable[[Any], Any]] = {
            "Ref": self._ref, "Fn::GetAtt": self._get_att, "Fn::Sub": self._sub,
            "Fn::Join": self._join, "Fn::Select": self._select, "Fn::Split": self._split,
            "Fn::If": self._if, "Fn::Equals": self._equals, "Fn::And": self._and,
            "Fn::Or": self._or, "Fn::Not": self._not, "Fn::FindInMap": self._find_in_map,
            "Fn::ImportValue": self._import_value, "Fn::GetAZs": self._get_azs,
            "Fn::Base64": self._base64, "Fn::Cidr": self._cidr, "Fn::Length": self._length,
            "Fn::ToJsonString": self._to_json_string, "Condition": self._condition_fn,
        }  # fmt: skip

    # -- public -----------------------------------------------------------------

    def evaluate(self, value: Any) -> Any:
        """Evaluate every intrinsic in ``value``; NoValue is stripped out."""
        return strip_no_value(self._eval(value))

    def condition(self, name: str) -> bool:
        """The value of the named condition from the Conditions section."""
        if name in self._conditions:
            return self._conditions[name]
        if name not in self.condition_defs:
            raise template_error(f"Template format error: Unresolved condition dependencies [{name}] in the Resources block of the template")
        if name in self._evaluating:
            raise template_error(f"Template error: circular condition dependency {name}")
        self._evaluating.add(name)
        try:
            result: Any = self._eval_condition(self.condition_defs[name])
        finally:
            self._evaluating.discard(name)
        if not isinstance(result, bool):
            raise template_error(f"Template error: Condition {name} does not evaluate to a boolean value")
        self._conditions[name] = result
        return result

    def resource_active(self, logical_id: str) -> bool:
        """Whether a resource exists under the current conditions."""
        resource = self.resources.get(logical_id)
        if not isinstance(resource, dict):
            return False
        cond = resource.get("Condition")
        return cond is None or self.condition(cond)

    # -- evaluation -------------------------------------------------------------

    def _eval(self, value: Any) -> Any:
        if isinstance(value, dict):
            if len(value) == 1:
                (key,) = value
                handler = self._handlers.get(key)
                if handler is not None and key != "Condition":
                    return handler(value[key])
                if isinstance(key, str) and key.startswith("Fn::") and handler is None:
                    raise template_error(
                        f"Template format error: Encountered unsupported function: {key} "
                        f"Supported functions are: [{', '.join(SUPPORTED_FUNCTIONS)}]"
                    )
            return {k: self._eval(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._eval(v) for v in value]
        return value

    def _eval_condition(self, value: Any) -> bool:
        """A condition argument: ``{"Condition": name}`` or a condition function."""
        if isinstance(value, dict) and len(value) == 1 and "Condition" in value:
            return self._condition_fn(value["Condition"])
        result = self._eval(value)
        if isinstance(result, str) and result.lower() in ("true", "false"):
            return result.lower() == "true"
        if not isinstance(result, bool):
            raise template_error("Template error: every Fn::And, Fn::Or and Fn::Not object must contain a boolean or condition")
        return result

    def _condition_fn(self, name: Any) -> bool:
        if not isinstance(name, str):
            raise template_error("Template error: Condition must be a string")
        return self.condition(name)

    def _ref(self, name: Any) -> Any:
        if not isinstance(name, str):
            raise template_error("Template error: every Ref object must have a single String value.")
        if name in self.parameters:
            return self.parameters[name]
        if name in PSEUDO_PARAMETERS:
            return self.stack.pseudo(name)
        if self._evaluating:
            # Conditions may only use parameters, pseudo parameters and mappings.
            raise template_error(f"Template format error: Unresolved dependencies [{name}]. Cannot reference resources in the Conditions block of the template")
        if name in self.resources and self.resource_active(name):
            return self.resolver.ref(name)
        raise template_error(f"Template format error: Unresolved resource dependencies [{name}] in the Resources block of the template")

    def _get_att(self, args: Any) -> Any:
        if isinstance(args, str):
            args = args.split(".", 1)
        if not isinstance(args, list) or len(args) != 2:
            raise template_error("Template error: every Fn::GetAtt object requires two non-empty parameters")
        logical_id, attribute = args[0], self._eval(args[1])
        if not isinstance(logical_id, str) or not isinstance(attribute, str) or not attribute:
            raise template_error("Template error: every Fn::GetAtt object requires two non-empty parameters")
        if logical_id not in self.resources or not self.resource_active(logical_id):
            raise template_error(f"Template error: instance of Fn::GetAtt references undefined resource {logical_id}")
        return self.resolver.get_att(logical_id, attribute)

    def _sub(self, args: Any) -> str:
        variables: dict[str, Any] = {}
        if isinstance(args, list):
            if len(args) != 2 or not isinstance(args[0], str) or not isinstance(args[1], dict):
                raise template_error("Template error: One or more Fn::Sub intrinsic functions don't specify expected arguments. Specify a string as first argument, and an optional second argument to specify a mapping of values to replace in the string")
            text, variables = args[0], {k: self._eval(v) for k, v in args[1].items()}
        elif isinstance(args, str):
            text = args
        else:
            raise template_error("Template error: One or more Fn::Sub intrinsic functions don't specify expected arguments. Specify a string as first argument, and an optional second argument to specify a mapping of values to replace in the string")

        def replace(match: re.Match[str]) -> str:
            inner = match.group(1)
            if inner.startswith("!"):
                return "${" + inner[1:] + "}"
            name = inner.strip()
            if not _SUB_NAME.match(name):
                raise template_error("Template error: variable names in Fn::Sub syntax must contain only alphanumeric characters, underscores, periods, and colons")
            if name in variables:
                value = variables[name]
            elif "." in name and name not in self.parameters:
                value = self._get_att(name.split(".", 1))
            else:
                value = self._ref(name)
            if isinstance(value, list | dict):
                raise template_error(f"Template error: variable {name} in Fn::Sub expression does not resolve to a string")
            return _scalar_text(value)

        return _SUB_VAR.sub(replace, text)

    def _join(self, args: Any) -> str:
        if not isinstance(args, list) or len(args) != 2:
            raise template_error("Template error: every Fn::Join object requires two parameters, (1) a string delimiter and (2) a list of strings to be joined or a function that returns a list of strings (such as Fn::GetAZs) to be joined.")
        delimiter = self._eval(args[0])
        items = self._eval(args[1])
        if not isinstance(delimiter, str) or not isinstance(items, list):
            raise template_error("Template error: every Fn::Join object requires two parameters, (1) a string delimiter and (2) a list of strings to be joined or a function that returns a list of strings (such as Fn::GetAZs) to be joined.")
        parts = [v for v in items if v is not NO_VALUE]
        if any(isinstance(v, list | dict) for v in parts):
            raise template_error("Template error: every Fn::Join object requires two parameters, (1) a string delimiter and (2) a list of strings to be joined or a function that returns a list of strings (such as Fn::GetAZs) to be joined.")
        return delimiter.join(_scalar_text(v) for v in parts)

    def _select(self, args: Any) -> Any:
        if not isinstance(args, list) or len(args) != 2:
            raise template_error("Template error: Fn::Select requires a list argument with two elements: an integer index and a list")
        index, items = self._eval(args[0]), self._eval(args[1])
        try:
            position = int(index)
        except (TypeError, ValueError):
            raise template_error("Template error: Fn::Select requires a list argument with two elements: an integer index and a list") from None
        if not isinstance(items, list):
            raise template_error("Template error: Fn::Select requires a list argument with two elements: an integer index and a list")
        if not 0 <= position < len(items):
            raise template_error(f"Template error: Fn::Select cannot select nonexistent value at index {position}")
        return items[position]

    def _split(self, args: Any) -> list[str]:
        if not isinstance(args, list) or len(args) != 2:
            raise template_error("Template error: every Fn::Split object requires two parameters, (1) a string delimiter and (2) a string to be split or a function that returns a string to be split.")
        delimiter, source = self._eval(args[0]), self._eval(args[1])
        if not isinstance(delimiter, str) or not isinstance(source, str) or not delimiter:
            raise template_error("Template error: every Fn::Split object requires two parameters, (1) a string delimiter and (2) a string to be split or a function that returns a string to be split.")
        return source.split(delimiter)

    def _if(self, args: Any) -> Any:
        if not isinstance(args, list) or len(args) != 3 or not isinstance(args[0], str):
            raise template_error("Template error: Fn::If requires a list argument with three elements")
        if args[0] not in self.condition_defs:
            raise template_error(f"Template error: unresolved condition dependency {args[0]} in Fn::If")
        # Only the taken branch is evaluated: the other may reference resources that
        # the same condition removed.
        return self._eval(args[1] if self.condition(args[0]) else args[2])

    def _equals(self, args: Any) -> bool:
        if not isinstance(args, list) or len(args) != 2:
            raise template_error("Template error: Fn::Equals requires a list argument with two elements")
        left, right = self._eval(args[0]), self._eval(args[1])
        if isinstance(left, list | dict) or isinstance(right, list | dict):
            return bool(left == right)
        return _scalar_text(left) == _scalar_text(right)

    def _bool_list(self, name: str, args: Any, low: int) -> list[bool]:
        if not isinstance(args, list) or not low <= len(args) <= 10:
            raise template_error(f"Template error: {name} requires a list argument with between {low} and 10 elements")
        return [self._eval_condition(a) for a in args]

    def _and(self, args: Any) -> bool:
        return all(self._bool_list("Fn::And", args, 2))

    def _or(self, args: Any) -> bool:
        return any(self._bool_list("Fn::Or", args, 2))

    def _not(self, args: Any) -> bool:
        if not isinstance(args, list) or len(args) != 1:
            raise template_error("Template error: Fn::Not requires a list argument with one element")
        return not self._eval_condition(args[0])

    def _find_in_map(self, args: Any) -> Any:
        if not isinstance(args, list) or len(args) not in (3, 4):
            raise template_error("Template error: every Fn::FindInMap object requires three parameters, the map name, map key and the attribute for return value")
        name, top, second = (self._eval(a) for a in args[:3])
        default = None
        if len(args) == 4:
            option = args[3]
            if not isinstance(option, dict) or "DefaultValue" not in option:
                raise template_error("Template error: the fourth argument of Fn::FindInMap must be an object with a DefaultValue")
            default = option["DefaultValue"]
        mapping = self.mappings.get(name) if isinstance(name, str) else None
        if mapping is None and default is None:
            raise template_error(f"Template error: Unable to get mapping for {name}::{top}::{second}")
        found = mapping.get(str(top), {}).get(str(second)) if isinstance(mapping, dict) else None
        if found is None:
            if default is not None:
                return self._eval(default)
            raise template_error(f"Template error: Unable to get mapping for {name}::{top}::{second}")
        return found

    def _import_value(self, args: Any) -> Any:
        name = self._eval(args)
        if not isinstance(name, str):
            raise template_error("Template error: Fn::ImportValue requires a string export name")
        return self.resolver.import_value(name)

    def _get_azs(self, args: Any) -> list[str]:
        region = self._eval(args)
        if not isinstance(region, str):
            raise template_error("Template error: Fn::GetAZs requires a string region")
        region = region or self.stack.region
        return [f"{region}{zone}" for zone in "abc"]

    def _base64(self, args: Any) -> str:
        value = self._eval(args)
        if not isinstance(value, str):
            raise template_error("Template error: every Fn::Base64 object must have a String value")
        return base64.b64encode(value.encode()).decode()

    def _cidr(self, args: Any) -> list[str]:
        if not isinstance(args, list) or len(args) != 3:
            raise template_error("Template error: Fn::Cidr requires a list argument with three elements: ipBlock, count and cidrBits")
        block, count, bits = (self._eval(a) for a in args)
        try:
            network = ipaddress.ip_network(str(block), strict=False)
            n, host_bits = int(count), int(bits)
            prefix = network.max_prefixlen - host_bits
            subnets = network.subnets(new_prefix=prefix)
            out = []
            for _ in range(n):
                out.append(str(next(subnets)))
        except (ValueError, StopIteration):
            raise template_error(f"Template error: Fn::Cidr could not divide {block} into {count} subnets of {bits} bits") from None
        return out

    def _length(self, args: Any) -> int:
        value = self._eval(args)
        if not isinstance(value, list):
            raise template_error("Template error: Fn::Length requires a list argument")
        return len([v for v in value if v is not NO_VALUE])

    def _to_json_string(self, args: Any) -> str:
        value = strip_no_value(self._eval(args))
        if not isinstance(value, dict | list):
            raise template_error("Template error: Fn::ToJsonString requires an object or a list")
        return json.dumps(value, separators=(",", ":"))
