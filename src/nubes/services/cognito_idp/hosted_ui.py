"""The hosted UI of a user pool domain: ``/oauth2/authorize``, the ``/login`` form,
``/logout`` and ``/error``, and the routing of every domain request.

A domain is reached as AWS serves it, ``{domain}.auth.{region}.amazoncognito.com``,
locally as ``{domain}.auth.localhost[:port]``, and at ``/_nubes/cognito/{domain}/...``
for clients that cannot set the Host header.
"""

from __future__ import annotations

import html
import re
import secrets
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson

from nubes.aws.errors import AwsError
from nubes.aws.protocol.types import WireResponse
from nubes.services.base import HttpRequest
from nubes.services.cognito_idp import users
from nubes.services.cognito_idp.oauth import (
    CODE_SECONDS,
    CORS,
    Domain,
    OAuthEndpoints,
    OAuthError,
    form,
    query,
)
from nubes.services.cognito_idp.store import AUTH_CODES, CLIENTS, LOGIN_SESSIONS, loads
from nubes.storage.keys import pack

#: how long the hosted UI remembers a signed-in browser (the ``cognito`` cookie)
LOGIN_SESSION_SECONDS = 3600
_COOKIE = "cognito"
_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:24rem;margin:3rem auto}}label,input,button{{display:block;width:100%;margin:.4rem 0}}
.error{{color:#b00}}</style></head>
<body><h1>{title}</h1>{body}</body></html>"""


def page(title: str, body: str, status: int = 200, extra: list[tuple[str, str]] | None = None) -> WireResponse:
    text = _PAGE.format(title=html.escape(title), body=body)
    return WireResponse(status, {"Content-Type": "text/html;charset=UTF-8", "Cache-Control": "no-store"}, text.encode(), extra or [])


def redirect(location: str, extra: list[tuple[str, str]] | None = None) -> WireResponse:
    return WireResponse(302, {"Location": location, "Cache-Control": "no-store"}, b"", extra or [])


def with_params(uri: str, params: dict[str, str], fragment: bool = False) -> str:
    """``uri`` with ``params`` added to its query (or set as its fragment)."""
    encoded = urllib.parse.urlencode(params)
    if fragment:
        return f"{uri.split('#', 1)[0]}#{encoded}"
    return f"{uri}{'&' if '?' in uri else '?'}{encoded}" if encoded else uri


def _cookie(headers: Mapping[str, str], name: str) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


class HostedUi(OAuthEndpoints):
    """Authorize, login, logout; the entry point of every domain request."""

    async def http_hosted_ui(self, request: HttpRequest, match: re.Match[str]) -> WireResponse:
        """Everything served on a user pool domain."""
        groups = match.groupdict()
        path = groups.get("rest") if "rest" in groups else request.path
        base = "" if "rest" not in groups else f"/_nubes/cognito/{groups['domain']}"
        record = await self.domain(groups["domain"])
        region = groups.get("region")
        if record is None or (region and record.get("Region") != region):
            return page("Not found", "<p>No user pool domain here.</p>", 404)
        try:
            pool = await self.db.pool(record["UserPoolId"])
        except AwsError:
            return page("Not found", "<p>No user pool domain here.</p>", 404)
        domain = Domain(record["Domain"], pool, base)
        path = (path or "/").rstrip("/") or "/"
        if request.method == "OPTIONS":
            return WireResponse(204, dict(CORS), b"")
        handlers = {"/oauth2/token": self.oauth_token, "/oauth2/userInfo": self.oauth_user_info, "/oauth2/revoke": self.oauth_revoke,
                    "/oauth2/authorize": self.oauth_authorize, "/authorize": self.oauth_authorize, "/login": self.hosted_login,
                    "/logout": self.hosted_logout, "/error": self.hosted_error, **self._account_pages()}  # fmt: skip
        handler = handlers.get(path)
        if handler is None:
            return page("Not found", "<p>No such page.</p>", 404)
        try:
            return await handler(domain, request)
        except OAuthError as err:
            return err.response()
        except AwsError as err:  # a trigger failed while the browser waited
            return page("Error", f'<p class="error">{html.escape(err.message)}</p>', 400)

    def _account_pages(self) -> dict[str, Callable[[Domain, HttpRequest], Awaitable[WireResponse]]]:
        """Sign-up and password-reset pages (``hosted_accounts``)."""
        return {}

    # -- authorize --------------------------------------------------------------------------

    async def _authorization(self, domain: Domain, params: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(client, grant) for valid authorize parameters. Raises a redirect (as
        ``_Redirect``) to the error page or to the app with an OAuth error."""
        client_id, redirect_uri = params.get("client_id", ""), params.get("redirect_uri", "")
        client = await self._domain_client(domain, client_id)
        if client is None:
            raise _Redirect(with_params(f"{domain.base}/error", {"error": "invalid_request", "error_description": "Invalid client_id"}))
        if not redirect_uri or redirect_uri not in (client.get("CallbackURLs") or []):
            raise _Redirect(with_params(f"{domain.base}/error", {"error": "redirect_mismatch", "client_id": client_id}))
        state = {"state": params["state"]} if "state" in params else {}

        def fail(error: str) -> _Redirect:
            return _Redirect(with_params(redirect_uri, {"error": error, **state}))

        response_type = params.get("response_type")
        if not response_type:
            raise fail("invalid_request")
        if response_type not in ("code", "token"):
            raise fail("unsupported_response_type")
        if not self._oauth_enabled(client, "code" if response_type == "code" else "implicit"):
            raise fail("unauthorized_client")
        allowed = client.get("AllowedOAuthScopes") or []
        scopes = list(dict.fromkeys(params.get("scope", "").split())) or list(allowed)
        if not scopes or not set(scopes) <= set(allowed):
            raise fail("invalid_scope")
        if params.get("identity_provider") not in (None, "COGNITO"):
            raise fail("invalid_request")
        providers = client.get("SupportedIdentityProviders")
        if providers and "COGNITO" not in providers:  # federated sign-in only: nubes has no other IdPs
            raise fail("unauthorized_client")
        challenge, method = params.get("code_challenge"), params.get("code_challenge_method")
        if (method and not challenge) or (method or "plain") not in ("S256", "plain") or (challenge and response_type != "code"):
            raise fail("invalid_request")
        grant = {"ClientId": client["ClientId"], "RedirectUri": redirect_uri, "Scopes": scopes, "ResponseType": response_type,
                 "State": params.get("state"), "Nonce": params.get("nonce"), "CodeChallenge": challenge,
                 "CodeChallengeMethod": method or "plain"}  # fmt: skip
        return client, grant

    async def _domain_client(self, domain: Domain, client_id: str) -> dict[str, Any] | None:
        raw = await self.app.store.read(lambda txn: txn.get(CLIENTS, pack(client_id))) if client_id else None
        client = loads(raw) if raw is not None else None
        return client if client is not None and client["UserPoolId"] == domain.pool["Id"] else None

    async def oauth_authorize(self, domain: Domain, request: HttpRequest) -> WireResponse:
        """``GET /oauth2/authorize``: validate, then sign in (or reuse the browser's session)."""
        params = query(request)
        try:
            client, grant = await self._authorization(domain, params)
        except _Redirect as to:
            return redirect(to.location)
        prompt = params.get("prompt", "")
        username = await self._login_session(domain, request) if prompt not in ("login", "consent", "select_account") else None
        if username is not None:
            user = await self.app.store.read(lambda txn: self.db.find_user(txn, domain.pool, username))
            if user is not None and user.get("Enabled", True) and user["UserStatus"] == "CONFIRMED":
                return await self._grant(domain, client, user, grant, renew=False)
        if prompt == "none":  # the app asked for no sign-in page
            state = {"state": grant["State"]} if grant.get("State") is not None else {}
            return redirect(with_params(grant["RedirectUri"], {"error": "login_required", **state}))
        return redirect(f"{domain.base}/login?{request.query_string.decode('latin-1')}")

    async def _login_session(self, domain: Domain, request: HttpRequest) -> str | None:
        key = _cookie(request.headers, _COOKIE)
        if not key:
            return None
        raw = await self.app.store.read(lambda txn: txn.get(LOGIN_SESSIONS, pack(key)))
        record = loads(raw) if raw is not None else None
        if record is None or record["PoolId"] != domain.pool["Id"] or record["Expires"] < time.time():
            return None
        return str(record["Username"])

    async def _grant(self, domain: Domain, client: dict[str, Any], user: dict[str, Any], grant: dict[str, Any],
                     renew: bool = True) -> WireResponse:  # fmt: skip
        """Send the browser back to the app with a code (or tokens, implicit flow)."""
        extra: list[tuple[str, str]] = []
        if renew:
            key = secrets.token_urlsafe(32)
            record = {"PoolId": domain.pool["Id"], "Username": user["Username"], "Expires": time.time() + LOGIN_SESSION_SECONDS}
            await self.app.store.write(lambda txn: txn.put(LOGIN_SESSIONS, pack(key), orjson.dumps(record)))
            path = domain.base or "/"
            extra.append(("Set-Cookie", f"{_COOKIE}={key}; Path={path}; Max-Age={LOGIN_SESSION_SECONDS}; HttpOnly; SameSite=Lax"))
        state = {"state": grant["State"]} if grant.get("State") is not None else {}
        if grant["ResponseType"] == "token":
            result = await self._tokens(domain.pool, client, user, "TokenGeneration_HostedAuth", None, refresh=False,
                                        scopes=grant["Scopes"], nonce=grant.get("Nonce"))  # fmt: skip
            fragment = {"access_token": result["AccessToken"], "token_type": "Bearer", "expires_in": str(result["ExpiresIn"])}
            if "openid" in grant["Scopes"]:
                fragment = {"id_token": result["IdToken"], **fragment}
            return redirect(with_params(grant["RedirectUri"], {**fragment, **state}, fragment=True), extra)
        code = secrets.token_urlsafe(27)
        record = {**grant, "Username": user["Username"], "Expires": time.time() + CODE_SECONDS}
        await self.app.store.write(lambda txn: txn.put(AUTH_CODES, pack(code), orjson.dumps(record)))
        await self._sweep_now_and_then()
        return redirect(with_params(grant["RedirectUri"], {"code": code, **state}), extra)

    # -- login ---------------------------------------------------------------------------------

    def _login_form(self, domain: Domain, request: HttpRequest, error: str = "", notice: str = "") -> WireResponse:
        csrf = secrets.token_urlsafe(24)
        query_text = request.query_string.decode("latin-1")
        action = html.escape(f"{domain.base}/login?{query_text}")
        note = f'<p class="error" id="loginErrorMessage">{html.escape(error)}</p>' if error else ""
        note += f'<p class="notice">{html.escape(notice)}</p>' if notice else ""
        links = (f'<p><a href="{html.escape(f"{domain.base}/forgotPassword?{query_text}")}">Forgot your password?</a> '
                 f'<a href="{html.escape(f"{domain.base}/signup?{query_text}")}">Sign up</a></p>')  # fmt: skip
        body = (f'{note}<form method="post" action="{action}" name="cognitoSignInForm">'
                f'<input type="hidden" name="_csrf" value="{csrf}">'
                '<label for="signInFormUsername">Username</label><input id="signInFormUsername" name="username" type="text" autocomplete="username">'
                '<label for="signInFormPassword">Password</label><input id="signInFormPassword" name="password" type="password" autocomplete="current-password">'
                '<button type="submit" name="signInSubmitButton">Sign in</button></form>')  # fmt: skip
        cookie = ("Set-Cookie", f"XSRF-TOKEN={csrf}; Path={domain.base or '/'}; HttpOnly; SameSite=Lax")
        return page("Sign in", body + links, extra=[cookie])

    def _mfa_form(self, domain: Domain, request: HttpRequest, session: str, error: str = "") -> WireResponse:
        action = html.escape(f"{domain.base}/login?{request.query_string.decode('latin-1')}")
        note = f'<p class="error">{html.escape(error)}</p>' if error else ""
        body = (f'{note}<form method="post" action="{action}"><input type="hidden" name="session" value="{html.escape(session)}">'
                '<label for="totpCode">Code from your authenticator app</label>'
                '<input id="totpCode" name="totpCode" inputmode="numeric" autocomplete="one-time-code">'
                '<button type="submit" name="signInSubmitButton">Sign in</button></form>')  # fmt: skip
        return page("Multi-factor authentication", body)

    async def hosted_login(self, domain: Domain, request: HttpRequest) -> WireResponse:
        """``GET /login`` shows the sign-in form; ``POST /login`` signs in and
        sends the browser back to the app's redirect_uri with a code and state."""
        try:
            client, grant = await self._authorization(domain, query(request))
        except _Redirect as to:
            return redirect(to.location)
        if request.method in ("GET", "HEAD"):
            return self._login_form(domain, request)
        if request.method != "POST":
            return page("Method not allowed", "", 405)
        fields = form(request)
        cookie_csrf = _cookie(request.headers, "XSRF-TOKEN")
        if cookie_csrf and fields.get("_csrf") and not secrets.compare_digest(cookie_csrf, fields["_csrf"]):
            return self._login_form(domain, request, "Your session has expired. Please sign in again.")
        if "session" in fields:
            if "newPassword" in fields:
                return await self._login_new_password(domain, request, client, grant, fields)
            return await self._login_mfa(domain, request, client, grant, fields)
        try:
            user = await self._password_sign_in(domain, client, fields.get("username", ""), fields.get("password", ""))
            if user["UserStatus"] == "FORCE_CHANGE_PASSWORD":
                session = await self._new_session(domain.pool, client, user, "NEW_PASSWORD_REQUIRED")
                return self._new_password_form(domain, request, session)
            return await self._finish_login(domain, request, client, grant, user)
        except AwsError as err:
            return self._login_form(domain, request, _login_message(err))

    async def _finish_login(self, domain: Domain, request: HttpRequest, client: dict[str, Any], grant: dict[str, Any],
                            user: dict[str, Any]) -> WireResponse:  # fmt: skip
        """MFA if the user has it, else back to the app."""
        mfa = await self._mfa_challenge(domain.pool, client, user)
        if mfa is not None:
            if mfa["ChallengeName"] != "SOFTWARE_TOKEN_MFA":
                return self._login_form(domain, request, "Set up multi-factor authentication through your app first.")
            return self._mfa_form(domain, request, mfa["Session"])
        await self._trigger(domain.pool, "PostAuthentication_Authentication", user, None, {"newDeviceUsed": False}, client["ClientId"])
        return await self._grant(domain, client, user, grant)

    def _new_password_form(self, domain: Domain, request: HttpRequest, session: str, error: str = "") -> WireResponse:
        action = html.escape(f"{domain.base}/login?{request.query_string.decode('latin-1')}")
        note = f'<p class="error">{html.escape(error)}</p>' if error else ""
        body = (f'{note}<p>Please enter a new password.</p><form method="post" action="{action}">'
                f'<input type="hidden" name="session" value="{html.escape(session)}">'
                '<label for="newPassword">New password</label><input id="newPassword" name="newPassword" type="password" autocomplete="new-password">'
                '<button type="submit" name="reset_password">Send</button></form>')  # fmt: skip
        return page("Change password", body)

    async def _login_new_password(self, domain: Domain, request: HttpRequest, client: dict[str, Any], grant: dict[str, Any],
                                  fields: dict[str, str]) -> WireResponse:  # fmt: skip
        """A user with a temporary password sets their own, then signs in."""
        try:
            session = await self._peek_session(fields["session"], "NEW_PASSWORD_REQUIRED")
            if session["ClientId"] != client["ClientId"]:
                raise AwsError("NotAuthorizedException", "Invalid session for the user, session is expired.", 400)
            user = await self.db.user(domain.pool, session["Username"])
        except AwsError as err:
            return self._login_form(domain, request, _login_message(err))
        try:
            users.check_password(domain.pool["Policies"]["PasswordPolicy"], fields["newPassword"])
        except AwsError as err:
            return self._new_password_form(domain, request, fields["session"], err.message)
        old = orjson.loads(orjson.dumps(user))
        users.set_password(user, self._pool_name(domain.pool), fields["newPassword"])
        user["UserStatus"] = "CONFIRMED"
        await self._save_user(domain.pool, user, old)
        await self._drop_session(fields["session"])
        try:
            return await self._finish_login(domain, request, client, grant, user)
        except AwsError as err:
            return self._login_form(domain, request, _login_message(err))

    async def _password_sign_in(self, domain: Domain, client: dict[str, Any], username: str, password: str) -> dict[str, Any]:
        """The user, after the checks and triggers InitiateAuth applies to a password."""
        user = await self.app.store.read(lambda txn: self.db.find_user(txn, domain.pool, username)) if username else None
        if user is None:
            raise AwsError("NotAuthorizedException", "Incorrect username or password.", 400)
        await self._before_password(domain.pool, client, user, {})
        if not users.password_matches(user, password):
            raise AwsError("NotAuthorizedException", "Incorrect username or password.", 400)
        status = user["UserStatus"]
        if status == "UNCONFIRMED":
            raise AwsError("UserNotConfirmedException", "User is not confirmed.", 400)
        if status == "RESET_REQUIRED":
            raise AwsError("PasswordResetRequiredException", "Password reset required for the user", 400)
        return user

    async def _login_mfa(self, domain: Domain, request: HttpRequest, client: dict[str, Any], grant: dict[str, Any],
                         fields: dict[str, str]) -> WireResponse:  # fmt: skip
        try:
            user = await self._answer_totp(domain.pool, client, fields["session"], fields.get("totpCode", ""))
        except AwsError as err:
            if err.code == "CodeMismatchException":
                return self._mfa_form(domain, request, fields["session"], "Invalid code received for user")
            return self._login_form(domain, request, _login_message(err))
        try:
            await self._trigger(domain.pool, "PostAuthentication_Authentication", user, None, {"newDeviceUsed": False}, client["ClientId"])
            return await self._grant(domain, client, user, grant)
        except AwsError as err:
            return self._login_form(domain, request, _login_message(err))

    # -- logout and errors --------------------------------------------------------------------------

    async def hosted_logout(self, domain: Domain, request: HttpRequest) -> WireResponse:
        """``GET /logout``: end the browser's session, back to logout_uri (or to sign-in)."""
        params = query(request)
        client_id = params.get("client_id", "")
        client = await self._domain_client(domain, client_id)
        if client is None:
            return redirect(with_params(f"{domain.base}/error", {"error": "invalid_request", "error_description": "Invalid client_id"}))
        logout_uri = params.get("logout_uri")
        if logout_uri is not None and logout_uri not in (client.get("LogoutURLs") or []):
            return redirect(with_params(f"{domain.base}/error", {"error": "redirect_mismatch", "client_id": client_id}))
        if logout_uri is None and "redirect_uri" not in params:
            return redirect(with_params(f"{domain.base}/error", {"error": "invalid_request", "error_description": "logout_uri is required"}))
        key = _cookie(request.headers, _COOKIE)
        if key:
            await self.app.store.write(lambda txn: txn.delete(LOGIN_SESSIONS, pack(key)))
        clear = [("Set-Cookie", f"{_COOKIE}=; Path={domain.base or '/'}; Max-Age=0; HttpOnly; SameSite=Lax")]
        if logout_uri is not None:
            return redirect(logout_uri, clear)
        try:
            await self._authorization(domain, params)
        except _Redirect as to:
            return redirect(to.location, clear)
        return redirect(f"{domain.base}/login?{request.query_string.decode('latin-1')}", clear)

    async def hosted_error(self, domain: Domain, request: HttpRequest) -> WireResponse:
        params = query(request)
        error = params.get("error", "invalid_request")
        detail = params.get("error_description", "")
        body = f'<p class="error">An error was encountered with the requested page.</p><p id="error">{html.escape(error)}</p>'
        if detail:
            body += f"<p>{html.escape(detail)}</p>"
        return page("Error", body, 400)


class _Redirect(Exception):
    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


def _login_message(err: AwsError) -> str:
    if err.code == "UserNotConfirmedException":
        return "User is not confirmed."
    if err.code == "PasswordResetRequiredException":
        return "Password reset required for the user."
    return err.message or "Incorrect username or password."

