"""PutEvents: validate entries, match rules through the bus's pattern index,
and durably queue one delivery per matched target (plus archive copies)."""

from __future__ import annotations

import datetime as dt
import logging
from functools import partial
from typing import Any

import orjson

from nubes.services.base import RequestContext
from nubes.services.events import store as st
from nubes.services.events.common import bus_name, iso_time, now, validation
from nubes.services.events.core import EventsBase, compiled_pattern
from nubes.services.events.delivery import enqueue
from nubes.services.events.targets import DeliveryError, fast_id, invoke, send_to_queue
from nubes.services.events.transform import target_input
from nubes.storage.base import Txn

log = logging.getLogger(__name__)

MAX_ENTRIES_BYTES = 256 * 1024
#: topic other services publish on to put events on a bus (see ``on_put_topic``)
PUT_TOPIC = "events:put"


def entry_size(entry: dict[str, Any]) -> int:
    """An entry's size as EventBridge counts it toward the 256 KB limit."""
    size = 14 if entry.get("Time") else 0
    for key in ("Source", "DetailType", "Detail"):
        value = entry.get(key)
        if isinstance(value, str):
            size += len(value.encode())
    for resource in entry.get("Resources") or []:
        size += len(str(resource).encode())
    return size


def _entry_error(entry: dict[str, Any], internal: bool) -> tuple[str, str] | None:
    for key in ("Source", "DetailType", "Detail"):
        if not isinstance(entry.get(key), str) or not entry[key]:
            return "InvalidArgument", f"Parameter {key} is not valid."
    if entry["Source"].startswith("aws.") and not internal:
        return "NotAuthorizedForSourceException", "Not authorized for the source."
    try:
        detail = orjson.loads(entry["Detail"])
    except orjson.JSONDecodeError:
        return "MalformedDetail", "Detail is malformed."
    if not isinstance(detail, dict):
        return "MalformedDetail", "Detail is malformed."
    return None


def build_event(entry: dict[str, Any], region: str, account: str) -> dict[str, Any]:
    """The event envelope rules see and targets receive."""
    when = entry.get("Time")
    if isinstance(when, dt.datetime):
        seconds = when.timestamp()
    elif isinstance(when, int | float):
        seconds = float(when)
    elif isinstance(when, str) and when:
        try:  # ISO 8601 text from other nubes services
            seconds = dt.datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp()
        except ValueError:
            seconds = now()
    else:
        seconds = now()
    return {
        "version": "0",
        "id": fast_id(),
        "detail-type": entry["DetailType"],
        "source": entry["Source"],
        "account": account,
        "time": iso_time(seconds),
        "region": region,
        "resources": list(entry.get("Resources") or []),
        "detail": orjson.loads(entry["Detail"]),
    }


def delivery_docs(
    region: str,
    rule: dict[str, Any],
    targets: list[dict[str, Any]],
    event: dict[str, Any],
    at: float,
) -> list[dict[str, Any]]:
    """One queued delivery per target of a matched rule."""
    docs = []
    for target in targets:
        docs.append({
            "kind": "events",
            "region": region,
            "rule_arn": rule["Arn"],
            "target": target,
            "event": event,
            "payload": target_input(target, event, rule["Arn"]),
            "created": at,
            "retry": target.get("RetryPolicy") or {},
            "dlq": (target.get("DeadLetterConfig") or {}).get("Arn"),
        })  # fmt: skip
    return docs


Snapshot = list[tuple[dict[str, Any], list[dict[str, Any]]]]


def _snapshot(region: str, bus: str, txn: Txn) -> Snapshot:
    return st.bus_snapshot(txn, region, bus)


def _same(value: Snapshot) -> Snapshot:
    return value


class IngestOperations(EventsBase):
    """PutEvents and delivering what it queued."""

    async def put_events(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        entries: list[dict[str, Any]] = params.get("Entries") or []
        if not entries or len(entries) > 10:
            raise validation(
                f"1 validation error detected: Value at 'entries' failed to satisfy constraint: "
                f"Member must have length {'less than or equal to 10' if entries else 'greater than or equal to 1'}"
            )
        if sum(entry_size(e) for e in entries) > MAX_ENTRIES_BYTES:
            raise validation("Total size of the entries in the request is over the limit.")
        # nubes services forwarding events (cross-bus targets, Scheduler) call without
        # an HTTP request and may carry AWS sources; clients may not
        results = await self.put_entries(ctx.region, entries, internal=ctx.http is None)
        failed = sum(1 for r in results if "ErrorCode" in r)
        return {"FailedEntryCount": failed, "Entries": results}

    async def put_entries(
        self, region: str, entries: list[dict[str, Any]], *, internal: bool = False,
        replay_name: str | None = None,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """Accept entries onto their buses; one result per entry (EventId or error)."""
        results: list[dict[str, Any]] = []
        accepted: list[tuple[str, dict[str, Any]]] = []
        for entry in entries:
            error = _entry_error(entry, internal)
            if error is not None:
                results.append({"ErrorCode": error[0], "ErrorMessage": error[1]})
                continue
            event = build_event(entry, region, self.account)
            if replay_name:
                event["replay-name"] = replay_name
            accepted.append((bus_name(entry.get("EventBusName")), event))
            results.append({"EventId": event["id"]})
        if accepted:
            await self._route(region, accepted, skip_archives=replay_name is not None)
        return results

    async def _route(
        self,
        region: str,
        accepted: list[tuple[str, dict[str, Any]]],
        *,
        skip_archives: bool,
        rule_filter: set[str] | None = None,
    ) -> None:
        """Match events against their buses' rules; queue deliveries and archive copies."""
        buses = sorted({bus for bus, _ in accepted})
        snapshot = await self.read(lambda txn: self._load_buses(txn, region, buses))
        at = now()
        docs: list[dict[str, Any]] = []
        archived: list[tuple[str, dict[str, Any]]] = []
        for bus, event in accepted:
            info = snapshot.get(bus)
            if info is None:
                continue  # like AWS, events for a bus that does not exist vanish
            generation, loaded, archives = info
            index = self.bus_index(region, bus, generation, None)
            if index is None:
                if loaded is None:  # our index went stale after the read: load again
                    loaded = await self.read(partial(_snapshot, region, bus))
                index = self.bus_index(region, bus, generation, partial(_same, loaded))
            assert index is not None
            for rule_name in index.index.match(event):
                rule, targets = index.rules[str(rule_name)]
                if rule_filter is None or rule["Arn"] in rule_filter:
                    docs.extend(delivery_docs(region, rule, targets, event, at))
            if not skip_archives:
                for archive in archives:
                    pattern = archive.get("EventPattern")
                    if not pattern or compiled_pattern(pattern).matches(event):
                        archived.append((archive["ArchiveName"], event))
        if not docs and not archived:
            return

        direct = self.deliver_now is not None

        def commit(txn: Txn) -> list[int]:
            ids = [enqueue(txn, st.DELIVERIES, doc, now=at, direct=direct) for doc in docs]
            sizes: dict[str, int] = {}
            for name, event in archived:
                record = orjson.dumps({"at": at, "event": event})
                txn.append(st.archive_log(region, name), record)
                sizes[name] = sizes.get(name, 0) + len(record)
            for name, size in sizes.items():
                st.add_archive_bytes(txn, region, name, size)
            return ids

        ids = await self.write(commit)
        if docs and self.deliver_now is not None:
            self.deliver_now(list(zip(ids, docs, strict=True)))

    def _load_buses(
        self, txn: Txn, region: str, buses: list[str]
    ) -> dict[
        str,
        tuple[int, list[tuple[dict[str, Any], list[dict[str, Any]]]] | None, list[dict[str, Any]]],
    ]:
        """Per existing bus: its generation, its rules if our index of it is stale,
        and its enabled archives."""
        out = {}
        archives = [
            a for a in st.scan_json(txn, st.ARCHIVES, region) if a.get("State") == "ENABLED"
        ]
        for bus in buses:
            doc = st.get_bus(txn, region, self.account, bus)
            if doc is None:
                continue
            generation = int(doc.get("Generation", 0))
            stale = self.bus_index(region, bus, generation, None) is None
            loaded = st.bus_snapshot(txn, region, bus) if stale else None
            out[bus] = (
                generation,
                loaded,
                [a for a in archives if a["EventSourceArn"] == doc["Arn"]],
            )
        return out

    # -- other services' events --------------------------------------------------------

    async def on_put_topic(self, message: dict[str, Any]) -> None:
        """``events:put`` topic: ``{"Source", "DetailType", "Detail" (str or dict),
        "Resources"?, "EventBusName"?, "Time"?, "region"}`` → put on that bus."""
        entry = dict(message)
        region = str(entry.pop("region", None) or self.app.settings.default_region)
        if isinstance(entry.get("Detail"), dict):
            entry["Detail"] = orjson.dumps(entry["Detail"]).decode()
        results = await self.put_entries(region, [entry], internal=True)
        if results and "ErrorCode" in results[0]:
            log.warning("event from the %s topic rejected: %s", PUT_TOPIC, results[0])

    # -- delivery ------------------------------------------------------------------------

    async def deliver(self, doc: dict[str, Any]) -> None:
        """Call one target with one event (the delivery worker's callback)."""
        target = doc["target"]
        event = doc.get("event") or {}
        arn = str(target.get("Arn", ""))
        if ":api-destination/" in arn:
            await self.invoke_api_destination(doc["region"], target, doc["payload"], event)
            return
        await invoke(
            self.app, target, doc["payload"], event=event, event_id=str(event.get("id", "")),
            urls=self.queue_urls,
        )  # fmt: skip

    async def invoke_api_destination(
        self, region: str, target: dict[str, Any], payload: str, event: dict[str, Any]
    ) -> None:
        """Overridden by the connections mixin."""
        raise DeliveryError("NotImplemented", "API destinations are not available")

    async def dead_letter(
        self, doc: dict[str, Any], error: DeliveryError, retries: int, exhausted: str | None
    ) -> None:
        """Send an undeliverable event to the target's DLQ with AWS's attributes."""
        dlq = doc.get("dlq")
        if not dlq:
            log.info("dropping undeliverable event for %s: %s", doc["target"].get("Arn"), error)
            return
        attributes = {
            "RULE_ARN": doc.get("rule_arn") or "",
            "TARGET_ARN": doc["target"].get("Arn", ""),
            "ERROR_CODE": error.dlq_code,
            "ERROR_MESSAGE": error.message or error.code,
            "RETRY_ATTEMPTS": str(retries),
        }
        if exhausted:
            attributes["EXHAUSTED_RETRY_CONDITION"] = exhausted
        body = orjson.dumps(doc.get("event") or {}).decode()
        await send_to_queue(self.app, dlq, body, attributes=attributes, urls=self.queue_urls)
