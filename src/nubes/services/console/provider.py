"""Serves the console page, its static files and its JSON API."""

from __future__ import annotations

import logging
import re
import time
from importlib import resources
from urllib.parse import parse_qsl

import orjson

from nubes.app import App
from nubes.aws.errors import AwsError
from nubes.aws.protocol.types import WireResponse
from nubes.console import api, session
from nubes.gateway.auth import Authenticator
from nubes.services.base import HttpRequest, Provider

log = logging.getLogger(__name__)

_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}  # fmt: skip
_STATIC = re.compile(r"^/static/(?P<file>[A-Za-z0-9_-]+\.(?:html|js|css|svg))$")


#: the largest sign-in body read (two keys and an STS session token fit many times)
_SIGNIN_BYTES = 16 * 1024


def _json(doc: object, status: int = 200, headers: dict[str, str] | None = None) -> WireResponse:
    return WireResponse(
        status,
        {"Content-Type": "application/json", "Cache-Control": "no-store", **(headers or {})},
        api.dumps(doc),
    )


def _error(code: str, message: str, status: int) -> WireResponse:
    return _json({"error": {"code": code, "message": message}}, status)


def _https(request: HttpRequest) -> bool:
    """Whether the browser reached nubes over https (the session cookie is then
    ``Secure``). A forwarded-proto header only ever adds that flag, so trusting it
    costs nothing."""
    scheme = request.scheme
    return scheme == "https" or request.headers.get("x-forwarded-proto", "").lower() == "https"


def _static(name: str) -> WireResponse:
    file = resources.files("nubes.console").joinpath("static", name)
    if not file.is_file():
        return _json({"error": {"code": "NotFound", "message": f"no console file {name}"}}, 404)
    suffix = name[name.rfind(".") :]
    return WireResponse(
        200, {"Content-Type": _TYPES[suffix], "Cache-Control": "no-cache"}, file.read_bytes()
    )


class ConsoleProvider(Provider):
    """``/_nubes/console``: the page, ``/static/<file>`` and ``/api/<name>``.

    The page and its static files load for anyone; the API answers a client that
    must sign in (see ``nubes.console.session``) only with a valid session cookie,
    except ``session`` (am I signed in?), ``signin`` and ``signout``.
    """

    def __init__(self, app: App) -> None:
        super().__init__(app)
        # the gateway's own resolution of access keys: configured credentials, then
        # STS temporary credentials in the store (with their session token and expiry)
        self._auth = Authenticator.for_app(app)
        self._key: bytes | None = None
        self._failed = session.FailedSignins()

    async def _secret(self, access_key: str, session_token: str | None) -> str:
        """The current secret of ``access_key``; an AwsError when it is unknown or expired."""
        # the same resolution the gateway applies to every AWS call
        return await self._auth.secret(access_key, session_token)

    async def _session_key(self) -> bytes:
        if self._key is None:
            self._key = await session.load_key(self.app.store)
        return self._key

    async def _session(self, request: HttpRequest) -> session.Session | None:
        token = session.cookie_value(request.headers)
        if not token:
            return None
        return await session.verify(await self._session_key(), token, self._secret)

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
        if name in ("session", "signin", "signout"):
            return await self._session_api(request, name)
        required = session.signin_required(self.app.settings, request.client_ip)
        if required and await self._session(request) is None:
            return _error(
                "SignInRequired",
                "sign in with an access key id and secret access key nubes accepts",
                401,
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

    async def _session_api(self, request: HttpRequest, name: str) -> WireResponse:
        """``GET session``, ``POST signin`` and ``POST signout``."""
        if name == "session" and request.method == "GET":
            required = session.signin_required(self.app.settings, request.client_ip)
            current = await self._session(request) if required else None
            return _json({"required": required, "signed_in": current is not None,
                          "access_key": current.access_key if current else None,
                          "expires": current.expires if current else None})  # fmt: skip
        if name == "signout" and request.method == "POST":
            return _json(
                {"signed_in": False},
                headers={"Set-Cookie": session.clear_cookie(secure=_https(request))},
            )
        if name == "signin" and request.method == "POST":
            return await self._signin(request)
        return _error("NotFound", f"no console API {request.method} {name}", 404)

    async def _signin(self, request: HttpRequest) -> WireResponse:
        """Check an access key pair as the gateway would; a session cookie when it holds."""
        if len(request.body) > _SIGNIN_BYTES:
            return _error("BadRequest", "the sign-in request is too large", 400)
        try:
            doc = orjson.loads(request.body or b"{}")
        except orjson.JSONDecodeError:
            return _error("BadRequest", "the sign-in request is not JSON", 400)
        fields = doc if isinstance(doc, dict) else {}
        access_key = fields.get("accessKeyId")
        secret = fields.get("secretAccessKey")
        token = fields.get("sessionToken") or None
        if not (isinstance(access_key, str) and access_key and isinstance(secret, str) and secret):
            return _error("BadRequest", "accessKeyId and secretAccessKey are required", 400)
        if token is not None and not isinstance(token, str):
            return _error("BadRequest", "sessionToken must be a string", 400)
        now = time.time()
        if self._failed.blocked(request.client_ip, now):
            return _error(
                "TooManyRequests", "too many failed sign-ins from this address; try later", 429
            )
        try:
            expected: str | None = await self._secret(access_key, token)
        except AwsError as exc:
            if exc.code.startswith("ExpiredToken"):
                return _error("ExpiredToken", "these temporary credentials have expired", 401)
            expected = None
        if expected is None or not session.secrets_match(expected, secret):
            self._failed.failed(request.client_ip, now)
            return _error(
                "InvalidCredentials", "the access key id or secret access key is wrong", 401
            )
        issued = session.issue(await self._session_key(), access_key, expected, token, now=now)
        expires = int(now + session.SESSION_SECONDS)
        return _json(
            {"signed_in": True, "access_key": access_key, "expires": expires},
            headers={"Set-Cookie": session.set_cookie(issued, secure=_https(request))},
        )

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
