"""Create, read, update and delete functions; their state from Pending to Active."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from nubes.services.base import RequestContext
from nubes.services.lambda_ import store as st
from nubes.services.lambda_.common import LambdaBase
from nubes.services.lambda_.models import (
    DEFAULT_MEMORY,
    DEFAULT_TIMEOUT,
    LATEST,
    FunctionRef,
    check_config,
    check_name,
    conflict,
    function_arn,
    function_not_found,
    invalid,
    public_config,
    timestamp,
)
from nubes.storage.base import Txn

#: members of Create/UpdateFunctionConfiguration copied into the configuration as given
_PLAIN = ("Role", "Handler", "Description", "Timeout", "MemorySize", "Runtime", "KMSKeyArn",
          "DeadLetterConfig", "TracingConfig", "EphemeralStorage", "FileSystemConfigs")  # fmt: skip


class FunctionsMixin(LambdaBase):
    """CreateFunction, GetFunction(Configuration), ListFunctions, DeleteFunction,
    UpdateFunctionCode, UpdateFunctionConfiguration."""

    async def _apply_config(self, ctx: RequestContext, config: dict[str, Any], params: dict[str, Any]) -> None:
        for member in _PLAIN:
            if params.get(member) is not None:
                config[member] = params[member]
        if "Environment" in params:
            config["Environment"] = {"Variables": dict((params["Environment"] or {}).get("Variables") or {})}
        if "Layers" in params:
            config["Layers"] = await self.resolve_layers(ctx, list(params["Layers"] or []))
        if params.get("VpcConfig") is not None:
            vpc = params["VpcConfig"]
            config["VpcConfig"] = {"SubnetIds": vpc.get("SubnetIds", []),
                                   "SecurityGroupIds": vpc.get("SecurityGroupIds", []), "VpcId": ""}  # fmt: skip
        if params.get("LoggingConfig") is not None:
            logging_config = dict(config.get("LoggingConfig") or {})
            logging_config.update(params["LoggingConfig"])
            config["LoggingConfig"] = logging_config
        if params.get("SnapStart") is not None:
            config["SnapStart"] = {"ApplyOn": params["SnapStart"].get("ApplyOn", "None"), "OptimizationStatus": "Off"}

    @staticmethod
    def _set_code(config: dict[str, Any], code: dict[str, Any]) -> None:
        config["CodeSha256"] = code["sha"]
        config["CodeSize"] = code["size"]
        config["_code"] = code

    async def create_function(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref = self.ref(ctx, {"FunctionName": params["FunctionName"]})
        check_name(ref.name)
        check_config(params, creating=True)
        code = await self.store_code(ctx, params.get("Code") or {})
        config: dict[str, Any] = {
            "FunctionName": ref.name, "FunctionArn": function_arn(ref.region, self.account, ref.name),
            "Description": "", "Timeout": DEFAULT_TIMEOUT, "MemorySize": DEFAULT_MEMORY,
            "Version": LATEST, "TracingConfig": {"Mode": "PassThrough"}, "PackageType": "Zip",
            "Architectures": list(params.get("Architectures") or ["x86_64"]),
            "EphemeralStorage": {"Size": 512}, "SnapStart": {"ApplyOn": "None", "OptimizationStatus": "Off"},
            "LoggingConfig": {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{ref.name}"},
            "LastModified": timestamp(), "RevisionId": str(uuid.uuid4()),
            "State": "Pending", "StateReason": "The function is being created.", "StateReasonCode": "Creating",
        }  # fmt: skip
        await self._apply_config(ctx, config, params)
        self._set_code(config, code)
        doc: dict[str, Any] = {"config": config, "tags": dict(params.get("Tags") or {}), "concurrency": None, "policy": [],
               "next_version": 1, "event_invoke": {}, "urls": {}}  # fmt: skip
        key = st.function_key(ref.region, ref.name)

        def create(txn: Txn) -> bool:
            return txn.insert(st.FUNCTIONS, key, orjson.dumps(doc))

        if not await self.write(create):
            raise conflict(f"Function already exist: {ref.name}")
        result = public_config(config)
        if params.get("Publish"):
            await self._settle(ref.region, ref.name)
            published = await self.publish(ref.region, ref.name, {})
            result = {**public_config(published), "FunctionArn": config["FunctionArn"]}
        else:
            self.app.spawn(self._settle(ref.region, ref.name), name=f"lambda-settle-{ref.name}")
        return result

    async def _settle(self, region: str, name: str) -> None:
        """The function's code is in place: Pending → Active, InProgress → Successful."""

        def change(doc: dict[str, Any]) -> None:
            config = doc["config"]
            if config.get("State") == "Pending":
                config["State"] = "Active"
                for k in ("StateReason", "StateReasonCode"):
                    config.pop(k, None)
                config["LastUpdateStatus"] = "Successful"
            elif config.get("LastUpdateStatus") == "InProgress":
                config["LastUpdateStatus"] = "Successful"
                for k in ("LastUpdateStatusReason", "LastUpdateStatusReasonCode"):
                    config.pop(k, None)

        try:
            await self.update_function(FunctionRef(name, region, None), change)
        except Exception:  # deleted meanwhile
            return

    async def get_function(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        doc, config, _ = await self.resolve(self.ref(ctx, params))
        code = config["_code"]
        location = ""
        if code.get("hex"):
            location = f"{self.app.settings.endpoint}/_nubes/lambda/code/{code['hex']}.zip"
        out: dict[str, Any] = {
            "Configuration": public_config(config),
            "Code": {"RepositoryType": "S3", "Location": location},
        }
        if doc.get("tags"):
            out["Tags"] = doc["tags"]
        if doc.get("concurrency") is not None:
            out["Concurrency"] = {"ReservedConcurrentExecutions": doc["concurrency"]}
        return out

    async def get_function_configuration(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        _, config, _ = await self.resolve(self.ref(ctx, params))
        return public_config(config)

    async def list_functions(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        max_items = int(params.get("MaxItems") or 50)
        if not 1 <= max_items <= 10_000:
            raise invalid("MaxItems must be between 1 and 10000")
        marker = params.get("Marker")
        all_versions = params.get("FunctionVersion") == "ALL"

        def read(txn: Txn) -> list[dict[str, Any]]:
            out = []
            for doc in st.scan(txn, st.FUNCTIONS, ctx.region):
                out.append(doc["config"])
                if all_versions:
                    out.extend(st.scan(txn, st.VERSIONS, ctx.region, doc["config"]["FunctionName"]))
            return out

        configs = await self.app.store.read(read)
        start = 0
        if marker:
            keys = [f"{c['FunctionName']}:{c['Version']}" for c in configs]
            if marker not in keys:
                raise invalid("Invalid marker")
            start = keys.index(marker) + 1
        page = configs[start : start + max_items]
        out: dict[str, Any] = {"Functions": [_list_view(c) for c in page]}
        if start + max_items < len(configs):
            last = page[-1]
            out["NextMarker"] = f"{last['FunctionName']}:{last['Version']}"
        return out

    async def delete_function(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref = self.ref(ctx, params)
        if ref.qualifier == LATEST:
            raise invalid("$LATEST version cannot be deleted without deleting the function.")
        if ref.qualifier is not None:
            await self._delete_version(ref.region, ref.name, ref.qualifier)
            return {"StatusCode": 204}

        def delete(txn: Txn) -> bool:
            if txn.get(st.FUNCTIONS, st.function_key(ref.region, ref.name)) is None:
                return False
            st.delete_function(txn, ref.region, ref.name)
            return True

        if not await self.write(delete):
            raise function_not_found(ref.region, self.account, ref.name)
        if self.runtime is not None:
            self.runtime.retire(ref.name)
        return {"StatusCode": 204}

    async def _delete_version(self, region: str, name: str, qualifier: str) -> None:
        if not qualifier.isdigit():
            raise invalid(f"Invalid version: {qualifier}")

        def delete(txn: Txn) -> str:
            if txn.get(st.FUNCTIONS, st.function_key(region, name)) is None:
                return "function"
            for alias in st.scan(txn, st.ALIASES, region, name):
                weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
                if alias["FunctionVersion"] == qualifier or qualifier in weights:
                    return "alias:" + str(alias["Name"])
            txn.delete(st.VERSIONS, st.version_key(region, name, int(qualifier)))
            return "ok"

        outcome: str = await self.write(delete)
        if outcome == "function":
            raise function_not_found(region, self.account, name)
        if outcome.startswith("alias:"):
            raise conflict(f"Unable to delete version because the following aliases reference it: [{outcome[6:]}]")

    async def update_function_code(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref = self.ref(ctx, {"FunctionName": params["FunctionName"]})
        await self.load(ref)
        code = await self.store_code(ctx, params)
        if params.get("DryRun"):
            _, config, _ = await self.resolve(ref)
            return public_config({**config, "CodeSha256": code["sha"], "CodeSize": code["size"]})

        def change(doc: dict[str, Any]) -> None:
            config = doc["config"]
            self._set_code(config, code)
            self._mark_updating(config)

        doc = await self.update_function(ref, change, revision_id=params.get("RevisionId"))
        return await self._after_update(ref.region, ref.name, doc, bool(params.get("Publish")))

    async def update_function_configuration(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref = self.ref(ctx, {"FunctionName": params["FunctionName"]})
        check_config(params, creating=False)
        if params.get("Layers") is not None:
            await self.resolve_layers(ctx, list(params["Layers"]))  # fail before changing anything
        current = await self.load(ref)
        staged = dict(current["config"])
        await self._apply_config(ctx, staged, params)

        def change(doc: dict[str, Any]) -> None:
            config = doc["config"]
            for key in params:
                if key in staged:
                    config[key] = staged[key]
            self._mark_updating(config)

        doc = await self.update_function(ref, change, revision_id=params.get("RevisionId"))
        return await self._after_update(ref.region, ref.name, doc, False)

    @staticmethod
    def _mark_updating(config: dict[str, Any]) -> None:
        config["LastModified"] = timestamp()
        config["RevisionId"] = str(uuid.uuid4())
        config["LastUpdateStatus"] = "InProgress"
        config["LastUpdateStatusReason"] = "The function is being created."
        config["LastUpdateStatusReasonCode"] = "Creating"

    async def _after_update(self, region: str, name: str, doc: dict[str, Any], publish: bool) -> dict[str, Any]:
        if self.runtime is not None:
            self.runtime.retire(name)
        result = public_config(doc["config"])
        if publish:
            await self._settle(region, name)
            result = public_config(await self.publish(region, name, {}))
        else:
            self.app.spawn(self._settle(region, name), name=f"lambda-settle-{name}")
        return result



#: what ListFunctions leaves out of each configuration (AWS: "use GetFunction")
_NOT_LISTED = ("State", "StateReason", "StateReasonCode", "LastUpdateStatus", "LastUpdateStatusReason",
               "LastUpdateStatusReasonCode", "RuntimeVersionConfig")  # fmt: skip


def _list_view(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in public_config(config).items() if k not in _NOT_LISTED}
