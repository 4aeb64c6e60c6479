"""DynamoDB and DynamoDB Streams operations.

Each operation parses its expressions first (pure work, errors before any store
access), then runs one synchronous function in one store transaction, then
wakes stream consumers of the streams it wrote to.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import orjson

from nubes.services.base import Provider, RequestContext
from nubes.services.dynamodb import control, items, query, streams, transactions
from nubes.services.dynamodb.items import Effects
from nubes.services.dynamodb.partiql import batch_execute, parse_statement, run_statement
from nubes.services.dynamodb.partiql import execute_transaction as partiql_transaction
from nubes.services.dynamodb.prepare import prepare
from nubes.services.dynamodb.tables import require_table, stream_expired
from nubes.services.dynamodb.types import dump_document
from nubes.storage.base import Txn

log = logging.getLogger(__name__)
T = TypeVar("T")

#: seconds between TTL sweeps (AWS takes up to days; locally, soon is better)
TTL_SWEEP_SECONDS = 1.0
#: seconds between stream retention trims
TRIM_SECONDS = 60.0


def _metered(params: dict[str, Any]) -> bool:
    return (params.get("ReturnConsumedCapacity") or "NONE") != "NONE"


def _consumed(params: dict[str, Any], usage: dict[str, float], single: bool) -> dict[str, Any]:
    """ConsumedCapacity as DynamoDB reports it: one entry for single-table
    operations, a list per table for batches and transactions."""
    mode = params.get("ReturnConsumedCapacity") or "NONE"
    if mode == "NONE":
        return {}
    if single and not usage and params.get("TableName"):
        usage = {params["TableName"].rsplit("/", 1)[-1]: 0.0}
    entries = []
    for table, units in usage.items():
        entry: dict[str, Any] = {"TableName": table, "CapacityUnits": units}
        if mode == "INDEXES":
            entry["Table"] = {"CapacityUnits": units}
        entries.append(entry)
    if single:
        return {"ConsumedCapacity": entries[0]} if entries else {}
    return {"ConsumedCapacity": entries}


def _attempt(fn: Callable[[Txn, Effects], T], effects: Effects, txn: Txn) -> T:
    """One attempt of a write transaction (a retried transaction starts over)."""
    effects.streams.clear()
    effects.usage.clear()
    return fn(txn, effects)


def _as_body(ctx: RequestContext, result: dict[str, Any]) -> dict[str, Any]:
    """Hand the gateway a JSON response body made here (through its
    ``response_body`` hook) for a result that embeds stored JSON as
    ``orjson.Fragment``: the wire serializer would walk the items to convert
    them, though the stored bytes are what it would produce. Outside the
    fragments the members (GetItem's, BatchGetItem's, Query's and Scan's) hold no timestamp
    and no blob but AttributeValues' binary, which goes out as base64 as the
    serializer writes it, so this is the document the serializer writes."""
    setattr(ctx, "response_body", dump_document(result))  # noqa: B010 - optional gateway hook
    return {}


def _stored_items(result: dict[str, Any]) -> bool:
    """Whether a Query or Scan page holds items in their stored form."""
    found: list[Any] = result.get("Items") or []
    return len(found) > 0 and type(found[0]) is orjson.Fragment


def _over_http(ctx: RequestContext) -> bool:
    """Whether the answer goes out through the gateway as JSON (in-process
    callers get items as dicts)."""
    return ctx.http is not None and not ctx.query_protocol


class DynamoDbProvider(Provider):
    """DynamoDB tables, items, queries, transactions, PartiQL and Streams."""

    async def start(self) -> None:
        """Start the background sweep (TTL expiry, stream retention)."""
        self.app.spawn(self._sweep_loop(), name="dynamodb-ttl-sweep")

    # -- plumbing -----------------------------------------------------------------

    async def _write(self, ctx: RequestContext, fn: Callable[[Txn, Effects], T], effects: Effects | None = None) -> T:
        effects = effects or Effects(now=time.time(), region=ctx.region)
        result = await self.app.store.write(partial(_attempt, fn, effects))
        if effects.streams:
            self._wake(effects)
        return result

    async def _write_op(self, ctx: RequestContext, params: dict[str, Any], fn: Callable[[Txn, Effects], dict[str, Any]],
                        *, single: bool = True) -> dict[str, Any]:  # fmt: skip
        """A write with the ConsumedCapacity the request asked for."""
        # the body of _write, inlined: one coroutine less on every item write
        effects = Effects(now=time.time(), region=ctx.region, metered=_metered(params))
        result = await self.app.store.write(partial(_attempt, fn, effects))
        if effects.streams:
            self._wake(effects)
        return {**result, **_consumed(params, effects.usage, single)} if effects.metered else result

    async def _read_op(self, ctx: RequestContext, params: dict[str, Any], fn: Callable[[Txn, Effects], dict[str, Any]],
                       *, single: bool = True) -> dict[str, Any]:  # fmt: skip
        """A read with the ConsumedCapacity the request asked for."""
        effects = Effects(now=time.time(), region=ctx.region, metered=_metered(params))

        def run(txn: Txn) -> dict[str, Any]:
            effects.usage.clear()  # a read that ran out of time inline runs again
            return fn(txn, effects)

        result = await self.app.store.read(run)
        return {**result, **_consumed(params, effects.usage, single)} if effects.metered else result

    def _wake(self, effects: Effects) -> None:
        for arn in effects.streams:
            self.app.bus.wake(f"dynamodb-stream:{arn}")

    async def _read(self, fn: Callable[[Txn], T]) -> T:
        return await self.app.store.read(fn)

    # -- tables -------------------------------------------------------------------------

    async def create_table(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Create a table (ACTIVE at once: there is nothing to provision)."""
        arn = ctx.arn("dynamodb", f"table/{params['TableName']}")
        now = time.time()
        return await self._write(ctx, lambda txn, _: control.create_table(txn, ctx.region, params, arn, now))

    async def describe_table(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """The table's description with approximate item counts and sizes."""
        return await self._read(lambda txn: control.describe_table(txn, ctx.region, params["TableName"]))

    async def list_tables(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Table names of the region in name order, paged."""
        return await self._read(lambda txn: control.list_tables(txn, ctx.region, params))

    async def update_table(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Change billing, throughput, GSIs (backfilled at once), stream and protection settings."""
        now = time.time()
        return await self._write(ctx, lambda txn, _: control.update_table(txn, ctx.region, params, now))

    async def delete_table(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Delete a table with its items, index and TTL entries; its streams stay
        readable (DISABLED) for 24 hours."""
        now = time.time()
        return await self._write(ctx, lambda txn, _: control.delete_table(txn, ctx.region, params["TableName"], now))

    async def update_time_to_live(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Enable or disable TTL expiry on an attribute."""
        return await self._write(ctx, lambda txn, _: control.update_ttl(txn, ctx.region, params))

    async def describe_time_to_live(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """The table's TTL setting."""
        return await self._read(lambda txn: control.describe_ttl(txn, ctx.region, params["TableName"]))

    async def tag_resource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Add or overwrite tags on a table."""
        tags = {t["Key"]: t["Value"] for t in params["Tags"]}
        await self._write(ctx, lambda txn, _: control.tag_table(txn, params["ResourceArn"], add=tags))
        return {}

    async def untag_resource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Remove tags from a table."""
        keys = list(params["TagKeys"])
        await self._write(ctx, lambda txn, _: control.tag_table(txn, params["ResourceArn"], remove=keys))
        return {}

    async def list_tags_of_resource(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """A table's tags."""
        tags = await self._read(lambda txn: control.tag_table(txn, params["ResourceArn"]))
        return {"Tags": [{"Key": k, "Value": v} for k, v in sorted(tags.items())]}

    async def describe_endpoints(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """The endpoint SDKs with endpoint discovery should use: this server."""
        address = ctx.endpoint.split("://", 1)[-1] or f"dynamodb.{ctx.region}.amazonaws.com"
        return {"Endpoints": [{"Address": address, "CachePeriodInMinutes": 1440}]}

    async def describe_limits(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """DynamoDB's default account and table capacity limits."""
        return {
            "AccountMaxReadCapacityUnits": 80000,
            "AccountMaxWriteCapacityUnits": 80000,
            "TableMaxReadCapacityUnits": 40000,
            "TableMaxWriteCapacityUnits": 40000,
        }

    async def describe_continuous_backups(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """The table's point-in-time recovery setting."""
        return await self._read(lambda txn: control.continuous_backups(txn, ctx.region, params["TableName"]))

    async def update_continuous_backups(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Record the point-in-time recovery setting."""
        enabled = bool(params["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"])
        return await self._write(
            ctx, lambda txn, _: control.continuous_backups(txn, ctx.region, params["TableName"], enabled)
        )

    # -- items ----------------------------------------------------------------------------

    async def put_item(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Create or replace an item, optionally conditionally."""
        prepared = prepare(params, condition=True)
        validated = items.new_item(params)
        name = params["TableName"]
        region = ctx.region
        # _write_op's steps in line: PutItem is the hottest write
        effects = Effects(time.time(), region, _metered(params))

        def run(txn: Txn) -> dict[str, Any]:
            effects.streams.clear()  # a retried transaction starts over
            effects.usage.clear()
            return items.put_item(txn, require_table(txn, region, name), params, prepared, effects, validated)

        result = await self.app.store.write(run)
        if effects.streams:
            self._wake(effects)
        return {**result, **_consumed(params, effects.usage, True)} if effects.metered else result

    async def delete_item(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Delete an item, optionally conditionally."""
        prepared = prepare(params, condition=True)
        name = params["TableName"]

        def run(txn: Txn, effects: Effects) -> dict[str, Any]:
            return items.delete_item(txn, require_table(txn, ctx.region, name), params, prepared, effects)

        return await self._write_op(ctx, params, run)

    async def update_item(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Apply an update expression (or AttributeUpdates), creating the item if needed."""
        prepared = prepare(params, condition=True, update=True)
        name = params["TableName"]

        def run(txn: Txn, effects: Effects) -> dict[str, Any]:
            return items.update_item(txn, require_table(txn, ctx.region, name), params, prepared, effects)

        return await self._write_op(ctx, params, run)

    async def get_item(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """One item by key, optionally projected."""
        prepared = prepare(params, projection=True)
        name = params["TableName"]
        # over HTTP the found item goes out as stored: its bytes are already
        # the response's JSON (in-process callers get the item itself)
        as_stored = _over_http(ctx)

        region = ctx.region
        # _read_op's steps in line: GetItem is the hottest read
        effects = Effects(time.time(), region, _metered(params))

        def run(txn: Txn) -> dict[str, Any]:
            effects.usage.clear()  # a read that ran out of time inline runs again
            table = require_table(txn, region, name)
            return items.get_item(txn, table, params, prepared, effects, as_stored=as_stored)

        result = await self.app.store.read(run)
        if effects.metered:
            result = {**result, **_consumed(params, effects.usage, True)}
        if as_stored and type(result.get("Item")) is orjson.Fragment:
            return _as_body(ctx, result)
        return result

    async def batch_get_item(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Up to 100 items from one or more tables."""
        request = params["RequestItems"]
        as_stored = _over_http(ctx)
        result = await self._read_op(
            ctx, params, lambda txn, effects: transactions.batch_get(txn, ctx.region, request, effects, as_stored=as_stored),
            single=False,
        )  # fmt: skip
        return _as_body(ctx, result) if as_stored else result

    async def batch_write_item(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Up to 25 puts and deletes across tables."""
        request = params["RequestItems"]
        return await self._write_op(
            ctx, params, lambda txn, effects: transactions.batch_write(txn, ctx.region, request, effects), single=False
        )

    # -- queries ------------------------------------------------------------------------------

    async def query(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Items of one partition (of the table or an index) in sort key order."""
        prepared = prepare(params, projection=True, filter_legacy="QueryFilter", key_condition=True)

        def run(txn: Txn, effects: Effects) -> dict[str, Any]:
            table = require_table(txn, ctx.region, params["TableName"])
            source = query.source_for(table, params)
            bounds = query.key_range(source, prepared)
            query.check_filter(source, prepared)
            return query.read_page(txn, source, params, prepared, bounds, effects=effects, as_stored=as_stored)

        as_stored = _over_http(ctx)
        result = await self._read_op(ctx, params, run)
        return _as_body(ctx, result) if as_stored and _stored_items(result) else result

    async def scan(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Every item of the table or an index, optionally one segment of a parallel scan."""
        prepared = prepare(params, projection=True, filter_legacy="ScanFilter")
        segment = query.scan_segment(params)

        def run(txn: Txn, effects: Effects) -> dict[str, Any]:
            table = require_table(txn, ctx.region, params["TableName"])
            source = query.source_for(table, params)
            return query.read_page(txn, source, params, prepared, (source.prefix(), None, None), segment, effects=effects,
                                   as_stored=as_stored)  # fmt: skip

        as_stored = _over_http(ctx)
        result = await self._read_op(ctx, params, run)
        return _as_body(ctx, result) if as_stored and _stored_items(result) else result

    # -- transactions ---------------------------------------------------------------------------

    async def transact_write_items(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Up to 100 writes and condition checks, all or none, idempotent by token."""
        actions = transactions.prepare_transact(params["TransactItems"])
        token = params.get("ClientRequestToken")
        digest = transactions.request_digest(params["TransactItems"]) if token else ""

        def run(txn: Txn, effects: Effects) -> dict[str, Any]:
            if token and transactions.check_token(txn, ctx.region, token, digest, effects.now):
                return {}
            transactions.transact_write(txn, ctx.region, actions, effects)
            if token:
                transactions.save_token(txn, ctx.region, token, digest, effects.now)
            return {}

        return await self._write_op(ctx, params, run, single=False)

    async def transact_get_items(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Up to 100 items read from one consistent snapshot."""
        return await self._read_op(
            ctx, params, lambda txn, effects: transactions.transact_get(txn, ctx.region, params["TransactItems"], effects),
            single=False,
        )

    # -- PartiQL ------------------------------------------------------------------------------------

    async def execute_statement(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Run one PartiQL statement."""
        stmt = parse_statement(params["Statement"], params.get("Parameters"))
        if stmt.verb == "SELECT":
            reading = Effects(now=time.time(), region=ctx.region)
            return await self._read(lambda txn: run_statement(txn, ctx.region, stmt, params, reading))
        return await self._write(ctx, lambda txn, effects: run_statement(txn, ctx.region, stmt, params, effects))

    async def batch_execute_statement(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Run up to 25 PartiQL statements, each succeeding or failing alone."""
        return await self._write(ctx, lambda txn, effects: batch_execute(txn, ctx.region, params, effects))

    async def execute_transaction(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Run PartiQL statements as one transaction."""
        entries = params["TransactStatements"]
        if len(entries) > transactions.MAX_TRANSACT:
            raise transactions.too_many_items()
        statements = [parse_statement(e["Statement"], e.get("Parameters")) for e in entries]
        token = params.get("ClientRequestToken")
        digest = transactions.request_digest(entries) if token else ""

        def run(txn: Txn, effects: Effects) -> dict[str, Any]:
            if token and transactions.check_token(txn, ctx.region, token, digest, effects.now):
                return {}
            result = partiql_transaction(txn, ctx.region, statements, effects)
            if token:
                transactions.save_token(txn, ctx.region, token, digest, effects.now)
            return result

        return await self._write(ctx, run)

    # -- streams ---------------------------------------------------------------------------------------

    async def list_streams(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """The streams of the region's tables (or of one table), including those
        of tables deleted in the last 24 hours."""
        now = time.time()
        return await self._read(lambda txn: streams.list_streams(txn, ctx.region, params, now))

    async def describe_stream(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """A stream's status, view type and its shard."""
        now = time.time()
        return await self._read(lambda txn: streams.describe_stream(txn, params, now))

    async def get_shard_iterator(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """An iterator at a position of the stream's shard."""
        now = time.time()
        return await self._read(lambda txn: streams.get_shard_iterator(txn, params, now))

    async def get_records(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Stream records after an iterator's position, and the next iterator."""
        now = time.time()
        return await self._read(lambda txn: streams.get_records(txn, params, now))

    # -- background ------------------------------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        last_trim = 0.0
        while True:
            try:
                trim = time.time() - last_trim > TRIM_SECONDS
                await self.sweep(trim=trim)
                if trim:
                    last_trim = time.time()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("DynamoDB TTL sweep failed")
            await asyncio.sleep(TTL_SWEEP_SECONDS)

    async def sweep(self, *, trim: bool = False, now: float | None = None) -> int:
        """Delete expired items of every TTL table (as service deletions in
        their streams); with ``trim``, drop stream records older than 24 hours
        and the streams of tables deleted more than 24 hours ago (as of ``now``,
        by default the current time; TTL expiry always uses the current time)."""
        tables = await self.app.store.read(control.sweep_tables)
        deleted = 0
        for region, name, ttl_enabled, table_streams in tables:
            while ttl_enabled:
                effects = Effects(now=time.time(), region=region)

                def expire(txn: Txn, region: str = region, name: str = name, effects: Effects = effects) -> int:
                    effects.streams.clear()
                    return control.expire_items(txn, region, name, effects)

                count = await self.app.store.write(expire)
                self._wake(effects)
                deleted += count
                if count < 100:
                    break
            if trim:
                for stream in table_streams:
                    await self._trim(stream, now)
        if trim:
            await self._trim_retired(now)
        return deleted

    async def _trim(self, stream: dict[str, Any], now: float | None) -> None:
        """Drop a stream's records older than 24 hours, a batch per transaction."""
        while True:
            at = time.time() if now is None else now
            if not await self.app.store.write(partial(streams.trim_stream, stream=stream, now=at)):
                return

    async def _trim_retired(self, now: float | None) -> None:
        """Trim the streams of deleted tables; forget those past their 24 hours."""
        for key, stream in await self.app.store.read(streams.retired_streams):
            at = time.time() if now is None else now
            if stream_expired(stream, at):
                await self.app.store.write(partial(streams.drop_retired, key=key, stream=stream))
            else:
                await self._trim(stream, now)

