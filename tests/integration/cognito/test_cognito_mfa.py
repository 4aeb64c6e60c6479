"""TOTP MFA as an app sets it up and signs in with it: codes computed here the way
an authenticator app computes them (RFC 6238), optional and required MFA, the
MFA_SETUP challenge, the hosted UI's code form, and SMS MFA's configuration
errors."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import struct
import time
import urllib.parse
import uuid
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from nubes.testing import NubesServer

PASSWORD = "Corr3ct-Horse!"
CALLBACK = "http://localhost:3000/callback"


def _code(secret: str, offset: int = 0) -> str:
    """What an authenticator app shows, ``offset`` 30-second steps from now."""
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    step = int(time.time() // 30) + offset
    digest = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    start = digest[-1] & 0x0F
    return str((struct.unpack(">I", digest[start : start + 4])[0] & 0x7FFFFFFF) % 1_000_000).zfill(6)


def _pool(nubes: NubesServer, mfa: str) -> tuple[Any, str, str]:
    idp = nubes.client("cognito-idp")
    pool_id = idp.create_user_pool(PoolName="mfa")["UserPool"]["Id"]
    config = idp.set_user_pool_mfa_config(UserPoolId=pool_id, SoftwareTokenMfaConfiguration={"Enabled": True}, MfaConfiguration=mfa)
    assert config["MfaConfiguration"] == mfa and config["SoftwareTokenMfaConfiguration"] == {"Enabled": True}
    client_id = idp.create_user_pool_client(UserPoolId=pool_id, ClientName="app", ExplicitAuthFlows=[
        "ALLOW_USER_PASSWORD_AUTH", "ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"])["UserPoolClient"]["ClientId"]  # fmt: skip
    idp.admin_create_user(UserPoolId=pool_id, Username="alice", MessageAction="SUPPRESS")
    idp.admin_set_user_password(UserPoolId=pool_id, Username="alice", Password=PASSWORD, Permanent=True)
    return idp, pool_id, client_id


def _password_auth(idp: Any, client_id: str) -> dict[str, Any]:
    out: dict[str, Any] = idp.initiate_auth(ClientId=client_id, AuthFlow="USER_PASSWORD_AUTH",
                                            AuthParameters={"USERNAME": "alice", "PASSWORD": PASSWORD})  # fmt: skip
    return out


def _error(err: pytest.ExceptionInfo[ClientError]) -> str:
    return str(err.value.response["Error"]["Code"])


def test_optional_totp_associate_verify_prefer_and_sign_in(nubes: NubesServer) -> None:
    idp, pool_id, client_id = _pool(nubes, "OPTIONAL")
    assert idp.get_user_pool_mfa_config(UserPoolId=pool_id)["MfaConfiguration"] == "OPTIONAL"
    access = _password_auth(idp, client_id)["AuthenticationResult"]["AccessToken"]
    with pytest.raises(ClientError) as err:
        idp.set_user_mfa_preference(AccessToken=access, SoftwareTokenMfaSettings={"Enabled": True, "PreferredMfa": True})
    assert _error(err) == "InvalidParameterException"
    secret = idp.associate_software_token(AccessToken=access)["SecretCode"]
    assert re.fullmatch(r"[A-Z2-7]{52}", secret)
    wrong = str((int(_code(secret)) + 1) % 1_000_000).zfill(6)
    with pytest.raises(ClientError) as err:
        idp.verify_software_token(AccessToken=access, UserCode=wrong)
    assert _error(err) == "EnableSoftwareTokenMFAException"
    assert idp.verify_software_token(AccessToken=access, UserCode=_code(secret), FriendlyDeviceName="phone")["Status"] == "SUCCESS"
    idp.set_user_mfa_preference(AccessToken=access, SoftwareTokenMfaSettings={"Enabled": True, "PreferredMfa": True})
    user = idp.get_user(AccessToken=access)
    assert user["UserMFASettingList"] == ["SOFTWARE_TOKEN_MFA"] and user["PreferredMfaSetting"] == "SOFTWARE_TOKEN_MFA"

    challenge = _password_auth(idp, client_id)
    assert challenge["ChallengeName"] == "SOFTWARE_TOKEN_MFA" and "AuthenticationResult" not in challenge
    for code in (wrong, _code(secret)):  # a wrong code, then the one already used to verify (a replay)
        with pytest.raises(ClientError) as err:
            idp.respond_to_auth_challenge(ClientId=client_id, ChallengeName="SOFTWARE_TOKEN_MFA", Session=challenge["Session"],
                                          ChallengeResponses={"USERNAME": "alice", "SOFTWARE_TOKEN_MFA_CODE": code})  # fmt: skip
        assert _error(err) == "CodeMismatchException"
    done = idp.respond_to_auth_challenge(ClientId=client_id, ChallengeName="SOFTWARE_TOKEN_MFA", Session=challenge["Session"],
                                         ChallengeResponses={"USERNAME": "alice", "SOFTWARE_TOKEN_MFA_CODE": _code(secret, 1)})  # fmt: skip
    assert idp.get_user(AccessToken=done["AuthenticationResult"]["AccessToken"])["Username"] == "alice"
    with pytest.raises(ClientError) as err:  # the session is spent
        idp.respond_to_auth_challenge(ClientId=client_id, ChallengeName="SOFTWARE_TOKEN_MFA", Session=challenge["Session"],
                                      ChallengeResponses={"USERNAME": "alice", "SOFTWARE_TOKEN_MFA_CODE": _code(secret, 1)})  # fmt: skip
    assert _error(err) == "NotAuthorizedException"

    admin = idp.admin_initiate_auth(UserPoolId=pool_id, ClientId=client_id, AuthFlow="ADMIN_USER_PASSWORD_AUTH",
                                    AuthParameters={"USERNAME": "alice", "PASSWORD": PASSWORD})  # fmt: skip
    assert admin["ChallengeName"] == "SOFTWARE_TOKEN_MFA"
    idp.admin_set_user_mfa_preference(UserPoolId=pool_id, Username="alice", SoftwareTokenMfaSettings={"Enabled": False})
    assert "UserMFASettingList" not in idp.admin_get_user(UserPoolId=pool_id, Username="alice")
    assert "AuthenticationResult" in _password_auth(idp, client_id)
    # a lost phone: the token is forgotten and cannot be turned back on until a new one is verified
    idp.admin_delete_software_token(UserPoolId=pool_id, Username="alice")
    with pytest.raises(ClientError) as err:
        idp.admin_set_user_mfa_preference(UserPoolId=pool_id, Username="alice", SoftwareTokenMfaSettings={"Enabled": True})
    assert _error(err) == "InvalidParameterException"


def test_required_mfa_sets_up_a_token_during_sign_in(nubes: NubesServer) -> None:
    idp, pool_id, client_id = _pool(nubes, "ON")
    setup = _password_auth(idp, client_id)
    assert setup["ChallengeName"] == "MFA_SETUP"
    assert setup["ChallengeParameters"]["MFAS_CAN_SETUP"] == '["SOFTWARE_TOKEN_MFA"]'
    associated = idp.associate_software_token(Session=setup["Session"])
    secret = associated["SecretCode"]
    with pytest.raises(ClientError) as err:
        idp.verify_software_token(Session=associated["Session"], UserCode="000000" if _code(secret) != "000000" else "111111")
    assert _error(err) == "EnableSoftwareTokenMFAException"
    verified = idp.verify_software_token(Session=associated["Session"], UserCode=_code(secret))
    assert verified["Status"] == "SUCCESS"
    done = idp.respond_to_auth_challenge(ClientId=client_id, ChallengeName="MFA_SETUP", Session=verified["Session"],
                                         ChallengeResponses={"USERNAME": "alice"})  # fmt: skip
    assert done["AuthenticationResult"]["AccessToken"]
    assert idp.admin_get_user(UserPoolId=pool_id, Username="alice")["PreferredMfaSetting"] == "SOFTWARE_TOKEN_MFA"
    assert _password_auth(idp, client_id)["ChallengeName"] == "SOFTWARE_TOKEN_MFA"
    with pytest.raises(ClientError) as err:  # a session from one step is no good for another
        idp.associate_software_token(Session=verified["Session"])
    assert _error(err) == "NotAuthorizedException"


def test_hosted_ui_asks_for_the_totp_code(nubes: NubesServer) -> None:
    idp, pool_id, app_client = _pool(nubes, "OPTIONAL")
    domain = f"mfa-{uuid.uuid4().hex[:10]}"
    idp.create_user_pool_domain(Domain=domain, UserPoolId=pool_id)
    client_id = idp.create_user_pool_client(UserPoolId=pool_id, ClientName="web", AllowedOAuthFlowsUserPoolClient=True,
                                            AllowedOAuthFlows=["code"], AllowedOAuthScopes=["openid"],
                                            CallbackURLs=[CALLBACK])["UserPoolClient"]["ClientId"]  # fmt: skip
    idp.admin_set_user_mfa_preference(UserPoolId=pool_id, Username="alice", SoftwareTokenMfaSettings={"Enabled": False})
    with pytest.raises(ClientError) as err:  # no verified token yet
        idp.admin_set_user_mfa_preference(UserPoolId=pool_id, Username="alice", SoftwareTokenMfaSettings={"Enabled": True})
    assert _error(err) == "InvalidParameterException"
    access = _password_auth(idp, app_client)
    token = access["AuthenticationResult"]["AccessToken"]
    secret = idp.associate_software_token(AccessToken=token)["SecretCode"]
    idp.verify_software_token(AccessToken=token, UserCode=_code(secret))
    idp.admin_set_user_mfa_preference(UserPoolId=pool_id, Username="alice", SoftwareTokenMfaSettings={"Enabled": True, "PreferredMfa": True})

    login = f"{nubes.endpoint}/_nubes/cognito/{domain}/login?" + urllib.parse.urlencode(
        {"response_type": "code", "client_id": client_id, "redirect_uri": CALLBACK, "state": "s1"})  # fmt: skip
    with httpx.Client(follow_redirects=False) as http:
        form = http.post(login, data={"username": "alice", "password": PASSWORD})
        assert form.status_code == 200 and 'name="totpCode"' in form.text
        session = re.search(r'name="session" value="([^"]+)"', form.text)
        assert session
        again = http.post(login, data={"session": session.group(1), "totpCode": "12345x"})
        assert again.status_code == 200 and "Invalid code" in again.text
        done = http.post(login, data={"session": session.group(1), "totpCode": _code(secret, 1)})
        assert done.status_code == 302, done.text
        back = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(done.headers["location"]).query))
        assert back["state"] == "s1" and back["code"]


def test_sms_mfa_needs_an_sms_configuration(nubes: NubesServer) -> None:
    idp = nubes.client("cognito-idp")
    pool_id = idp.create_user_pool(PoolName="sms")["UserPool"]["Id"]
    with pytest.raises(ClientError) as err:
        idp.set_user_pool_mfa_config(UserPoolId=pool_id, SmsMfaConfiguration={"SmsAuthenticationMessage": "Code {####}"}, MfaConfiguration="ON")
    assert _error(err) == "InvalidParameterException"
    with pytest.raises(ClientError) as err:
        idp.set_user_pool_mfa_config(UserPoolId=pool_id, SoftwareTokenMfaConfiguration={"Enabled": False}, MfaConfiguration="ON")
    assert _error(err) == "InvalidParameterException"
    assert idp.get_user_pool_mfa_config(UserPoolId=pool_id)["MfaConfiguration"] == "OFF"
    idp.admin_create_user(UserPoolId=pool_id, Username="bob", MessageAction="SUPPRESS")
    with pytest.raises(ClientError) as err:
        idp.admin_set_user_mfa_preference(UserPoolId=pool_id, Username="bob", SMSMfaSettings={"Enabled": True})
    assert _error(err) == "InvalidParameterException"
    assert "phone_number" in err.value.response["Error"]["Message"] or "SMS_MFA" in err.value.response["Error"]["Message"]


def test_mfa_at_pool_creation_needs_sms_and_sms_sign_in_is_named(nubes: NubesServer) -> None:
    idp = nubes.client("cognito-idp")
    with pytest.raises(ClientError) as err:
        idp.create_user_pool(PoolName="mfa-on", MfaConfiguration="ON")
    assert _error(err) == "InvalidParameterException"
    assert "SMS configuration and Auto verification for phone_number are required" in err.value.response["Error"]["Message"]
    pool_id = idp.create_user_pool(PoolName="sms-on", MfaConfiguration="ON", AutoVerifiedAttributes=["phone_number"],
                                   SmsConfiguration={"SnsCallerArn": "arn:aws:iam::000000000000:role/sms"})["UserPool"]["Id"]  # fmt: skip
    assert idp.describe_user_pool(UserPoolId=pool_id)["UserPool"]["MfaConfiguration"] == "ON"
    client_id = idp.create_user_pool_client(UserPoolId=pool_id, ClientName="app",
                                            ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH"])["UserPoolClient"]["ClientId"]  # fmt: skip
    idp.admin_create_user(UserPoolId=pool_id, Username="alice", MessageAction="SUPPRESS",
                          UserAttributes=[{"Name": "phone_number", "Value": "+15555550100"}])  # fmt: skip
    idp.admin_set_user_password(UserPoolId=pool_id, Username="alice", Password=PASSWORD, Permanent=True)
    with pytest.raises(ClientError) as err:  # nubes sends no text messages: it says so instead of pretending
        _password_auth(idp, client_id)
    assert _error(err) == "NotImplemented" and "SMS_MFA" in err.value.response["Error"]["Message"]
    # once TOTP is on, a user without MFA sets it up instead
    idp.set_user_pool_mfa_config(UserPoolId=pool_id, SoftwareTokenMfaConfiguration={"Enabled": True}, MfaConfiguration="ON")
    setup = _password_auth(idp, client_id)
    assert setup["ChallengeName"] == "MFA_SETUP"
