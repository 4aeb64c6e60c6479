"""The ``arn:aws:states:::apigateway:invoke`` integration: an HTTP request to an API
served by nubes (its execute-api URL under ``/_nubes/execute-api/``)."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import orjson

from nubes.workflows.errors import RUNTIME, StatesError

_METHODS = {"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"}


def build_request(endpoint: str, params: dict[str, Any]) -> urllib.request.Request:
    """The HTTP request for one invoke (ApiEndpoint, Method, Stage, Path, ...)."""
    api = str(params.get("ApiEndpoint") or "")
    method = str(params.get("Method") or "").upper()
    if not api or method not in _METHODS:
        raise StatesError(RUNTIME, "apigateway:invoke needs ApiEndpoint and a valid Method")
    api_id = api.split(".")[0]
    parts = [p for p in (params.get("Stage"), str(params.get("Path") or "").strip("/")) if p]
    url = f"{endpoint.rstrip('/')}/_nubes/execute-api/{api_id}/" + "/".join(parts)
    query = params.get("QueryParameters") or {}
    if query:
        pairs = [(k, v) for k, values in query.items() for v in (
            values if isinstance(values, list) else [values])]
        url += "?" + urllib.parse.urlencode(pairs)
    body = params.get("RequestBody")
    data = None
    headers = {k: ",".join(v) if isinstance(v, list) else str(v)
               for k, v in (params.get("Headers") or {}).items()}
    if body is not None:
        data = body.encode() if isinstance(body, str) else orjson.dumps(body)
        headers.setdefault("Content-Type", "application/json")
    return urllib.request.Request(url, data=data, method=method, headers=headers)


def _send(request: urllib.request.Request) -> tuple[int, str, dict[str, list[str]], bytes]:
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            headers: dict[str, list[str]] = {}
            for k, v in response.headers.items():
                headers.setdefault(k, []).append(v)
            return response.status, response.reason, headers, response.read()
    except urllib.error.HTTPError as err:
        headers = {}
        for k, v in err.headers.items():
            headers.setdefault(k, []).append(v)
        return err.code, str(err.reason), headers, err.read()
    except OSError as err:
        raise StatesError("ApiGateway.ConnectionError", str(err)) from None


async def invoke(endpoint: str, params: dict[str, Any]) -> dict[str, Any]:
    """Call the API; 4XX/5XX answers fail the task with ``ApiGateway.<status>``."""
    request = build_request(endpoint, params)
    status, reason, headers, raw = await asyncio.to_thread(_send, request)
    text = raw.decode(errors="replace")
    content_type = ",".join(v for k, vs in headers.items() if k.lower() == "content-type"
                            for v in vs)
    body: Any = text
    if "json" in content_type and text:
        try:
            body = orjson.loads(text)
        except orjson.JSONDecodeError:
            body = text
    result = {"Headers": headers, "ResponseBody": body, "StatusCode": status,
              "StatusText": reason}
    if status >= 400:
        raise StatesError(f"ApiGateway.{status}", orjson.dumps(result).decode())
    return result
