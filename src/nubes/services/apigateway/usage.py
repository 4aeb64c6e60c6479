"""API keys and usage plans (REST APIs): the control plane and the data plane's
enforcement (key check, token-bucket throttle, durable quota counters).

Keys and plans are account-wide records, not parts of one API document: one key
can be in several plans and one plan can cover stages of several APIs."""

from __future__ import annotations

import datetime as dt
import secrets
import string
import time
from typing import Any

import orjson

from nubes.app import App
from nubes.aws.errors import AwsError
from nubes.services.apigateway.store import KEYS, PLANS, new_id, now, page
from nubes.services.apigateway.v1 import apply_patch
from nubes.services.base import RequestContext
from nubes.storage.base import Txn
from nubes.storage.keys import pack

KEY_VALUES = "apigw.apikeyvalues"
USAGE = "apigw.usage"
_VALUE_CHARS = string.ascii_letters + string.digits
_NUMBERS = {"rateLimit": float, "burstLimit": int, "limit": int, "offset": int}


def _bad(message: str) -> AwsError:
    return AwsError("BadRequestException", message, 400)


def _key_view(key: dict[str, Any], include_value: bool) -> dict[str, Any]:
    return {k: v for k, v in key.items() if include_value or k != "value"}


def _plan_view(plan: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in plan.items() if k != "Keys"}


def _load(txn: Txn, table: str, item_id: str, label: str) -> dict[str, Any]:
    raw = txn.get(table, pack(item_id))
    if raw is None:
        raise AwsError("NotFoundException", f"Invalid {label} specified", 404)
    doc: dict[str, Any] = orjson.loads(raw)
    return doc


def _period_start(period: str, today: dt.date) -> dt.date:
    if period == "WEEK":
        return today - dt.timedelta(days=today.weekday())
    if period == "MONTH":
        return today.replace(day=1)
    return today


class UsagePlans:
    """CreateApiKey ... GetUsage: keys, plans, plan keys and usage reports."""

    def __init__(self, app: App) -> None:
        self.app = app

    # -- api keys ----------------------------------------------------------------------

    async def create_api_key(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        value = params.get("value") or "".join(secrets.choice(_VALUE_CHARS) for _ in range(40))
        if len(value) < 20:
            raise _bad("API Key value should be at least 20 characters")
        key: dict[str, Any] = {"id": new_id(), "value": value, "name": params.get("name") or "", "enabled": bool(params.get("enabled")),
               "createdDate": now(), "lastUpdatedDate": now(), "stageKeys": [
                   f"{s['restApiId']}/{s['stageName']}" for s in params.get("stageKeys") or []],
               "tags": params.get("tags") or {}}  # fmt: skip
        for field in ("description", "customerId"):
            if field in params:
                key[field] = params[field]

        def create(txn: Txn) -> None:
            if not txn.insert(KEY_VALUES, pack(value), key["id"].encode()):
                raise AwsError("ConflictException", "API Key already exists", 409)
            txn.put(KEYS, pack(key["id"]), orjson.dumps(key))

        await self.app.store.write(create)
        return key

    async def get_api_key(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        key = await self.app.store.read(lambda txn: _load(txn, KEYS, params["apiKey"], "API Key identifier"))
        return _key_view(key, bool(params.get("includeValue")))

    async def get_api_keys(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        rows = await self.app.store.read(lambda txn: txn.scan(KEYS))
        keys = [orjson.loads(v) for _, v in rows]
        if params.get("nameQuery"):
            keys = [k for k in keys if str(k.get("name", "")).startswith(params["nameQuery"])]
        if params.get("customerId"):
            keys = [k for k in keys if k.get("customerId") == params["customerId"]]
        items = [_key_view(k, bool(params.get("includeValues"))) for k in sorted(keys, key=lambda k: k["createdDate"])]
        return page(items, params, "items", size_key="limit", token_key="position")

    async def update_api_key(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        def update(txn: Txn) -> dict[str, Any]:
            key = _load(txn, KEYS, params["apiKey"], "API Key identifier")
            for op in params.get("patchOperations") or []:
                if op.get("path") not in ("/name", "/description", "/enabled", "/customerId", "/stages"):
                    raise _bad(f"Invalid patch path  '{op.get('path')}' specified for op '{op.get('op')}'. Must be one of: "
                               "[/name, /description, /enabled, /customerId, /stages]")  # fmt: skip
            apply_patch(key, [op for op in params.get("patchOperations") or [] if op.get("path") != "/stages"])
            if isinstance(key.get("enabled"), str):
                key["enabled"] = key["enabled"] == "true"
            key["lastUpdatedDate"] = now()
            txn.put(KEYS, pack(key["id"]), orjson.dumps(key))
            return key

        key = await self.app.store.write(update)
        return _key_view(key, False)

    async def delete_api_key(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        def delete(txn: Txn) -> None:
            key = _load(txn, KEYS, params["apiKey"], "API Key identifier")
            txn.delete(KEYS, pack(key["id"]))
            txn.delete(KEY_VALUES, pack(key["value"]))
            for raw_key, raw in txn.scan(PLANS):
                plan = orjson.loads(raw)
                if key["id"] in plan.get("Keys", []):
                    plan["Keys"].remove(key["id"])
                    txn.put(PLANS, raw_key, orjson.dumps(plan))

        await self.app.store.write(delete)
        return {}

    # -- usage plans ---------------------------------------------------------------------

    async def create_usage_plan(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        if not params.get("name"):
            raise _bad("Usage plan name is required")
        quota = params.get("quota")
        if quota and quota.get("period") not in ("DAY", "WEEK", "MONTH"):
            raise _bad("Quota period must be one of DAY, WEEK or MONTH")
        plan = {"id": new_id(6), "name": params["name"], "apiStages": params.get("apiStages") or [],
                "tags": params.get("tags") or {}, "Keys": []}  # fmt: skip
        for field in ("description", "throttle", "quota"):
            if params.get(field) is not None:
                plan[field] = params[field]
        await self._check_stages(plan["apiStages"])
        await self.app.store.write(lambda txn: txn.put(PLANS, pack(plan["id"]), orjson.dumps(plan)))
        return _plan_view(plan)

    async def _check_stages(self, stages: list[dict[str, Any]]) -> None:
        from nubes.services.apigateway.store import ApiStore

        for stage in stages:
            api = await ApiStore(self.app).find(str(stage.get("apiId")))
            if api is None or api["Version"] != 1:
                raise _bad(f"Invalid API identifier specified {ctx_account(self.app)}:{stage.get('apiId')}")
            if stage.get("stage") not in api["Stages"]:
                raise _bad(f"Invalid stage identifier specified {ctx_account(self.app)}:{stage.get('apiId')}:{stage.get('stage')}")

    async def get_usage_plan(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        plan = await self.app.store.read(lambda txn: _load(txn, PLANS, params["usagePlanId"], "Usage Plan ID"))
        return _plan_view(plan)

    async def get_usage_plans(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        rows = await self.app.store.read(lambda txn: txn.scan(PLANS))
        plans = [orjson.loads(v) for _, v in rows]
        if params.get("keyId"):
            plans = [p for p in plans if params["keyId"] in p.get("Keys", [])]
        return page([_plan_view(p) for p in plans], params, "items", size_key="limit", token_key="position")

    async def update_usage_plan(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        def update(txn: Txn) -> dict[str, Any]:
            plan = _load(txn, PLANS, params["usagePlanId"], "Usage Plan ID")
            for op in params.get("patchOperations") or []:
                _patch_plan(plan, op)
            txn.put(PLANS, pack(plan["id"]), orjson.dumps(plan))
            return plan

        return _plan_view(await self.app.store.write(update))

    async def delete_usage_plan(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        def delete(txn: Txn) -> None:
            _load(txn, PLANS, params["usagePlanId"], "Usage Plan ID")
            txn.delete(PLANS, pack(params["usagePlanId"]))
            txn.delete_prefix(USAGE, pack(params["usagePlanId"]))

        await self.app.store.write(delete)
        return {}

    # -- usage plan keys -----------------------------------------------------------------

    async def create_usage_plan_key(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("keyType") != "API_KEY":
            raise _bad("Usage plan key type must be API_KEY")

        def create(txn: Txn) -> dict[str, Any]:
            plan = _load(txn, PLANS, params["usagePlanId"], "Usage Plan ID")
            key = _load(txn, KEYS, params["keyId"], "API Key identifier")
            if key["id"] in plan["Keys"]:
                raise AwsError("ConflictException", f"Usage Plan {plan['id']} cannot be added because API Key {key['id']} cannot reference multiple Usage Plans with the same API Stage", 409)  # fmt: skip
            plan["Keys"].append(key["id"])
            txn.put(PLANS, pack(plan["id"]), orjson.dumps(plan))
            return {"id": key["id"], "type": "API_KEY", "value": key["value"], "name": key.get("name", "")}

        out: dict[str, Any] = await self.app.store.write(create)
        return out

    async def _plan_keys(self, plan_id: str) -> list[dict[str, Any]]:
        def read(txn: Txn) -> list[dict[str, Any]]:
            plan = _load(txn, PLANS, plan_id, "Usage Plan ID")
            keys = [txn.get(KEYS, pack(k)) for k in plan["Keys"]]
            return [orjson.loads(k) for k in keys if k is not None]

        return await self.app.store.read(read)

    async def get_usage_plan_keys(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        keys = await self._plan_keys(params["usagePlanId"])
        if params.get("nameQuery"):
            keys = [k for k in keys if str(k.get("name", "")).startswith(params["nameQuery"])]
        items = [{"id": k["id"], "type": "API_KEY", "value": k["value"], "name": k.get("name", "")} for k in keys]
        return page(items, params, "items", size_key="limit", token_key="position")

    async def get_usage_plan_key(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        for k in await self._plan_keys(params["usagePlanId"]):
            if k["id"] == params["keyId"]:
                return {"id": k["id"], "type": "API_KEY", "value": k["value"], "name": k.get("name", "")}
        raise AwsError("NotFoundException", "Invalid Usage Plan Key identifier specified", 404)

    async def delete_usage_plan_key(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        def delete(txn: Txn) -> None:
            plan = _load(txn, PLANS, params["usagePlanId"], "Usage Plan ID")
            if params["keyId"] not in plan["Keys"]:
                raise AwsError("NotFoundException", "Invalid Usage Plan Key identifier specified", 404)
            plan["Keys"].remove(params["keyId"])
            txn.put(PLANS, pack(plan["id"]), orjson.dumps(plan))

        await self.app.store.write(delete)
        return {}

    async def get_usage(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Per key, one ``[used, remaining]`` pair per day from startDate to endDate."""
        try:
            start = dt.date.fromisoformat(params["startDate"])
            end = dt.date.fromisoformat(params["endDate"])
        except (KeyError, ValueError):
            raise _bad("Invalid startDate or endDate: dates are YYYY-MM-DD") from None
        if end < start or (end - start).days > 90:
            raise _bad("The usage data period cannot exceed 90 days and must end after it starts")

        def read(txn: Txn) -> tuple[dict[str, Any], dict[tuple[str, str], int]]:
            plan = _load(txn, PLANS, params["usagePlanId"], "Usage Plan ID")
            counts = {}
            for raw_key, raw in txn.scan(USAGE, prefix=pack(plan["id"])):
                counts[_unpack_usage(raw_key)] = int(raw)
            return plan, counts

        plan, counts = await self.app.store.read(read)
        limit = (plan.get("quota") or {}).get("limit")
        items: dict[str, list[list[int]]] = {}
        for key_id in plan["Keys"]:
            if params.get("keyId") and key_id != params["keyId"]:
                continue
            days = []
            day = start
            while day <= end:
                used = counts.get((key_id, day.isoformat()), 0)
                period_used = sum(n for (k, d), n in counts.items() if k == key_id
                                  and _period_start(plan["quota"]["period"], day).isoformat() <= d <= day.isoformat()) if limit else 0  # fmt: skip
                days.append([used, max(int(limit) - period_used, 0) if limit else 0])
                day += dt.timedelta(days=1)
            items[key_id] = days
        return {"usagePlanId": plan["id"], "startDate": start.isoformat(), "endDate": end.isoformat(), "items": items}


def ctx_account(app: App) -> str:
    return str(app.settings.account_id)


def _unpack_usage(raw_key: bytes) -> tuple[str, str]:
    from nubes.storage.keys import unpack

    parts = unpack(raw_key)
    return str(parts[1]), str(parts[2])


def _patch_plan(plan: dict[str, Any], op: dict[str, Any]) -> None:
    path = str(op.get("path", ""))
    if path == "/apiStages":
        api_id, _, stage = str(op.get("value", "")).partition(":")
        entry = {"apiId": api_id, "stage": stage}
        if op.get("op") == "add":
            plan["apiStages"].append(entry)
        elif op.get("op") == "remove":
            plan["apiStages"] = [s for s in plan["apiStages"] if (s["apiId"], s["stage"]) != (api_id, stage)]
        return
    allowed = ("/name", "/description", "/productCode", "/throttle/rateLimit", "/throttle/burstLimit",
               "/quota/limit", "/quota/period", "/quota/offset", "/throttle", "/quota")  # fmt: skip
    if path not in allowed:
        raise _bad(f"Invalid patch path '{path}' specified for op '{op.get('op')}'")
    apply_patch(plan, [op])
    leaf = path.rsplit("/", 1)[1]
    if leaf in _NUMBERS and op.get("op") != "remove":
        parent = plan[path.split("/")[1]]
        try:
            parent[leaf] = _NUMBERS[leaf](parent[leaf])
        except (TypeError, ValueError):
            raise _bad(f"Invalid value for {path}: {op.get('value')}") from None
    if plan.get("quota", {}).get("period") not in (None, "DAY", "WEEK", "MONTH"):
        raise _bad("Quota period must be one of DAY, WEEK or MONTH")


class UsageGuard:
    """Enforces API keys, throttles and quotas for methods with ``apiKeyRequired``."""

    def __init__(self, app: App) -> None:
        self.app = app
        # token buckets: (plan, key, api, stage) -> (tokens, last refill); in memory, as
        # throttling on AWS is best-effort per node too
        self._buckets: dict[tuple[str, ...], tuple[float, float]] = {}

    async def check(self, api_id: str, stage: str, value: str | None, method_path: str = "") -> tuple[int, str] | None:
        """None when the request may go on, else (status, message) of the refusal.
        ``method_path`` (``/items/{id}/GET``) picks a per-method throttle of the plan's API stage."""
        if not value:
            return 403, "Forbidden"
        found = await self.app.store.read(lambda txn: self._plan_for(txn, api_id, stage, value))
        if found is None:
            return 403, "Forbidden"
        plan, api_stage, key_id = found
        # ApiStage.throttle maps "/{resource path}/{method}" to its own limits; the plan's apply otherwise
        per_method = (api_stage.get("throttle") or {}).get(method_path)
        throttle = per_method or plan.get("throttle")
        bucket = method_path if per_method else ""
        if throttle and not self._take(plan["id"], key_id, api_id, f"{stage}{bucket}", throttle):
            return 429, "Too Many Requests"
        quota = plan.get("quota")
        allowed = await self.app.store.write(lambda txn: _count(txn, plan["id"], key_id, quota))
        return None if allowed else (429, "Limit Exceeded")

    @staticmethod
    def _plan_for(txn: Txn, api_id: str, stage: str, value: str) -> tuple[dict[str, Any], dict[str, Any], str] | None:
        raw_id = txn.get(KEY_VALUES, pack(value))
        if raw_id is None:
            return None
        raw_key = txn.get(KEYS, pack(raw_id.decode()))
        if raw_key is None or not orjson.loads(raw_key).get("enabled"):
            return None
        key_id = raw_id.decode()
        for _, raw in txn.scan(PLANS):
            plan = orjson.loads(raw)
            if key_id not in plan.get("Keys", []):
                continue
            for api_stage in plan.get("apiStages") or []:
                if api_stage.get("apiId") == api_id and api_stage.get("stage") == stage:
                    return plan, api_stage, key_id
        return None

    def _take(self, plan_id: str, key_id: str, api_id: str, stage: str, throttle: dict[str, Any]) -> bool:
        rate = float(throttle.get("rateLimit") or 0)
        burst = float(throttle.get("burstLimit") or max(rate, 1))
        bucket_key = (plan_id, key_id, api_id, stage)
        clock = time.monotonic()
        tokens, last = self._buckets.get(bucket_key, (burst, clock))
        tokens = min(burst, tokens + (clock - last) * rate)
        if tokens < 1:
            self._buckets[bucket_key] = (tokens, clock)
            return False
        self._buckets[bucket_key] = (tokens - 1, clock)
        return True


def _count(txn: Txn, plan_id: str, key_id: str, quota: dict[str, Any] | None) -> bool:
    """Count one request against today's counter unless the quota is used up."""
    today = dt.datetime.now(dt.UTC).date()
    if quota and quota.get("limit") is not None:
        start = _period_start(str(quota.get("period") or "DAY"), today)
        rows = txn.scan(USAGE, start=pack(plan_id, key_id, start.isoformat()), end=pack(plan_id, key_id, "9999"))
        if sum(int(v) for _, v in rows) >= int(quota["limit"]):
            return False
    key = pack(plan_id, key_id, today.isoformat())
    current = txn.get(USAGE, key)
    txn.put(USAGE, key, str(int(current or b"0") + 1).encode())
    return True
