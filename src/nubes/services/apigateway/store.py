"""API Gateway's records: one document per API (v1 or v2) with everything that
belongs to it, plus deployments (frozen copies a stage serves) and WebSocket
connections.

Keeping an API's routes, integrations and authorizers in one record makes every
change atomic and a deployment a plain copy of it.
"""

from __future__ import annotations

import secrets
import string
import time
from collections.abc import Callable
from typing import Any

import orjson

from nubes.app import App
from nubes.aws.errors import AwsError
from nubes.storage.base import Txn
from nubes.storage.keys import pack

APIS = "apigw.apis"
DEPLOYMENTS = "apigw.deployments"
CONNECTIONS = "apigw.connections"
KEYS = "apigw.apikeys"
PLANS = "apigw.usageplans"
_ID = string.ascii_lowercase + string.digits
#: how long the data plane trusts an API document it read before reading it again:
#: a change made through this node applies at once, one made on another node
#: (scale-out) within this many seconds
SERVING_TTL = 1.0


def new_id(length: int = 10) -> str:
    return "".join(secrets.choice(_ID) for _ in range(length))


def now() -> float:
    return time.time()


def not_found(what: str, v2: bool) -> AwsError:
    if v2:
        return AwsError("NotFoundException", f"Unable to find {what}", 404)
    return AwsError("NotFoundException", f"Invalid {what} specified", 404)


class ApiStore:
    """Load, change and save API documents."""

    def __init__(self, app: App) -> None:
        self.app = app
        #: api id -> (when read, stored bytes, parsed document) for the data plane
        self._parsed: dict[str, tuple[float, bytes, dict[str, Any]]] = {}
        #: bumped by every change made here: a read that overlapped one is not cached
        self._writes = 0

    async def get(self, api_id: str, v2: bool | None = None) -> dict[str, Any]:
        raw = await self.app.store.read(lambda txn: txn.get(APIS, pack(api_id)))
        if raw is None:
            raise not_found(f"Api identified by {api_id}" if v2 is not False else "API identifier", bool(v2 is not False))
        api: dict[str, Any] = orjson.loads(raw)
        if v2 is not None and api["Version"] != (2 if v2 else 1):
            raise not_found(f"Api identified by {api_id}" if v2 else "API identifier", v2)
        return api

    async def find(self, api_id: str) -> dict[str, Any] | None:
        raw = await self.app.store.read(lambda txn: txn.get(APIS, pack(api_id)))
        return None if raw is None else dict(orjson.loads(raw))

    async def find_serving(self, api_id: str) -> dict[str, Any] | None:
        """The API document for the data plane. Kept in memory for ``SERVING_TTL``
        seconds (changes made through this store drop it at once), then read again
        and parsed only if the stored record changed. Callers must not modify it."""
        cached = self._parsed.get(api_id)
        clock = time.monotonic()
        if cached is not None and clock - cached[0] < SERVING_TTL:
            return cached[2]
        writes = self._writes
        raw = await self.app.store.read(lambda txn: txn.get(APIS, pack(api_id)))
        if raw is None:
            self._parsed.pop(api_id, None)
            return None
        cached = self._parsed.get(api_id)
        api: dict[str, Any] = cached[2] if cached is not None and cached[1] == raw else orjson.loads(raw)
        if writes == self._writes:
            if len(self._parsed) > 1024:
                self._parsed.clear()
            self._parsed[api_id] = (clock, raw, api)
        return api

    def _changed(self, api_id: str) -> None:
        self._writes += 1
        self._parsed.pop(api_id, None)

    async def put(self, api: dict[str, Any]) -> None:
        try:
            await self.app.store.write(lambda txn: txn.put(APIS, pack(api["Id"]), orjson.dumps(api)))
        finally:
            self._changed(str(api["Id"]))

    async def change(self, api_id: str, v2: bool, fn: Callable[[dict[str, Any]], Any]) -> Any:
        """Apply ``fn`` to the API document atomically; returns what ``fn`` returns."""

        def update(txn: Txn) -> Any:
            raw = txn.get(APIS, pack(api_id))
            if raw is None:
                raise not_found(f"Api identified by {api_id}" if v2 else "API identifier", v2)
            api = orjson.loads(raw)
            if api["Version"] != (2 if v2 else 1):
                raise not_found(f"Api identified by {api_id}" if v2 else "API identifier", v2)
            result = fn(api)
            api["Revision"] = api.get("Revision", 0) + 1
            txn.put(APIS, pack(api_id), orjson.dumps(api))
            return result

        try:
            return await self.app.store.write(update)
        finally:
            self._changed(api_id)

    async def all(self, version: int) -> list[dict[str, Any]]:
        rows = await self.app.store.read(lambda txn: txn.scan(APIS))
        return [a for a in (orjson.loads(v) for _, v in rows) if a["Version"] == version]

    async def delete(self, api_id: str) -> None:
        def delete(txn: Txn) -> None:
            txn.delete(APIS, pack(api_id))
            txn.delete_prefix(DEPLOYMENTS, pack(api_id))

        try:
            await self.app.store.write(delete)
        finally:
            self._changed(api_id)

    async def deployment(self, api_id: str, deployment_id: str) -> dict[str, Any] | None:
        raw = await self.app.store.read(lambda txn: txn.get(DEPLOYMENTS, pack(api_id, deployment_id)))
        return None if raw is None else dict(orjson.loads(raw))

    async def deployments(self, api_id: str) -> list[dict[str, Any]]:
        rows = await self.app.store.read(lambda txn: txn.scan(DEPLOYMENTS, prefix=pack(api_id)))
        return [orjson.loads(v) for _, v in rows]

    async def delete_deployment(self, api_id: str, deployment_id: str) -> bool:
        return await self.app.store.write(lambda txn: txn.delete(DEPLOYMENTS, pack(api_id, deployment_id)))

    async def save_deployment(self, api_id: str, deployment: dict[str, Any]) -> None:
        await self.app.store.write(
            lambda txn: txn.put(DEPLOYMENTS, pack(api_id, deployment["Id"]), orjson.dumps(deployment))
        )


def page(items: list[Any], params: dict[str, Any], key: str, *, size_key: str = "MaxResults",
         token_key: str = "NextToken", out_token: str | None = None) -> dict[str, Any]:  # fmt: skip
    raw_size = params.get(size_key)
    if raw_size is None or raw_size == "":
        size = 500
    elif str(raw_size).isdigit() and int(raw_size) > 0:  # v2 models MaxResults as a string
        size = int(raw_size)
    else:
        raise AwsError("BadRequestException", f"Invalid {size_key}: {raw_size}", 400)
    token = params.get(token_key)
    if token is None or token == "":
        start = 0
    elif str(token).isdigit():
        start = int(token)
    else:
        raise AwsError("BadRequestException", f"Invalid pagination token: {token}", 400)
    out: dict[str, Any] = {key: items[start : start + size]}
    if start + size < len(items):
        out[out_token or token_key] = str(start + size)
    return out
