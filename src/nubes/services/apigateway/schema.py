"""The JSON Schema (draft 4) subset API Gateway models use, to validate request
bodies: types, properties/required/additionalProperties/patternProperties,
items, enum, numeric and length bounds, pattern, allOf/anyOf/oneOf/not, local
``$ref`` and references to other models of the API by name.

Written here rather than depending on ``jsonschema``: the subset is small and
the hot path wants no per-request schema compilation beyond a dict walk."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
}
_MAX_DEPTH = 64

ModelLookup = Callable[[str], dict[str, Any] | None]


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def check_schema(schema: Any, depth: int = 0) -> str | None:
    """A reason the schema cannot be used, or None."""
    if depth > _MAX_DEPTH:
        return "the schema is nested too deeply"
    if not isinstance(schema, dict):
        return "a schema is a JSON object"
    kind = schema.get("type")
    for name in kind if isinstance(kind, list) else [kind] if kind is not None else []:
        if name not in _TYPES:
            return f"unknown type {name!r}"
    if "pattern" in schema:
        try:
            _regex(str(schema["pattern"]))
        except re.error:
            return f"invalid pattern {schema['pattern']!r}"
    for key in ("properties", "patternProperties", "definitions"):
        for sub in (schema.get(key) or {}).values():
            problem = check_schema(sub, depth + 1)
            if problem:
                return problem
    for key in ("items", "additionalProperties", "not"):
        if isinstance(schema.get(key), dict):
            problem = check_schema(schema[key], depth + 1)
            if problem:
                return problem
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(key) or []:
            problem = check_schema(sub, depth + 1)
            if problem:
                return problem
    return None


def validate(instance: Any, schema: dict[str, Any], models: ModelLookup | None = None) -> list[str]:
    """Every way ``instance`` fails ``schema`` (empty when it is valid)."""
    errors: list[str] = []
    _check(instance, schema, schema, models, "", errors, 0)
    return errors


def _resolve(ref: str, root: dict[str, Any], models: ModelLookup | None) -> dict[str, Any] | None:
    if ref.startswith("#/"):
        node: Any = root
        for part in ref[2:].split("/"):
            node = node.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(node, dict) else None
        return node if isinstance(node, dict) else None
    if models is not None and "/models/" in ref:
        return models(ref.rsplit("/models/", 1)[1])
    return None


def _check(value: Any, schema: dict[str, Any], root: dict[str, Any], models: ModelLookup | None, at: str,
           errors: list[str], depth: int) -> None:  # fmt: skip
    if depth > _MAX_DEPTH:
        errors.append(f"{at or '/'}: too deeply nested")
        return
    if "$ref" in schema:
        target = _resolve(str(schema["$ref"]), root, models)
        if target is None:
            errors.append(f"{at or '/'}: unresolvable reference {schema['$ref']}")
            return
        new_root = target if not str(schema["$ref"]).startswith("#/") else root
        _check(value, target, new_root, models, at, errors, depth + 1)
        return
    kind = schema.get("type")
    if kind is not None:
        names = kind if isinstance(kind, list) else [kind]
        if not any(_TYPES.get(n, lambda v: False)(value) for n in names):
            errors.append(f"{at or '/'}: instance type ({_type_name(value)}) does not match any allowed primitive type (allowed: {names})")
            return
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{at or '/'}: instance value ({value!r}) not found in enum")
    if isinstance(value, dict):
        _object(value, schema, root, models, at, errors, depth)
    elif isinstance(value, list):
        _array(value, schema, root, models, at, errors, depth)
    elif isinstance(value, str):
        _string(value, schema, at, errors)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        _number(value, schema, at, errors)
    _combinators(value, schema, root, models, at, errors, depth)


def _type_name(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _TYPES[name](value):
            return name
    return type(value).__name__


def _object(value: dict[str, Any], schema: dict[str, Any], root: dict[str, Any], models: ModelLookup | None, at: str,
            errors: list[str], depth: int) -> None:  # fmt: skip
    missing = [name for name in schema.get("required") or [] if name not in value]
    if missing:
        errors.append(f"{at or '/'}: object has missing required properties ({missing})")
    props = schema.get("properties") or {}
    patterns = schema.get("patternProperties") or {}
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        matched = False
        if name in props:
            matched = True
            _check(item, props[name], root, models, f"{at}/{name}", errors, depth + 1)
        for pattern, sub in patterns.items():
            if _regex(pattern).search(name):
                matched = True
                _check(item, sub, root, models, f"{at}/{name}", errors, depth + 1)
        if not matched:
            if extra is False:
                errors.append(f"{at or '/'}: object instance has properties which are not allowed by the schema: [{name!r}]")
            elif isinstance(extra, dict):
                _check(item, extra, root, models, f"{at}/{name}", errors, depth + 1)
    if "minProperties" in schema and len(value) < int(schema["minProperties"]):
        errors.append(f"{at or '/'}: object has fewer than {schema['minProperties']} properties")
    if "maxProperties" in schema and len(value) > int(schema["maxProperties"]):
        errors.append(f"{at or '/'}: object has more than {schema['maxProperties']} properties")


def _array(value: list[Any], schema: dict[str, Any], root: dict[str, Any], models: ModelLookup | None, at: str,
           errors: list[str], depth: int) -> None:  # fmt: skip
    items = schema.get("items")
    if isinstance(items, dict):
        for i, item in enumerate(value):
            _check(item, items, root, models, f"{at}/{i}", errors, depth + 1)
    elif isinstance(items, list):
        for i, (item, sub) in enumerate(zip(value, items, strict=False)):
            _check(item, sub, root, models, f"{at}/{i}", errors, depth + 1)
    if "minItems" in schema and len(value) < int(schema["minItems"]):
        errors.append(f"{at or '/'}: array is too short (minimum {schema['minItems']})")
    if "maxItems" in schema and len(value) > int(schema["maxItems"]):
        errors.append(f"{at or '/'}: array is too long (maximum {schema['maxItems']})")
    if schema.get("uniqueItems") and len({repr(v) for v in value}) != len(value):
        errors.append(f"{at or '/'}: array must not contain duplicate elements")


def _string(value: str, schema: dict[str, Any], at: str, errors: list[str]) -> None:
    if "minLength" in schema and len(value) < int(schema["minLength"]):
        errors.append(f"{at or '/'}: string is too short (minimum {schema['minLength']})")
    if "maxLength" in schema and len(value) > int(schema["maxLength"]):
        errors.append(f"{at or '/'}: string is too long (maximum {schema['maxLength']})")
    if "pattern" in schema and not _regex(str(schema["pattern"])).search(value):
        errors.append(f"{at or '/'}: ECMA 262 regex {schema['pattern']!r} does not match input string")


def _number(value: float, schema: dict[str, Any], at: str, errors: list[str]) -> None:
    if "minimum" in schema:
        low = float(schema["minimum"])
        if value < low or (schema.get("exclusiveMinimum") is True and value == low):
            errors.append(f"{at or '/'}: numeric instance is lower than the required minimum {schema['minimum']}")
    if "maximum" in schema:
        high = float(schema["maximum"])
        if value > high or (schema.get("exclusiveMaximum") is True and value == high):
            errors.append(f"{at or '/'}: numeric instance is greater than the required maximum {schema['maximum']}")
    step = schema.get("multipleOf")
    if step and not math.isclose(value / float(step), round(value / float(step)), abs_tol=1e-9):
        errors.append(f"{at or '/'}: remainder of division by {step} is not zero")


def _combinators(value: Any, schema: dict[str, Any], root: dict[str, Any], models: ModelLookup | None, at: str,
                 errors: list[str], depth: int) -> None:  # fmt: skip
    for sub in schema.get("allOf") or []:
        _check(value, sub, root, models, at, errors, depth + 1)
    if schema.get("anyOf") and all(_sub_errors(value, s, root, models, at, depth) for s in schema["anyOf"]):
        errors.append(f"{at or '/'}: instance failed to match at least one required schema among {len(schema['anyOf'])}")
    if schema.get("oneOf"):
        matches = sum(1 for s in schema["oneOf"] if not _sub_errors(value, s, root, models, at, depth))
        if matches != 1:
            errors.append(f"{at or '/'}: instance failed to match exactly one schema (matched {matches} out of {len(schema['oneOf'])})")
    if isinstance(schema.get("not"), dict) and not _sub_errors(value, schema["not"], root, models, at, depth):
        errors.append(f"{at or '/'}: instance matched a schema which it should not have")


def _sub_errors(value: Any, schema: dict[str, Any], root: dict[str, Any], models: ModelLookup | None, at: str, depth: int) -> list[str]:
    errors: list[str] = []
    _check(value, schema, root, models, at, errors, depth + 1)
    return errors
