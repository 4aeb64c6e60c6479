"""Cognito user pools as an app uses them: sign-up with a code from the SES
mailbox, password and SRP sign-in, tokens verified with the pool's JWKS, refresh,
groups, admin flows, triggers."""

from __future__ import annotations

import io
import json
import re
import urllib.request
import zipfile
from typing import Any

import jwt
import pytest
from botocore.exceptions import ClientError
from pycognito.aws_srp import AWSSRP

from nubes.testing import NubesServer

PASSWORD = "Corr3ct-Horse!"


def _pool(nubes: NubesServer, **extra: Any) -> tuple[Any, str, str]:
    idp = nubes.client("cognito-idp")
    pool = idp.create_user_pool(PoolName="app", AutoVerifiedAttributes=["email"], **extra)["UserPool"]
    client = idp.create_user_pool_client(UserPoolId=pool["Id"], ClientName="web",
                                         ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_USER_SRP_AUTH",
                                                            "ALLOW_REFRESH_TOKEN_AUTH", "ALLOW_ADMIN_USER_PASSWORD_AUTH"])  # fmt: skip
    return idp, pool["Id"], client["UserPoolClient"]["ClientId"]


def _code_from_mailbox(nubes: NubesServer, email: str) -> str:
    with urllib.request.urlopen(f"{nubes.endpoint}/_nubes/ses?email={email}") as resp:
        messages = json.loads(resp.read())["messages"]
    match = re.search(r"\b(\d{6})\b", str(messages[-1]["Text"]))
    assert match, messages[-1]
    return match.group(1)


def _verify(nubes: NubesServer, pool_id: str, token: str, audience: str | None) -> dict[str, Any]:
    jwks = jwt.PyJWKClient(f"{nubes.endpoint}/{pool_id}/.well-known/jwks.json")
    key = jwks.get_signing_key_from_jwt(token)
    claims: dict[str, Any] = jwt.decode(token, key.key, algorithms=["RS256"], audience=audience,
                                        issuer=f"{nubes.endpoint}/{pool_id}", options={"verify_aud": audience is not None})  # fmt: skip
    return claims


def test_sign_up_confirm_sign_in_and_verify_tokens(nubes: NubesServer) -> None:
    idp, pool_id, client_id = _pool(nubes)
    out = idp.sign_up(ClientId=client_id, Username="alice", Password=PASSWORD,
                      UserAttributes=[{"Name": "email", "Value": "alice@example.test"}])  # fmt: skip
    assert out["UserConfirmed"] is False
    assert out["CodeDeliveryDetails"]["Destination"] == "a***@e***"
    with pytest.raises(ClientError) as err:
        idp.initiate_auth(ClientId=client_id, AuthFlow="USER_PASSWORD_AUTH", AuthParameters={"USERNAME": "alice", "PASSWORD": PASSWORD})
    assert err.value.response["Error"]["Code"] == "UserNotConfirmedException"
    with pytest.raises(ClientError) as err:
        idp.confirm_sign_up(ClientId=client_id, Username="alice", ConfirmationCode="000000")
    assert err.value.response["Error"]["Code"] == "CodeMismatchException"
    idp.confirm_sign_up(ClientId=client_id, Username="alice", ConfirmationCode=_code_from_mailbox(nubes, "alice@example.test"))
    with pytest.raises(ClientError) as err:
        idp.initiate_auth(ClientId=client_id, AuthFlow="USER_PASSWORD_AUTH", AuthParameters={"USERNAME": "alice", "PASSWORD": "Wrong-pass1!"})
    assert err.value.response["Error"]["Code"] == "NotAuthorizedException"
    result = idp.initiate_auth(ClientId=client_id, AuthFlow="USER_PASSWORD_AUTH",
                               AuthParameters={"USERNAME": "alice", "PASSWORD": PASSWORD})["AuthenticationResult"]  # fmt: skip
    id_claims = _verify(nubes, pool_id, result["IdToken"], client_id)
    assert id_claims["token_use"] == "id" and id_claims["cognito:username"] == "alice"
    assert id_claims["email"] == "alice@example.test" and id_claims["email_verified"] is True
    access = _verify(nubes, pool_id, result["AccessToken"], None)
    assert access["token_use"] == "access" and access["client_id"] == client_id
    assert idp.get_user(AccessToken=result["AccessToken"])["Username"] == "alice"
    refreshed = idp.initiate_auth(ClientId=client_id, AuthFlow="REFRESH_TOKEN_AUTH",
                                  AuthParameters={"REFRESH_TOKEN": result["RefreshToken"]})["AuthenticationResult"]  # fmt: skip
    assert _verify(nubes, pool_id, refreshed["IdToken"], client_id)["sub"] == id_claims["sub"]
    idp.global_sign_out(AccessToken=result["AccessToken"])
    with pytest.raises(ClientError) as err:
        idp.get_user(AccessToken=result["AccessToken"])
    assert err.value.response["Error"]["Code"] == "NotAuthorizedException"
    with pytest.raises(ClientError):
        idp.initiate_auth(ClientId=client_id, AuthFlow="REFRESH_TOKEN_AUTH", AuthParameters={"REFRESH_TOKEN": result["RefreshToken"]})


def test_srp_sign_in_with_a_real_srp_client(nubes: NubesServer) -> None:
    idp, pool_id, client_id = _pool(nubes)
    idp.admin_create_user(UserPoolId=pool_id, Username="bob", TemporaryPassword="Temp-pass1!", MessageAction="SUPPRESS")
    idp.admin_set_user_password(UserPoolId=pool_id, Username="bob", Password=PASSWORD, Permanent=True)
    tokens = AWSSRP(username="bob", password=PASSWORD, pool_id=pool_id, client_id=client_id, client=idp).authenticate_user()
    claims = _verify(nubes, pool_id, tokens["AuthenticationResult"]["IdToken"], client_id)
    assert claims["cognito:username"] == "bob"
    with pytest.raises(ClientError) as err:
        AWSSRP(username="bob", password="Wrong-pass1!", pool_id=pool_id, client_id=client_id, client=idp).authenticate_user()
    assert err.value.response["Error"]["Code"] == "NotAuthorizedException"


def test_new_password_required_and_groups(nubes: NubesServer) -> None:
    idp, pool_id, client_id = _pool(nubes)
    idp.admin_create_user(UserPoolId=pool_id, Username="carol", TemporaryPassword="Temp-pass1!", MessageAction="SUPPRESS",
                          UserAttributes=[{"Name": "email", "Value": "carol@example.test"}])  # fmt: skip
    idp.create_group(UserPoolId=pool_id, GroupName="inspectors", Precedence=2)
    idp.create_group(UserPoolId=pool_id, GroupName="admins", Precedence=1)
    idp.admin_add_user_to_group(UserPoolId=pool_id, Username="carol", GroupName="inspectors")
    idp.admin_add_user_to_group(UserPoolId=pool_id, Username="carol", GroupName="admins")
    challenge = idp.admin_initiate_auth(UserPoolId=pool_id, ClientId=client_id, AuthFlow="ADMIN_USER_PASSWORD_AUTH",
                                        AuthParameters={"USERNAME": "carol", "PASSWORD": "Temp-pass1!"})  # fmt: skip
    assert challenge["ChallengeName"] == "NEW_PASSWORD_REQUIRED"
    with pytest.raises(ClientError) as err:
        idp.respond_to_auth_challenge(ClientId=client_id, ChallengeName="NEW_PASSWORD_REQUIRED", Session=challenge["Session"],
                                      ChallengeResponses={"USERNAME": "carol", "NEW_PASSWORD": "short"})  # fmt: skip
    assert err.value.response["Error"]["Code"] == "InvalidPasswordException"
    challenge = idp.admin_initiate_auth(UserPoolId=pool_id, ClientId=client_id, AuthFlow="ADMIN_USER_PASSWORD_AUTH",
                                        AuthParameters={"USERNAME": "carol", "PASSWORD": "Temp-pass1!"})  # fmt: skip
    done = idp.respond_to_auth_challenge(ClientId=client_id, ChallengeName="NEW_PASSWORD_REQUIRED", Session=challenge["Session"],
                                         ChallengeResponses={"USERNAME": "carol", "NEW_PASSWORD": PASSWORD})  # fmt: skip
    claims = _verify(nubes, pool_id, done["AuthenticationResult"]["IdToken"], client_id)
    assert claims["cognito:groups"] == ["admins", "inspectors"]
    assert idp.admin_get_user(UserPoolId=pool_id, Username="carol")["UserStatus"] == "CONFIRMED"
    listed = idp.list_users(UserPoolId=pool_id, Filter='email = "carol@example.test"')["Users"]
    assert [u["Username"] for u in listed] == ["carol"]
    assert [u["Username"] for u in idp.list_users_in_group(UserPoolId=pool_id, GroupName="admins")["Users"]] == ["carol"]


def test_forgot_password_and_password_policy(nubes: NubesServer) -> None:
    idp, pool_id, client_id = _pool(nubes)
    with pytest.raises(ClientError) as err:
        idp.sign_up(ClientId=client_id, Username="dave", Password="alllowercase1!")
    assert err.value.response["Error"]["Code"] == "InvalidPasswordException"
    assert "uppercase" in err.value.response["Error"]["Message"]
    idp.sign_up(ClientId=client_id, Username="dave", Password=PASSWORD, UserAttributes=[{"Name": "email", "Value": "dave@example.test"}])
    with pytest.raises(ClientError) as err:
        idp.sign_up(ClientId=client_id, Username="dave", Password=PASSWORD)
    assert err.value.response["Error"]["Code"] == "UsernameExistsException"
    idp.admin_confirm_sign_up(UserPoolId=pool_id, Username="dave")
    idp.forgot_password(ClientId=client_id, Username="dave")
    code = _code_from_mailbox(nubes, "dave@example.test")
    idp.confirm_forgot_password(ClientId=client_id, Username="dave", ConfirmationCode=code, Password="N3w-Password!")
    idp.initiate_auth(ClientId=client_id, AuthFlow="USER_PASSWORD_AUTH", AuthParameters={"USERNAME": "dave", "PASSWORD": "N3w-Password!"})


def test_client_secret_hash_and_email_sign_in(nubes: NubesServer) -> None:
    idp = nubes.client("cognito-idp")
    pool_id = idp.create_user_pool(PoolName="emails", UsernameAttributes=["email"])["UserPool"]["Id"]
    client = idp.create_user_pool_client(UserPoolId=pool_id, ClientName="server", GenerateSecret=True,
                                         ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"])["UserPoolClient"]  # fmt: skip
    from nubes.services.cognito_idp.users import secret_hash

    email = "erin@example.test"
    with pytest.raises(ClientError) as err:
        idp.sign_up(ClientId=client["ClientId"], Username=email, Password=PASSWORD)
    assert err.value.response["Error"]["Code"] == "NotAuthorizedException"
    good = secret_hash(client["ClientSecret"], email, client["ClientId"])
    sub = idp.sign_up(ClientId=client["ClientId"], Username=email, Password=PASSWORD, SecretHash=good)["UserSub"]
    user = idp.admin_get_user(UserPoolId=pool_id, Username=email)
    assert user["Username"] != email and {"Name": "email", "Value": email} in user["UserAttributes"]
    idp.admin_confirm_sign_up(UserPoolId=pool_id, Username=email)
    result = idp.initiate_auth(ClientId=client["ClientId"], AuthFlow="USER_PASSWORD_AUTH",
                               AuthParameters={"USERNAME": email, "PASSWORD": PASSWORD, "SECRET_HASH": good})["AuthenticationResult"]  # fmt: skip
    assert jwt.decode(result["IdToken"], options={"verify_signature": False})["sub"] == sub


def test_openid_configuration_and_unknown_pool(nubes: NubesServer) -> None:
    _, pool_id, _ = _pool(nubes)
    with urllib.request.urlopen(f"{nubes.endpoint}/{pool_id}/.well-known/openid-configuration") as resp:
        doc = json.loads(resp.read())
    assert doc["issuer"] == f"{nubes.endpoint}/{pool_id}"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{nubes.endpoint}/us-east-1_NoSuchPool/.well-known/jwks.json")
    assert err.value.code == 404


def _zip(code: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", code)
    return buf.getvalue()


def test_pre_sign_up_trigger_auto_confirms(nubes: NubesServer) -> None:
    lam = nubes.client("lambda")
    fn = lam.create_function(FunctionName="presignup", Runtime="python3.12", Handler="app.handler",
                             Role="arn:aws:iam::000000000000:role/x", Code={"ZipFile": _zip(
        "def handler(event, context):\n"
        "    if event['request']['userAttributes'].get('email', '').endswith('@blocked.test'):\n"
        "        raise Exception('blocked domain')\n"
        "    event['response']['autoConfirmUser'] = True\n"
        "    event['response']['autoVerifyEmail'] = True\n"
        "    return event\n")})["FunctionArn"]  # fmt: skip
    lam.get_waiter("function_active_v2").wait(FunctionName="presignup")
    idp, _, client_id = _pool(nubes, LambdaConfig={"PreSignUp": fn})
    out = idp.sign_up(ClientId=client_id, Username="frank", Password=PASSWORD, UserAttributes=[{"Name": "email", "Value": "f@ok.test"}])
    assert out["UserConfirmed"] is True
    idp.initiate_auth(ClientId=client_id, AuthFlow="USER_PASSWORD_AUTH", AuthParameters={"USERNAME": "frank", "PASSWORD": PASSWORD})
    with pytest.raises(ClientError) as err:
        idp.sign_up(ClientId=client_id, Username="gina", Password=PASSWORD, UserAttributes=[{"Name": "email", "Value": "g@blocked.test"}])
    assert err.value.response["Error"]["Code"] == "UserLambdaValidationException"
    assert "PreSignUp failed with error blocked domain." in err.value.response["Error"]["Message"]


def test_get_tokens_from_refresh_token_with_and_without_rotation(nubes: NubesServer) -> None:
    idp, pool_id, client_id = _pool(nubes)
    idp.admin_create_user(UserPoolId=pool_id, Username="rita", MessageAction="SUPPRESS")
    idp.admin_set_user_password(UserPoolId=pool_id, Username="rita", Password=PASSWORD, Permanent=True)
    first = idp.initiate_auth(ClientId=client_id, AuthFlow="USER_PASSWORD_AUTH",
                              AuthParameters={"USERNAME": "rita", "PASSWORD": PASSWORD})["AuthenticationResult"]  # fmt: skip
    plain = idp.get_tokens_from_refresh_token(ClientId=client_id, RefreshToken=first["RefreshToken"])["AuthenticationResult"]
    assert "RefreshToken" not in plain and _verify(nubes, pool_id, plain["IdToken"], client_id)["cognito:username"] == "rita"
    idp.update_user_pool_client(UserPoolId=pool_id, ClientId=client_id, RefreshTokenRotation={"Feature": "ENABLED", "RetryGracePeriodSeconds": 0})
    rotated = idp.get_tokens_from_refresh_token(ClientId=client_id, RefreshToken=first["RefreshToken"])["AuthenticationResult"]
    assert rotated["RefreshToken"] != first["RefreshToken"]
    with pytest.raises(ClientError) as err:  # the old refresh token is retired
        idp.get_tokens_from_refresh_token(ClientId=client_id, RefreshToken=first["RefreshToken"])
    assert err.value.response["Error"]["Code"] == "NotAuthorizedException"
    assert idp.get_tokens_from_refresh_token(ClientId=client_id, RefreshToken=rotated["RefreshToken"])["AuthenticationResult"]["AccessToken"]
