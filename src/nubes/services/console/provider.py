"""Serves the console page, its static files and its JSON API."""

from __future__ import annotations

import logging
import re
from importlib import resources
from urllib.parse import parse_qsl

from nubes.aws.errors import AwsError
from nubes.aws.protocol.types import WireResponse
from nubes.console import api
from nubes.services.base import HttpRequest, Provider

log = logging.getLogger(__name__)

_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}  # fmt: skip
_STATIC = re.compile(r"^/static/(?P<file>[A-Za-z0-9_-]+\.(?:html|js|css|svg))$")


def _json(doc: object, status: int = 200) -> WireResponse:
    return WireResponse(
        status, {"Content-Type": "application/json", "Cache-Control": "no-store"}, api.dumps(doc)
    )


def _static(name: str) -> WireResponse:
    file = resources.files("nubes.console").joinpath("static", name)
    if not file.is_file():
        return _json({"error": {"code": "NotFound", "message": f"no console file {name}"}}, 404)
    suffix = name[name.rfind(".") :]
    return WireResponse(
        200, {"Content-Type": _TYPES[suffix], "Cache-Control": "no-cache"}, file.read_bytes()
    )


class ConsoleProvider(Provider):
    """``/_nubes/console``: the page, ``/static/<file>`` and ``/api/<name>``."""

    async def http_console(self, request: HttpRequest, match: re.Match[str]) -> WireResponse:
        """Route one console request."""
        rest = match.group("rest") or ""
        if rest == "":
            return WireResponse(302, {"Location": "/_nubes/console/"}, b"")
        if rest == "/" and request.method == "GET":
            return _static("index.html")
        static = _STATIC.match(rest)
        if static is not None and request.method == "GET":
            return _static(static.group("file"))
        if rest.startswith("/api/"):
            return await self._api(request, rest[len("/api/") :].strip("/"))
        return _json({"error": {"code": "NotFound", "message": f"no console page {rest}"}}, 404)

    async def _api(self, request: HttpRequest, name: str) -> WireResponse:
        if request.method != "GET" and request.headers.get("x-nubes-console") != "1":
            # a custom header makes browsers preflight a cross-site request, which nubes
            # never approves for the console: another web page cannot invoke functions here
            return _json(
                {
                    "error": {
                        "code": "Forbidden",
                        "message": "console changes need the X-Nubes-Console: 1 header",
                    }
                },
                403,
            )
        query = dict(
            parse_qsl(request.query_string.decode("utf-8", "replace"), keep_blank_values=True)
        )
        if name == "object" and request.method == "GET":
            return await self._object(query)
        table = {"GET": api.GET, "POST": api.POST, "DELETE": api.DELETE}.get(request.method, {})
        handler = table.get(name)
        if handler is None:
            return _json(
                {
                    "error": {
                        "code": "NotFound",
                        "message": f"no console API {request.method} {name}",
                    }
                },
                404,
            )
        try:
            return _json(
                await handler(api.Client(self.app, query.pop("region", None)), query, request.body)
            )
        except api.ConsoleError as exc:
            return _json({"error": {"code": "BadRequest", "message": str(exc)}}, 400)
        except AwsError as exc:
            return _json(api.error_doc(exc), exc.status or 400)
        except Exception as exc:
            log.exception("console API %s failed", name)
            return _json(api.error_doc(exc), 500)

    async def _object(self, query: dict[str, str]) -> WireResponse:
        """An S3 object's bytes, streamed (the listing's download link)."""
        try:
            out = await api.Client(self.app, query.get("region")).call(
                "s3",
                "GetObject",
                {"Bucket": api.need(query, "bucket"), "Key": api.need(query, "key")},
            )
        except api.ConsoleError as exc:
            return _json({"error": {"code": "BadRequest", "message": str(exc)}}, 400)
        except AwsError as exc:
            return _json(api.error_doc(exc), exc.status or 400)
        filename = query["key"].rsplit("/", 1)[-1].replace('"', "")
        headers = {"Content-Type": str(out.get("ContentType") or "application/octet-stream"),
                   "Content-Disposition": f'attachment; filename="{filename}"'}  # fmt: skip
        if out.get("ContentLength") is not None:
            headers["Content-Length"] = str(out["ContentLength"])
        return WireResponse(200, headers, out["Body"])
