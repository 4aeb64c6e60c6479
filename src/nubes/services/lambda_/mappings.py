"""Event source mappings: their API (stored records); the pollers are in
``nubes.events.esm``."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

from nubes.aws.errors import AwsError
from nubes.events.async_invoke import queue_url
from nubes.events.esm import EventSourcePollers, validate_filters
from nubes.services.base import RequestContext
from nubes.services.lambda_ import store as st
from nubes.services.lambda_.common import LambdaBase
from nubes.services.lambda_.models import (
    error,
    function_arn,
    invalid,
    not_found,
    parse_function_name,
)
from nubes.storage.base import Txn
from nubes.storage.keys import pack

_COPIED = ("BatchSize", "MaximumBatchingWindowInSeconds", "FilterCriteria", "ScalingConfig", "FunctionResponseTypes",
           "StartingPosition", "StartingPositionTimestamp", "BisectBatchOnFunctionError", "MaximumRetryAttempts",
           "MaximumRecordAgeInSeconds", "DestinationConfig", "ParallelizationFactor", "TumblingWindowInSeconds",
           "MetricsConfig")  # fmt: skip


def _source_kind(arn: str) -> str:
    parts = arn.split(":")
    if len(parts) < 6:
        raise invalid(f"Unsupported event source ARN: {arn}")
    if parts[2] == "sqs":
        return "sqs"
    if parts[2] == "dynamodb" and "/stream/" in parts[5]:
        return "dynamodb"
    if parts[2] == "kinesis":
        raise invalid("nubes does not support Kinesis event sources yet")
    raise invalid(f"Unsupported event source type for {arn}")


def _check(mapping: dict[str, Any]) -> None:
    """AWS's validation of a mapping's settings for its source type."""
    kind = _source_kind(mapping["EventSourceArn"])
    batch = int(mapping["BatchSize"])
    window = int(mapping.get("MaximumBatchingWindowInSeconds") or 0)
    if not 1 <= batch <= 10_000:
        raise invalid(f"BatchSize must be between 1 and 10000 (got {batch}).")
    if not 0 <= window <= 300:
        raise invalid("MaximumBatchingWindowInSeconds must be between 0 and 300.")
    if kind == "sqs" and batch > 10 and window < 1:
        raise invalid("Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10")
    if kind == "sqs":
        for member in ("StartingPosition", "BisectBatchOnFunctionError", "MaximumRetryAttempts",
                       "MaximumRecordAgeInSeconds", "ParallelizationFactor", "TumblingWindowInSeconds"):  # fmt: skip
            if mapping.get(member) is not None:
                raise invalid(f"Unsupported MSK, Kinesis and DynamoDB parameter for SQS event source: {member}")
        if mapping.get("DestinationConfig"):
            raise invalid("Unsupported DestinationConfig parameter for SQS event source mapping.")
    if kind == "dynamodb" and mapping.get("StartingPosition") not in (None, "TRIM_HORIZON", "LATEST"):
        raise invalid("Unsupported starting position for DynamoDB streams: use TRIM_HORIZON or LATEST")
    if kind == "dynamodb" and not mapping.get("StartingPosition"):
        raise invalid("1 validation error detected: Value null at 'startingPosition' failed to satisfy constraint: "
                      "Member must not be null")  # fmt: skip
    concurrency = (mapping.get("ScalingConfig") or {}).get("MaximumConcurrency")
    if concurrency is not None and not 2 <= int(concurrency) <= 1000:
        raise invalid("MaximumConcurrency must be between 2 and 1000")
    retries = mapping.get("MaximumRetryAttempts")
    if retries is not None and not -1 <= int(retries) <= 10_000:
        raise invalid("MaximumRetryAttempts must be between -1 and 10000")
    age = mapping.get("MaximumRecordAgeInSeconds")
    if age is not None and int(age) != -1 and not 60 <= int(age) <= 604_800:
        raise invalid("MaximumRecordAgeInSeconds must be -1 or between 60 and 604800")
    validate_filters(mapping.get("FilterCriteria"))


class MappingsMixin(LambdaBase):
    """Create/Get/List/Update/DeleteEventSourceMapping."""

    pollers: EventSourcePollers

    async def start_mappings(self) -> None:
        """Start a poller for every enabled mapping."""
        self.pollers = EventSourcePollers(self.app, self.invoke_function, self._processing_result)
        docs = await self.app.store.read(lambda txn: st.scan(txn, st.ESM))
        await self.pollers.start(docs)

    async def _processing_result(self, mapping_id: str, text: str) -> None:
        """A poller's LastProcessingResult changed (written only on change)."""

        def write(txn: Txn) -> None:
            doc = st.get(txn, st.ESM, pack(mapping_id))
            if doc is not None and doc.get("LastProcessingResult") != text:
                doc["LastProcessingResult"] = text
                st.put(txn, st.ESM, pack(mapping_id), doc)

        await self.app.store.write(write)

    async def stop_mappings(self) -> None:
        """Stop every poller."""
        if getattr(self, "pollers", None) is not None:
            await self.pollers.stop()

    def _public(self, doc: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in doc.items() if not k.startswith("_")}
        return out

    async def create_event_source_mapping(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        ref = parse_function_name(params["FunctionName"], ctx.region)
        await self.resolve(ref)
        kind = _source_kind(params["EventSourceArn"])
        await self._check_source(kind, params["EventSourceArn"])
        mapping_id = str(uuid.uuid4())
        doc: dict[str, Any] = {
            "UUID": mapping_id, "EventSourceArn": params["EventSourceArn"],
            "FunctionArn": function_arn(ref.region, self.account, ref.name, ref.qualifier),
            "BatchSize": params.get("BatchSize") or (10 if kind == "sqs" else 100),
            "MaximumBatchingWindowInSeconds": params.get("MaximumBatchingWindowInSeconds") or 0,
            "LastModified": time.time(), "LastProcessingResult": "No records processed",
            "State": "Creating", "StateTransitionReason": "USER_INITIATED",
            "EventSourceMappingArn": f"arn:aws:lambda:{ref.region}:{self.account}:event-source-mapping:{mapping_id}",
            "_enabled": params.get("Enabled", True), "_region": ref.region,
        }  # fmt: skip
        for member in _COPIED[2:]:
            if params.get(member) is not None:
                doc[member] = params[member]
        if isinstance(doc.get("StartingPositionTimestamp"), dt.datetime):  # stored as epoch seconds
            doc["StartingPositionTimestamp"] = doc["StartingPositionTimestamp"].timestamp()
        if kind == "dynamodb":
            doc.setdefault("MaximumRetryAttempts", -1)
            doc.setdefault("MaximumRecordAgeInSeconds", -1)
            doc.setdefault("BisectBatchOnFunctionError", False)
            doc.setdefault("ParallelizationFactor", 1)
            doc.setdefault("DestinationConfig", {"OnFailure": {}})
        _check(doc)
        await self.app.store.write(lambda txn: st.put(txn, st.ESM, pack(mapping_id), doc))
        self.app.spawn(self._activate(mapping_id), name=f"esm-activate-{mapping_id}")
        return self._public(doc)

    async def _check_source(self, kind: str, arn: str) -> None:
        """The queue or stream must exist (AWS checks it when the mapping is created)."""
        region = arn.split(":")[3]
        try:
            if kind == "sqs":
                await queue_url(self.app, arn)
            else:
                await self.app.call("dynamodbstreams", "DescribeStream", {"StreamArn": arn}, region=region)
        except AwsError as exc:
            what = "queue" if kind == "sqs" else "stream"
            raise invalid(f"The {what} {arn} does not exist or cannot be read: {exc.message}") from None

    async def _activate(self, mapping_id: str) -> None:
        """Creating/Updating → Enabled/Disabled, then (re)start the poller."""

        def write(txn: Txn) -> dict[str, Any] | None:
            doc = st.get(txn, st.ESM, pack(mapping_id))
            if doc is None or doc["State"] == "Deleting":
                return doc
            doc["State"] = "Enabled" if doc["_enabled"] else "Disabled"
            st.put(txn, st.ESM, pack(mapping_id), doc)
            return doc

        doc = await self.app.store.write(write)
        await self.pollers.refresh(mapping_id, doc if doc is not None and doc["State"] != "Deleting" else None)

    async def _mapping(self, mapping_id: str) -> dict[str, Any]:
        doc = await self.app.store.read(lambda txn: st.get(txn, st.ESM, pack(mapping_id)))
        if doc is None:
            raise not_found("The resource you requested does not exist.")
        return doc

    async def get_event_source_mapping(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return self._public(await self._mapping(params["UUID"]))

    async def list_event_source_mappings(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        docs = await self.app.store.read(lambda txn: st.scan(txn, st.ESM))
        if params.get("EventSourceArn"):
            docs = [d for d in docs if d["EventSourceArn"] == params["EventSourceArn"]]
        if params.get("FunctionName"):
            ref = parse_function_name(params["FunctionName"], ctx.region)
            arn = function_arn(ref.region, self.account, ref.name)
            docs = [d for d in docs if d["FunctionArn"] == arn or d["FunctionArn"].startswith(arn + ":")]
        docs = [d for d in docs if d.get("_region", ctx.region) == ctx.region]
        max_items = int(params.get("MaxItems") or 100)
        start = 0
        if params.get("Marker"):
            ids = [d["UUID"] for d in docs]
            start = ids.index(params["Marker"]) + 1 if params["Marker"] in ids else len(docs)
        page = docs[start : start + max_items]
        out: dict[str, Any] = {"EventSourceMappings": [self._public(d) for d in page]}
        if start + max_items < len(docs):
            out["NextMarker"] = page[-1]["UUID"]
        return out

    async def update_event_source_mapping(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        mapping_id = params["UUID"]
        new_arn = None
        if params.get("FunctionName"):
            ref = parse_function_name(params["FunctionName"], ctx.region)
            await self.resolve(ref)
            new_arn = function_arn(ref.region, self.account, ref.name, ref.qualifier)

        def write(txn: Txn) -> dict[str, Any]:
            doc = st.get(txn, st.ESM, pack(mapping_id))
            if doc is None:
                raise not_found("The resource you requested does not exist.")
            if doc["State"] in ("Creating", "Updating", "Deleting"):
                raise error("ResourceInUseException", "Cannot update the event source mapping because it is "
                            f"in use. Current state: {doc['State']}", 400)  # fmt: skip
            for member in _COPIED:
                if member in params and member not in ("StartingPosition", "StartingPositionTimestamp"):
                    doc[member] = params[member]
            if "Enabled" in params:
                doc["_enabled"] = bool(params["Enabled"])
            if new_arn:
                doc["FunctionArn"] = new_arn
            _check(doc)
            doc["State"] = "Updating"
            doc["LastModified"] = time.time()
            st.put(txn, st.ESM, pack(mapping_id), doc)
            return doc

        doc = await self.app.store.write(write)
        self.app.spawn(self._activate(mapping_id), name=f"esm-activate-{mapping_id}")
        return self._public(doc)

    async def delete_event_source_mapping(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        mapping_id = params["UUID"]
        doc = await self._mapping(mapping_id)
        await self.app.store.write(lambda txn: txn.delete(st.ESM, pack(mapping_id)))
        await self.pollers.refresh(mapping_id, None)
        doc["State"] = "Deleting"
        return self._public(doc)
