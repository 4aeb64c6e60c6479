"""Logs Insights API: StartQuery, GetQueryResults, StopQuery, DescribeQueries.

A query runs in the background over the store (in one read transaction on the
store's thread, never on the event loop). Its status and results are stored
(``logs.queries``, the last ``_KEPT`` queries), so any node of a cluster answers
GetQueryResults.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import orjson

from nubes.aws.errors import AwsError
from nubes.services.base import Provider, RequestContext
from nubes.services.logs import store as st
from nubes.services.logs.insights import QueryError, make_record, parse_query, run_query
from nubes.storage.base import Txn

QUERIES = "logs.queries"
_KEPT = 100
_MAX_LIMIT = 10_000
_MAX_SCANNED = 2_000_000


def _group_names(params: dict[str, Any]) -> list[str]:
    names = list(params.get("logGroupNames") or [])
    if params.get("logGroupName"):
        names.append(params["logGroupName"])
    for ident in params.get("logGroupIdentifiers") or []:
        names.append(ident.split(":log-group:", 1)[1].removesuffix(":*") if ":log-group:" in ident else ident)
    if not names:
        raise AwsError("InvalidParameterException", "At least one log group name or identifier is required.", 400)
    return names


class QueriesMixin(Provider):
    """Logs Insights queries over the stored events."""

    _query_tasks: dict[str, asyncio.Task[Any]]

    def _running(self) -> dict[str, asyncio.Task[Any]]:
        found: dict[str, asyncio.Task[Any]] | None = getattr(self, "_query_tasks", None)
        if found is None:
            found = {}
            self._query_tasks = found
        return found

    async def _save_query(self, info: dict[str, Any], *, only_if_running: bool = False) -> None:
        key = info["queryId"].encode()

        def write(txn: Txn) -> None:
            if only_if_running:
                raw = txn.get(QUERIES, key)
                if raw is None or orjson.loads(raw)["status"] != "Running":
                    return  # stopped meanwhile (maybe on another node)
            txn.put(QUERIES, key, orjson.dumps(info))
            rows = sorted((orjson.loads(v)["createTime"], k) for k, v in txn.scan(QUERIES))
            for _, old in rows[: max(0, len(rows) - _KEPT)]:
                txn.delete(QUERIES, old)

        await self.app.store.write(write)

    async def start_query(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        if (params.get("queryLanguage") or "CWLI") != "CWLI":
            raise AwsError("InvalidParameterException", "nubes runs Logs Insights (CWLI) queries only.", 400)
        try:
            query = parse_query(params["queryString"])
        except (QueryError, IndexError) as exc:
            raise AwsError("MalformedQueryException", f"Malformed query: {exc}", 400,
                           fields={"queryCompileError": {"message": str(exc)}}) from None  # fmt: skip
        groups = _group_names(params)
        start_ms, end_ms = int(params["startTime"]) * 1000, int(params["endTime"]) * 1000 + 999
        if end_ms < start_ms:
            raise AwsError("InvalidParameterException", "endTime must be greater than or equal to startTime", 400)
        limit = min(int(params.get("limit") or 1000), _MAX_LIMIT)

        def missing(txn: Txn) -> list[str]:
            return [g for g in groups if txn.get(st.GROUPS, st.group_key(ctx.region, g)) is None]

        absent = await self.app.store.read(missing)
        if absent:
            raise AwsError("ResourceNotFoundException", f"Log group '{absent[0]}' does not exist", 400)
        query_id = str(uuid.uuid4())
        info: dict[str, Any] = {
            "queryId": query_id, "queryString": params["queryString"], "status": "Running",
            "createTime": int(time.time() * 1000), "logGroupName": groups[0], "queryLanguage": "CWLI",
            "results": [], "statistics": {"recordsMatched": 0.0, "recordsScanned": 0.0, "bytesScanned": 0.0},
        }  # fmt: skip
        await self._save_query(info)

        def scan(txn: Txn) -> tuple[list[list[dict[str, str]]], dict[str, float]]:
            records, scanned_bytes = [], 0
            for group in groups:
                arn = f"{ctx.account_id}:{group}"
                streams = [s["logStreamName"] for s in st.list_streams(txn, ctx.region, group)]
                events = st.merge_group_events(txn, ctx.region, group, streams, start_time=start_ms,
                                               end_time=end_ms, after=None)  # fmt: skip
                for ts, stream, seq, message, ingestion in events:
                    rec = make_record(arn, stream, ts, message, ingestion)
                    rec["@ptr"] = f"{group}|{stream}|{ts}|{seq}"
                    records.append(rec)
                    scanned_bytes += len(message)
                    if len(records) >= _MAX_SCANNED:
                        break
            scanned = float(len(records))
            rows = run_query(query, records, limit)
            return rows, {"recordsMatched": float(len(rows)) if not query.stats else scanned,
                          "recordsScanned": scanned, "bytesScanned": float(scanned_bytes)}  # fmt: skip

        async def execute() -> None:
            try:
                rows, stats = await self.app.store.read(scan)
                await self._save_query({**info, "results": rows, "statistics": stats, "status": "Complete"},
                                       only_if_running=True)  # fmt: skip
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self._save_query({**info, "status": "Failed", "error": str(exc)}, only_if_running=True)
            finally:
                self._running().pop(query_id, None)

        self._running()[query_id] = self.app.spawn(execute(), name=f"logs-query-{query_id}")
        return {"queryId": query_id}

    async def _query(self, query_id: str) -> dict[str, Any]:
        raw = await self.app.store.read(lambda txn: txn.get(QUERIES, query_id.encode()))
        if raw is None:
            raise AwsError("ResourceNotFoundException", "Query does not exist.", 400)
        info: dict[str, Any] = orjson.loads(raw)
        return info

    async def get_query_results(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        info = await self._query(params["queryId"])
        return {"results": info["results"], "statistics": info["statistics"], "status": info["status"],
                "queryLanguage": "CWLI"}  # fmt: skip

    async def stop_query(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        info = await self._query(params["queryId"])
        if info["status"] != "Running":
            return {"success": False}
        await self._save_query({**info, "status": "Cancelled"}, only_if_running=True)
        task = self._running().pop(info["queryId"], None)
        if task is not None:
            task.cancel()
        return {"success": True}

    async def describe_queries(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        found = [
            {k: v for k, v in q.items() if k in ("queryId", "queryString", "status", "createTime",
                                                 "logGroupName", "queryLanguage")}
            for q in await self._all_queries()
            if (not params.get("logGroupName") or q["logGroupName"] == params["logGroupName"])
            and (not params.get("status") or q["status"] == params["status"])
        ]  # fmt: skip
        return {"queries": found[: int(params.get("maxResults") or 1000)]}

    async def _all_queries(self) -> list[dict[str, Any]]:
        rows = await self.app.store.read(lambda txn: txn.scan(QUERIES))
        return sorted((orjson.loads(v) for _, v in rows), key=lambda q: q["createTime"], reverse=True)
