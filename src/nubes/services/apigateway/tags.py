"""TagResource, UntagResource and GetTags of both generations. Tags live on the
record they belong to (the API document, its stage, the API key, the usage plan),
so deleting the resource deletes its tags."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson

from nubes.app import App
from nubes.aws.errors import AwsError
from nubes.services.apigateway.store import KEYS, PLANS, ApiStore
from nubes.services.base import RequestContext
from nubes.storage.base import Txn
from nubes.storage.keys import pack

_ARN = re.compile(r"^arn:aws[\w-]*:apigateway:[\w-]*::/(?P<kind>restapis|apis|apikeys|usageplans)/(?P<id>[^/]+)"
                  r"(?:/stages/(?P<stage>[^/]+))?$")  # fmt: skip
_MAX_TAGS = 50


def _parse(arn: str) -> re.Match[str]:
    m = _ARN.match(arn or "")
    if m is None:
        raise AwsError("BadRequestException", f"Invalid ARN specified in the request: {arn}", 400)
    return m


class _Tags:
    """The tag logic both generations share; ``v2`` picks record field names."""

    v2 = False

    def __init__(self, apis: ApiStore) -> None:
        self.apis = apis
        self.app: App = apis.app

    async def _change(self, arn: str, fn: Callable[[dict[str, str]], None]) -> dict[str, str]:
        m = _parse(arn)
        kind, item_id, stage = m.group("kind"), m.group("id"), m.group("stage")
        if kind in ("apikeys", "usageplans"):
            return await self._change_record(KEYS if kind == "apikeys" else PLANS, item_id, fn)
        if (kind == "apis") != self.v2:
            raise AwsError("BadRequestException", f"Invalid ARN specified in the request: {arn}", 400)
        field = "Tags" if self.v2 else "tags"

        def change(api: dict[str, Any]) -> dict[str, str]:
            target = api
            if stage is not None:
                target = api["Stages"].get(stage)
                if target is None:
                    raise AwsError("NotFoundException", f"Invalid stage identifier specified: {stage}", 404)
            tags: dict[str, str] = target.setdefault(field, {}) or {}
            fn(tags)
            target[field] = tags
            return dict(tags)

        out: dict[str, str] = await self.apis.change(item_id, self.v2, change)
        return out

    async def _change_record(self, table: str, item_id: str, fn: Callable[[dict[str, str]], None]) -> dict[str, str]:
        def change(txn: Txn) -> dict[str, str]:
            raw = txn.get(table, pack(item_id))
            if raw is None:
                raise AwsError("NotFoundException", "Invalid resource identifier specified", 404)
            record = orjson.loads(raw)
            tags: dict[str, str] = record.get("tags") or {}
            fn(tags)
            record["tags"] = tags
            txn.put(table, pack(item_id), orjson.dumps(record))
            return dict(tags)

        return await self.app.store.write(change)

    @staticmethod
    def _adder(new: dict[str, str]) -> Callable[[dict[str, str]], None]:
        def add(tags: dict[str, str]) -> None:
            for key in new:
                if not key or len(key) > 128 or key.lower().startswith("aws:"):
                    raise AwsError("BadRequestException", f"Invalid tag key: {key}", 400)
            tags.update(new)
            if len(tags) > _MAX_TAGS:
                raise AwsError("BadRequestException", f"A resource can have at most {_MAX_TAGS} tags", 400)

        return add

    @staticmethod
    def _remover(keys: list[str]) -> Callable[[dict[str, str]], None]:
        def remove(tags: dict[str, str]) -> None:
            for key in keys:
                tags.pop(key, None)

        return remove


class TagsV1(_Tags):
    """REST APIs, their stages, API keys and usage plans."""

    async def tag_resource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self._change(params["resourceArn"], self._adder(params.get("tags") or {}))
        return {}

    async def untag_resource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self._change(params["resourceArn"], self._remover(params.get("tagKeys") or []))
        return {}

    async def get_tags(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        # read through the same path as changes: one place resolves ARNs to records
        return {"tags": await self._change(params["resourceArn"], lambda tags: None)}


class TagsV2(_Tags):
    """HTTP and WebSocket APIs and their stages."""

    v2 = True

    async def tag_resource_v2(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self._change(params["ResourceArn"], self._adder(params.get("Tags") or {}))
        return {}

    async def untag_resource_v2(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self._change(params["ResourceArn"], self._remover(params.get("TagKeys") or []))
        return {}

    async def get_tags_v2(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return {"Tags": await self._change(params["ResourceArn"], lambda tags: None)}
