"""CUSTOM_AUTH with real Lambda triggers: the passwordless "email me a code"
pattern, where CreateAuthChallenge mails a code through SES from inside the
function and VerifyAuthChallengeResponse checks the answer, while
DefineAuthChallenge decides from the session history AWS passes it."""

from __future__ import annotations

import io
import json
import re
import urllib.request
import uuid
import zipfile
from typing import Any

import pytest
from botocore.exceptions import ClientError

from nubes.testing import NubesServer

SENDER = "auth@example.test"

DEFINE = """
def handler(event, context):
    session = event['request']['session']
    assert event['triggerSource'] == 'DefineAuthChallenge_Authentication', event
    custom = [s for s in session if s['challengeName'] == 'CUSTOM_CHALLENGE']
    if session and session[-1]['challengeName'] == 'SRP_A':
        event['response'].update(issueTokens=False, failAuthentication=False, challengeName='PASSWORD_VERIFIER')
    elif session and session[-1]['challengeName'] == 'CUSTOM_CHALLENGE' and session[-1]['challengeResult']:
        event['response'].update(issueTokens=True, failAuthentication=False)
    elif len(custom) >= 3:
        event['response'].update(issueTokens=False, failAuthentication=True)
    else:
        event['response'].update(issueTokens=False, failAuthentication=False, challengeName='CUSTOM_CHALLENGE')
    return event
"""

CREATE = """
import random
import boto3

def handler(event, context):
    request = event['request']
    session = request['session']
    assert request['challengeName'] == 'CUSTOM_CHALLENGE', event
    if session and session[-1].get('challengeMetadata', '').startswith('CODE-'):
        code = session[-1]['challengeMetadata'][5:]
    else:
        code = str(random.randint(100000, 999999))
        boto3.client('sesv2').send_email(
            FromEmailAddress='SENDER', Destination={'ToAddresses': [request['userAttributes']['email']]},
            Content={'Simple': {'Subject': {'Data': 'Your sign-in code'}, 'Body': {'Text': {'Data': 'Your code is ' + code}}}})
    event['response']['publicChallengeParameters'] = {'email': request['userAttributes']['email'], 'round': str(len(session)),
                                                      'source': event['triggerSource'],
                                                      'steps': ','.join(s['challengeName'] for s in session)}
    event['response']['privateChallengeParameters'] = {'answer': code}
    event['response']['challengeMetadata'] = 'CODE-' + code
    return event
""".replace("SENDER", SENDER)

VERIFY = """
def handler(event, context):
    request = event['request']
    event['response']['answerCorrect'] = request['challengeAnswer'] == request['privateChallengeParameters']['answer']
    return event
"""


def _zip(code: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", code)
    return buf.getvalue()


def _function(nubes: NubesServer, name: str, code: str) -> str:
    arn: str = nubes.create_function(code, name=name, Timeout=30)["FunctionArn"]
    return arn


@pytest.fixture(scope="module")
def triggers(nubes: NubesServer) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:6]
    nubes.client("sesv2").create_email_identity(EmailIdentity=SENDER)
    return {"DefineAuthChallenge": _function(nubes, f"define-{suffix}", DEFINE),
            "CreateAuthChallenge": _function(nubes, f"create-{suffix}", CREATE),
            "VerifyAuthChallengeResponse": _function(nubes, f"verify-{suffix}", VERIFY)}  # fmt: skip


def _mailbox(nubes: NubesServer, email: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{nubes.endpoint}/_nubes/ses?email={email}") as resp:
        messages: list[dict[str, Any]] = json.loads(resp.read())["messages"]
    return messages


def _setup(nubes: NubesServer, triggers: dict[str, str], flows: list[str] | None = None) -> tuple[Any, str, str, str]:
    idp = nubes.client("cognito-idp")
    pool_id = idp.create_user_pool(PoolName="passwordless", LambdaConfig=triggers)["UserPool"]["Id"]
    client_id = idp.create_user_pool_client(UserPoolId=pool_id, ClientName="app",
                                            ExplicitAuthFlows=flows or ["ALLOW_CUSTOM_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"])["UserPoolClient"]["ClientId"]  # fmt: skip
    email = f"u{uuid.uuid4().hex[:8]}@example.test"
    idp.admin_create_user(UserPoolId=pool_id, Username="pat", MessageAction="SUPPRESS",
                          UserAttributes=[{"Name": "email", "Value": email}, {"Name": "email_verified", "Value": "true"}])  # fmt: skip
    idp.admin_set_user_password(UserPoolId=pool_id, Username="pat", Password="Unused-pass1!", Permanent=True)
    return idp, pool_id, client_id, email


def _answer(idp: Any, client_id: str, session: str, answer: str) -> dict[str, Any]:
    out: dict[str, Any] = idp.respond_to_auth_challenge(ClientId=client_id, ChallengeName="CUSTOM_CHALLENGE", Session=session,
                                                        ChallengeResponses={"USERNAME": "pat", "ANSWER": answer})  # fmt: skip
    return out


def test_passwordless_sign_in_with_an_emailed_code(nubes: NubesServer, triggers: dict[str, str]) -> None:
    idp, pool_id, client_id, email = _setup(nubes, triggers)
    first = idp.initiate_auth(ClientId=client_id, AuthFlow="CUSTOM_AUTH", AuthParameters={"USERNAME": "pat"})
    assert first["ChallengeName"] == "CUSTOM_CHALLENGE"
    assert first["ChallengeParameters"] == {"email": email, "round": "0", "source": "CreateAuthChallenge_Authentication", "steps": "",
                                            "USERNAME": "pat"}
    messages = _mailbox(nubes, email)
    assert len(messages) == 1
    match = re.search(r"\b(\d{6})\b", str(messages[0]["Text"]))
    assert match
    code = match.group(1)
    wrong = _answer(idp, client_id, first["Session"], "000000" if code != "000000" else "111111")
    # a wrong answer: DefineAuthChallenge saw it in the session and asked again, with the same code
    assert wrong["ChallengeName"] == "CUSTOM_CHALLENGE" and wrong["ChallengeParameters"]["round"] == "1"
    assert len(_mailbox(nubes, email)) == 1
    with pytest.raises(ClientError) as err:  # each answer spends its session
        _answer(idp, client_id, first["Session"], code)
    assert err.value.response["Error"]["Code"] == "NotAuthorizedException"
    done = _answer(idp, client_id, wrong["Session"], code)
    tokens = done["AuthenticationResult"]
    assert idp.get_user(AccessToken=tokens["AccessToken"])["Username"] == "pat"
    refreshed = idp.initiate_auth(ClientId=client_id, AuthFlow="REFRESH_TOKEN_AUTH", AuthParameters={"REFRESH_TOKEN": tokens["RefreshToken"]})
    assert refreshed["AuthenticationResult"]["IdToken"]
    admin = idp.admin_initiate_auth(UserPoolId=pool_id, ClientId=client_id, AuthFlow="CUSTOM_AUTH", AuthParameters={"USERNAME": "pat"})
    assert admin["ChallengeName"] == "CUSTOM_CHALLENGE"


def test_too_many_wrong_answers_fail_the_sign_in(nubes: NubesServer, triggers: dict[str, str]) -> None:
    idp, _, client_id, _ = _setup(nubes, triggers)
    step = idp.initiate_auth(ClientId=client_id, AuthFlow="CUSTOM_AUTH", AuthParameters={"USERNAME": "pat"})
    step = _answer(idp, client_id, step["Session"], "bad-1")
    step = _answer(idp, client_id, step["Session"], "bad-2")
    with pytest.raises(ClientError) as err:
        _answer(idp, client_id, step["Session"], "bad-3")
    assert err.value.response["Error"]["Code"] == "NotAuthorizedException"


def test_custom_auth_needs_the_flow_and_the_trigger(nubes: NubesServer, triggers: dict[str, str]) -> None:
    idp, _, client_id, _ = _setup(nubes, triggers, flows=["ALLOW_USER_PASSWORD_AUTH"])
    with pytest.raises(ClientError) as err:
        idp.initiate_auth(ClientId=client_id, AuthFlow="CUSTOM_AUTH", AuthParameters={"USERNAME": "pat"})
    assert err.value.response["Error"]["Code"] == "InvalidParameterException"
    idp, _, client_id, _ = _setup(nubes, {})
    with pytest.raises(ClientError) as err:
        idp.initiate_auth(ClientId=client_id, AuthFlow="CUSTOM_AUTH", AuthParameters={"USERNAME": "pat"})
    assert err.value.response["Error"]["Code"] == "InvalidParameterException"
    assert "Custom auth lambda trigger is not configured" in err.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as err:
        idp.respond_to_auth_challenge(ClientId=client_id, ChallengeName="CUSTOM_CHALLENGE", Session="made-up-session-of-twenty-chars",
                                      ChallengeResponses={"USERNAME": "pat", "ANSWER": "1"})  # fmt: skip
    assert err.value.response["Error"]["Code"] == "NotAuthorizedException"


def test_custom_auth_with_srp_first_as_amplify_custom_with_srp(nubes: NubesServer, triggers: dict[str, str]) -> None:
    from pycognito.aws_srp import AWSSRP

    idp, pool_id, client_id, email = _setup(nubes, triggers)
    srp = AWSSRP(username="pat", password="Unused-pass1!", pool_id=pool_id, client_id=client_id, client=idp)
    params = {**srp.get_auth_params(), "CHALLENGE_NAME": "SRP_A"}
    step = idp.initiate_auth(ClientId=client_id, AuthFlow="CUSTOM_AUTH", AuthParameters=params)
    assert step["ChallengeName"] == "PASSWORD_VERIFIER" and step["Session"]
    answers = srp.process_challenge(step["ChallengeParameters"], params)
    step = idp.respond_to_auth_challenge(ClientId=client_id, ChallengeName="PASSWORD_VERIFIER", Session=step["Session"], ChallengeResponses=answers)
    assert step["ChallengeName"] == "CUSTOM_CHALLENGE"
    assert step["ChallengeParameters"]["steps"] == "SRP_A,PASSWORD_VERIFIER"
    match = re.search(r"\b(\d{6})\b", str(_mailbox(nubes, email)[-1]["Text"]))
    assert match
    done = _answer(idp, client_id, step["Session"], match.group(1))
    assert done["AuthenticationResult"]["AccessToken"]

    wrong = AWSSRP(username="pat", password="Wrong-pass1!", pool_id=pool_id, client_id=client_id, client=idp)
    params = {**wrong.get_auth_params(), "CHALLENGE_NAME": "SRP_A"}
    step = idp.initiate_auth(ClientId=client_id, AuthFlow="CUSTOM_AUTH", AuthParameters=params)
    with pytest.raises(ClientError) as err:
        idp.respond_to_auth_challenge(ClientId=client_id, ChallengeName="PASSWORD_VERIFIER", Session=step["Session"],
                                      ChallengeResponses=wrong.process_challenge(step["ChallengeParameters"], params))  # fmt: skip
    assert err.value.response["Error"]["Code"] == "NotAuthorizedException"

