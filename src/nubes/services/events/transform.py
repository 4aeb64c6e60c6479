"""What a target receives: the event, ``Input``, ``InputPath`` or ``InputTransformer``.

``InputTransformer`` substitutes ``<name>`` placeholders of ``InputTemplate`` with
values picked by ``InputPathsMap`` JSON paths (and the predefined
``aws.events.*`` variables). As on AWS, a value lands as JSON where the
placeholder stands outside a JSON string, and as its plain text inside one; a
template that is not JSON gets plain text everywhere.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from nubes.services.events.common import validation

_MISSING = object()
_PATH_TOKEN = re.compile(
    r"""\.(?P<name>[^.\[\]]+)|\[(?P<index>\d+)\]|\[(?P<quoted>'[^']*'|"[^"]*")\]|\[\*\]|\.\*"""
)
_PLACEHOLDER = re.compile(r"<([A-Za-z0-9_.\-]+)>")
PREDEFINED = (
    "aws.events.rule-arn",
    "aws.events.rule-name",
    "aws.events.event.ingestion-time",
    "aws.events.event",
    "aws.events.event.json",
)


def parse_path(path: str) -> list[str | int | None]:
    """``$.detail.items[0]['x-y']`` → ``["detail", "items", 0, "x-y"]`` (None for ``*``);
    ValueError if it is not a JSON path EventBridge accepts."""
    if not path.startswith("$"):
        raise ValueError(path)
    steps: list[str | int | None] = []
    pos = 1
    while pos < len(path):
        match = _PATH_TOKEN.match(path, pos)
        if match is None:
            raise ValueError(path)
        if match.group("name") is not None:
            name = match.group("name")
            steps.append(None if name == "*" else name)
        elif match.group("index") is not None:
            steps.append(int(match.group("index")))
        elif match.group("quoted") is not None:
            steps.append(match.group("quoted")[1:-1])
        else:
            steps.append(None)
        pos = match.end()
    return steps


def extract(document: Any, path: str) -> Any:
    """The value at ``path`` (a list for wildcards), or ``_MISSING``."""
    current: list[Any] = [document]
    wildcard = False
    for step in parse_path(path):
        following: list[Any] = []
        for item in current:
            if step is None:
                wildcard = True
                if isinstance(item, dict):
                    following.extend(item.values())
                elif isinstance(item, list):
                    following.extend(item)
            elif isinstance(step, int):
                if isinstance(item, list) and step < len(item):
                    following.append(item[step])
            elif isinstance(item, dict) and step in item:
                following.append(item[step])
        current = following
    if wildcard:
        return current
    return current[0] if current else _MISSING


def check_target_input(target: dict[str, Any]) -> None:
    """ValidationException unless the target's input settings are usable."""
    given = [k for k in ("Input", "InputPath", "InputTransformer") if target.get(k) is not None]
    if len(given) > 1:
        raise validation("Only one of Input, InputPath, or InputTransformer must be provided.")
    if target.get("Input") is not None:
        try:
            orjson.loads(target["Input"])
        except orjson.JSONDecodeError:
            raise validation("Input is not valid JSON text.") from None
    if target.get("InputPath") is not None:
        _check_path(target["InputPath"])
    transformer = target.get("InputTransformer")
    if transformer is not None:
        paths = transformer.get("InputPathsMap") or {}
        if len(paths) > 100:
            raise validation("InputPathsMap can have at most 100 entries.")
        for name, path in paths.items():
            if name.startswith("aws.events."):
                raise validation(f"Input path name {name} is reserved.")
            _check_path(path)
        template = transformer.get("InputTemplate")
        if template is None:
            raise validation("InputTemplate must be provided with an InputTransformer.")
        for name in _PLACEHOLDER.findall(template):
            if name not in paths and name not in PREDEFINED:
                raise validation(
                    f"InputTemplate for target {target.get('Id')} contains invalid placeholder "
                    f"<{name}>."
                )


def _check_path(path: str) -> None:
    try:
        parse_path(path)
    except ValueError:
        raise validation(f"Invalid InputPath: {path} is not a valid JSON path.") from None


def target_input(target: dict[str, Any], event: dict[str, Any], rule_arn: str) -> str:
    """The text a target receives for ``event``."""
    if target.get("Input") is not None:
        return str(target["Input"])
    if target.get("InputPath") is not None:
        value = extract(event, target["InputPath"])
        return "null" if value is _MISSING else orjson.dumps(value).decode()
    transformer = target.get("InputTransformer")
    if transformer is not None:
        return render_template(transformer, event, rule_arn)
    return orjson.dumps(event).decode()


def _variables(transformer: dict[str, Any], event: dict[str, Any], rule_arn: str) -> dict[str, Any]:
    values: dict[str, Any] = {
        "aws.events.rule-arn": rule_arn,
        "aws.events.rule-name": rule_arn.rsplit("/", 1)[-1],
        "aws.events.event.ingestion-time": event.get("time", ""),
        "aws.events.event": event,
        "aws.events.event.json": orjson.dumps(event).decode(),
    }
    for name, path in (transformer.get("InputPathsMap") or {}).items():
        values[name] = extract(event, path)
    return values


def render_template(transformer: dict[str, Any], event: dict[str, Any], rule_arn: str) -> str:
    """``InputTemplate`` with its placeholders filled in."""
    template: str = transformer.get("InputTemplate") or ""
    values = _variables(transformer, event, rule_arn)
    probe = _PLACEHOLDER.sub(lambda m: "null" if m.group(1) in values else m.group(0), template)
    try:
        orjson.loads(probe)
        json_mode = True
    except orjson.JSONDecodeError:
        json_mode = False
    out: list[str] = []
    in_string = False
    pos = 0
    while pos < len(template):
        ch = template[pos]
        match = _PLACEHOLDER.match(template, pos) if ch == "<" else None
        if match is not None and match.group(1) in values:
            value = values[match.group(1)]
            mode = "text" if not json_mode else ("string" if in_string else "json")
            out.append(_render_value(value, mode))
            pos = match.end()
            continue
        if ch == "\\" and in_string:
            out.append(template[pos : pos + 2])
            pos += 2
            continue
        if ch == '"':
            in_string = not in_string
        out.append(ch)
        pos += 1
    return "".join(out)


def _render_value(value: Any, mode: str) -> str:
    """A value as JSON (``json``), inside a JSON string (``string``) or as plain text."""
    if value is _MISSING:
        return "null" if mode == "json" else ""
    if mode == "json":
        return orjson.dumps(value).decode()
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return orjson.dumps(text).decode()[1:-1] if mode == "string" else text
