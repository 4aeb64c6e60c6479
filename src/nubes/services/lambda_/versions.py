"""Published versions and aliases (with RoutingConfig weights)."""

from __future__ import annotations

import re
import uuid
from typing import Any

from nubes.services.base import RequestContext
from nubes.services.lambda_ import store as st
from nubes.services.lambda_.common import LambdaBase, precondition_failed
from nubes.services.lambda_.models import (
    LATEST,
    conflict,
    function_arn,
    function_not_found,
    invalid,
    not_found,
    public_config,
    timestamp,
)
from nubes.storage.base import Txn

_ALIAS_NAME = re.compile(r"(?!^[0-9]+$)([a-zA-Z0-9-_]+)")


class VersionsMixin(LambdaBase):
    """PublishVersion, ListVersionsByFunction, Create/Get/List/Update/DeleteAlias."""

    async def publish(self, region: str, name: str, params: dict[str, Any]) -> dict[str, Any]:
        """Snapshot $LATEST as version N (or return the last version if nothing changed)."""

        def write(txn: Txn) -> dict[str, Any] | None:
            key = st.function_key(region, name)
            doc = st.get(txn, st.FUNCTIONS, key)
            if doc is None:
                return None
            config = doc["config"]
            if params.get("RevisionId") and params["RevisionId"] != config["RevisionId"]:
                raise precondition_failed()
            if params.get("CodeSha256") and params["CodeSha256"] != config["CodeSha256"]:
                raise invalid(f"CodeSHA256 ({params['CodeSha256']}) is different from current CodeSHA256 in "
                              f"$LATEST ({config['CodeSha256']}). Please try again from GetFunction")  # fmt: skip
            if doc["next_version"] > 1:
                last = st.get(txn, st.VERSIONS, st.version_key(region, name, doc["next_version"] - 1))
                if last is not None and last.get("_source_revision") == config["RevisionId"]:
                    return last
            number = doc["next_version"]
            version = dict(config)
            version.update({
                "Version": str(number), "FunctionArn": function_arn(region, self.account, name, str(number)),
                "RevisionId": str(uuid.uuid4()), "_source_revision": config["RevisionId"],
                "State": "Active", "LastUpdateStatus": "Successful", "LastModified": timestamp(),
            })  # fmt: skip
            for k in ("StateReason", "StateReasonCode", "LastUpdateStatusReason", "LastUpdateStatusReasonCode"):
                version.pop(k, None)
            if params.get("Description") is not None:
                version["Description"] = params["Description"]
            doc["next_version"] = number + 1
            st.put(txn, st.FUNCTIONS, key, doc)
            st.put(txn, st.VERSIONS, st.version_key(region, name, number), version)
            return version

        version = await self.write(write)
        if version is None:
            raise function_not_found(region, self.account, name)
        return version

    async def publish_version(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref = self.ref(ctx, {"FunctionName": params["FunctionName"]})
        doc = await self.load(ref)
        if doc["config"].get("LastUpdateStatus") == "InProgress" or doc["config"].get("State") == "Pending":
            raise conflict("The operation cannot be performed at this time. An update is in progress for resource: "
                           + doc["config"]["FunctionArn"])  # fmt: skip
        return public_config(await self.publish(ref.region, ref.name, params))

    async def list_versions_by_function(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref = self.ref(ctx, params)

        def read(txn: Txn) -> list[dict[str, Any]] | None:
            doc = st.get(txn, st.FUNCTIONS, st.function_key(ref.region, ref.name))
            if doc is None:
                return None
            return [doc["config"], *st.scan(txn, st.VERSIONS, ref.region, ref.name)]

        versions = await self.app.store.read(read)
        if versions is None:
            raise function_not_found(ref.region, self.account, ref.name)
        return _page(versions, params, "Versions", lambda c: str(c["Version"]))

    # -- aliases -----------------------------------------------------------------------

    def _alias_arn(self, region: str, name: str, alias: str) -> str:
        return function_arn(region, self.account, name, alias)

    def _check_routing(self, txn: Txn, region: str, name: str, primary: str, routing: dict[str, Any] | None) -> None:
        weights = (routing or {}).get("AdditionalVersionWeights") or {}
        if len(weights) > 1:
            raise invalid("Number of items in AdditionalVersionWeights cannot be greater than 1")
        for version, weight in weights.items():
            if primary == LATEST:
                raise invalid("$LATEST is not supported for an alias pointing to more than 1 version")
            if version == primary:
                raise invalid(f"Invalid function version {version}. Function version {version} is already "
                              "included in routing configuration.")  # fmt: skip
            if not 0.0 <= float(weight) <= 1.0:
                raise invalid(f"Invalid weight {weight}: weights must be between 0.0 and 1.0")
            if not version.isdigit() or txn.get(st.VERSIONS, st.version_key(region, name, int(version))) is None:
                raise invalid(f"Function not found: {function_arn(region, self.account, name, version)}")

    def _check_version(self, txn: Txn, region: str, name: str, version: str) -> None:
        if version == LATEST:
            return
        if not version.isdigit() or txn.get(st.VERSIONS, st.version_key(region, name, int(version))) is None:
            raise not_found(f"Function not found: {function_arn(region, self.account, name, version)}")

    async def create_alias(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref = self.ref(ctx, {"FunctionName": params["FunctionName"]})
        alias_name: str = params["Name"]
        if not _ALIAS_NAME.fullmatch(alias_name) or len(alias_name) > 128:
            raise invalid(f"1 validation error detected: Value '{alias_name}' at 'name' failed to satisfy "
                          "constraint: Member must satisfy regular expression pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+)")  # fmt: skip
        alias = {
            "AliasArn": self._alias_arn(ref.region, ref.name, alias_name), "Name": alias_name,
            "FunctionVersion": params["FunctionVersion"], "Description": params.get("Description") or "",
            "RevisionId": str(uuid.uuid4()),
        }  # fmt: skip
        if params.get("RoutingConfig"):
            alias["RoutingConfig"] = params["RoutingConfig"]

        def create(txn: Txn) -> bool:
            if txn.get(st.FUNCTIONS, st.function_key(ref.region, ref.name)) is None:
                raise function_not_found(ref.region, self.account, ref.name)
            self._check_version(txn, ref.region, ref.name, alias["FunctionVersion"])
            self._check_routing(txn, ref.region, ref.name, alias["FunctionVersion"], params.get("RoutingConfig"))
            return txn.insert(st.ALIASES, st.alias_key(ref.region, ref.name, alias_name), st.dumps(alias))

        if not await self.write(create):
            raise conflict(f"Alias already exists: {alias['AliasArn']}")
        return alias

    async def _read_alias(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref = self.ref(ctx, {"FunctionName": params["FunctionName"]})
        key = st.alias_key(ref.region, ref.name, params["Name"])

        def read(txn: Txn) -> dict[str, Any] | None:
            if txn.get(st.FUNCTIONS, st.function_key(ref.region, ref.name)) is None:
                raise function_not_found(ref.region, self.account, ref.name)
            return st.get(txn, st.ALIASES, key)

        alias = await self.app.store.read(read)
        if alias is None:
            raise not_found(f"Cannot find alias arn: {self._alias_arn(ref.region, ref.name, params['Name'])}")
        return alias

    async def get_alias(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return await self._read_alias(ctx, params)

    async def list_aliases(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref = self.ref(ctx, {"FunctionName": params["FunctionName"]})
        await self.load(ref)
        aliases = await self.app.store.read(lambda txn: st.scan(txn, st.ALIASES, ref.region, ref.name))
        wanted = params.get("FunctionVersion")
        if wanted:
            aliases = [a for a in aliases if a["FunctionVersion"] == wanted]
        return _page(aliases, params, "Aliases", lambda a: str(a["Name"]))

    async def update_alias(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref = self.ref(ctx, {"FunctionName": params["FunctionName"]})
        key = st.alias_key(ref.region, ref.name, params["Name"])

        def update(txn: Txn) -> dict[str, Any]:
            alias = st.get(txn, st.ALIASES, key)
            if alias is None:
                raise not_found(f"Cannot find alias arn: {self._alias_arn(ref.region, ref.name, params['Name'])}")
            if params.get("RevisionId") and params["RevisionId"] != alias["RevisionId"]:
                raise precondition_failed()
            if params.get("FunctionVersion"):
                self._check_version(txn, ref.region, ref.name, params["FunctionVersion"])
                alias["FunctionVersion"] = params["FunctionVersion"]
            if params.get("Description") is not None:
                alias["Description"] = params["Description"]
            if "RoutingConfig" in params:
                alias["RoutingConfig"] = params["RoutingConfig"] or {}
            self._check_routing(txn, ref.region, ref.name, alias["FunctionVersion"], alias.get("RoutingConfig"))
            alias["RevisionId"] = str(uuid.uuid4())
            st.put(txn, st.ALIASES, key, alias)
            return alias

        result: dict[str, Any] = await self.write(update)
        return result

    async def delete_alias(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref = self.ref(ctx, {"FunctionName": params["FunctionName"]})
        key = st.alias_key(ref.region, ref.name, params["Name"])
        await self.write(lambda txn: txn.delete(st.ALIASES, key))
        return {}


def _page(items: list[dict[str, Any]], params: dict[str, Any], member: str, key: Any) -> dict[str, Any]:
    """Marker/MaxItems paging over an ordered list."""
    max_items = int(params.get("MaxItems") or 50)
    start = 0
    if params.get("Marker"):
        keys = [key(i) for i in items]
        if params["Marker"] not in keys:
            raise invalid("Invalid marker")
        start = keys.index(params["Marker"]) + 1
    page = items[start : start + max_items]
    out: dict[str, Any] = {member: [public_config(i) for i in page]}
    if start + max_items < len(items):
        out["NextMarker"] = key(page[-1])
    return out
