"""Sign-up, confirmation, sign-in flows (password, SRP, refresh, new-password
challenge), token-authenticated user operations, and Lambda triggers."""

from __future__ import annotations

import base64
import logging
import secrets
import time
import uuid
from typing import TYPE_CHECKING, Any

import orjson

from nubes.aws.errors import AwsError
from nubes.services.base import Provider, RequestContext
from nubes.services.cognito_idp import srp, tokens, users
from nubes.services.cognito_idp.store import (
    AUTH_CODES,
    LOGIN_SESSIONS,
    REFRESH,
    SESSIONS,
    loads,
    user_not_found,
)
from nubes.storage.base import Txn
from nubes.storage.keys import pack

if TYPE_CHECKING:
    from nubes.services.cognito_idp.store import CognitoStore

log = logging.getLogger(__name__)
SESSION_SECONDS = 180
_TRIGGER_KEYS = {"PreSignUp": "PreSignUp", "PostConfirmation": "PostConfirmation", "PreAuthentication": "PreAuthentication",
                 "PostAuthentication": "PostAuthentication", "TokenGeneration": "PreTokenGeneration",
                 "CustomMessage": "CustomMessage", "DefineAuthChallenge": "DefineAuthChallenge",
                 "CreateAuthChallenge": "CreateAuthChallenge", "VerifyAuthChallengeResponse": "VerifyAuthChallengeResponse"}  # fmt: skip
_TRIGGER_NAMES = {"TokenGeneration": "PreTokenGeneration"}
_FLOW_NAMES = {
    "USER_PASSWORD_AUTH": ("ALLOW_USER_PASSWORD_AUTH", "USER_PASSWORD_AUTH"),
    "ADMIN_USER_PASSWORD_AUTH": ("ALLOW_ADMIN_USER_PASSWORD_AUTH", "ADMIN_NO_SRP_AUTH"),
    "ADMIN_NO_SRP_AUTH": ("ALLOW_ADMIN_USER_PASSWORD_AUTH", "ADMIN_NO_SRP_AUTH"),
    "USER_SRP_AUTH": ("ALLOW_USER_SRP_AUTH",),
    "REFRESH_TOKEN_AUTH": ("ALLOW_REFRESH_TOKEN_AUTH",),
    "REFRESH_TOKEN": ("ALLOW_REFRESH_TOKEN_AUTH",),
    "CUSTOM_AUTH": ("ALLOW_CUSTOM_AUTH", "CUSTOM_AUTH_FLOW_ONLY"),
}


def _bad_login() -> AwsError:
    return AwsError("NotAuthorizedException", "Incorrect username or password.", 400)


def _timestamp_ok(value: str) -> bool:
    try:
        time.strptime(value, "%a %b %d %H:%M:%S UTC %Y")
        return True
    except ValueError:
        return False


class AuthFlows(Provider):
    """Mixed into the provider; ``self.db`` is the CognitoStore."""

    db: CognitoStore

    # -- helpers ----------------------------------------------------------------------

    def _pool_name(self, pool: dict[str, Any]) -> str:
        return str(pool["Id"]).split("_", 1)[1]

    def _check_client(self, client: dict[str, Any], username: str, secret_hash: str | None) -> None:
        secret = client.get("ClientSecret")
        if secret is None:
            return
        if not secret_hash or secret_hash != users.secret_hash(secret, username, client["ClientId"]):
            raise AwsError("NotAuthorizedException", f"Unable to verify secret hash for client {client['ClientId']}", 400)

    def _check_flow(self, client: dict[str, Any], flow: str) -> None:
        allowed = set(client.get("ExplicitAuthFlows") or [])
        if not allowed & set(_FLOW_NAMES.get(flow, (flow,))):
            raise AwsError("InvalidParameterException", f"{flow} flow not enabled for this client", 400)

    async def _trigger(self, pool: dict[str, Any], source: str, user: dict[str, Any], client_metadata: Any,
                       request: dict[str, Any] | None = None, client_id: str | None = None) -> dict[str, Any]:  # fmt: skip
        """Invoke the pool's Lambda trigger for ``source`` (if any); its ``response``."""
        kind = source.split("_", 1)[0]
        config = pool.get("LambdaConfig") or {}
        arn = config.get(_TRIGGER_KEYS[kind])
        if kind == "TokenGeneration" and config.get("PreTokenGenerationConfig"):
            arn = config["PreTokenGenerationConfig"].get("LambdaArn") or arn
        if not arn:
            return {}
        attrs = users.attributes(user)
        attrs["cognito:user_status"] = user.get("UserStatus", "UNCONFIRMED")
        event = {
            "version": self._token_trigger_version(pool) if kind == "TokenGeneration" else "1",
            "region": pool["Id"].split("_")[0], "userPoolId": pool["Id"], "userName": user["Username"],
            "callerContext": {"awsSdkVersion": "aws-sdk-unknown-unknown", "clientId": client_id or "CLIENT_ID_NOT_APPLICABLE"},
            "triggerSource": source,
            "request": {"userAttributes": attrs, **({"clientMetadata": client_metadata} if client_metadata else {}), **(request or {})},
            "response": {},
        }  # fmt: skip
        return await self._invoke_trigger(pool, arn, _TRIGGER_NAMES.get(kind, kind), event)

    @staticmethod
    def _token_trigger_version(pool: dict[str, Any]) -> str:
        """The pre token generation event version: "1", or "2"/"3" (access token
        customization; "3" also for machine-to-machine tokens)."""
        version = ((pool.get("LambdaConfig") or {}).get("PreTokenGenerationConfig") or {}).get("LambdaVersion") or "V1_0"
        return {"V2_0": "2", "V3_0": "3"}.get(str(version), "1")

    async def _invoke_trigger(self, pool: dict[str, Any], arn: str, name: str, event: dict[str, Any]) -> dict[str, Any]:
        """Invoke a trigger function; its ``response``, or the error AWS gives for it."""
        try:
            out = await self.app.call("lambda", "Invoke", {"FunctionName": arn, "Payload": orjson.dumps(event)},
                                      region=pool["Id"].split("_")[0])  # fmt: skip
        except AwsError as err:
            raise AwsError("UnexpectedLambdaException", f"{name} invocation failed due to error {err.code}.", 400) from None
        payload = out.get("Payload") or b"{}"
        body = orjson.loads(payload if isinstance(payload, bytes) else payload.encode()) if payload else {}
        if out.get("FunctionError"):
            message = body.get("errorMessage", "") if isinstance(body, dict) else str(body)
            raise AwsError("UserLambdaValidationException", f"{name} failed with error {message}.", 400)
        if not isinstance(body, dict):
            raise AwsError("InvalidLambdaResponseException", f"Invalid {name} response", 400)
        response: dict[str, Any] = body.get("response") or {}
        return response

    async def _send_code_email(self, ctx: RequestContext, pool: dict[str, Any], user: dict[str, Any], source: str,
                               code: str, subject: str, body: str) -> dict[str, str] | None:  # fmt: skip
        """Deliver a code through SES (it lands in ``/_nubes/ses``); the delivery details."""
        email = users.attributes(user).get("email")
        if not email:
            return None
        custom = await self._trigger(pool, source, user, None, {"codeParameter": "{####}", "usernameParameter": user["Username"]})
        text = (custom.get("emailMessage") or body).replace("{####}", code)
        subject = custom.get("emailSubject") or subject
        sender = ((pool.get("EmailConfiguration") or {}).get("From")) or "no-reply@verificationemail.com"
        log.info("cognito code for %s in %s: %s", user["Username"], pool["Id"], code)
        try:
            await self.app.call("sesv2", "SendEmail", {
                "FromEmailAddress": sender, "Destination": {"ToAddresses": [email]},
                "Content": {"Simple": {"Subject": {"Data": subject}, "Body": {"Text": {"Data": text}}}},
            }, region=ctx.region)  # fmt: skip
        except AwsError as err:
            log.warning("cognito could not send the code email: %s", err)
        return {"Destination": users.mask(email), "DeliveryMedium": "EMAIL", "AttributeName": "email"}

    async def _save_user(self, pool: dict[str, Any], user: dict[str, Any], old: dict[str, Any] | None = None) -> None:
        await self.app.store.write(lambda txn: self.db.put_user(txn, pool, user, old))

    # -- sign-up and confirmation ----------------------------------------------------------

    async def sign_up(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        client = await self.db.client(params["ClientId"])
        pool = await self.db.pool(client["UserPoolId"])
        given = params["Username"]
        self._check_client(client, given, params.get("SecretHash"))
        users.check_password(pool["Policies"]["PasswordPolicy"], params["Password"])
        now = time.time()
        username = self._username_for(pool, given)  # type: ignore[attr-defined]
        sub = str(uuid.uuid4())
        user: dict[str, Any] = {"Username": username, "Attributes": [{"Name": "sub", "Value": sub}],
                                "UserCreateDate": now, "UserLastModifiedDate": now, "Enabled": True, "UserStatus": "UNCONFIRMED"}  # fmt: skip
        attrs = list(params.get("UserAttributes") or [])
        if username != given:
            field = "email" if "@" in given else "phone_number"
            if not any(a["Name"] == field for a in attrs):
                attrs.append({"Name": field, "Value": given})
        users.set_attributes(user, attrs, self._schema(pool))  # type: ignore[attr-defined]
        users.set_password(user, self._pool_name(pool), params["Password"])
        pre = await self._trigger(pool, "PreSignUp_SignUp", user, params.get("ClientMetadata"),
                                  {"validationData": {a["Name"]: a["Value"] for a in params.get("ValidationData") or []} or None},
                                  client["ClientId"])  # fmt: skip
        if pre.get("autoConfirmUser"):
            user["UserStatus"] = "CONFIRMED"
        if pre.get("autoVerifyEmail"):
            users.set_attributes(user, [{"Name": "email_verified", "Value": "true"}], set())
        if pre.get("autoVerifyPhone"):
            users.set_attributes(user, [{"Name": "phone_number_verified", "Value": "true"}], set())
        code = users.new_code(user, "signup") if user["UserStatus"] == "UNCONFIRMED" else None

        def create(txn: Txn) -> None:
            if self.db.find_user(txn, pool, given) is not None:
                raise AwsError("UsernameExistsException", "User already exists", 400)
            self.db.put_user(txn, pool, user)

        await self.app.store.write(create)
        out: dict[str, Any] = {"UserConfirmed": user["UserStatus"] == "CONFIRMED", "UserSub": sub}
        if code is not None and "email" in (pool.get("AutoVerifiedAttributes") or []):
            details = await self._send_code_email(ctx, pool, user, "CustomMessage_SignUp", code, "Your verification code",
                                                  "Your confirmation code is {####}")  # fmt: skip
            if details:
                out["CodeDeliveryDetails"] = details
        return out

    async def confirm_sign_up(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        client = await self.db.client(params["ClientId"])
        pool = await self.db.pool(client["UserPoolId"])
        self._check_client(client, params["Username"], params.get("SecretHash"))
        user = await self.db.user(pool, params["Username"])
        old = orjson.loads(orjson.dumps(user))
        if user["UserStatus"] == "CONFIRMED" and not params.get("ForceAliasCreation"):
            raise AwsError("NotAuthorizedException", "User cannot be confirmed. Current status is CONFIRMED", 400)
        users.use_code(user, "signup", params["ConfirmationCode"])
        user["UserStatus"] = "CONFIRMED"
        if "email" in users.attributes(user):
            users.set_attributes(user, [{"Name": "email_verified", "Value": "true"}], set())
        await self._save_user(pool, user, old)
        await self._trigger(pool, "PostConfirmation_ConfirmSignUp", user, params.get("ClientMetadata"), None, client["ClientId"])
        return {}

    async def resend_confirmation_code(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        client = await self.db.client(params["ClientId"])
        pool = await self.db.pool(client["UserPoolId"])
        self._check_client(client, params["Username"], params.get("SecretHash"))
        user = await self.db.user(pool, params["Username"])
        if user["UserStatus"] == "CONFIRMED":
            raise AwsError("InvalidParameterException", "User is already confirmed.", 400)
        code = users.new_code(user, "signup")
        await self._save_user(pool, user)
        details = await self._send_code_email(ctx, pool, user, "CustomMessage_ResendCode", code, "Your verification code",
                                              "Your confirmation code is {####}")  # fmt: skip
        return {"CodeDeliveryDetails": details or {}}

    async def forgot_password(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        client = await self.db.client(params["ClientId"])
        pool = await self.db.pool(client["UserPoolId"])
        self._check_client(client, params["Username"], params.get("SecretHash"))
        user = await self.db.user(pool, params["Username"])
        code = users.new_code(user, "forgot")
        await self._save_user(pool, user)
        details = await self._send_code_email(ctx, pool, user, "CustomMessage_ForgotPassword", code, "Your password reset code",
                                              "Your password reset code is {####}")  # fmt: skip
        if details is None:
            raise AwsError("InvalidParameterException", "Cannot reset password for the user as there is no registered/verified email or phone_number", 400)
        return {"CodeDeliveryDetails": details}

    async def confirm_forgot_password(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        client = await self.db.client(params["ClientId"])
        pool = await self.db.pool(client["UserPoolId"])
        self._check_client(client, params["Username"], params.get("SecretHash"))
        users.check_password(pool["Policies"]["PasswordPolicy"], params["Password"])
        user = await self.db.user(pool, params["Username"])
        users.use_code(user, "forgot", params["ConfirmationCode"])
        users.set_password(user, self._pool_name(pool), params["Password"])
        user["UserStatus"] = "CONFIRMED"
        await self._save_user(pool, user)
        await self._trigger(pool, "PostConfirmation_ConfirmForgotPassword", user, params.get("ClientMetadata"), None, client["ClientId"])
        return {}

    # -- sign-in ------------------------------------------------------------------------------

    async def initiate_auth(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        client = await self.db.client(params["ClientId"])
        pool = await self.db.pool(client["UserPoolId"])
        return await self._initiate(ctx, pool, client, params, admin=False)

    async def admin_initiate_auth(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        client = await self.db.client(params["ClientId"])
        pool = await self.db.pool(params["UserPoolId"])
        if client["UserPoolId"] != pool["Id"]:
            raise AwsError("ResourceNotFoundException", f"User pool client {client['ClientId']} does not exist.", 400)
        return await self._initiate(ctx, pool, client, params, admin=True)

    async def _initiate(self, ctx: RequestContext, pool: dict[str, Any], client: dict[str, Any], params: dict[str, Any],
                        admin: bool) -> dict[str, Any]:  # fmt: skip
        flow = params["AuthFlow"]
        auth = params.get("AuthParameters") or {}
        self._check_flow(client, flow)
        if flow in ("REFRESH_TOKEN_AUTH", "REFRESH_TOKEN"):
            return await self._refresh(pool, client, auth)
        username = auth.get("USERNAME")
        if not username:
            raise AwsError("InvalidParameterException", "Missing required parameter USERNAME", 400)
        self._check_client(client, username, auth.get("SECRET_HASH"))
        user = await self.app.store.read(lambda txn: self.db.find_user(txn, pool, username))
        if user is None:
            raise user_not_found()
        if flow == "USER_SRP_AUTH":
            return await self._srp_start(pool, client, user, auth)
        if flow not in ("USER_PASSWORD_AUTH", "ADMIN_USER_PASSWORD_AUTH", "ADMIN_NO_SRP_AUTH"):
            return await self._initiate_other(pool, client, user, params, admin)
        if (flow == "USER_PASSWORD_AUTH") == admin:
            raise AwsError("InvalidParameterException", f"Initiate Auth method not supported: {flow}", 400)
        await self._before_password(pool, client, user, params)
        if not users.password_matches(user, auth.get("PASSWORD", "")):
            raise _bad_login()
        return await self._after_password(pool, client, user, params)

    async def _before_password(self, pool: dict[str, Any], client: dict[str, Any], user: dict[str, Any], params: dict[str, Any]) -> None:
        if not user.get("Enabled", True):
            raise AwsError("NotAuthorizedException", "User is disabled.", 400)
        await self._trigger(pool, "PreAuthentication_Authentication", user, params.get("ClientMetadata"),
                            {"validationData": None}, client["ClientId"])  # fmt: skip

    async def _after_password(self, pool: dict[str, Any], client: dict[str, Any], user: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        status = user["UserStatus"]
        if status == "UNCONFIRMED":
            raise AwsError("UserNotConfirmedException", "User is not confirmed.", 400)
        if status == "RESET_REQUIRED":
            raise AwsError("PasswordResetRequiredException", "Password reset required for the user", 400)
        if status == "FORCE_CHANGE_PASSWORD":
            session = await self._new_session(pool, client, user, "NEW_PASSWORD_REQUIRED")
            attrs = {k: v for k, v in users.attributes(user).items() if k not in ("sub", "email_verified")}
            return {"ChallengeName": "NEW_PASSWORD_REQUIRED", "Session": session,
                    "ChallengeParameters": {"USER_ID_FOR_SRP": user["Username"], "requiredAttributes": "[]",
                                            "userAttributes": orjson.dumps(attrs).decode()}}  # fmt: skip
        mfa = await self._mfa_challenge(pool, client, user)
        if mfa is not None:
            return mfa
        return await self._signed_in(pool, client, user, params)

    async def _signed_in(self, pool: dict[str, Any], client: dict[str, Any], user: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        """Tokens for a user past every challenge, and the PostAuthentication trigger."""
        result = await self._tokens(pool, client, user, "TokenGeneration_Authentication", params.get("ClientMetadata"))
        await self._trigger(pool, "PostAuthentication_Authentication", user, params.get("ClientMetadata"),
                            {"newDeviceUsed": False}, client["ClientId"])  # fmt: skip
        return {"AuthenticationResult": result, "ChallengeParameters": {}}

    async def _mfa_challenge(self, pool: dict[str, Any], client: dict[str, Any], user: dict[str, Any]) -> dict[str, Any] | None:
        """The MFA challenge a user past the password must answer (``mfa.MfaFlows``)."""
        return None

    async def _respond_other(self, pool: dict[str, Any], client: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        """Challenges answered by the MFA and custom-auth mixins."""
        raise AwsError("InvalidParameterException", f"Challenge {params['ChallengeName']} is not supported by nubes", 400)

    async def _custom_password_verified(self, pool: dict[str, Any], client: dict[str, Any], user: dict[str, Any],
                                        custom: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
        """A CUSTOM_AUTH sign-in's password checked (``custom_auth.CustomAuthFlows``)."""
        raise AwsError("InvalidParameterException", "Challenge PASSWORD_VERIFIER is not part of a custom sign-in", 400)

    async def _initiate_other(self, pool: dict[str, Any], client: dict[str, Any], user: dict[str, Any], params: dict[str, Any],
                              admin: bool) -> dict[str, Any]:  # fmt: skip
        """Flows beyond password and SRP (``custom_auth.CustomAuthFlows``)."""
        raise AwsError("InvalidParameterException", f"Initiate Auth method not supported: {params['AuthFlow']}", 400)

    async def _new_session(self, pool: dict[str, Any], client: dict[str, Any], user: dict[str, Any], challenge: str,
                           extra: dict[str, Any] | None = None, key: str | None = None) -> str:  # fmt: skip
        session = key or base64.b64encode(secrets.token_bytes(96)).decode()
        record = {"PoolId": pool["Id"], "ClientId": client["ClientId"], "Username": user["Username"],
                  "Challenge": challenge, "Expires": time.time() + SESSION_SECONDS, **(extra or {})}  # fmt: skip
        await self.app.store.write(lambda txn: txn.put(SESSIONS, pack(session), orjson.dumps(record)))
        await self._sweep_now_and_then()
        return session

    #: every how many new sessions/codes the expired ones are deleted
    SWEEP_EVERY = 256
    _since_sweep = 0

    async def _sweep_now_and_then(self) -> None:
        """Delete expired challenge sessions, authorization codes and hosted UI
        sign-ins (abandoned ones would otherwise stay forever)."""
        self._since_sweep += 1
        if self._since_sweep < self.SWEEP_EVERY:
            return
        self._since_sweep = 0
        now = time.time()

        def sweep(txn: Txn) -> None:
            for table in (SESSIONS, AUTH_CODES, LOGIN_SESSIONS):
                for key, raw in txn.scan(table):
                    if loads(raw).get("Expires", now) < now:
                        txn.delete(table, key)

        await self.app.store.write(sweep)

    async def _peek_session(self, key: str, challenge: str) -> dict[str, Any]:
        """A live session of ``challenge``, left in place (answers may be retried)."""
        raw = await self.app.store.read(lambda txn: txn.get(SESSIONS, pack(key)))
        record = loads(raw) if raw is not None else None
        if record is None or record["Challenge"] != challenge or record["Expires"] < time.time():
            raise AwsError("NotAuthorizedException", "Invalid session for the user, session is expired.", 400)
        return record

    async def _drop_session(self, key: str) -> None:
        await self.app.store.write(lambda txn: txn.delete(SESSIONS, pack(key)))

    async def _take_session(self, key: str, challenge: str) -> dict[str, Any]:
        def take(txn: Txn) -> dict[str, Any] | None:
            raw = txn.get(SESSIONS, pack(key))
            if raw is None:
                return None
            txn.delete(SESSIONS, pack(key))
            return loads(raw)

        record = await self.app.store.write(take)
        if record is None or record["Challenge"] != challenge or record["Expires"] < time.time():
            raise AwsError("NotAuthorizedException", "Invalid session for the user, session is expired.", 400)
        return record

    async def _srp_start(self, pool: dict[str, Any], client: dict[str, Any], user: dict[str, Any], auth: dict[str, str],
                         custom: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
        """The PASSWORD_VERIFIER challenge; ``custom`` carries a CUSTOM_AUTH sign-in's
        history when DefineAuthChallenge asked for the password."""
        if "SRP_A" not in auth:
            raise AwsError("InvalidParameterException", "Missing required parameter SRP_A", 400)
        if not user.get("SrpVerifier"):
            raise _bad_login()
        b, big_b = srp.server_challenge(user["SrpVerifier"])
        secret_block = base64.b64encode(secrets.token_bytes(64)).decode()
        extra = {"b": format(b, "x"), "B": format(big_b, "x"), "A": auth["SRP_A"], **({"Custom": custom} if custom else {})}
        await self._new_session(pool, client, user, "PASSWORD_VERIFIER", extra, key=secret_block)
        out: dict[str, Any] = {"ChallengeName": "PASSWORD_VERIFIER", "ChallengeParameters": {
            "SALT": user["SrpSalt"], "SECRET_BLOCK": secret_block, "SRP_B": format(big_b, "x"),
            "USERNAME": user["Username"], "USER_ID_FOR_SRP": user["Username"]}}  # fmt: skip
        if custom:
            out["Session"] = secret_block
        return out

    async def respond_to_auth_challenge(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        client = await self.db.client(params["ClientId"])
        pool = await self.db.pool(client["UserPoolId"])
        return await self._respond(pool, client, params)

    async def admin_respond_to_auth_challenge(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        client = await self.db.client(params["ClientId"])
        pool = await self.db.pool(params["UserPoolId"])
        return await self._respond(pool, client, params)

    async def _respond(self, pool: dict[str, Any], client: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        name = params["ChallengeName"]
        answers = params.get("ChallengeResponses") or {}
        self._check_client(client, answers.get("USERNAME", ""), answers.get("SECRET_HASH"))
        if name == "PASSWORD_VERIFIER":
            session = await self._take_session(answers.get("PASSWORD_CLAIM_SECRET_BLOCK", ""), name)
            user = await self.db.user(pool, session["Username"])
            if not session.get("Custom"):  # a custom sign-in ran PreAuthentication when it began
                await self._before_password(pool, client, user, params)
            key = srp.session_key(session["A"], int(session["b"], 16), int(session["B"], 16), user["SrpVerifier"])
            timestamp = answers.get("TIMESTAMP", "")
            if key is None or not _timestamp_ok(timestamp):
                raise _bad_login()
            expected = srp.claim_signature(key, self._pool_name(pool), user["Username"], answers["PASSWORD_CLAIM_SECRET_BLOCK"], timestamp)
            if not secrets.compare_digest(expected, answers.get("PASSWORD_CLAIM_SIGNATURE", "")):
                raise _bad_login()
            if session.get("Custom"):
                return await self._custom_password_verified(pool, client, user, session["Custom"])
            return await self._after_password(pool, client, user, params)
        if name == "NEW_PASSWORD_REQUIRED":
            session = await self._take_session(params.get("Session") or "", name)
            user = await self.db.user(pool, session["Username"])
            new_password = answers.get("NEW_PASSWORD")
            if not new_password:
                raise AwsError("InvalidParameterException", "Missing required parameter NEW_PASSWORD", 400)
            users.check_password(pool["Policies"]["PasswordPolicy"], new_password)
            old = orjson.loads(orjson.dumps(user))
            updates = [{"Name": k.split(".", 1)[1], "Value": v} for k, v in answers.items() if k.startswith("userAttributes.")]
            users.set_attributes(user, updates, self._schema(pool))  # type: ignore[attr-defined]
            users.set_password(user, self._pool_name(pool), new_password)
            user["UserStatus"] = "CONFIRMED"
            await self._save_user(pool, user, old)
            mfa = await self._mfa_challenge(pool, client, user)
            if mfa is not None:
                return mfa
            result = await self._tokens(pool, client, user, "TokenGeneration_NewPasswordChallenge", params.get("ClientMetadata"))
            return {"AuthenticationResult": result, "ChallengeParameters": {}}
        return await self._respond_other(pool, client, params)

    async def _tokens(self, pool: dict[str, Any], client: dict[str, Any], user: dict[str, Any], source: str,
                      client_metadata: Any, refresh: bool = True, scopes: list[str] | None = None,
                      nonce: str | None = None) -> dict[str, Any]:  # fmt: skip
        """Tokens for a signed-in user; ``scopes`` (OAuth sign-ins) go in the access
        token and the refresh record, which the token endpoint's refresh reuses."""
        groups = await self.app.store.read(lambda txn: self.db.groups_of(txn, pool["Id"], user["Username"]))
        scope_list = list(scopes) if scopes is not None else [tokens.USER_ADMIN_SCOPE]
        request: dict[str, Any] = {"groupConfiguration": {"groupsToOverride": groups, "iamRolesToOverride": [], "preferredRole": None}}
        if self._token_trigger_version(pool) != "1":
            request["scopes"] = scope_list
        pre = await self._trigger(pool, source, user, client_metadata, request, client["ClientId"])
        details = pre.get("claimsOverrideDetails") or {}
        # V2/V3 responses customize the access token too
        v2 = pre.get("claimsAndScopeOverrideDetails") or {}
        id_gen, access_gen = v2.get("idTokenGeneration") or {}, v2.get("accessTokenGeneration") or {}
        override = details.get("groupOverrideDetails") or v2.get("groupOverrideDetails") or {}
        if override.get("groupsToOverride") is not None:
            groups = list(override["groupsToOverride"])
        added = [s for s in access_gen.get("scopesToAdd") or [] if s not in scope_list]
        removed = set(access_gen.get("scopesToSuppress") or [])
        origin = str(uuid.uuid4())
        now = int(time.time())
        id_token, access_token = tokens.issue(
            pool, client["ClientId"], user, groups, auth_time=now, origin_jti=origin,
            overrides={**(details.get("claimsToAddOrOverride") or {}), **(id_gen.get("claimsToAddOrOverride") or {})},
            suppress=[*(details.get("claimsToSuppress") or []), *(id_gen.get("claimsToSuppress") or [])],
            scope=" ".join(s for s in [*scope_list, *added] if s not in removed), nonce=nonce, oauth=scopes is not None,
            access_overrides=access_gen.get("claimsToAddOrOverride"), access_suppress=access_gen.get("claimsToSuppress"),
            access_seconds=tokens.validity(client, "access"), id_seconds=tokens.validity(client, "id"),
        )  # fmt: skip
        result: dict[str, Any] = {"AccessToken": access_token, "ExpiresIn": tokens.validity(client, "access"),
                                  "TokenType": "Bearer", "IdToken": id_token}  # fmt: skip
        if refresh:
            token = base64.urlsafe_b64encode(secrets.token_bytes(96)).decode()
            record = {"PoolId": pool["Id"], "ClientId": client["ClientId"], "Username": user["Username"],
                      "Issued": time.time(), "Expires": time.time() + tokens.validity(client, "refresh"), "Revoked": False,
                      "Scopes": scopes}  # fmt: skip
            await self.app.store.write(lambda txn: txn.put(REFRESH, pack(token), orjson.dumps(record)))
            result["RefreshToken"] = token
        return result

    async def _refresh(self, pool: dict[str, Any], client: dict[str, Any], auth: dict[str, str]) -> dict[str, Any]:
        token = auth.get("REFRESH_TOKEN", "")
        raw = await self.app.store.read(lambda txn: txn.get(REFRESH, pack(token)))
        record = loads(raw) if raw is not None else None
        if record is None or record["Revoked"] or record["Expires"] < time.time() or record["ClientId"] != client["ClientId"]:
            raise AwsError("NotAuthorizedException", "Invalid Refresh Token", 400)
        user = await self.db.user(pool, record["Username"])
        self._check_client(client, user["Username"], auth.get("SECRET_HASH"))
        if user.get("SignedOutAt", 0) > record["Issued"]:
            raise AwsError("NotAuthorizedException", "Refresh Token has been revoked", 400)
        if not user.get("Enabled", True):
            raise AwsError("NotAuthorizedException", "User is disabled.", 400)
        result = await self._tokens(pool, client, user, "TokenGeneration_RefreshTokens", None, refresh=False)
        return {"AuthenticationResult": result, "ChallengeParameters": {}}

    async def get_tokens_from_refresh_token(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Refresh, with the client's RefreshTokenRotation: a new refresh token, the
        old one good only for the grace period."""
        client = await self.db.client(params["ClientId"])
        secret = client.get("ClientSecret")
        if secret is not None and not secrets.compare_digest(str(params.get("ClientSecret") or ""), secret):
            raise AwsError("NotAuthorizedException", f"Client {client['ClientId']} is not authorized", 400)
        pool = await self.db.pool(client["UserPoolId"])
        token = params["RefreshToken"]
        raw = await self.app.store.read(lambda txn: txn.get(REFRESH, pack(token)))
        record = loads(raw) if raw is not None else None
        if record is None or record["Revoked"] or record["Expires"] < time.time() or record["ClientId"] != client["ClientId"]:
            raise AwsError("NotAuthorizedException", "Invalid Refresh Token", 400)
        user = await self.db.user(pool, record["Username"])
        if user.get("SignedOutAt", 0) > record["Issued"]:
            raise AwsError("NotAuthorizedException", "Refresh Token has been revoked", 400)
        if not user.get("Enabled", True):
            raise AwsError("NotAuthorizedException", "User is disabled.", 400)
        rotation = client.get("RefreshTokenRotation") or {}
        rotate = rotation.get("Feature") == "ENABLED"
        result = await self._tokens(pool, client, user, "TokenGeneration_RefreshTokens", params.get("ClientMetadata"),
                                    refresh=rotate, scopes=record.get("Scopes"))  # fmt: skip
        if rotate:
            grace = int(rotation.get("RetryGracePeriodSeconds") or 0)

            def retire(txn: Txn) -> None:
                current = txn.get(REFRESH, pack(token))
                if current is not None:
                    old = loads(current)
                    old["Expires"] = min(old["Expires"], time.time() + grace)
                    old["Revoked"] = grace == 0
                    txn.put(REFRESH, pack(token), orjson.dumps(old))

            await self.app.store.write(retire)
        return {"AuthenticationResult": result}

    # -- token-authenticated user operations ------------------------------------------------------

    async def _access(self, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """(pool, user) of a valid access token."""
        claims = tokens.unverified_claims(token)
        if claims is None or "iss" not in claims:
            raise AwsError("NotAuthorizedException", "Invalid Access Token", 400)
        pool = await self.db.pool(str(claims["iss"]).rsplit("/", 1)[1])
        verified = tokens.verify(token, pool)
        if verified is None or verified.get("token_use") != "access":
            raise AwsError("NotAuthorizedException", "Invalid Access Token", 400)
        user = await self.db.user(pool, verified["username"])
        if user.get("SignedOutAt", 0) >= verified["iat"]:
            raise AwsError("NotAuthorizedException", "Access Token has been revoked", 400)
        return pool, user

    async def get_user(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        _, user = await self._access(params["AccessToken"])
        from nubes.services.cognito_idp.mfa import mfa_settings  # mfa builds on this module

        return {"Username": user["Username"], "UserAttributes": user.get("Attributes", []), "MFAOptions": [], **mfa_settings(user)}

    async def delete_user(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        pool, user = await self._access(params["AccessToken"])
        await self.app.store.write(lambda txn: self.db.delete_user(txn, pool, user))
        return {}

    async def update_user_attributes(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        pool, user = await self._access(params["AccessToken"])
        old = orjson.loads(orjson.dumps(user))
        users.set_attributes(user, params["UserAttributes"], self._schema(pool))  # type: ignore[attr-defined]
        await self._save_user(pool, user, old)
        return {"CodeDeliveryDetailsList": []}

    async def change_password(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        pool, user = await self._access(params["AccessToken"])
        if not users.password_matches(user, params.get("PreviousPassword") or ""):
            raise _bad_login()
        users.check_password(pool["Policies"]["PasswordPolicy"], params["ProposedPassword"])
        users.set_password(user, self._pool_name(pool), params["ProposedPassword"])
        await self._save_user(pool, user)
        return {}

    async def global_sign_out(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        pool, user = await self._access(params["AccessToken"])
        user["SignedOutAt"] = time.time()
        await self._save_user(pool, user)
        return {}

    async def revoke_token(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        token = params["Token"]
        client = await self.db.client(params["ClientId"])
        if client.get("ClientSecret") and params.get("ClientSecret") != client["ClientSecret"]:
            raise AwsError("NotAuthorizedException", f"Client {client['ClientId']} is not authorized", 400)

        def revoke(txn: Txn) -> bool:
            raw = txn.get(REFRESH, pack(token))
            if raw is None:
                return False
            record = loads(raw)
            if record["ClientId"] != client["ClientId"]:
                return False
            record["Revoked"] = True
            txn.put(REFRESH, pack(token), orjson.dumps(record))
            user_raw = txn.get("cognito.users", pack(record["PoolId"], record["Username"]))
            if user_raw is not None:
                user = loads(user_raw)
                user["SignedOutAt"] = time.time()
                txn.put("cognito.users", pack(record["PoolId"], record["Username"]), orjson.dumps(user))
            return True

        if not await self.app.store.write(revoke):
            raise AwsError("UnsupportedTokenTypeException", "Unsupported token type", 400)
        return {}
