"""Velocity mapping templates as API Gateway renders them (``$input``, ``$util``,
``$context``, ``$stageVariables``), on the airspeed engine."""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import quote, unquote

import airspeed

_TOKEN = re.compile(r"\.?([^.\[\]]+)|\[(\d+)\]|\['([^']+)'\]")


def json_path(document: Any, path: str) -> Any:
    """The subset of JSONPath mapping templates use: ``$``, ``$.a.b``, ``$.a[0]``, ``$['k']``."""
    path = path.strip()
    if path in ("$", ""):
        return document
    node = document
    for m in _TOKEN.finditer(path[1:] if path.startswith("$") else path):
        key, index, quoted = m.groups()
        if index is not None:
            node = node[int(index)] if isinstance(node, list) and int(index) < len(node) else None
        else:
            name = quoted if quoted is not None else key
            node = node.get(name) if isinstance(node, dict) else None
        if node is None:
            return None
    return node


class _Input:
    """``$input``."""

    def __init__(self, body: bytes, params: dict[str, dict[str, str]]) -> None:
        self.body = body.decode(errors="replace")
        self._params = params
        try:
            self._doc: Any = json.loads(self.body) if self.body else {}
        except json.JSONDecodeError:
            self._doc = self.body

    def json(self, path: str = "$") -> str:
        return json.dumps(json_path(self._doc, path))

    def path(self, path: str = "$") -> Any:
        return json_path(self._doc, path)

    def params(self, name: str | None = None) -> Any:
        if name is None:
            return self._params
        for where in ("path", "querystring", "header"):
            if name in self._params.get(where, {}):
                return self._params[where][name]
        return ""


class _Util:
    """``$util``."""

    @staticmethod
    def escapeJavaScript(text: Any) -> str:
        return json.dumps(str(text))[1:-1].replace("\\\"", "\\\"").replace("'", "\\'")

    @staticmethod
    def parseJson(text: str) -> Any:
        return json.loads(text)

    @staticmethod
    def urlEncode(text: str) -> str:
        return quote(str(text), safe="")

    @staticmethod
    def urlDecode(text: str) -> str:
        return unquote(str(text))

    @staticmethod
    def base64Encode(text: str) -> str:
        return base64.b64encode(str(text).encode()).decode()

    @staticmethod
    def base64Decode(text: str) -> str:
        return base64.b64decode(str(text)).decode(errors="replace")


def render(template: str, body: bytes, params: dict[str, dict[str, str]], context: dict[str, Any],
           stage_variables: dict[str, str]) -> str:  # fmt: skip
    """Render a mapping template."""
    namespace = {"input": _Input(body, params), "util": _Util(), "context": context, "stageVariables": stage_variables}
    try:
        return str(airspeed.Template(template).merge(namespace))
    except Exception as exc:  # airspeed raises several error types for bad templates
        raise ValueError(f"Invalid mapping expression specified: {exc}") from None
