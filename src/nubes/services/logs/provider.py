"""CloudWatch Logs: log groups, streams, events, filter patterns, retention, tags."""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
import re
import time
from typing import Any

import orjson

from nubes.aws.errors import AwsError
from nubes.services.base import RequestContext
from nubes.services.logs import store as st
from nubes.services.logs.filters import FiltersMixin
from nubes.services.logs.patterns import PatternError, compile_pattern
from nubes.services.logs.queries import QueriesMixin
from nubes.storage.base import Txn
from nubes.storage.keys import pack, unpack

log = logging.getLogger(__name__)

RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)
_DAY_MS = 86_400_000
_MAX_BATCH_BYTES = 1_048_576
_MAX_EVENT_BYTES = 1_048_576 - 26
_SWEEP_SECONDS = 60.0
_GROUP_NAME = re.compile(r"[\.\-_/#A-Za-z0-9]+")
_STREAM_NAME = re.compile(r"[^:*]*")


def now_ms() -> int:
    """Milliseconds since the epoch (the unit of every Logs timestamp)."""
    return int(time.time() * 1000)


def invalid(message: str) -> AwsError:
    """InvalidParameterException, the error Logs uses for bad input."""
    return AwsError("InvalidParameterException", message, 400)


def group_not_found() -> AwsError:
    return AwsError("ResourceNotFoundException", "The specified log group does not exist.", 400)


def stream_not_found() -> AwsError:
    return AwsError("ResourceNotFoundException", "The specified log stream does not exist.", 400)


def _encode_token(doc: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(doc)).decode()


def _decode_token(token: str) -> Any:
    try:
        return orjson.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, orjson.JSONDecodeError):
        raise invalid("The specified nextToken is invalid.") from None


def _group_name(params: dict[str, Any]) -> str:
    """``logGroupName`` or the name inside ``logGroupIdentifier`` (a name or an ARN)."""
    name = params.get("logGroupName")
    ident = params.get("logGroupIdentifier")
    if name and ident:
        raise invalid("LogGroup name and LogGroup ARN are mutually exclusive parameters.")
    if ident:
        name = ident.split(":log-group:", 1)[1].removesuffix(":*") if ":log-group:" in ident else ident
    if not name:
        raise invalid("Should provide either name or identifier")
    return str(name)


class LogsProvider(FiltersMixin, QueriesMixin):
    """Implements the Logs operations over the ``logs.*`` tables."""

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self._sweeper: asyncio.Task[Any] | None = None

    async def start(self) -> None:
        self._sweeper = self.app.spawn(self._sweep_forever(), name="logs-retention")

    def _group_arn(self, ctx: RequestContext, name: str) -> str:
        return ctx.arn("logs", f"log-group:{name}")

    # -- groups ---------------------------------------------------------------------

    async def create_log_group(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name: str = params["logGroupName"]
        if not _GROUP_NAME.fullmatch(name) or len(name) > 512:
            raise invalid(f"1 validation error detected: Value '{name}' at 'logGroupName' failed to satisfy "
                          "constraint: Member must satisfy regular expression pattern: [\\.\\-_/#A-Za-z0-9]+")  # fmt: skip
        record = {
            "logGroupName": name, "creationTime": now_ms(), "metricFilterCount": 0,
            "arn": self._group_arn(ctx, name) + ":*", "logGroupArn": self._group_arn(ctx, name),
            "storedBytes": 0, "logGroupClass": params.get("logGroupClass") or "STANDARD",
            "tags": dict(params.get("tags") or {}),
        }  # fmt: skip
        if params.get("kmsKeyId"):
            record["kmsKeyId"] = params["kmsKeyId"]

        def create(txn: Txn) -> bool:
            return txn.insert(st.GROUPS, st.group_key(ctx.region, name), orjson.dumps(record))

        if not await self.app.store.write(create):
            raise AwsError("ResourceAlreadyExistsException", "The specified log group already exists", 400)
        return {}

    async def delete_log_group(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name: str = params["logGroupName"]

        def delete(txn: Txn) -> bool:
            if not txn.delete(st.GROUPS, st.group_key(ctx.region, name)):
                return False
            txn.delete_prefix(st.STREAMS, pack(ctx.region, name))
            txn.delete_prefix(st.EVENTS, pack(ctx.region, name))
            return True

        if not await self.app.store.write(delete):
            raise group_not_found()
        return {}

    async def describe_log_groups(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        prefix = params.get("logGroupNamePrefix") or ""
        pattern = params.get("logGroupNamePattern")
        if prefix and pattern:
            raise invalid("LogGroup name prefix and LogGroup name pattern are mutually exclusive parameters.")
        limit = int(params.get("limit") or 50)
        start = pack(ctx.region, str(_decode_token(params["nextToken"]))) if params.get("nextToken") else None
        wanted = set(params.get("logGroupIdentifiers") or ())

        def scan(txn: Txn) -> list[tuple[bytes, bytes]]:
            return txn.scan(st.GROUPS, prefix=pack(ctx.region), start=start)

        groups: list[dict[str, Any]] = []
        next_token = None
        for _, raw in await self.app.store.read(scan):
            doc = orjson.loads(raw)
            name = doc["logGroupName"]
            if not name.startswith(prefix) or (pattern and pattern.lower() not in name.lower()):
                continue
            if wanted and name not in wanted and doc["logGroupArn"] not in wanted:
                continue
            if params.get("logGroupClass") and doc.get("logGroupClass") != params["logGroupClass"]:
                continue
            if len(groups) == limit:
                next_token = _encode_token(name)
                break
            for internal in ("tags", "subscriptions", "metricFilters"):
                doc.pop(internal, None)
            groups.append(doc)
        return {"logGroups": groups, **({"nextToken": next_token} if next_token else {})}

    async def list_log_groups(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        found = await self.describe_log_groups(
            ctx, {"logGroupNamePattern": params.get("logGroupNamePattern"), "limit": params.get("limit"),
                  "nextToken": params.get("nextToken")},
        )  # fmt: skip
        summaries = [
            {"logGroupName": g["logGroupName"], "logGroupArn": g["logGroupArn"], "logGroupClass": g["logGroupClass"]}
            for g in found["logGroups"]
        ]
        return {"logGroups": summaries, **({"nextToken": found["nextToken"]} if "nextToken" in found else {})}

    async def _update_group(self, region: str, name: str, change: Any) -> dict[str, Any]:
        def update(txn: Txn) -> dict[str, Any]:
            key = st.group_key(region, name)
            doc = st.get_json(txn, st.GROUPS, key)
            if doc is None:
                raise group_not_found()
            change(doc)
            st.put_json(txn, st.GROUPS, key, doc)
            return doc

        result: dict[str, Any] = await self.app.store.write(update)
        return result

    async def put_retention_policy(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        days = int(params["retentionInDays"])
        if days not in RETENTION_DAYS:
            raise invalid(
                f"1 validation error detected: Value '{days}' at 'retentionInDays' failed to satisfy constraint: "
                f"Member must satisfy enum value set: [{', '.join(map(str, RETENTION_DAYS))}]"
            )
        await self._update_group(ctx.region, params["logGroupName"], lambda doc: doc.__setitem__("retentionInDays", days))
        self.app.bus.wake("logs:retention")
        return {}

    async def delete_retention_policy(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self._update_group(ctx.region, params["logGroupName"], lambda doc: doc.pop("retentionInDays", None))
        return {}

    # -- tags -------------------------------------------------------------------------

    def _name_from_arn(self, arn: str) -> str:
        if ":log-group:" not in arn:
            raise invalid(f"Invalid resource arn: {arn}")
        return arn.split(":log-group:", 1)[1].removesuffix(":*")

    async def tag_log_group(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        await self._update_group(ctx.region, params["logGroupName"], lambda d: d["tags"].update(params["tags"]))
        return {}

    async def untag_log_group(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        def untag(doc: dict[str, Any]) -> None:
            for key in params["tags"]:
                doc["tags"].pop(key, None)

        await self._update_group(ctx.region, params["logGroupName"], untag)
        return {}

    async def list_tags_log_group(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        doc = await self._update_group(ctx.region, params["logGroupName"], lambda d: None)
        return {"tags": doc.get("tags", {})}

    async def tag_resource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = self._name_from_arn(params["resourceArn"])
        await self._update_group(ctx.region, name, lambda d: d["tags"].update(params["tags"]))
        return {}

    async def untag_resource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = self._name_from_arn(params["resourceArn"])
        return await self.untag_log_group(ctx, {"logGroupName": name, "tags": params["tagKeys"]})

    async def list_tags_for_resource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        name = self._name_from_arn(params["resourceArn"])
        doc = await self._update_group(ctx.region, name, lambda d: None)
        return {"tags": doc.get("tags", {})}

    # -- streams ------------------------------------------------------------------------

    async def create_log_stream(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        group: str = params["logGroupName"]
        name: str = params["logStreamName"]
        if not _STREAM_NAME.fullmatch(name):
            raise invalid(f"1 validation error detected: Value '{name}' at 'logStreamName' failed to satisfy "
                          "constraint: Member must satisfy regular expression pattern: [^:*]*")  # fmt: skip
        record = {
            "logStreamName": name, "creationTime": now_ms(), "storedBytes": 0, "seq": 0,
            "arn": ctx.arn("logs", f"log-group:{group}:log-stream:{name}"),
        }  # fmt: skip

        def create(txn: Txn) -> str:
            if txn.get(st.GROUPS, st.group_key(ctx.region, group)) is None:
                return "group"
            if not txn.insert(st.STREAMS, st.stream_key(ctx.region, group, name), orjson.dumps(record)):
                return "exists"
            return "ok"

        outcome = await self.app.store.write(create)
        if outcome == "group":
            raise group_not_found()
        if outcome == "exists":
            raise AwsError("ResourceAlreadyExistsException", "The specified log stream already exists", 400)
        return {}

    async def delete_log_stream(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        group, name = params["logGroupName"], params["logStreamName"]

        def delete(txn: Txn) -> str:
            if txn.get(st.GROUPS, st.group_key(ctx.region, group)) is None:
                return "group"
            if not txn.delete(st.STREAMS, st.stream_key(ctx.region, group, name)):
                return "stream"
            st.delete_stream_events(txn, ctx.region, group, name)
            return "ok"

        outcome = await self.app.store.write(delete)
        if outcome == "group":
            raise group_not_found()
        if outcome == "stream":
            raise stream_not_found()
        return {}

    async def describe_log_streams(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        group = _group_name(params)
        prefix = params.get("logStreamNamePrefix") or ""
        order = params.get("orderBy") or "LogStreamName"
        if order == "LastEventTime" and prefix:
            raise invalid("Cannot order by LastEventTime with a logStreamNamePrefix.")
        limit = int(params.get("limit") or 50)
        offset = int(_decode_token(params["nextToken"])) if params.get("nextToken") else 0

        def read(txn: Txn) -> list[dict[str, Any]] | None:
            if txn.get(st.GROUPS, st.group_key(ctx.region, group)) is None:
                return None
            return st.list_streams(txn, ctx.region, group)

        streams = await self.app.store.read(read)
        if streams is None:
            raise group_not_found()
        streams = [s for s in streams if s["logStreamName"].startswith(prefix)]
        if order == "LastEventTime":
            streams.sort(key=lambda s: (s.get("lastEventTimestamp") or 0, s["logStreamName"]))
        if params.get("descending"):
            streams.reverse()
        page = streams[offset : offset + limit]
        for s in page:
            s.pop("seq", None)
        out: dict[str, Any] = {"logStreams": page}
        if offset + limit < len(streams):
            out["nextToken"] = _encode_token(offset + limit)
        return out

    # -- events -------------------------------------------------------------------------

    async def put_log_events(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        group, name = params["logGroupName"], params["logStreamName"]
        events: list[dict[str, Any]] = params["logEvents"]
        accepted, rejected = self._check_events(events)
        ingestion = now_ms()

        found: dict[str, Any] = {}

        def put(txn: Txn) -> str:
            gdoc = st.get_json(txn, st.GROUPS, st.group_key(ctx.region, group))
            if gdoc is None:
                return "group"
            found["group"] = gdoc
            skey = st.stream_key(ctx.region, group, name)
            sdoc = st.get_json(txn, st.STREAMS, skey)
            if sdoc is None:
                return "stream"
            retention = gdoc.get("retentionInDays")
            seq = int(sdoc.get("seq", 0))
            stored = 0
            for event in accepted:
                ts = int(event["timestamp"])
                if retention is not None and ts < ingestion - retention * _DAY_MS:
                    rejected["expiredLogEventEndIndex"] = events.index(event)
                    continue
                seq += 1
                message = event["message"]
                txn.put(st.EVENTS, st.event_key(ctx.region, group, name, ts, seq), orjson.dumps([message, ingestion]))
                stored += len(message.encode())
                sdoc["firstEventTimestamp"] = min(sdoc.get("firstEventTimestamp") or ts, ts)
                sdoc["lastEventTimestamp"] = max(sdoc.get("lastEventTimestamp") or ts, ts)
            sdoc["seq"] = seq
            sdoc["lastIngestionTime"] = ingestion
            sdoc["uploadSequenceToken"] = str(seq)
            sdoc["storedBytes"] = int(sdoc.get("storedBytes", 0)) + stored
            st.put_json(txn, st.STREAMS, skey, sdoc)
            return str(seq)

        outcome = await self.app.store.write(put)
        if outcome == "group":
            raise group_not_found()
        if outcome == "stream":
            raise stream_not_found()
        if accepted:
            self.app.bus.wake(f"logs:{ctx.region}:{group}")
            gdoc = found["group"]
            if gdoc.get("subscriptions") or gdoc.get("metricFilters"):
                self.app.spawn(self.apply_filters(ctx.region, gdoc, name, accepted), name="logs-filters")
        out: dict[str, Any] = {"nextSequenceToken": outcome.rjust(56, "0")}
        if rejected:
            out["rejectedLogEventsInfo"] = rejected
        return out

    @staticmethod
    def _check_events(events: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """Events AWS accepts, and ``rejectedLogEventsInfo`` for those it does not."""
        if not events:
            raise invalid("1 validation error detected: Value '[]' at 'logEvents' failed to satisfy constraint: "
                          "Member must have length greater than or equal to 1")  # fmt: skip
        if len(events) > 10_000:
            raise invalid("1 validation error detected: Value at 'logEvents' failed to satisfy constraint: "
                          "Member must have length less than or equal to 10000")  # fmt: skip
        size = sum(len(e["message"].encode()) + 26 for e in events)
        if size > _MAX_BATCH_BYTES:
            raise invalid(f"Log events in a single PutLogEvents request exceed the maximum batch size of {_MAX_BATCH_BYTES} bytes.")
        stamps = [int(e["timestamp"]) for e in events]
        if any(b < a for a, b in itertools.pairwise(stamps)):
            raise invalid("Log events in a single PutLogEvents request must be in chronological order.")
        now = now_ms()
        rejected: dict[str, int] = {}
        too_old = [i for i, ts in enumerate(stamps) if ts < now - 14 * _DAY_MS]
        too_new = [i for i, ts in enumerate(stamps) if ts > now + 2 * 3_600_000]
        if too_old:
            rejected["tooOldLogEventEndIndex"] = too_old[-1]
        if too_new:
            rejected["tooNewLogEventStartIndex"] = too_new[0]
        accepted = [
            e for i, e in enumerate(events)
            if i not in too_old and i not in too_new and 0 < len(e["message"].encode()) <= _MAX_EVENT_BYTES
        ]  # fmt: skip
        return accepted, rejected

    async def get_log_events(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        group = _group_name(params)
        stream: str = params["logStreamName"]
        limit = min(int(params.get("limit") or 10_000), 10_000)
        start_time = params.get("startTime")
        end_time = params.get("endTime")
        token: str | None = params.get("nextToken")
        forward = bool(params.get("startFromHead"))
        position: tuple[int, int] | None = None
        if token:
            if not re.fullmatch(r"[fb]/-?\d+/\d+", token):
                raise invalid("The specified nextToken is invalid.")
            kind, ts, seq = token.split("/")
            forward, position = kind == "f", (int(ts), int(seq))

        def read(txn: Txn) -> list[tuple[int, int, str, int]] | None:
            if txn.get(st.STREAMS, st.stream_key(ctx.region, group, stream)) is None:
                return None
            start = (int(start_time), 0) if start_time is not None else None
            if forward:
                if position is not None:
                    after = (position[0], position[1] + 1)
                    start = after if start is None or after > start else start
                it = st.iter_stream_events(txn, ctx.region, group, stream, start=start, end_time=end_time)
                return [e for _, e in zip(range(limit), it, strict=False)]
            it = st.iter_stream_events(
                txn, ctx.region, group, stream, start=start, end_time=end_time, reverse=True, before=position
            )
            return list(reversed([e for _, e in zip(range(limit), it, strict=False)]))

        found = await self.app.store.read(read)
        if found is None:
            raise stream_not_found()
        events = [{"timestamp": ts, "message": msg, "ingestionTime": ing} for ts, _, msg, ing in found]
        if found:
            fwd, back = f"f/{found[-1][0]}/{found[-1][1]}", f"b/{found[0][0]}/{found[0][1]}"
        elif token:
            fwd = back = token
        else:
            fwd, back = "f/-1/0", "b/-1/0"
        return {"events": events, "nextForwardToken": fwd, "nextBackwardToken": back}

    async def filter_log_events(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        group = _group_name(params)
        names = params.get("logStreamNames")
        prefix = params.get("logStreamNamePrefix")
        if names and prefix:
            raise invalid("logStreamNames and logStreamNamePrefix are mutually exclusive")
        try:
            match = compile_pattern(params.get("filterPattern"))
        except PatternError as exc:
            raise invalid(str(exc)) from None
        limit = min(int(params.get("limit") or 10_000), 10_000)
        after = tuple(_decode_token(params["nextToken"])) if params.get("nextToken") else None

        def read(txn: Txn) -> tuple[list[dict[str, Any]], list[str], bool] | None:
            if txn.get(st.GROUPS, st.group_key(ctx.region, group)) is None:
                return None
            streams = [s["logStreamName"] for s in st.list_streams(txn, ctx.region, group)]
            if names:
                streams = [s for s in streams if s in names]
            elif prefix:
                streams = [s for s in streams if s.startswith(prefix)]
            merged = st.merge_group_events(
                txn, ctx.region, group, streams, start_time=params.get("startTime"),
                end_time=params.get("endTime"), after=after,
            )  # fmt: skip
            out: list[dict[str, Any]] = []
            for ts, stream, seq, message, ingestion in merged:
                if not match(message):
                    continue
                if len(out) == limit:
                    return out, streams, True
                out.append({
                    "logStreamName": stream, "timestamp": ts, "message": message,
                    "ingestionTime": ingestion, "eventId": f"{ts}-{seq}-{stream}",
                    "_pos": [ts, stream, seq],
                })  # fmt: skip
            return out, streams, False

        found = await self.app.store.read(read)
        if found is None:
            raise group_not_found()
        events, streams, more = found
        result: dict[str, Any] = {
            "events": events,
            "searchedLogStreams": [{"logStreamName": s, "searchedCompletely": not more} for s in streams],
        }
        if more and events:
            result["nextToken"] = _encode_token(events[-1]["_pos"])
        for e in events:
            e.pop("_pos")
        return result

    # -- retention ------------------------------------------------------------------------

    async def _sweep_forever(self) -> None:
        while True:
            try:
                removed = await self.app.store.write(self._sweep)
                if removed:
                    log.debug("retention removed %d log events", removed)
            except Exception:
                log.exception("log retention sweep failed")
            await self.app.bus.wait("logs:retention", _SWEEP_SECONDS)

    @staticmethod
    def _sweep(txn: Txn) -> int:
        """Delete events older than their group's retention (AWS deletes them lazily too)."""
        removed = 0
        now = now_ms()
        for key, raw in txn.scan(st.GROUPS):
            doc = orjson.loads(raw)
            days = doc.get("retentionInDays")
            if days is None:
                continue
            region = str(unpack(key)[0])
            cutoff = now - int(days) * _DAY_MS
            for stream in st.list_streams(txn, region, doc["logGroupName"]):
                first = stream.get("firstEventTimestamp")
                if first is None or first >= cutoff:
                    continue
                removed += st.delete_stream_events(txn, region, doc["logGroupName"], stream["logStreamName"], cutoff)
                stream["firstEventTimestamp"] = cutoff
                st.put_json(txn, st.STREAMS, st.stream_key(region, doc["logGroupName"], stream["logStreamName"]), stream)
        return removed
