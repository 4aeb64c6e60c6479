"""Amazon EventBridge Scheduler: schedule groups and schedules (at/rate/cron in a
time zone, start/end dates, flexible windows), fired by durable timers and
invoked through a durable, retried delivery queue."""

from __future__ import annotations

import datetime as dt
import time
from functools import partial
from typing import Any

import orjson

from nubes.aws.errors import AwsError
from nubes.events.schedule_expressions import ScheduleExpressionError, timezone
from nubes.services.base import Provider, RequestContext
from nubes.services.events.common import paginate
from nubes.services.events.delivery import DeliveryWorker
from nubes.services.events.timers import run_timers, set_due
from nubes.services.scheduler import runner, universal
from nubes.services.scheduler import store as st
from nubes.services.scheduler.timing import expression_of
from nubes.storage.base import Txn
from nubes.storage.keys import pack

_SCHEDULE_FIELDS = (
    "ScheduleExpression", "Description", "ScheduleExpressionTimezone", "State", "KmsKeyArn",
    "Target", "FlexibleTimeWindow", "ActionAfterCompletion",
)  # fmt: skip
_EARLIEST_START = 300.0


def validation(message: str) -> AwsError:
    return AwsError("ValidationException", message, 400)


def not_found(message: str) -> AwsError:
    return AwsError("ResourceNotFoundException", message, 404)


def _epoch(value: Any) -> float | None:
    """A timestamp parameter as unix seconds (datetime from the wire; numbers or
    ISO 8601 text from internal callers such as CloudFormation)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            try:
                return float(value)
            except ValueError:
                raise validation(f"Invalid timestamp {value}.") from None
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).timestamp()
    return float(value)


def _time(value: float | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromtimestamp(value, dt.UTC)


def _validate(params: dict[str, Any], now: float) -> None:
    expression = params["ScheduleExpression"]
    try:
        parsed = expression_of(params)
    except ScheduleExpressionError:
        raise validation(f"Invalid Schedule Expression {expression}.") from None
    zone = params.get("ScheduleExpressionTimezone")
    if zone:
        try:
            timezone(zone)
        except ScheduleExpressionError:
            raise validation(f"Invalid ScheduleExpressionTimezone {zone}.") from None
    window = params.get("FlexibleTimeWindow") or {}
    if window.get("Mode") == "FLEXIBLE" and not window.get("MaximumWindowInMinutes"):
        raise validation("MaximumWindowInMinutes must be provided when Mode is FLEXIBLE.")
    if window.get("Mode") == "OFF" and window.get("MaximumWindowInMinutes"):
        raise validation("MaximumWindowInMinutes must not be provided when Mode is OFF.")
    start, end = _epoch(params.get("StartDate")), _epoch(params.get("EndDate"))
    if parsed.kind != "at" and start is not None and start < now - _EARLIEST_START:
        raise validation("The StartDate you specify cannot be earlier than 5 minutes ago.")
    if start is not None and end is not None and end <= start:
        raise validation("The EndDate you specify must be after the StartDate.")
    if end is not None and end < now:
        raise validation("The EndDate you specify cannot be earlier than the current time.")
    arn = str(params["Target"].get("Arn", ""))
    if arn.startswith("arn:aws:scheduler:"):
        if not arn.startswith(universal.PREFIX):
            raise validation(f"Invalid RequestJson provided. Reason: Invalid target ARN {arn}.")
        try:
            universal.coerce(*universal.resolve(arn), {})
        except AwsError:
            raise validation(
                f"Invalid RequestJson provided. Reason: {arn} is not a supported universal target."
            ) from None


class SchedulerProvider(Provider):
    """Every EventBridge Scheduler operation."""

    #: first retry delay of a failed invocation (doubles each attempt)
    retry_base_seconds = 1.0
    worker: DeliveryWorker | None = None

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        #: SQS queue ARN → URL, for invocations
        self.queue_urls: dict[str, str] = {}

    @property
    def account(self) -> str:
        account: str = self.app.settings.account_id
        return account

    async def start(self) -> None:
        self.worker = DeliveryWorker(
            self.app, st.DELIVERIES, partial(runner.deliver, self.app, self.queue_urls),
            partial(runner.dead_letter, self.app, self.queue_urls),
            retry_base=self.retry_base_seconds,
        )  # fmt: skip
        self.app.spawn(self.worker.run(), name="scheduler-deliveries")
        self.app.spawn(
            run_timers(self.app, st.TIMERS, self._fire, self._wake_deliveries),
            name="scheduler-timers",
        )

    def _fire(self, txn: Txn, item: str, due: float, now: float) -> None:
        runner.fire(txn, item, due, now, self.account)

    def _wake_deliveries(self) -> None:
        self.app.bus.wake(st.DELIVERIES)

    # -- groups --------------------------------------------------------------------------

    async def create_schedule_group(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        name = params["Name"]
        created = time.time()
        doc = {"Name": name, "Arn": ctx.arn("scheduler", f"schedule-group/{name}"),
               "State": "ACTIVE", "CreationDate": created, "LastModificationDate": created}  # fmt: skip
        tags = {t["Key"]: t["Value"] for t in params.get("Tags") or []}

        def create(txn: Txn) -> bool:
            if st.get_group(txn, ctx.region, self.account, name) is not None:
                return False
            st.put_json(txn, st.GROUPS, pack(ctx.region, name), doc)
            st.put_tags(txn, doc["Arn"], tags)
            return True

        if not await self.app.store.write(create):
            raise AwsError("ConflictException", f"Schedule group {name} already exists.", 409)
        return {"ScheduleGroupArn": doc["Arn"]}

    @staticmethod
    def _group_view(doc: dict[str, Any]) -> dict[str, Any]:
        return {"Arn": doc["Arn"], "Name": doc["Name"], "State": doc["State"],
                "CreationDate": _time(doc["CreationDate"]),
                "LastModificationDate": _time(doc["LastModificationDate"])}  # fmt: skip

    async def get_schedule_group(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        name = params["Name"]
        doc = await self.app.store.read(
            lambda txn: st.get_group(txn, ctx.region, self.account, name)
        )
        if doc is None:
            raise not_found(f"Schedule group {name} does not exist.")
        return self._group_view(doc)

    async def list_schedule_groups(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        prefix = params.get("NamePrefix") or ""

        def scan(txn: Txn) -> list[dict[str, Any]]:
            docs = {
                d["Name"]: d
                for d in (orjson.loads(v) for _, v in txn.scan(st.GROUPS, prefix=pack(ctx.region)))
            }
            docs.setdefault("default", st.default_group(ctx.region, self.account))
            return [docs[n] for n in sorted(docs) if n.startswith(prefix)]

        docs = await self.app.store.read(scan)
        page, token = paginate(docs, params, lambda d: str(d["Name"]), limit_key="MaxResults")
        out: dict[str, Any] = {"ScheduleGroups": [self._group_view(d) for d in page]}
        if token:
            out["NextToken"] = token
        return out

    async def delete_schedule_group(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        name = params["Name"]
        if name == "default":
            raise validation("The default schedule group cannot be deleted.")

        def delete(txn: Txn) -> bool:
            doc = st.get_json(txn, st.GROUPS, pack(ctx.region, name))
            if doc is None:
                return False
            for _, raw in txn.scan(st.SCHEDULES, prefix=pack(ctx.region, name)):
                schedule_name = orjson.loads(raw)["Name"]
                set_due(txn, st.TIMERS, st.timer_item(ctx.region, name, schedule_name), None)
            txn.delete_prefix(st.SCHEDULES, pack(ctx.region, name))
            txn.delete(st.GROUPS, pack(ctx.region, name))
            st.put_tags(txn, doc["Arn"], {})
            return True

        if not await self.app.store.write(delete):
            raise not_found(f"Schedule group {name} does not exist.")
        return {}

    # -- schedules -----------------------------------------------------------------------

    async def create_schedule(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return await self._put_schedule(ctx, params, create=True)

    async def update_schedule(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return await self._put_schedule(ctx, params, create=False)

    async def _put_schedule(
        self, ctx: RequestContext, params: dict[str, Any], *, create: bool
    ) -> dict[str, Any]:
        now = time.time()
        _validate(params, now)
        name, group = params["Name"], params.get("GroupName") or "default"
        arn = ctx.arn("scheduler", f"schedule/{group}/{name}")
        doc: dict[str, Any] = {k: params[k] for k in _SCHEDULE_FIELDS if params.get(k) is not None}
        doc.update(Name=name, GroupName=group, Arn=arn, StartDate=_epoch(params.get("StartDate")),
                   EndDate=_epoch(params.get("EndDate")))  # fmt: skip
        doc.setdefault("State", "ENABLED")
        doc.setdefault("ActionAfterCompletion", "NONE")

        def put(txn: Txn) -> str:
            if st.get_group(txn, ctx.region, self.account, group) is None:
                return "group"
            key = pack(ctx.region, group, name)
            old = st.get_json(txn, st.SCHEDULES, key)
            if create and old is not None:
                return "exists"
            if not create and old is None:
                return "missing"
            doc["CreationDate"] = old["CreationDate"] if old else now
            doc["LastModificationDate"] = now
            runner.schedule_timer(txn, ctx.region, doc, now, first=True)
            st.put_json(txn, st.SCHEDULES, key, doc)
            return ""

        problem = await self.app.store.write(put)
        if problem == "group":
            raise not_found(f"Schedule group {group} does not exist.")
        if problem == "exists":
            raise AwsError("ConflictException", f"Schedule {name} already exists.", 409)
        if problem == "missing":
            raise not_found(f"Schedule {name} does not exist.")
        self.app.bus.wake(st.TIMERS)
        return {"ScheduleArn": arn}

    async def _schedule(self, region: str, group: str, name: str) -> dict[str, Any]:
        doc = await self.app.store.read(
            lambda txn: st.get_json(txn, st.SCHEDULES, pack(region, group, name))
        )
        if doc is None:
            raise not_found(f"Schedule {name} does not exist.")
        return doc

    async def get_schedule(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        doc = await self._schedule(ctx.region, params.get("GroupName") or "default", params["Name"])
        out = {
            k: doc[k]
            for k in (*_SCHEDULE_FIELDS, "Arn", "Name", "GroupName")
            if doc.get(k) is not None
        }
        for key in ("StartDate", "EndDate", "CreationDate", "LastModificationDate"):
            if doc.get(key) is not None:
                out[key] = _time(doc[key])
        return out

    async def delete_schedule(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name, group = params["Name"], params.get("GroupName") or "default"

        def delete(txn: Txn) -> bool:
            if not txn.delete(st.SCHEDULES, pack(ctx.region, group, name)):
                return False
            set_due(txn, st.TIMERS, st.timer_item(ctx.region, group, name), None)
            return True

        if not await self.app.store.write(delete):
            raise not_found(f"Schedule {name} does not exist.")
        return {}

    async def list_schedules(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        group, prefix, state = (
            params.get("GroupName"),
            params.get("NamePrefix") or "",
            params.get("State"),
        )

        def scan(txn: Txn) -> list[dict[str, Any]]:
            key = pack(ctx.region, group) if group else pack(ctx.region)
            docs = [orjson.loads(v) for _, v in txn.scan(st.SCHEDULES, prefix=key)]
            return [
                d
                for d in docs
                if d["Name"].startswith(prefix) and (not state or d["State"] == state)
            ]

        docs = await self.app.store.read(scan)
        page, token = paginate(
            docs, params, lambda d: f"{d['GroupName']}/{d['Name']}", limit_key="MaxResults"
        )
        summaries = [{
            "Arn": d["Arn"], "Name": d["Name"], "GroupName": d["GroupName"], "State": d["State"],
            "CreationDate": _time(d["CreationDate"]),
            "LastModificationDate": _time(d["LastModificationDate"]),
            "Target": {"Arn": d["Target"]["Arn"]},
        } for d in page]  # fmt: skip
        out: dict[str, Any] = {"Schedules": summaries}
        if token:
            out["NextToken"] = token
        return out

    # -- tags ----------------------------------------------------------------------------

    async def _check_group_arn(self, arn: str) -> None:
        parts = arn.split(":", 5)
        if len(parts) < 6 or not parts[5].startswith("schedule-group/"):
            raise not_found(f"Resource {arn} does not exist.")
        region, name = parts[3], parts[5].partition("/")[2]
        doc = await self.app.store.read(lambda txn: st.get_group(txn, region, self.account, name))
        if doc is None:
            raise not_found(f"Schedule group {name} does not exist.")

    async def tag_resource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        arn = params["ResourceArn"]
        await self._check_group_arn(arn)
        new = {t["Key"]: t["Value"] for t in params.get("Tags") or []}
        await self.app.store.write(
            lambda txn: st.put_tags(txn, arn, {**st.get_tags(txn, arn), **new})
        )
        return {}

    async def untag_resource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        arn = params["ResourceArn"]
        await self._check_group_arn(arn)
        keys = set(params.get("TagKeys") or [])
        await self.app.store.write(
            lambda txn: st.put_tags(
                txn, arn, {k: v for k, v in st.get_tags(txn, arn).items() if k not in keys}
            )
        )
        return {}

    async def list_tags_for_resource(
        self, ctx: RequestContext, params: dict[str, Any]
    ) -> dict[str, Any]:
        arn = params["ResourceArn"]
        await self._check_group_arn(arn)
        tags = await self.app.store.read(lambda txn: st.get_tags(txn, arn))
        return {"Tags": [{"Key": k, "Value": v} for k, v in sorted(tags.items())]}
