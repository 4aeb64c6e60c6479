"""CloudWatch metrics: PutMetricData, GetMetricStatistics, GetMetricData, ListMetrics,
and metric alarms (stored; see ``alarms``)."""

from __future__ import annotations

import base64
import datetime as dt
import time
from typing import Any

import orjson

from nubes.services.base import RequestContext
from nubes.services.cloudwatch import metrics as m
from nubes.services.cloudwatch.alarms import AlarmsMixin
from nubes.services.cloudwatch.mathexpr import Evaluator, MathError
from nubes.storage.base import Txn

_MAX_DATAPOINTS = 1440
_MAX_DATUMS = 1000
_TWO_WEEKS_S = 14 * 86_400
_LIST_PAGE = 500
_RECENT_S = 3 * 3600


def _epoch_ms(value: Any) -> int:
    if isinstance(value, dt.datetime):
        return int(value.timestamp() * 1000)
    return int(float(value) * 1000)


def _when(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def _dims_match(metric: dict[str, Any], filters: list[dict[str, Any]]) -> bool:
    have = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
    for f in filters:
        if f["Name"] not in have:
            return False
        if f.get("Value") is not None and have[f["Name"]] != f["Value"]:
            return False
    return True


class CloudWatchProvider(AlarmsMixin):
    """The CloudWatch (metrics) API over the ``cloudwatch.*`` tables."""

    async def start(self) -> None:
        """Start evaluating metric alarms."""
        from nubes.services.cloudwatch.evaluate import evaluate_forever

        self.app.spawn(evaluate_forever(self.app), name="cloudwatch-alarms")

    async def put_metric_data(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        namespace: str = params["Namespace"]
        # AWS/ namespaces belong to the platform: refused over the wire (signed or not), allowed for
        # internal calls (no HTTP request), which since they act as the platform identity carry a key
        if namespace.startswith("AWS/") and ctx.http is not None:
            raise m.cw_error("InvalidParameterValueException",
                             "The value AWS/ for parameter Namespace is invalid.")  # fmt: skip
        data: list[dict[str, Any]] = params.get("MetricData") or []
        if len(data) > _MAX_DATUMS:
            raise m.cw_error("InvalidParameterValueException",
                             f"The collection MetricData must not have a size greater than {_MAX_DATUMS}.")  # fmt: skip
        now = time.time()
        stamped: list[tuple[dict[str, Any], int]] = []
        for datum in data:
            if len(datum.get("Dimensions") or []) > 30:
                raise m.cw_error("InvalidParameterValueException", "The collection Dimensions must not have a size greater than 30.")
            ts_ms = _epoch_ms(datum["Timestamp"]) if datum.get("Timestamp") is not None else int(now * 1000)
            if ts_ms / 1000 < now - _TWO_WEEKS_S or ts_ms / 1000 > now + 7200:
                raise m.cw_error("InvalidParameterValueException",
                                 f"The parameter MetricData.member.{len(stamped) + 1}.Timestamp must specify a time "
                                 "no more than two weeks in the past and no more than two hours in the future.")  # fmt: skip
            m.datum_stats(datum)  # validate before writing anything
            stamped.append((datum, ts_ms))

        def write(txn: Txn) -> None:
            for datum, ts_ms in stamped:
                m.put_datum(txn, ctx.region, namespace, datum, ts_ms)

        await self.app.store.write(write)
        self.app.bus.wake("cloudwatch:metrics")
        return {}

    async def get_metric_statistics(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        stats = list(params.get("Statistics") or [])
        extended = list(params.get("ExtendedStatistics") or [])
        if not stats and not extended:
            raise m.cw_error("MissingRequiredParameterException",
                             "Must specify either Statistics or ExtendedStatistics.")  # fmt: skip
        for stat in extended:
            m.check_extended(stat)
        period = int(params["Period"])
        start_ms, end_ms = _epoch_ms(params["StartTime"]), _epoch_ms(params["EndTime"])
        self._check_window(period, start_ms, end_ms)
        dims = m.dims_key(params.get("Dimensions"))

        def read(txn: Txn) -> list[tuple[int, list[Any]]]:
            return m.read_points(txn, ctx.region, params["Namespace"], params["MetricName"], dims, start_ms, end_ms)

        buckets = m.aggregate(await self.app.store.read(read), period, params.get("Unit"))
        datapoints = []
        for start, bucket in sorted(buckets.items()):
            point: dict[str, Any] = {"Timestamp": _when(start), "Unit": bucket["unit"]}
            for stat in stats:
                point[stat] = m.statistic(bucket, stat)
            if extended:
                point["ExtendedStatistics"] = {s: v for s in extended if (v := m.statistic(bucket, s)) is not None}
            datapoints.append(point)
        return {"Label": params["MetricName"], "Datapoints": datapoints}

    @staticmethod
    def _check_window(period: int, start_ms: int, end_ms: int) -> None:
        if period < 1 or (period >= 60 and period % 60) or (period < 60 and period not in (1, 5, 10, 20, 30)):
            raise m.cw_error("InvalidParameterValueException",
                             "The parameter Period must be a multiple of 60 (or 1, 5, 10, 20, 30 for high resolution).")  # fmt: skip
        if end_ms <= start_ms:
            raise m.cw_error("InvalidParameterValueException",
                             "The parameter StartTime must be less than the parameter EndTime.")  # fmt: skip
        count = (end_ms - start_ms) // (period * 1000)
        if count > _MAX_DATAPOINTS:
            raise m.cw_error("InvalidParameterCombinationException",
                             f"You have requested up to {count:,} datapoints, which exceeds the limit of "
                             f"{_MAX_DATAPOINTS:,}. You may reduce the datapoints requested by increasing "
                             "Period, or decreasing the time range.")  # fmt: skip

    async def get_metric_data(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        queries: list[dict[str, Any]] = params["MetricDataQueries"]
        start_ms, end_ms = _epoch_ms(params["StartTime"]), _epoch_ms(params["EndTime"])
        if end_ms <= start_ms:
            raise m.cw_error("ValidationException", "The parameter StartTime must be less than the parameter EndTime.")
        descending = (params.get("ScanBy") or "TimestampDescending") == "TimestampDescending"
        series: dict[str, dict[int, float]] = {}
        for query in queries:
            if query.get("MetricStat") is not None:
                series[query["Id"]] = await self._metric_stat(ctx, query["MetricStat"], start_ms, end_ms)
            elif query.get("Expression") is None:
                raise m.cw_error("ValidationException", f"Query {query['Id']} needs a MetricStat or an Expression.")
        expressions = {q["Id"]: q["Expression"] for q in queries if q.get("Expression") is not None}
        stat_ids = [q["Id"] for q in queries if q.get("MetricStat") is not None]
        for query_id in expressions:
            series[query_id] = self._expression(query_id, expressions, series, stat_ids, set())
        results = []
        for query in queries:
            if not query.get("ReturnData", True):
                continue
            points = sorted(series[query["Id"]].items(), reverse=descending)
            label = query.get("Label") or (query["MetricStat"]["Metric"]["MetricName"]
                                           if query.get("MetricStat") else query["Id"])  # fmt: skip
            results.append({"Id": query["Id"], "Label": label, "Timestamps": [_when(t) for t, _ in points],
                            "Values": [v for _, v in points], "StatusCode": "Complete"})  # fmt: skip
        return {"MetricDataResults": results, "Messages": []}

    def _expression(self, query_id: str, expressions: dict[str, str], series: dict[str, dict[int, float]],
                    stat_ids: list[str], seen: set[str]) -> dict[int, float]:  # fmt: skip
        """Evaluate one metric math query (and the expressions it references, once)."""
        if query_id in series:
            return series[query_id]
        if query_id in seen:
            raise m.cw_error("ValidationException", f"Circular reference to {query_id} in metric math.")
        seen.add(query_id)

        def lookup(name: str) -> dict[int, float]:
            if name in series:
                return series[name]
            if name in expressions:
                series[name] = self._expression(name, expressions, series, stat_ids, seen)
                return series[name]
            raise MathError(f"Unknown metric or expression id {name}")

        try:
            value = Evaluator(expressions[query_id], lookup, stat_ids).evaluate()
        except MathError as exc:
            raise m.cw_error("ValidationException", f"Error in expression {query_id}: {exc}") from None
        if not isinstance(value, dict):
            raise m.cw_error("ValidationException", f"Error in expression {query_id}: it must return a single "
                             "time series.")  # fmt: skip
        return value

    async def _metric_stat(self, ctx: RequestContext, spec: dict[str, Any], start_ms: int,
                           end_ms: int) -> dict[int, float]:  # fmt: skip
        metric = spec["Metric"]
        dims = m.dims_key(metric.get("Dimensions"))
        period = int(spec["Period"])
        stat = spec["Stat"]
        if stat.startswith("p"):
            m.check_extended(stat)
        elif stat not in m.STATISTICS:
            raise m.cw_error("InvalidParameterValueException", f"The value {stat} for parameter Stat is not supported.")

        def read(txn: Txn) -> list[tuple[int, list[Any]]]:
            return m.read_points(txn, ctx.region, metric["Namespace"], metric["MetricName"], dims, start_ms, end_ms)

        buckets = m.aggregate(await self.app.store.read(read), period, spec.get("Unit"))
        values = {start: m.statistic(b, stat) for start, b in buckets.items()}
        return {start: v for start, v in values.items() if v is not None}

    async def list_metrics(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        found = await self.app.store.read(lambda txn: m.list_metrics(txn, ctx.region, params.get("Namespace")))
        cutoff = (time.time() - _RECENT_S) * 1000 if params.get("RecentlyActive") == "PT3H" else None
        wanted = [
            {"Namespace": x["Namespace"], "MetricName": x["MetricName"], "Dimensions": x["Dimensions"]}
            for x in found
            if (not params.get("MetricName") or x["MetricName"] == params["MetricName"])
            and _dims_match(x, params.get("Dimensions") or [])
            and (cutoff is None or x["last"] >= cutoff)
        ]
        offset = 0
        if params.get("NextToken"):
            try:
                offset = orjson.loads(base64.b64decode(params["NextToken"]))
                if type(offset) is not int or offset < 0:
                    raise ValueError(offset)
            except ValueError:  # bad base64, bad JSON (a ValueError too), not an offset
                raise m.cw_error("InvalidNextToken", "The service couldn't process your request because "
                                 "the NextToken is invalid.") from None  # fmt: skip
        out: dict[str, Any] = {"Metrics": wanted[offset : offset + _LIST_PAGE]}
        if offset + _LIST_PAGE < len(wanted):
            out["NextToken"] = base64.b64encode(orjson.dumps(offset + _LIST_PAGE)).decode()
        return out
