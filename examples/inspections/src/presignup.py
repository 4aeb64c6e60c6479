"""Cognito PreSignUp: inspectors are confirmed at sign-up (no code to type in)."""


def handler(event, context):
    event["response"]["autoConfirmUser"] = True
    if "email" in event["request"]["userAttributes"]:
        event["response"]["autoVerifyEmail"] = True
    return event
