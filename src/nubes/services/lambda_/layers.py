"""Layers: versions of shared code unpacked into the data dir, put on ``sys.path``
like ``/opt/python`` by the runtime."""

from __future__ import annotations

import re
from typing import Any

import orjson

from nubes.services.base import RequestContext
from nubes.services.lambda_ import store as st
from nubes.services.lambda_.common import LambdaBase
from nubes.services.lambda_.models import invalid, not_found, timestamp
from nubes.storage.base import Txn
from nubes.storage.keys import pack

_LAYER_NAME = re.compile(r"[a-zA-Z0-9-_]{1,140}")
_LAYER_ARN = re.compile(r"arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]+:\d{12}:layer:(?P<name>[a-zA-Z0-9-_]+)")


def _public(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if not k.startswith("_")}


def _list_item(doc: dict[str, Any]) -> dict[str, Any]:
    keys = ("LayerVersionArn", "Version", "Description", "CreatedDate", "CompatibleRuntimes",
            "CompatibleArchitectures", "LicenseInfo")  # fmt: skip
    return {k: doc[k] for k in keys if k in doc}


def _matches(doc: dict[str, Any], params: dict[str, Any]) -> bool:
    runtime = params.get("CompatibleRuntime")
    arch = params.get("CompatibleArchitecture")
    if runtime and runtime not in (doc.get("CompatibleRuntimes") or []):
        return False
    return not (arch and arch not in (doc.get("CompatibleArchitectures") or []))


class LayersMixin(LambdaBase):
    """PublishLayerVersion, GetLayerVersion(ByArn), ListLayers, ListLayerVersions,
    DeleteLayerVersion."""

    def _layer_name(self, value: str) -> str:
        m = _LAYER_ARN.fullmatch(value)
        name = m.group("name") if m else value
        if not _LAYER_NAME.fullmatch(name):
            raise invalid(f"1 validation error detected: Value '{value}' at 'layerName' failed to satisfy "
                          "constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9-_]+")  # fmt: skip
        return name

    async def publish_layer_version(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = self._layer_name(params["LayerName"])
        code = await self.store_code(ctx, params.get("Content") or {}, kind="layers")
        layer_arn = f"arn:aws:lambda:{ctx.region}:{self.account}:layer:{name}"
        location = f"{self.app.settings.endpoint}/_nubes/lambda/code/{code['hex']}.zip" if code.get("hex") else ""

        def write(txn: Txn) -> dict[str, Any]:
            counter_key = st.layer_key(ctx.region, name, 0)
            counter = st.get(txn, st.LAYERS, counter_key) or {"next": 1}
            version = int(counter["next"])
            counter["next"] = version + 1
            st.put(txn, st.LAYERS, counter_key, counter)
            doc = {
                "Content": {"Location": location, "CodeSha256": code["sha"], "CodeSize": code["size"]},
                "LayerArn": layer_arn, "LayerVersionArn": f"{layer_arn}:{version}",
                "Description": params.get("Description") or "", "CreatedDate": timestamp(),
                "Version": version, "_dir": code["dir"],
            }  # fmt: skip
            for member in ("CompatibleRuntimes", "CompatibleArchitectures", "LicenseInfo"):
                if params.get(member):
                    doc[member] = params[member]
            st.put(txn, st.LAYERS, st.layer_key(ctx.region, name, version), doc)
            return doc

        return _public(await self.app.store.write(write))

    async def _layer_version(self, region: str, name: str, version: int) -> dict[str, Any]:
        key = st.layer_key(region, name, version)
        doc = await self.app.store.read(lambda txn: st.get(txn, st.LAYERS, key)) if version > 0 else None
        if doc is None:
            raise not_found("The resource you requested does not exist.")
        return _public(doc)

    async def get_layer_version(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return await self._layer_version(ctx.region, self._layer_name(params["LayerName"]), int(params["VersionNumber"]))

    async def get_layer_version_by_arn(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        arn: str = params["Arn"]
        parts = arn.split(":")
        if len(parts) != 8 or parts[5] != "layer" or not parts[7].isdigit():
            raise invalid(f"1 validation error detected: Value '{arn}' at 'arn' failed to satisfy constraint: "
                          "Member must satisfy regular expression pattern: arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\\d{12}:layer:[a-zA-Z0-9-_]+:[0-9]+")  # fmt: skip
        return await self._layer_version(parts[3], parts[6], int(parts[7]))

    async def list_layer_versions(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = self._layer_name(params["LayerName"])
        docs = await self.app.store.read(lambda txn: st.scan(txn, st.LAYERS, ctx.region, name))
        versions = [_list_item(d) for d in reversed(docs) if "Version" in d and _matches(d, params)]
        return _paged(versions, params, "LayerVersions", lambda v: str(v["Version"]))

    async def list_layers(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        def read(txn: Txn) -> list[tuple[bytes, bytes]]:
            return txn.scan(st.LAYERS, prefix=pack(ctx.region))

        latest: dict[str, dict[str, Any]] = {}
        for _, raw in await self.app.store.read(read):
            doc = orjson.loads(raw)
            if "Version" not in doc or not _matches(doc, params):
                continue
            name = doc["LayerArn"].rsplit(":", 1)[1]
            latest[name] = doc  # keys ascend by version: the last one wins
        layers = [{"LayerName": n, "LayerArn": d["LayerArn"], "LatestMatchingVersion": _list_item(d)}
                  for n, d in sorted(latest.items())]  # fmt: skip
        return _paged(layers, params, "Layers", lambda v: str(v["LayerName"]))

    async def delete_layer_version(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        key = st.layer_key(ctx.region, self._layer_name(params["LayerName"]), int(params["VersionNumber"]))
        if int(params["VersionNumber"]) > 0:
            await self.app.store.write(lambda txn: txn.delete(st.LAYERS, key))
        return {}


def _paged(items: list[dict[str, Any]], params: dict[str, Any], member: str, key: Any) -> dict[str, Any]:
    max_items = int(params.get("MaxItems") or 50)
    start = 0
    if params.get("Marker"):
        keys = [key(i) for i in items]
        start = keys.index(params["Marker"]) + 1 if params["Marker"] in keys else len(items)
    page = items[start : start + max_items]
    out: dict[str, Any] = {member: page}
    if start + max_items < len(items):
        out["NextMarker"] = key(page[-1])
    return out
