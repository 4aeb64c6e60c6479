"""The template ``Rules`` section: assertions on parameter values, checked after
the parameters resolve and before any resource is touched. A false ``Assert``
refuses the operation with a ValidationError carrying its ``AssertDescription``.
"""

from __future__ import annotations

from typing import Any

from nubes.deploy.intrinsics import Evaluator
from nubes.deploy.template import template_error


class RuleEvaluator(Evaluator):
    """An evaluator that also knows the rule-specific functions."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._handlers.update({
            "Fn::Contains": self._contains,
            "Fn::EachMemberEquals": self._each_member_equals,
            "Fn::EachMemberIn": self._each_member_in,
        })  # fmt: skip

    def _pair(self, name: str, args: Any) -> tuple[Any, Any]:
        if not isinstance(args, list) or len(args) != 2:
            raise template_error(f"Template format error: {name} requires a list argument with two elements")
        return self._eval(args[0]), self._eval(args[1])

    def _contains(self, args: Any) -> bool:
        items, value = self._pair("Fn::Contains", args)
        if not isinstance(items, list):
            raise template_error("Template format error: the first argument of Fn::Contains must be a list")
        return str(value) in [str(v) for v in items]

    def _each_member_equals(self, args: Any) -> bool:
        items, value = self._pair("Fn::EachMemberEquals", args)
        if not isinstance(items, list):
            raise template_error("Template format error: the first argument of Fn::EachMemberEquals must be a list")
        return all(str(v) == str(value) for v in items)

    def _each_member_in(self, args: Any) -> bool:
        items, allowed = self._pair("Fn::EachMemberIn", args)
        if not isinstance(items, list) or not isinstance(allowed, list):
            raise template_error("Template format error: both arguments of Fn::EachMemberIn must be lists")
        return {str(v) for v in items} <= {str(v) for v in allowed}

    def truth(self, value: Any) -> bool:
        """A rule condition or assertion, which must come out boolean."""
        result = self._eval(value)
        if isinstance(result, str) and result.lower() in ("true", "false"):
            return result.lower() == "true"
        if not isinstance(result, bool):
            raise template_error("Template format error: every rule condition and assertion must evaluate to true or false")
        return result


def check_rules(template: dict[str, Any], evaluator: Evaluator) -> None:
    """Evaluate every rule; raise the first failing assertion's description."""
    rules = template.get("Rules") or {}
    if not isinstance(rules, dict):
        raise template_error("Template format error: Rules must be an object")
    checker = RuleEvaluator(template, evaluator.parameters, evaluator.stack)
    for name, rule in rules.items():
        if not isinstance(rule, dict) or not isinstance(rule.get("Assertions"), list):
            raise template_error(f"Template format error: Rule {name} must contain an Assertions list")
        if "RuleCondition" in rule and not checker.truth(rule["RuleCondition"]):
            continue
        for assertion in rule["Assertions"]:
            if not isinstance(assertion, dict) or "Assert" not in assertion:
                raise template_error(f"Template format error: every assertion of rule {name} must contain an Assert")
            if not checker.truth(assertion["Assert"]):
                description = assertion.get("AssertDescription") or f"Assertion of rule {name} failed"
                raise template_error(str(description))
