"""Multi-factor authentication: TOTP software tokens (RFC 6238: HMAC-SHA1, 30 s
steps, 6 digits, one step of clock drift either way), users' MFA preferences,
the pool's MFA configuration, and the SOFTWARE_TOKEN_MFA and MFA_SETUP
challenges. SMS and email MFA are configuration only: a sign-in that would
need them gets a NotImplemented error naming them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import time
from typing import Any

import orjson

from nubes.aws.errors import AwsError
from nubes.services.base import RequestContext
from nubes.services.cognito_idp import users
from nubes.services.cognito_idp.auth import AuthFlows
from nubes.services.cognito_idp.store import POOLS
from nubes.storage.keys import pack

STEP_SECONDS = 30
DIGITS = 6
TOTP = "SOFTWARE_TOKEN_MFA"


def new_secret() -> str:
    """A base32 TOTP secret (32 random bytes) as authenticator apps take it."""
    return base64.b32encode(secrets.token_bytes(32)).decode().rstrip("=")


def totp(secret: str, step: int) -> str:
    """The code of one time step (RFC 6238 over RFC 4226's truncation)."""
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    digest = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**DIGITS).zfill(DIGITS)


def matching_step(secret: str, code: str, after: int = -1, now: float | None = None) -> int | None:
    """The time step ``code`` belongs to (current ±1), if later than ``after``:
    a code is good once (RFC 6238 §5.2)."""
    if not (len(code) == DIGITS and code.isdigit()):
        return None
    current = int((time.time() if now is None else now) // STEP_SECONDS)
    for step in (current - 1, current, current + 1):
        if step > after and hmac.compare_digest(totp(secret, step), code):
            return step
    return None


def mfa_settings(user: dict[str, Any]) -> dict[str, Any]:
    """``UserMFASettingList`` and ``PreferredMfaSetting`` for GetUser/AdminGetUser."""
    enabled = [name for name in ("SMS_MFA", TOTP, "EMAIL_OTP") if (user.get("MfaEnabled") or {}).get(name)]
    out: dict[str, Any] = {}
    if enabled:
        out["UserMFASettingList"] = enabled
    if user.get("PreferredMfa") in enabled:
        out["PreferredMfaSetting"] = user["PreferredMfa"]
    return out


def _not_implemented(name: str) -> AwsError:
    return AwsError("NotImplemented", f"{name} is not implemented by nubes: use SOFTWARE_TOKEN_MFA (TOTP)", 501, sender_fault=False)


class MfaFlows(AuthFlows):
    """TOTP association and verification, MFA preferences and challenges."""

    # -- pool configuration ---------------------------------------------------------------

    @staticmethod
    def _pool_mfa(pool: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"MfaConfiguration": pool.get("MfaConfiguration") or "OFF"}
        for key in ("SmsMfaConfiguration", "SoftwareTokenMfaConfiguration", "EmailMfaConfiguration", "WebAuthnConfiguration"):
            if pool.get(key) is not None:
                out[key] = pool[key]
        return out

    async def set_user_pool_mfa_config(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        pool = await self.db.pool(params["UserPoolId"])
        updated = dict(pool)
        for key in ("SmsMfaConfiguration", "SoftwareTokenMfaConfiguration", "EmailMfaConfiguration", "WebAuthnConfiguration", "MfaConfiguration"):
            if params.get(key) is not None:
                updated[key] = params[key]
        sms = params.get("SmsMfaConfiguration")
        if sms is not None and not (sms.get("SmsConfiguration") or pool.get("SmsConfiguration")):
            raise AwsError("InvalidParameterException", "SMS configuration is required to turn on SMS MFA: the user pool has no SmsConfiguration.", 400)
        if (updated.get("MfaConfiguration") or "OFF") != "OFF" and not self._mfa_types(updated):
            raise AwsError("InvalidParameterException", "At least one MFA type must be enabled when MfaConfiguration is ON or OPTIONAL.", 400)
        if sms is not None and sms.get("SmsConfiguration"):
            updated["SmsConfiguration"] = sms["SmsConfiguration"]
        await self.app.store.write(lambda txn: txn.put(POOLS, pack(pool["Id"]), orjson.dumps(updated)))
        return self._pool_mfa(updated)

    async def get_user_pool_mfa_config(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return self._pool_mfa(await self.db.pool(params["UserPoolId"]))

    @staticmethod
    def _check_pool_mfa(pool: dict[str, Any]) -> None:
        """CreateUserPool/UpdateUserPool: MFA that is not OFF needs SMS set up, unless
        SetUserPoolMfaConfig already turned TOTP on."""
        if (pool.get("MfaConfiguration") or "OFF") == "OFF" or (pool.get("SoftwareTokenMfaConfiguration") or {}).get("Enabled"):
            return
        if not pool.get("SmsConfiguration") or "phone_number" not in (pool.get("AutoVerifiedAttributes") or []):
            raise AwsError("InvalidParameterException",
                           "SMS configuration and Auto verification for phone_number are required when MFA is required/optional", 400)  # fmt: skip

    @staticmethod
    def _mfa_types(pool: dict[str, Any]) -> list[str]:
        """The MFA types a pool offers: TOTP once SetUserPoolMfaConfig enabled it
        (or when nothing else is set up), SMS once the pool has an SMS configuration."""
        software, email = pool.get("SoftwareTokenMfaConfiguration"), pool.get("EmailMfaConfiguration")
        sms = pool.get("SmsMfaConfiguration") or pool.get("SmsConfiguration")
        kinds = []
        if (software or {}).get("Enabled") or (software is None and not (sms or email)):
            kinds.append(TOTP)
        if sms:
            kinds.append("SMS_MFA")
        if email:
            kinds.append("EMAIL_OTP")
        return kinds

    # -- software tokens --------------------------------------------------------------------

    async def associate_software_token(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        secret = new_secret()
        if params.get("AccessToken"):
            pool, user = await self._access(params["AccessToken"])
            old = orjson.loads(orjson.dumps(user))
            user["TotpPending"] = secret
            await self._save_user(pool, user, old)
            return {"SecretCode": secret}
        if not params.get("Session"):
            raise AwsError("InvalidParameterException", "Either AccessToken or Session must be provided.", 400)
        session = await self._peek_session(params["Session"], "MFA_SETUP")
        pool = await self.db.pool(session["PoolId"])
        user = await self.db.user(pool, session["Username"])
        user["TotpPending"] = secret
        await self._save_user(pool, user)
        await self._drop_session(params["Session"])
        client = {"ClientId": session["ClientId"]}
        return {"SecretCode": secret, "Session": await self._new_session(pool, client, user, "MFA_SETUP")}

    async def verify_software_token(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        session = None
        if params.get("AccessToken"):
            pool, user = await self._access(params["AccessToken"])
        elif params.get("Session"):
            session = await self._peek_session(params["Session"], "MFA_SETUP")
            pool = await self.db.pool(session["PoolId"])
            user = await self.db.user(pool, session["Username"])
        else:
            raise AwsError("InvalidParameterException", "Either AccessToken or Session must be provided.", 400)
        secret = user.get("TotpPending")
        if not secret:
            raise AwsError("SoftwareTokenMFANotFoundException", "Software Token MFA has not been associated with the user.", 400)
        step = matching_step(secret, str(params.get("UserCode") or ""))
        if step is None:
            raise AwsError("EnableSoftwareTokenMFAException", "Code mismatch and fail enable Software Token MFA", 400)
        old = orjson.loads(orjson.dumps(user))
        user.pop("TotpPending", None)
        user["Totp"] = {"Secret": secret, "LastStep": step, "DeviceName": params.get("FriendlyDeviceName")}
        if session is not None:  # MFA_SETUP at sign-in: the new token is the user's MFA from now on
            user.setdefault("MfaEnabled", {})[TOTP] = True
            user["PreferredMfa"] = TOTP
        await self._save_user(pool, user, old)
        if session is None:
            return {"Status": "SUCCESS"}
        await self._drop_session(params["Session"])
        client = {"ClientId": session["ClientId"]}
        return {"Status": "SUCCESS", "Session": await self._new_session(pool, client, user, "MFA_SETUP_VERIFIED")}

    async def admin_delete_software_token(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Forget a user's TOTP token (a lost phone); they can associate a new one."""
        pool = await self.db.pool(params["UserPoolId"])
        user = await self.db.user(pool, params["Username"])
        old = orjson.loads(orjson.dumps(user))
        for key in ("Totp", "TotpPending"):
            user.pop(key, None)
        (user.get("MfaEnabled") or {}).pop(TOTP, None)
        if user.get("PreferredMfa") == TOTP:
            user.pop("PreferredMfa")
        await self._save_user(pool, user, old)
        return {}

    # -- preferences ----------------------------------------------------------------------------

    def _apply_preferences(self, user: dict[str, Any], params: dict[str, Any]) -> None:
        enabled: dict[str, bool] = dict(user.get("MfaEnabled") or {})
        for key, name in (("SoftwareTokenMfaSettings", TOTP), ("SMSMfaSettings", "SMS_MFA"), ("EmailMfaSettings", "EMAIL_OTP")):
            settings = params.get(key)
            if settings is None:
                continue
            if settings.get("Enabled") or settings.get("PreferredMfa"):
                if name == TOTP and not user.get("Totp"):
                    raise AwsError("InvalidParameterException", "User has not verified software token mfa", 400)
                if name == "SMS_MFA" and not users.attributes(user).get("phone_number"):
                    raise AwsError("InvalidParameterException", "User does not have delivery config set to turn on SMS_MFA", 400)
                if name == "EMAIL_OTP" and not users.attributes(user).get("email"):
                    raise AwsError("InvalidParameterException", "User does not have delivery config set to turn on EMAIL_OTP", 400)
            if settings.get("Enabled") is not None:
                enabled[name] = bool(settings["Enabled"])
            if settings.get("PreferredMfa"):
                enabled[name] = True
                user["PreferredMfa"] = name
            elif settings.get("PreferredMfa") is False and user.get("PreferredMfa") == name:
                user.pop("PreferredMfa", None)
            if not enabled.get(name) and user.get("PreferredMfa") == name:
                user.pop("PreferredMfa", None)
        user["MfaEnabled"] = enabled

    async def set_user_mfa_preference(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        pool, user = await self._access(params["AccessToken"])
        old = orjson.loads(orjson.dumps(user))
        self._apply_preferences(user, params)
        await self._save_user(pool, user, old)
        return {}

    async def admin_set_user_mfa_preference(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        pool = await self.db.pool(params["UserPoolId"])
        user = await self.db.user(pool, params["Username"])
        old = orjson.loads(orjson.dumps(user))
        self._apply_preferences(user, params)
        await self._save_user(pool, user, old)
        return {}

    # -- challenges -------------------------------------------------------------------------------

    async def _mfa_challenge(self, pool: dict[str, Any], client: dict[str, Any], user: dict[str, Any]) -> dict[str, Any] | None:
        mode = pool.get("MfaConfiguration") or "OFF"
        if mode == "OFF":
            return None
        offered = self._mfa_types(pool)
        enabled = [name for name, on in (user.get("MfaEnabled") or {}).items() if on and name in offered]
        if enabled:
            chosen = user.get("PreferredMfa") if user.get("PreferredMfa") in enabled else (TOTP if TOTP in enabled else enabled[0])
            if chosen != TOTP:
                raise _not_implemented(str(chosen))
            session = await self._new_session(pool, client, user, TOTP)
            return {"ChallengeName": TOTP, "Session": session, "ChallengeParameters": {}}
        if mode != "ON":
            return None
        if TOTP not in offered:
            raise _not_implemented("MFA_SETUP for " + " and ".join(offered))
        session = await self._new_session(pool, client, user, "MFA_SETUP")
        return {"ChallengeName": "MFA_SETUP", "Session": session, "ChallengeParameters": {"MFAS_CAN_SETUP": orjson.dumps([TOTP]).decode()}}

    async def _answer_totp(self, pool: dict[str, Any], client: dict[str, Any], session_key: str, code: str) -> dict[str, Any]:
        """The user once ``code`` answers the SOFTWARE_TOKEN_MFA session (kept for
        another try when the code is wrong)."""
        session = await self._peek_session(session_key, TOTP)
        if session["ClientId"] != client["ClientId"]:
            raise AwsError("NotAuthorizedException", "Invalid session for the user, session is expired.", 400)
        user = await self.db.user(pool, session["Username"])
        token = user.get("Totp") or {}
        step = matching_step(token["Secret"], code, int(token.get("LastStep", -1))) if token.get("Secret") else None
        if step is None:
            raise AwsError("CodeMismatchException", "Invalid code received for user", 400)
        old = orjson.loads(orjson.dumps(user))
        user["Totp"] = {**token, "LastStep": step}
        await self._save_user(pool, user, old)
        await self._drop_session(session_key)
        return user

    async def _respond_other(self, pool: dict[str, Any], client: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        name = params["ChallengeName"]
        answers = params.get("ChallengeResponses") or {}
        if name == TOTP:
            code = answers.get("SOFTWARE_TOKEN_MFA_CODE")
            if not code:
                raise AwsError("InvalidParameterException", "Missing required parameter SOFTWARE_TOKEN_MFA_CODE", 400)
            user = await self._answer_totp(pool, client, params.get("Session") or "", code)
            return await self._signed_in(pool, client, user, params)
        if name == "MFA_SETUP":
            session = await self._take_session(params.get("Session") or "", "MFA_SETUP_VERIFIED")
            user = await self.db.user(pool, session["Username"])
            return await self._signed_in(pool, client, user, params)
        if name in ("SMS_MFA", "EMAIL_OTP", "SELECT_MFA_TYPE"):
            raise _not_implemented(name)
        return await super()._respond_other(pool, client, params)
