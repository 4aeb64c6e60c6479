"""Per-function settings: concurrency, event invoke config, resource policy, tags, account."""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from nubes.services.base import RequestContext
from nubes.services.lambda_ import store as st
from nubes.services.lambda_.common import LambdaBase, precondition_failed
from nubes.services.lambda_.models import (
    LATEST,
    FunctionRef,
    conflict,
    function_arn,
    invalid,
    not_found,
    parse_function_name,
)
from nubes.storage.base import Txn

#: the account's unreserved concurrency may not drop below this (as on AWS)
MIN_UNRESERVED = 100


class ExtrasMixin(LambdaBase):
    """Concurrency, FunctionEventInvokeConfig, permissions, tags, GetAccountSettings."""

    # -- concurrency --------------------------------------------------------------------

    async def put_function_concurrency(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref = self.ref(ctx, {"FunctionName": params["FunctionName"]})
        wanted = int(params["ReservedConcurrentExecutions"])
        limit = int(self.app.settings.lambda_concurrency)

        def write(txn: Txn) -> None:
            key = st.function_key(ref.region, ref.name)
            doc = st.get(txn, st.FUNCTIONS, key)
            if doc is None:
                raise self._not_found(ref)
            others = sum(
                int(d.get("concurrency") or 0) for d in st.scan(txn, st.FUNCTIONS)
                if d["config"]["FunctionArn"] != doc["config"]["FunctionArn"]
            )  # fmt: skip
            if wanted < 0 or limit - others - wanted < min(MIN_UNRESERVED, limit):
                raise invalid("Specified ReservedConcurrentExecutions for function decreases account's "
                              f"UnreservedConcurrentExecution below its minimum value of [{min(MIN_UNRESERVED, limit)}].")  # fmt: skip
            doc["concurrency"] = wanted
            st.put(txn, st.FUNCTIONS, key, doc)

        await self.write(write)
        if self.runtime is not None:
            self.runtime.set_reserved_concurrency(ref.name, wanted)
        return {"ReservedConcurrentExecutions": wanted}

    async def get_function_concurrency(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        doc = await self.load(self.ref(ctx, params))
        if doc.get("concurrency") is None:
            return {}
        return {"ReservedConcurrentExecutions": doc["concurrency"]}

    async def delete_function_concurrency(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref = self.ref(ctx, params)
        await self.update_function(ref, lambda doc: doc.__setitem__("concurrency", None))
        if self.runtime is not None:
            self.runtime.set_reserved_concurrency(ref.name, None)
        return {}

    async def get_account_settings(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        docs = await self.app.store.read(lambda txn: st.scan(txn, st.FUNCTIONS))
        limit = int(self.app.settings.lambda_concurrency)
        reserved = sum(int(d.get("concurrency") or 0) for d in docs)
        in_region = [d for d in docs if d["config"]["FunctionArn"].split(":")[3] == ctx.region]
        return {
            "AccountLimit": {
                "TotalCodeSize": 80_530_636_800, "CodeSizeUnzipped": 262_144_000,
                "CodeSizeZipped": 52_428_800, "ConcurrentExecutions": limit,
                "UnreservedConcurrentExecutions": limit - reserved,
            },
            "AccountUsage": {
                "TotalCodeSize": sum(int(d["config"].get("CodeSize") or 0) for d in in_region),
                "FunctionCount": len(in_region),
            },
        }  # fmt: skip

    def _not_found(self, ref: FunctionRef) -> Exception:
        return not_found(f"Function not found: {function_arn(ref.region, self.account, ref.name)}")

    async def get_function_code_signing_config(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """nubes has no code signing configs, so no function has one."""
        ref = self.ref(ctx, params)
        await self.load(ref)
        return {"CodeSigningConfigArn": "", "FunctionName": ref.name}

    async def get_runtime_management_config(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Runtimes are the local interpreter, updated with it: AWS calls that ``Auto``."""
        ref = self.ref(ctx, params)
        await self.resolve(ref)
        return {"UpdateRuntimeOn": "Auto", "FunctionArn": function_arn(ref.region, self.account, ref.name, ref.qualifier)}

    # -- event invoke config ----------------------------------------------------------------

    def _eic_out(self, ref: FunctionRef, qualifier: str, cfg: dict[str, Any]) -> dict[str, Any]:
        return {"FunctionArn": function_arn(ref.region, self.account, ref.name, qualifier), **cfg}

    @staticmethod
    def _check_eic(params: dict[str, Any]) -> None:
        retries = params.get("MaximumRetryAttempts")
        if retries is not None and not 0 <= int(retries) <= 2:
            raise invalid(f"1 validation error detected: Value '{retries}' at 'maximumRetryAttempts' failed to "
                          "satisfy constraint: Member must have value less than or equal to 2")  # fmt: skip
        age = params.get("MaximumEventAgeInSeconds")
        if age is not None and not 60 <= int(age) <= 21600:
            raise invalid(f"1 validation error detected: Value '{age}' at 'maximumEventAgeInSeconds' failed to "
                          "satisfy constraint: Member must have value between 60 and 21600")  # fmt: skip
        for kind in ("OnSuccess", "OnFailure"):
            dest = ((params.get("DestinationConfig") or {}).get(kind) or {}).get("Destination")
            if dest and dest.split(":")[2:3] not in (["sqs"], ["sns"], ["lambda"], ["events"], ["s3"]):
                raise invalid(f"The destination ARN {dest} is invalid.")

    async def _write_eic(self, ctx: RequestContext, params: dict[str, Any], merge: bool) -> dict[str, Any]:
        ref = self.ref(ctx, params)
        self._check_eic(params)
        qualifier = ref.qualifier or LATEST
        await self.resolve(ref)

        def change(doc: dict[str, Any]) -> None:
            configs = doc.setdefault("event_invoke", {})
            cfg = dict(configs.get(qualifier) or {}) if merge else {}
            for member in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig"):
                if params.get(member) is not None:
                    cfg[member] = params[member]
            cfg["LastModified"] = time.time()
            configs[qualifier] = cfg

        doc = await self.update_function(FunctionRef(ref.name, ref.region, None), change)
        return self._eic_out(ref, qualifier, doc["event_invoke"][qualifier])

    async def put_function_event_invoke_config(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return await self._write_eic(ctx, params, merge=False)

    async def update_function_event_invoke_config(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return await self._write_eic(ctx, params, merge=True)

    async def get_function_event_invoke_config(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref = self.ref(ctx, params)
        qualifier = ref.qualifier or LATEST
        doc = await self.load(ref)
        cfg = (doc.get("event_invoke") or {}).get(qualifier)
        if cfg is None:
            arn = function_arn(ref.region, self.account, ref.name, qualifier)
            raise not_found(f"The function {arn} doesn't have an EventInvokeConfig")
        return self._eic_out(ref, qualifier, cfg)

    async def delete_function_event_invoke_config(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref = self.ref(ctx, params)
        qualifier = ref.qualifier or LATEST
        await self.get_function_event_invoke_config(ctx, params)
        await self.update_function(
            FunctionRef(ref.name, ref.region, None), lambda doc: doc["event_invoke"].pop(qualifier, None)
        )
        return {}

    async def list_function_event_invoke_configs(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref = self.ref(ctx, params)
        doc = await self.load(ref)
        configs = [self._eic_out(ref, q, c) for q, c in sorted((doc.get("event_invoke") or {}).items())]
        return {"FunctionEventInvokeConfigs": configs}

    # -- resource policy ----------------------------------------------------------------------

    async def add_permission(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref = self.ref(ctx, params)
        await self.resolve(ref)
        statement = _statement(function_arn(ref.region, self.account, ref.name, ref.qualifier), params)
        qualifier = ref.qualifier or ""

        def change(doc: dict[str, Any]) -> None:
            policies = doc.setdefault("policies", {})
            statements = policies.setdefault(qualifier, [])
            if any(s["Sid"] == params["StatementId"] for s in statements):
                raise conflict(f"The statement id ({params['StatementId']}) provided already exists. Please "
                               "provide a new statement id, or remove the existing statement.")  # fmt: skip
            statements.append(statement)
            doc.setdefault("policy_revisions", {})[qualifier] = str(uuid.uuid4())

        await self._policy_update(ref, change, params.get("RevisionId"), qualifier)
        return {"Statement": orjson.dumps(statement).decode()}

    async def _policy_update(self, ref: FunctionRef, change: Any, revision: str | None, qualifier: str) -> None:
        def guarded(doc: dict[str, Any]) -> None:
            current = (doc.get("policy_revisions") or {}).get(qualifier)
            if revision and current and revision != current:
                raise precondition_failed()
            change(doc)

        await self.update_function(FunctionRef(ref.name, ref.region, None), guarded)

    async def remove_permission(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref = self.ref(ctx, params)
        qualifier = ref.qualifier or ""
        sid = params["StatementId"]

        def change(doc: dict[str, Any]) -> None:
            statements = (doc.get("policies") or {}).get(qualifier) or []
            kept = [s for s in statements if s["Sid"] != sid]
            if len(kept) == len(statements):
                raise not_found(f"Statement {sid} is not found in resource policy.")
            doc["policies"][qualifier] = kept
            doc.setdefault("policy_revisions", {})[qualifier] = str(uuid.uuid4())

        await self._policy_update(ref, change, params.get("RevisionId"), qualifier)
        return {}

    async def get_policy(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref = self.ref(ctx, params)
        doc = await self.load(ref)
        qualifier = ref.qualifier or ""
        statements = (doc.get("policies") or {}).get(qualifier) or []
        if not statements:
            raise not_found("The resource you requested does not exist.")
        policy = {"Version": "2012-10-17", "Id": "default", "Statement": statements}
        return {"Policy": orjson.dumps(policy).decode(), "RevisionId": doc["policy_revisions"][qualifier]}

    # -- tags -------------------------------------------------------------------------------

    def _tag_ref(self, ctx: RequestContext, arn: str) -> FunctionRef:
        ref = parse_function_name(arn, ctx.region)
        if ref.qualifier is not None:
            raise invalid("Tags on function aliases and versions are not supported. Please specify a function ARN.")
        return ref

    async def tag_resource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref = self._tag_ref(ctx, params["Resource"])
        await self.update_function(ref, lambda doc: doc.setdefault("tags", {}).update(params["Tags"]))
        return {}

    async def untag_resource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref = self._tag_ref(ctx, params["Resource"])

        def change(doc: dict[str, Any]) -> None:
            for key in params["TagKeys"]:
                doc.setdefault("tags", {}).pop(key, None)

        await self.update_function(ref, change)
        return {}

    async def list_tags(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        doc = await self.load(self._tag_ref(ctx, params["Resource"]))
        return {"Tags": doc.get("tags") or {}}


def _statement(resource: str, params: dict[str, Any]) -> dict[str, Any]:
    """One resource policy statement as AWS writes it for AddPermission."""
    principal = params["Principal"]
    if principal == "*":
        who: Any = "*"
    elif principal.endswith(".amazonaws.com"):
        who = {"Service": principal}
    elif principal.isdigit():
        who = {"AWS": f"arn:aws:iam::{principal}:root"}
    else:
        who = {"AWS": principal}
    statement: dict[str, Any] = {"Sid": params["StatementId"], "Effect": "Allow", "Principal": who,
                                 "Action": params["Action"], "Resource": resource}  # fmt: skip
    condition: dict[str, Any] = {}
    if params.get("SourceArn"):
        condition.setdefault("ArnLike", {})["AWS:SourceArn"] = params["SourceArn"]
    if params.get("SourceAccount"):
        condition.setdefault("StringEquals", {})["AWS:SourceAccount"] = params["SourceAccount"]
    if params.get("PrincipalOrgID"):
        condition.setdefault("StringEquals", {})["aws:PrincipalOrgID"] = params["PrincipalOrgID"]
    if params.get("EventSourceToken"):
        condition.setdefault("StringEquals", {})["lambda:EventSourceToken"] = params["EventSourceToken"]
    if params.get("FunctionUrlAuthType"):
        condition.setdefault("StringEquals", {})["lambda:FunctionUrlAuthType"] = params["FunctionUrlAuthType"]
    if condition:
        statement["Condition"] = condition
    return statement
