"""Resource dependencies: who references whom (Ref, Fn::GetAtt, Fn::Sub, DependsOn),
the order to create them in (independent ones together), and cycle detection.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from nubes.deploy.intrinsics import PSEUDO_PARAMETERS
from nubes.deploy.template import template_error

_SUB_VAR = re.compile(r"\$\{([^}!][^}]*)\}")


def references(value: Any, condition: Callable[[str], bool] | None = None) -> set[str]:
    """Names referenced by ``value`` (parameters, resources, pseudo parameters).

    With ``condition``, an ``Fn::If`` only contributes its taken branch, because
    CloudFormation lets the other branch name resources its condition removed.
    """
    found: set[str] = set()
    _walk(value, found, condition)
    return found


def _walk(value: Any, found: set[str], condition: Callable[[str], bool] | None) -> None:
    if isinstance(value, list):
        for item in value:
            _walk(item, found, condition)
        return
    if not isinstance(value, dict):
        return
    if len(value) == 1:
        (key, arg), = value.items()
        if key == "Ref" and isinstance(arg, str):
            found.add(arg)
            return
        if key == "Fn::GetAtt":
            target = arg.split(".", 1)[0] if isinstance(arg, str) else (arg[0] if isinstance(arg, list) and arg else None)
            if isinstance(target, str):
                found.add(target)
            if isinstance(arg, list) and len(arg) > 1:
                _walk(arg[1], found, condition)
            return
        if key == "Fn::Sub":
            _walk_sub(arg, found, condition)
            return
        if key == "Fn::If" and condition is not None and isinstance(arg, list) and len(arg) == 3 and isinstance(arg[0], str):
            _walk(arg[1] if condition(arg[0]) else arg[2], found, condition)
            return
    for item in value.values():
        _walk(item, found, condition)


def _walk_sub(arg: Any, found: set[str], condition: Callable[[str], bool] | None) -> None:
    variables: dict[str, Any] = {}
    text = arg
    if isinstance(arg, list) and len(arg) == 2:
        text, variables = arg[0], arg[1] if isinstance(arg[1], dict) else {}
        _walk(variables, found, condition)
    if not isinstance(text, str):
        return
    for match in _SUB_VAR.finditer(text):
        name = match.group(1).strip()
        if name in variables:
            continue
        found.add(name.split(".", 1)[0] if "." in name and "::" not in name else name)


def _depends_on(resource: dict[str, Any]) -> list[str]:
    value = resource.get("DependsOn")
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise template_error("Template format error: DependsOn must be a string or list of strings")


def dependencies(
    template: dict[str, Any],
    active: Iterable[str] | None = None,
    condition: Callable[[str], bool] | None = None,
) -> dict[str, set[str]]:
    """Logical id → the resources it depends on, for the ``active`` resources
    (default: all). Unknown names raise CloudFormation's "Unresolved resource
    dependencies" error."""
    resources: dict[str, Any] = template.get("Resources") or {}
    parameters = set((template.get("Parameters") or {}).keys())
    names = list(resources) if active is None else list(active)
    known = set(names)
    out: dict[str, set[str]] = {}
    unresolved: list[str] = []
    for logical_id in names:
        resource = resources[logical_id]
        deps: set[str] = set()
        for name in sorted(references({k: v for k, v in resource.items() if k != "DependsOn"}, condition)):
            if name in parameters or name in PSEUDO_PARAMETERS:
                continue
            if name in known:
                deps.add(name)
            elif name not in unresolved:
                unresolved.append(name)
        for name in _depends_on(resource):
            if name in known:
                deps.add(name)
            elif name not in unresolved:
                unresolved.append(name)
        out[logical_id] = deps
    if unresolved:
        raise template_error(f"Template format error: Unresolved resource dependencies [{', '.join(unresolved)}] in the Resources block of the template")
    return out


def check_outputs(template: dict[str, Any], active: Iterable[str], condition: Callable[[str], bool] | None = None) -> None:
    """Outputs may only reference parameters, pseudo parameters and existing resources."""
    outputs = template.get("Outputs") or {}
    known = set(active) | set((template.get("Parameters") or {}).keys()) | set(PSEUDO_PARAMETERS)
    unresolved: list[str] = []
    for output in outputs.values():
        if isinstance(output, dict) and "Condition" in output and condition is not None and not condition(output["Condition"]):
            continue
        for name in sorted(references(output, condition)):
            if name not in known and name not in unresolved:
                unresolved.append(name)
    if unresolved:
        raise template_error(f"Template format error: Unresolved resource dependencies [{', '.join(unresolved)}] in the Outputs block of the template")


def creation_layers(deps: dict[str, set[str]]) -> list[list[str]]:
    """Resources grouped so that each group depends only on earlier groups (each
    group can be created in parallel). Raises on a cycle."""
    remaining = {name: set(d) for name, d in deps.items()}
    layers: list[list[str]] = []
    while remaining:
        ready = sorted(name for name, d in remaining.items() if not d)
        if not ready:
            raise template_error(f"Circular dependency between resources: [{', '.join(_cycle_members(remaining))}]")
        layers.append(ready)
        for name in ready:
            del remaining[name]
        for d in remaining.values():
            d.difference_update(ready)
    return layers


def _cycle_members(remaining: dict[str, set[str]]) -> list[str]:
    """Nodes that lie on a cycle (not merely downstream of one), sorted."""
    on_cycle: set[str] = set()
    for start in remaining:
        stack, seen = list(remaining[start]), set()
        while stack:
            node = stack.pop()
            if node == start:
                on_cycle.add(start)
                break
            if node in seen or node not in remaining:
                continue
            seen.add(node)
            stack.extend(remaining[node])
    return sorted(on_cycle or remaining)


def deletion_layers(deps: dict[str, set[str]]) -> list[list[str]]:
    """The reverse of :func:`creation_layers`: dependents go first."""
    return list(reversed(creation_layers(deps)))


def dependents(deps: dict[str, set[str]]) -> dict[str, set[str]]:
    """Invert the dependency map: logical id → resources that depend on it."""
    out: dict[str, set[str]] = {name: set() for name in deps}
    for name, d in deps.items():
        for target in d:
            out.setdefault(target, set()).add(name)
    return out
