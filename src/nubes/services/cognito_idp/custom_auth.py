"""CUSTOM_AUTH: sign-in driven by the pool's DefineAuthChallenge,
CreateAuthChallenge and VerifyAuthChallengeResponse Lambda triggers, with AWS's
event shapes (``request.session`` is the list of challenges answered so far)."""

from __future__ import annotations

from typing import Any

from nubes.aws.errors import AwsError
from nubes.services.cognito_idp.mfa import MfaFlows

#: rounds of challenges one sign-in may go through before it fails
MAX_ROUNDS = 8


class CustomAuthFlows(MfaFlows):
    """InitiateAuth/AdminInitiateAuth ``CUSTOM_AUTH`` and the CUSTOM_CHALLENGE answer."""

    async def _initiate_other(self, pool: dict[str, Any], client: dict[str, Any], user: dict[str, Any], params: dict[str, Any],
                              admin: bool) -> dict[str, Any]:  # fmt: skip
        if params["AuthFlow"] != "CUSTOM_AUTH":
            return await super()._initiate_other(pool, client, user, params, admin)
        config = pool.get("LambdaConfig") or {}
        if not config.get("DefineAuthChallenge"):
            raise AwsError("InvalidParameterException", "Custom auth lambda trigger is not configured for the user pool.", 400)
        await self._before_password(pool, client, user, params)
        if user["UserStatus"] == "UNCONFIRMED":
            raise AwsError("UserNotConfirmedException", "User is not confirmed.", 400)
        srp_a = (params.get("AuthParameters") or {}).get("SRP_A")
        # with SRP_A (Amplify's CUSTOM_WITH_SRP) the session starts with a passed SRP_A step
        history: list[dict[str, Any]] = [{"challengeName": "SRP_A", "challengeResult": True}] if srp_a else []
        return await self._custom_round(pool, client, user, history, params.get("ClientMetadata"), srp_a)

    async def _custom_password_verified(self, pool: dict[str, Any], client: dict[str, Any], user: dict[str, Any],
                                        custom: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
        history = [*custom["History"], {"challengeName": "PASSWORD_VERIFIER", "challengeResult": True}]
        return await self._custom_round(pool, client, user, history, custom.get("Metadata"))

    async def _custom_round(self, pool: dict[str, Any], client: dict[str, Any], user: dict[str, Any],
                            history: list[dict[str, Any]], metadata: Any, srp_a: str | None = None) -> dict[str, Any]:  # fmt: skip
        """Ask DefineAuthChallenge what comes next: tokens, failure, or a new challenge."""
        define = await self._trigger(pool, "DefineAuthChallenge_Authentication", user, metadata,
                                     {"session": history, "userNotFound": False}, client["ClientId"])  # fmt: skip
        if define.get("failAuthentication") or len(history) >= MAX_ROUNDS:
            raise AwsError("NotAuthorizedException", "Incorrect username or password.", 400)
        if define.get("issueTokens"):
            return await self._signed_in(pool, client, user, {"ClientMetadata": metadata})
        name = define.get("challengeName")
        if name == "PASSWORD_VERIFIER" and srp_a:
            return await self._srp_start(pool, client, user, {"SRP_A": srp_a}, custom={"History": history, "Metadata": metadata})
        if name != "CUSTOM_CHALLENGE":
            if name in ("PASSWORD_VERIFIER", "SMS_MFA", "SOFTWARE_TOKEN_MFA", "SRP_A"):
                raise AwsError("NotImplemented", f"CUSTOM_AUTH with the {name} challenge is not implemented by nubes", 501, sender_fault=False)
            raise AwsError("InvalidLambdaResponseException", "Invalid DefineAuthChallenge response: challengeName is required", 400)
        create = await self._trigger(pool, "CreateAuthChallenge_Authentication", user, metadata,
                                     {"challengeName": name, "session": history, "userNotFound": False}, client["ClientId"])  # fmt: skip
        public = {str(k): str(v) for k, v in (create.get("publicChallengeParameters") or {}).items()}
        public["USERNAME"] = user["Username"]
        session = await self._new_session(pool, client, user, "CUSTOM_CHALLENGE", {
            "History": history, "Private": create.get("privateChallengeParameters") or {},
            "ChallengeMetadata": create.get("challengeMetadata"), "Metadata": metadata})  # fmt: skip
        return {"ChallengeName": "CUSTOM_CHALLENGE", "Session": session, "ChallengeParameters": public}

    async def _respond_other(self, pool: dict[str, Any], client: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        if params["ChallengeName"] != "CUSTOM_CHALLENGE":
            return await super()._respond_other(pool, client, params)
        answers = params.get("ChallengeResponses") or {}
        if "ANSWER" not in answers:
            raise AwsError("InvalidParameterException", "Missing required parameter ANSWER", 400)
        session = await self._take_session(params.get("Session") or "", "CUSTOM_CHALLENGE")
        if session["ClientId"] != client["ClientId"] or session["PoolId"] != pool["Id"]:
            raise AwsError("NotAuthorizedException", "Invalid session for the user, session is expired.", 400)
        user = await self.db.user(pool, session["Username"])
        metadata = params.get("ClientMetadata") or session.get("Metadata")
        verify = await self._trigger(pool, "VerifyAuthChallengeResponse_Authentication", user, metadata, {
            "privateChallengeParameters": session["Private"], "challengeAnswer": answers["ANSWER"], "userNotFound": False,
        }, client["ClientId"])  # fmt: skip
        entry: dict[str, Any] = {"challengeName": "CUSTOM_CHALLENGE", "challengeResult": bool(verify.get("answerCorrect"))}
        if session.get("ChallengeMetadata") is not None:
            entry["challengeMetadata"] = session["ChallengeMetadata"]
        return await self._custom_round(pool, client, user, [*session["History"], entry], metadata)
