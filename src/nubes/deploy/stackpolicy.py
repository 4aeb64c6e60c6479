"""Stack policies: which update actions (``Update:Modify``, ``Update:Replace``,
``Update:Delete``) a stack update may take on which resources.

Without a policy every action is allowed. With one, an action is allowed only if
some statement allows it and none denies it (an explicit Deny wins), matched on
``Action``, ``Resource``/``NotResource`` (``LogicalResourceId/<id>``, wildcards) and
a ``ResourceType`` condition (``StringEquals``/``StringLike``).
"""

from __future__ import annotations

import fnmatch
import json
from typing import Any

from nubes.deploy.template import template_error


def _list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def parse_policy(body: str | None) -> list[dict[str, Any]] | None:
    """The statements of a policy body (None when there is no policy)."""
    if not body:
        return None
    try:
        document = json.loads(body)
    except ValueError:
        raise template_error("Error validating stack policy: Invalid stack policy") from None
    statements = document.get("Statement") if isinstance(document, dict) else None
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list):
        raise template_error("Error validating stack policy: Invalid stack policy")
    return [s for s in statements if isinstance(s, dict)]


def _matches(statement: dict[str, Any], action: str, logical_id: str, resource_type: str) -> bool:
    if not any(fnmatch.fnmatchcase(action, pattern) for pattern in _list(statement.get("Action"))):
        return False
    resource = f"LogicalResourceId/{logical_id}"
    if "NotResource" in statement:
        if any(fnmatch.fnmatchcase(resource, p) for p in _list(statement["NotResource"])):
            return False
    elif not any(fnmatch.fnmatchcase(resource, p) for p in _list(statement.get("Resource"))):
        return False
    for operator, clause in (statement.get("Condition") or {}).items():
        wanted = _list((clause or {}).get("ResourceType"))
        if operator == "StringEquals" and resource_type not in wanted:
            return False
        if operator == "StringLike" and not any(fnmatch.fnmatchcase(resource_type, p) for p in wanted):
            return False
    return True


def denial(body: str | None, action: str, logical_id: str, resource_type: str) -> str | None:
    """Why ``action`` (``Update:Modify``/``Replace``/``Delete``) on a resource is
    denied by the policy in ``body``, or None when it is allowed."""
    statements = parse_policy(body)
    if statements is None:
        return None
    allowed = False
    for number, statement in enumerate(statements, start=1):
        if not _matches(statement, action, logical_id, resource_type):
            continue
        if statement.get("Effect") == "Deny":
            return (f"Action denied by stack policy: Statement [#{number}] does not allow [{action}] "
                    f"for resource [LogicalResourceId/{logical_id}].")
        if statement.get("Effect") == "Allow":
            allowed = True
    if allowed:
        return None
    return f"Action denied by stack policy: No statement allows [{action}] for resource [LogicalResourceId/{logical_id}]."
