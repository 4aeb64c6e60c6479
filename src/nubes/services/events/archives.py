"""Archives (copies of a bus's events, optionally filtered by a pattern) and
replays (re-sending archived events to their bus, marked with ``replay-name``)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from functools import partial
from typing import Any

import orjson

from nubes.aws.errors import AwsError
from nubes.services.base import RequestContext
from nubes.services.events import store as st
from nubes.services.events.common import (
    already_exists,
    bus_not_found,
    not_found,
    now,
    paginate,
    timestamp,
    validation,
)
from nubes.services.events.ingest import IngestOperations
from nubes.services.events.rules import check_pattern
from nubes.storage.base import Txn
from nubes.storage.keys import pack

log = logging.getLogger(__name__)

_ARCHIVE_FIELDS = (
    "ArchiveArn", "ArchiveName", "EventSourceArn", "Description", "EventPattern", "State",
    "StateReason", "RetentionDays", "KmsKeyIdentifier",
)  # fmt: skip
_REPLAY_FIELDS = (
    "ReplayName", "ReplayArn", "Description", "State", "StateReason", "EventSourceArn",
    "Destination",
)  # fmt: skip
_REPLAY_TIMES = (
    "EventStartTime", "EventEndTime", "EventLastReplayedTime", "ReplayStartTime", "ReplayEndTime",
)  # fmt: skip
_REPLAY_BATCH = 100
_SWEEP_SECONDS = 3600.0


def _page(log_name: str, after: int, txn: Txn) -> list[tuple[int, bytes]]:
    return txn.read_log(log_name, after=after, limit=_REPLAY_BATCH)


def _epoch(value: Any) -> float:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return float(value)


def _event_epoch(event: dict[str, Any], fallback: float) -> float:
    try:
        return dt.datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00")).timestamp()
    except (KeyError, ValueError):
        return fallback


def archive_not_found(name: str) -> Exception:
    return not_found(f"Archive {name} does not exist.")


class ArchiveOperations(IngestOperations):
    """Create/Describe/List/Update/DeleteArchive, Start/Describe/List/CancelReplay."""

    async def create_archive(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name, source = params["ArchiveName"], params["EventSourceArn"]
        if params.get("EventPattern"):
            check_pattern(params["EventPattern"])
        bus = source.partition(":event-bus/")[2]
        created = now()
        doc: dict[str, Any] = {
            "ArchiveArn": ctx.arn("events", f"archive/{name}"), "ArchiveName": name,
            "EventSourceArn": source, "State": "ENABLED", "CreationTime": created,
            "RetentionDays": int(params.get("RetentionDays") or 0),
        }  # fmt: skip
        for key in ("Description", "EventPattern", "KmsKeyIdentifier"):
            if params.get(key):
                doc[key] = params[key]

        def create(txn: Txn) -> str:
            if not bus or st.get_bus(txn, ctx.region, self.account, bus) is None:
                return "bus"
            if not txn.insert(st.ARCHIVES, pack(ctx.region, name), orjson.dumps(doc)):
                return "exists"
            return ""

        problem = await self.write(create)
        if problem == "bus":
            raise bus_not_found(bus or source)
        if problem == "exists":
            raise already_exists(f"Archive {name} already exists.")
        return {"ArchiveArn": doc["ArchiveArn"], "State": "ENABLED",
                "CreationTime": timestamp(created)}  # fmt: skip

    async def _archive(self, region: str, name: str) -> tuple[dict[str, Any], int]:
        def get(txn: Txn) -> tuple[dict[str, Any] | None, int]:
            first, last = txn.log_bounds(st.archive_log(region, name))
            count = last - first + 1 if last else 0
            doc = st.get_json(txn, st.ARCHIVES, pack(region, name))
            if doc is not None:
                doc["SizeBytes"] = st.archive_bytes(txn, region, name)
            return doc, count

        doc, count = await self.read(get)
        if doc is None:
            raise archive_not_found(name)
        return doc, count

    @staticmethod
    def _archive_view(doc: dict[str, Any], count: int) -> dict[str, Any]:
        out = {k: doc[k] for k in _ARCHIVE_FIELDS if doc.get(k) is not None}
        out.update(EventCount=count, SizeBytes=int(doc.get("SizeBytes", 0)),
                   CreationTime=timestamp(doc["CreationTime"]))  # fmt: skip
        return out

    async def describe_archive(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        doc, count = await self._archive(ctx.region, params["ArchiveName"])
        return self._archive_view(doc, count)

    async def list_archives(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        prefix, source, state = (
            params.get("NamePrefix") or "",
            params.get("EventSourceArn"),
            params.get("State"),
        )

        def scan(txn: Txn) -> list[tuple[dict[str, Any], int]]:
            out = []
            for doc in st.scan_json(txn, st.ARCHIVES, ctx.region):
                if not doc["ArchiveName"].startswith(prefix):
                    continue
                if (source and doc["EventSourceArn"] != source) or (
                    state and doc["State"] != state
                ):
                    continue
                first, last = txn.log_bounds(st.archive_log(ctx.region, doc["ArchiveName"]))
                doc["SizeBytes"] = st.archive_bytes(txn, ctx.region, doc["ArchiveName"])
                out.append((doc, last - first + 1 if last else 0))
            return out

        found = await self.read(scan)
        page, token = paginate(found, params, lambda p: str(p[0]["ArchiveName"]))
        views = []
        for doc, count in page:
            view = self._archive_view(doc, count)
            view.pop("ArchiveArn", None)
            view.pop("EventPattern", None)
            view.pop("Description", None)
            views.append(view)
        out: dict[str, Any] = {"Archives": views}
        if token:
            out["NextToken"] = token
        return out

    async def update_archive(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = params["ArchiveName"]
        if params.get("EventPattern"):
            check_pattern(params["EventPattern"])

        def update(txn: Txn) -> dict[str, Any] | None:
            doc = st.get_json(txn, st.ARCHIVES, pack(ctx.region, name))
            if doc is None:
                return None
            for key in ("Description", "EventPattern", "RetentionDays", "KmsKeyIdentifier"):
                if key in params:
                    doc[key] = params[key]
            st.put_json(txn, st.ARCHIVES, pack(ctx.region, name), doc)
            return doc

        doc = await self.write(update)
        if doc is None:
            raise archive_not_found(name)
        return {"ArchiveArn": doc["ArchiveArn"], "State": doc["State"],
                "CreationTime": timestamp(doc["CreationTime"])}  # fmt: skip

    async def delete_archive(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = params["ArchiveName"]

        def delete(txn: Txn) -> bool:
            if not txn.delete(st.ARCHIVES, pack(ctx.region, name)):
                return False
            txn.drop_log(st.archive_log(ctx.region, name))
            txn.delete(st.ARCHIVE_SIZES, pack(ctx.region, name))
            return True

        if not await self.write(delete):
            raise archive_not_found(name)
        return {}

    async def sweep_archives(self) -> None:
        """Drop archived events older than their archive's RetentionDays (0 keeps
        them forever); runs hourly."""
        while True:
            try:
                docs = await self.read(
                    lambda txn: [orjson.loads(v) for _, v in txn.scan(st.ARCHIVES)]
                )
                for doc in docs:
                    if int(doc.get("RetentionDays") or 0) > 0:
                        await self._trim_archive(doc)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sweeping archives failed")
            await asyncio.sleep(_SWEEP_SECONDS)

    async def _trim_archive(self, doc: dict[str, Any]) -> int:
        """Trim one archive's log to its retention; returns how many were dropped."""
        region = doc["ArchiveArn"].split(":")[3]
        log_name = st.archive_log(region, doc["ArchiveName"])
        cutoff = now() - int(doc["RetentionDays"]) * 86_400
        after, keep_from, dropped = 0, 0, 0
        while True:
            records = await self.read(partial(_page, log_name, after))
            for seq, raw in records:
                if orjson.loads(raw)["at"] >= cutoff:
                    keep_from = seq
                    break
                dropped += len(raw)
            if keep_from or len(records) < _REPLAY_BATCH:
                break
            after = records[-1][0]
        if not keep_from:
            keep_from = after + 1 if after else 0
            if not keep_from:
                return 0

        def trim(txn: Txn) -> int:
            st.add_archive_bytes(txn, region, doc["ArchiveName"], -dropped)
            return txn.trim_log(log_name, before=keep_from)

        return await self.write(trim)

    # -- replays -------------------------------------------------------------------------

    async def start_replay(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name, source = params["ReplayName"], params["EventSourceArn"]
        start, end = _epoch(params["EventStartTime"]), _epoch(params["EventEndTime"])
        destination = params["Destination"]
        if start >= end:
            raise validation(
                "Parameter EventStartTime is not valid. Reason: EventStartTime must be before EventEndTime."
            )
        archive_name = source.partition(":archive/")[2]
        archive, _ = await self._archive(ctx.region, archive_name)
        if destination.get("Arn") != archive["EventSourceArn"]:
            raise validation(
                "Parameter Destination.Arn is not valid. Reason: Cross event bus replay is not permitted."
            )
        started = now()
        doc: dict[str, Any] = {
            "ReplayName": name, "ReplayArn": ctx.arn("events", f"replay/{name}"),
            "EventSourceArn": source, "Destination": destination, "State": "STARTING",
            "EventStartTime": start, "EventEndTime": end, "ReplayStartTime": started,
            "ArchiveName": archive_name, "Progress": 0,
        }  # fmt: skip
        if params.get("Description"):
            doc["Description"] = params["Description"]
        if not await self.write(
            lambda txn: txn.insert(st.REPLAYS, pack(ctx.region, name), orjson.dumps(doc))
        ):
            raise already_exists(f"Replay {name} already exists.")
        self.app.spawn(self._run_replay(ctx.region, name), name=f"events-replay-{name}")
        return {"ReplayArn": doc["ReplayArn"], "State": "STARTING",
                "ReplayStartTime": timestamp(started)}  # fmt: skip

    async def resume_replays(self) -> None:
        """Continue replays a stopped server left unfinished (from their progress mark)."""
        docs = await self.read(
            lambda txn: [orjson.loads(v) | {"_key": k} for k, v in txn.scan(st.REPLAYS)]
        )
        for doc in docs:
            if doc["State"] in ("STARTING", "RUNNING", "CANCELLING"):
                region = doc["ReplayArn"].split(":")[3]
                self.app.spawn(self._run_replay(region, doc["ReplayName"]))

    async def _update_replay(self, region: str, name: str, **changes: Any) -> dict[str, Any] | None:
        def update(txn: Txn) -> dict[str, Any] | None:
            doc = st.get_json(txn, st.REPLAYS, pack(region, name))
            if doc is None:
                return None
            doc.update(changes)
            st.put_json(txn, st.REPLAYS, pack(region, name), doc)
            return doc

        return await self.write(update)

    async def _run_replay(self, region: str, name: str) -> None:
        doc = await self._update_replay(region, name, State="RUNNING")
        try:
            while doc is not None and doc["State"] == "RUNNING":
                doc = await self._replay_batch(region, name, doc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("replay %s failed", name)
            await self._update_replay(
                region, name, State="FAILED", StateReason=str(exc), ReplayEndTime=now()
            )
            return
        if doc is not None and doc["State"] == "CANCELLING":
            await self._update_replay(region, name, State="CANCELLED", ReplayEndTime=now())

    async def _replay_batch(
        self, region: str, name: str, doc: dict[str, Any]
    ) -> dict[str, Any] | None:
        log_name = st.archive_log(region, doc["ArchiveName"])
        after = int(doc.get("Progress", 0))
        records = await self.read(
            lambda txn: txn.read_log(log_name, after=after, limit=_REPLAY_BATCH)
        )
        bus = doc["Destination"]["Arn"].partition(":event-bus/")[2]
        filters = set(doc["Destination"].get("FilterArns") or []) or None
        events, last_time = [], doc.get("EventLastReplayedTime")
        for _, raw in records:
            record = orjson.loads(raw)
            event = record["event"]
            when = _event_epoch(event, record["at"])
            if doc["EventStartTime"] <= when < doc["EventEndTime"]:
                events.append((bus, {**event, "replay-name": name}))
                last_time = when
        if events:
            await self._route(region, events, skip_archives=True, rule_filter=filters)
        current = await self.read(lambda txn: st.get_json(txn, st.REPLAYS, pack(region, name)))
        if current is None:
            return None
        if current["State"] == "CANCELLING":
            return current
        if len(records) < _REPLAY_BATCH:
            return await self._update_replay(
                region, name, State="COMPLETED", ReplayEndTime=now(),
                Progress=records[-1][0] if records else after, EventLastReplayedTime=last_time,
            )  # fmt: skip
        return await self._update_replay(
            region, name, Progress=records[-1][0], EventLastReplayedTime=last_time)  # fmt: skip

    @staticmethod
    def _replay_view(doc: dict[str, Any], *, listing: bool = False) -> dict[str, Any]:
        out = {k: doc[k] for k in _REPLAY_FIELDS if doc.get(k) is not None}
        for key in _REPLAY_TIMES:
            if doc.get(key) is not None:
                out[key] = timestamp(doc[key])
        if listing:
            out.pop("Destination", None)
            out.pop("Description", None)
            out.pop("ReplayArn", None)
        return out

    async def describe_replay(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = params["ReplayName"]
        doc = await self.read(lambda txn: st.get_json(txn, st.REPLAYS, pack(ctx.region, name)))
        if doc is None:
            raise not_found(f"Replay {name} does not exist.")
        return self._replay_view(doc)

    async def list_replays(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        prefix, state = params.get("NamePrefix") or "", params.get("State")
        source = params.get("EventSourceArn")
        docs = await self.read(lambda txn: st.scan_json(txn, st.REPLAYS, ctx.region))
        docs = [
            d for d in docs
            if d["ReplayName"].startswith(prefix) and (not state or d["State"] == state)
            and (not source or d["EventSourceArn"] == source)
        ]  # fmt: skip
        page, token = paginate(docs, params, lambda d: str(d["ReplayName"]))
        out: dict[str, Any] = {"Replays": [self._replay_view(d, listing=True) for d in page]}
        if token:
            out["NextToken"] = token
        return out

    async def cancel_replay(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = params["ReplayName"]

        def cancel(txn: Txn) -> dict[str, Any] | str:
            doc = st.get_json(txn, st.REPLAYS, pack(ctx.region, name))
            if doc is None:
                return "missing"
            if doc["State"] not in ("STARTING", "RUNNING"):
                return "state"
            doc["State"] = "CANCELLING"
            st.put_json(txn, st.REPLAYS, pack(ctx.region, name), doc)
            return doc

        result = await self.write(cancel)
        if result == "missing":
            raise not_found(f"Replay {name} does not exist.")
        if result == "state":
            raise AwsError(
                "IllegalStatusException",
                f"Replay {name} is not in a state that can be cancelled.",
                400,
            )
        assert isinstance(result, dict)
        return {"ReplayArn": result["ReplayArn"], "State": "CANCELLING"}
