"""``AWS::LanguageExtensions``: ``Fn::ForEach`` loops, expanded before anything else
reads the template (the transform's other functions — ``Fn::Length``,
``Fn::ToJsonString``, ``Fn::FindInMap`` defaults — are evaluated natively), and
intrinsic functions in ``DeletionPolicy``/``UpdateReplacePolicy``.

``"Fn::ForEach::Name": [Identifier, Collection, {OutputKey: OutputValue}]`` repeats
the fragment for each item of the collection: ``${Identifier}`` is replaced by the
item, ``&{Identifier}`` by the item without non-alphanumeric characters (for
logical ids), and ``{"Ref": Identifier}`` by the item.
"""

from __future__ import annotations

import re
from typing import Any

from nubes.deploy.intrinsics import Evaluator
from nubes.deploy.template import template_error

_PREFIX = "Fn::ForEach::"


def expand_foreach(template: dict[str, Any], evaluator: Evaluator) -> dict[str, Any]:
    """A copy of ``template`` with every ``Fn::ForEach`` loop expanded and
    resource policies evaluated."""
    out = _expand(template, evaluator, {})
    if not isinstance(out, dict):
        raise template_error("Template format error: unsupported structure.")
    for resource in (out.get("Resources") or {}).values():
        if isinstance(resource, dict):
            for key in ("DeletionPolicy", "UpdateReplacePolicy"):
                if isinstance(resource.get(key), dict):
                    resource[key] = evaluator.evaluate(resource[key])
    return out


def _substitute(text: str, bindings: dict[str, str]) -> str:
    for name, value in bindings.items():
        text = text.replace("${" + name + "}", value)
        text = text.replace("&{" + name + "}", re.sub(r"[^A-Za-z0-9]", "", value))
    return text


def _expand(node: Any, evaluator: Evaluator, bindings: dict[str, str]) -> Any:
    if isinstance(node, list):
        return [_expand(item, evaluator, bindings) for item in node]
    if isinstance(node, str):
        return _substitute(node, bindings)
    if not isinstance(node, dict):
        return node
    if len(node) == 1 and "Ref" in node and node["Ref"] in bindings:
        return bindings[node["Ref"]]
    out: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(key, str) and key.startswith(_PREFIX):
            out.update(_loop(key, value, evaluator, bindings))
        else:
            out[_substitute(key, bindings) if isinstance(key, str) else key] = _expand(value, evaluator, bindings)
    return out


def _loop(key: str, spec: Any, evaluator: Evaluator, bindings: dict[str, str]) -> dict[str, Any]:
    if not isinstance(spec, list) or len(spec) != 3 or not isinstance(spec[0], str) or not isinstance(spec[2], dict):
        raise template_error(f"Template format error: {key} requires a list of an identifier, a collection and a fragment")
    identifier, collection, fragment = spec
    items = evaluator.evaluate(_expand(collection, evaluator, bindings))
    if isinstance(items, str):
        items = items.split(",")
    if not isinstance(items, list):
        raise template_error(f"Template format error: the collection of {key} must be a list")
    out: dict[str, Any] = {}
    for item in items:
        inner = {**bindings, identifier: str(item)}
        expanded = _expand(fragment, evaluator, inner)
        for name in expanded:
            if name in out:
                raise template_error(f"Template format error: {key} produces the duplicate key {name}")
        out.update(expanded)
    return out
