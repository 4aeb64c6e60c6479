"""The hosted UI's account pages: ``/signup`` and ``/confirm`` (sign up, then the
emailed code), ``/forgotPassword`` and ``/confirmForgotPassword``. They run the
same operations as the API (SignUp, ConfirmSignUp, ForgotPassword,
ConfirmForgotPassword) with their triggers, password policy and codes."""

from __future__ import annotations

import html
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from nubes.aws.errors import AwsError
from nubes.aws.protocol.types import WireResponse
from nubes.services.base import HttpRequest, RequestContext
from nubes.services.cognito_idp import users
from nubes.services.cognito_idp.hosted_ui import HostedUi, _Redirect, page, redirect
from nubes.services.cognito_idp.oauth import Domain, form, query


def _form_page(title: str, domain: Domain, request: HttpRequest, path: str, fields: list[tuple[str, str, str, str]],
               button: str, error: str = "", notice: str = "") -> WireResponse:  # fmt: skip
    """A page with one form posting to ``path`` (the authorize parameters kept);
    ``fields`` are (name, label, type, value)."""
    action = html.escape(f"{domain.base}{path}?{request.query_string.decode('latin-1')}")
    note = f'<p class="error">{html.escape(error)}</p>' if error else ""
    note += f'<p class="notice">{html.escape(notice)}</p>' if notice else ""
    inputs = "".join(
        f'<input type="hidden" name="{name}" value="{html.escape(value)}">' if kind == "hidden" else
        f'<label for="{name}">{html.escape(label)}</label><input id="{name}" name="{name}" type="{kind}" value="{html.escape(value)}">'
        for name, label, kind, value in fields
    )  # fmt: skip
    return page(title, f'{note}<form method="post" action="{action}">{inputs}<button type="submit">{html.escape(button)}</button></form>')


class HostedAccounts(HostedUi):
    """Sign-up and forgotten passwords in the browser."""

    def _account_pages(self) -> dict[str, Callable[[Domain, HttpRequest], Awaitable[WireResponse]]]:
        return {"/signup": self.hosted_signup, "/confirm": self.hosted_confirm,
                "/forgotPassword": self.hosted_forgot_password, "/confirmForgotPassword": self.hosted_confirm_forgot_password}  # fmt: skip

    def _context(self, domain: Domain) -> RequestContext:
        region = str(domain.pool["Id"]).split("_", 1)[0]
        return RequestContext(self.app, "cognito-idp", "HostedUi", region, self.app.settings.account_id, str(uuid.uuid4()))

    @staticmethod
    def _with_secret(client: dict[str, Any], username: str, params: dict[str, Any]) -> dict[str, Any]:
        """The hosted UI knows the client's secret: it signs its own calls."""
        if client.get("ClientSecret"):
            params["SecretHash"] = users.secret_hash(client["ClientSecret"], username, client["ClientId"])
        return params

    async def _client_for_page(self, domain: Domain, request: HttpRequest) -> dict[str, Any]:
        client, _ = await self._authorization(domain, query(request))
        return client

    async def hosted_signup(self, domain: Domain, request: HttpRequest) -> WireResponse:
        """``/signup``: username, email, password; then the code sent by email."""
        try:
            client = await self._client_for_page(domain, request)
        except _Redirect as to:
            return redirect(to.location)
        fields = [("username", "Username", "text", ""), ("email", "Email", "email", ""), ("password", "Password", "password", "")]
        if request.method != "POST":
            return _form_page("Sign up", domain, request, "/signup", fields, "Sign up")
        data = form(request)
        username, email = data.get("username", ""), data.get("email", "")
        params = {"ClientId": client["ClientId"], "Username": username, "Password": data.get("password", ""),
                  "UserAttributes": [{"Name": "email", "Value": email}] if email else []}  # fmt: skip
        try:
            if not username:
                raise AwsError("InvalidParameterException", "Username cannot be empty.", 400)
            out = await self.sign_up(self._context(domain), self._with_secret(client, username, params))
        except AwsError as err:
            kept = [("username", "Username", "text", username), ("email", "Email", "email", email), ("password", "Password", "password", "")]
            return _form_page("Sign up", domain, request, "/signup", kept, "Sign up", error=err.message)
        if out["UserConfirmed"]:
            return self._login_form(domain, request, notice="Your account is ready. Sign in.")
        return _form_page("Confirm your account", domain, request, "/confirm",
                          [("username", "", "hidden", username), ("code", "Verification code", "text", "")], "Confirm",
                          notice="We have sent a code by email. Enter it below to confirm your account.")  # fmt: skip

    async def hosted_confirm(self, domain: Domain, request: HttpRequest) -> WireResponse:
        """``POST /confirm``: the emailed code confirms the account."""
        try:
            client = await self._client_for_page(domain, request)
        except _Redirect as to:
            return redirect(to.location)
        data = form(request) if request.method == "POST" else {}
        username = data.get("username", "")
        params = {"ClientId": client["ClientId"], "Username": username, "ConfirmationCode": data.get("code", "")}
        try:
            if not username or not params["ConfirmationCode"]:
                raise AwsError("InvalidParameterException", "Enter the code we sent you.", 400)
            await self.confirm_sign_up(self._context(domain), self._with_secret(client, username, params))
        except AwsError as err:
            return _form_page("Confirm your account", domain, request, "/confirm",
                              [("username", "", "hidden", username), ("code", "Verification code", "text", "")], "Confirm", error=err.message)  # fmt: skip
        return self._login_form(domain, request, notice="Your account is confirmed. Sign in.")

    async def hosted_forgot_password(self, domain: Domain, request: HttpRequest) -> WireResponse:
        """``/forgotPassword``: a reset code by email."""
        try:
            client = await self._client_for_page(domain, request)
        except _Redirect as to:
            return redirect(to.location)
        if request.method != "POST":
            return _form_page("Forgot your password?", domain, request, "/forgotPassword", [("username", "Username", "text", "")], "Reset my password")
        username = form(request).get("username", "")
        try:
            if not username:
                raise AwsError("InvalidParameterException", "Username cannot be empty.", 400)
            await self.forgot_password(self._context(domain), self._with_secret(client, username, {"ClientId": client["ClientId"], "Username": username}))
        except AwsError as err:
            return _form_page("Forgot your password?", domain, request, "/forgotPassword", [("username", "Username", "text", username)],
                              "Reset my password", error=err.message)  # fmt: skip
        return self._reset_form(domain, request, username)

    def _reset_form(self, domain: Domain, request: HttpRequest, username: str, error: str = "") -> WireResponse:
        return _form_page("Reset your password", domain, request, "/confirmForgotPassword",
                          [("username", "", "hidden", username), ("code", "Code", "text", ""), ("password", "New password", "password", "")],
                          "Change password", error=error, notice="" if error else "We have sent a password reset code by email.")  # fmt: skip

    async def hosted_confirm_forgot_password(self, domain: Domain, request: HttpRequest) -> WireResponse:
        """``POST /confirmForgotPassword``: the code and a new password."""
        try:
            client = await self._client_for_page(domain, request)
        except _Redirect as to:
            return redirect(to.location)
        data = form(request) if request.method == "POST" else {}
        username = data.get("username", "")
        params = {"ClientId": client["ClientId"], "Username": username, "ConfirmationCode": data.get("code", ""), "Password": data.get("password", "")}
        try:
            if not username or not params["ConfirmationCode"]:
                raise AwsError("InvalidParameterException", "Enter the code we sent you.", 400)
            await self.confirm_forgot_password(self._context(domain), self._with_secret(client, username, params))
        except AwsError as err:
            return self._reset_form(domain, request, username, err.message)
        return self._login_form(domain, request, notice="Your password has been changed. Sign in.")
