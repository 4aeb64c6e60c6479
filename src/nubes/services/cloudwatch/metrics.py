"""CloudWatch metric storage and aggregation (no I/O: functions over a transaction).

* ``cloudwatch.metrics`` — ``(region, namespace, name, dims)`` → ``{Namespace,
  MetricName, Dimensions, last}``, the ListMetrics catalogue
* ``cloudwatch.data`` — ``(region, namespace, name, dims, timestamp_ms, nonce)`` →
  ``[sample_count, sum, min, max, unit, values]`` (``values``: the raw values when
  they were sent one by one, for percentiles)

``dims`` is the canonical text of the dimension set (sorted ``name=value`` pairs),
so a metric is identified exactly as CloudWatch does: by all its dimensions.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from functools import cache
from typing import Any

import orjson

from nubes.aws.errors import AwsError
from nubes.storage.base import Txn
from nubes.storage.keys import pack, prefix_end

METRICS = "cloudwatch.metrics"
DATA = "cloudwatch.data"
STATISTICS = ("SampleCount", "Average", "Sum", "Minimum", "Maximum")
_PAGE = 1000
_MAX_RAW_VALUES = 10_000

@cache
def _query_codes() -> dict[str, str]:
    """Error shape name → the code CloudWatch's query protocol uses (from the model)."""
    from nubes.aws.spec import service_model

    model = service_model("cloudwatch")
    return {e.name: (e.metadata.get("error") or {}).get("code", e.name) for e in model.error_shapes}


def cw_error(shape: str, message: str, status: int = 400) -> AwsError:
    """A CloudWatch error (the client sees the query-protocol code, e.g. InvalidParameterValue)."""
    return AwsError(shape, message, status, fields={"QueryErrorCode": _query_codes().get(shape, shape)})


def dims_key(dimensions: Iterable[dict[str, str]] | None) -> str:
    """Canonical text of a dimension set."""
    return "\x1f".join(f"{d['Name']}={d['Value']}" for d in sorted(dimensions or (), key=lambda d: d["Name"]))


def datum_stats(datum: dict[str, Any]) -> tuple[float, float, float, float, list[float] | None]:
    """(SampleCount, Sum, Minimum, Maximum, raw values) of one MetricDatum."""
    stats = datum.get("StatisticValues")
    if stats is not None:
        if datum.get("Value") is not None or datum.get("Values"):
            raise cw_error("InvalidParameterCombinationException",
                           "The parameters MetricData.member.1.Value and MetricData.member.1.StatisticValues "
                           "are mutually exclusive and you have specified both.")  # fmt: skip
        return float(stats["SampleCount"]), float(stats["Sum"]), float(stats["Minimum"]), float(stats["Maximum"]), None
    values = datum.get("Values")
    if values:
        counts = datum.get("Counts") or [1.0] * len(values)
        if len(counts) != len(values):
            raise cw_error("InvalidParameterValueException",
                           "The parameters MetricData.member.1.Values and MetricData.member.1.Counts must be "
                           "of the same size.")  # fmt: skip
        raw = [float(v) for v, c in zip(values, counts, strict=True) for _ in range(int(c))][:_MAX_RAW_VALUES]
        return float(sum(counts)), float(sum(v * c for v, c in zip(values, counts, strict=True))), \
            float(min(values)), float(max(values)), raw  # fmt: skip
    if datum.get("Value") is None:
        raise cw_error("MissingRequiredParameterException",
                       "The parameter MetricData.member.1.Value is required.")  # fmt: skip
    value = float(datum["Value"])
    if math.isnan(value) or math.isinf(value):
        raise cw_error("InvalidParameterValueException",
                       f"The value {value} for parameter MetricData.member.1.Value is invalid.")  # fmt: skip
    return 1.0, value, value, value, [value]


def put_datum(txn: Txn, region: str, namespace: str, datum: dict[str, Any], ts_ms: int) -> None:
    """Store one datum and register its metric."""
    dims = sorted(datum.get("Dimensions") or [], key=lambda d: d["Name"])
    key = dims_key(dims)
    count, total, low, high, raw = datum_stats(datum)
    nonce = random.getrandbits(62)
    value = [count, total, low, high, datum.get("Unit") or "None", raw]
    txn.put(DATA, pack(region, namespace, datum["MetricName"], key, ts_ms, nonce), orjson.dumps(value))
    meta_key = pack(region, namespace, datum["MetricName"], key)
    meta = {"Namespace": namespace, "MetricName": datum["MetricName"], "Dimensions": dims, "last": ts_ms}
    txn.put(METRICS, meta_key, orjson.dumps(meta))


def read_points(txn: Txn, region: str, namespace: str, name: str, dims: str, start_ms: int,
                end_ms: int) -> list[tuple[int, list[Any]]]:  # fmt: skip
    """``(timestamp_ms, [count, sum, min, max, unit, raw])`` of a metric in [start, end)."""
    prefix = pack(region, namespace, name, dims)
    low, high = prefix + pack(start_ms), prefix + pack(end_ms)
    out: list[tuple[int, list[Any]]] = []
    while True:
        page = txn.scan(DATA, start=low, end=high, limit=_PAGE)
        for key, value in page:
            ts = int.from_bytes(key[len(prefix) + 1 : len(prefix) + 9], "big") - (1 << 63)
            out.append((ts, orjson.loads(value)))
        if len(page) < _PAGE:
            return out
        low = page[-1][0] + b"\x00"


def list_metrics(txn: Txn, region: str, namespace: str | None) -> list[dict[str, Any]]:
    """Every registered metric of a region (optionally one namespace)."""
    prefix = pack(region, namespace) if namespace else pack(region)
    return [orjson.loads(v) for _, v in txn.scan(METRICS, prefix=prefix, end=prefix_end(prefix))]


def aggregate(points: list[tuple[int, list[Any]]], period_s: int, unit: str | None) -> dict[int, dict[str, Any]]:
    """Group points by period (aligned to the epoch): period start (ms) → totals."""
    buckets: dict[int, dict[str, Any]] = {}
    period_ms = period_s * 1000
    for ts, (count, total, low, high, point_unit, raw) in points:
        if unit and point_unit != unit:
            continue
        start = ts - ts % period_ms
        b = buckets.setdefault(start, {"count": 0.0, "sum": 0.0, "min": math.inf, "max": -math.inf,
                                       "unit": point_unit, "raw": []})  # fmt: skip
        b["count"] += count
        b["sum"] += total
        b["min"] = min(b["min"], low)
        b["max"] = max(b["max"], high)
        if raw is not None and b["raw"] is not None:
            b["raw"].extend(raw)
        else:
            b["raw"] = None
    return buckets


def statistic(bucket: dict[str, Any], stat: str) -> float | None:
    """One statistic of a bucket: the five basic ones or a percentile ``pNN``/``pNN.N``."""
    if stat == "SampleCount":
        return float(bucket["count"])
    if stat == "Sum":
        return float(bucket["sum"])
    if stat == "Average":
        return float(bucket["sum"] / bucket["count"]) if bucket["count"] else None
    if stat == "Minimum":
        return float(bucket["min"])
    if stat == "Maximum":
        return float(bucket["max"])
    if stat.startswith("p"):
        raw = bucket.get("raw")
        if not raw:
            return None
        q = float(stat[1:])
        ordered = sorted(raw)
        index = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
        return float(ordered[index])
    raise cw_error("InvalidParameterValueException", f"The statistic {stat} is not supported by nubes.")


def check_extended(stat: str) -> None:
    """``pNN`` / ``pNN.NN`` between 0 and 100."""
    try:
        ok = stat.startswith("p") and 0 <= float(stat[1:]) <= 100
    except ValueError:
        ok = False
    if not ok:
        raise cw_error("InvalidParameterValueException",
                       f"The value {stat} for parameter ExtendedStatistics is not supported.")  # fmt: skip
