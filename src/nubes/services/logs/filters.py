"""Subscription filters (log events to a Lambda function) and metric filters (log
events to CloudWatch metrics), applied to every PutLogEvents after it commits.

A subscription to a function receives what AWS sends:
``{"awslogs": {"data": base64(gzip(json))}}`` with ``messageType``, ``owner``,
``logGroup``, ``logStream``, ``subscriptionFilters`` and ``logEvents``. A function's
subscription to its own log group is not delivered (it would feed itself forever).
"""

from __future__ import annotations

import base64
import gzip
import logging
import re
import time
from typing import Any

import orjson

from nubes.aws.errors import AwsError
from nubes.services.base import Provider, RequestContext
from nubes.services.logs import store as st
from nubes.services.logs.patterns import PatternError, compile_pattern
from nubes.storage.base import Txn
from nubes.storage.keys import pack

log = logging.getLogger(__name__)

_MAX_SUBSCRIPTIONS = 2
_MAX_METRIC_FILTERS = 100
_SELECTOR = re.compile(r"^\$\.[A-Za-z0-9_.\[\]-]+$")


def _invalid(message: str) -> AwsError:
    return AwsError("InvalidParameterException", message, 400)


def _check_pattern(pattern: str | None) -> None:
    try:
        compile_pattern(pattern)
    except PatternError as exc:
        raise _invalid(f"Invalid filter pattern: {exc}") from None


def _json_value(message: str, selector: str) -> Any:
    start = message.find("{")
    if start < 0:
        return None
    try:
        doc: Any = orjson.loads(message[start:])
    except orjson.JSONDecodeError:
        return None
    for part in re.findall(r"\.([A-Za-z0-9_-]+)|\[(\d+)\]", selector[1:]):
        key, index = part
        if key and isinstance(doc, dict):
            doc = doc.get(key)
        elif index and isinstance(doc, list) and int(index) < len(doc):
            doc = doc[int(index)]
        else:
            return None
    return doc


def metric_value(transform: dict[str, Any], message: str) -> float | None:
    """The value a metric transformation takes from one matching event."""
    raw = str(transform["metricValue"])
    if _SELECTOR.match(raw):
        value = _json_value(message, raw)
        if isinstance(value, bool) or not isinstance(value, int | float):
            default = transform.get("defaultValue")
            return None if default is None else float(default)
        return float(value)
    try:
        return float(raw)
    except ValueError:
        return None


class FiltersMixin(Provider):
    """Put/Describe/DeleteSubscriptionFilter, Put/Describe/DeleteMetricFilter, TestMetricFilter."""

    async def _change_group(self, region: str, group: str, change: Any) -> None:
        def write(txn: Txn) -> None:
            key = st.group_key(region, group)
            doc = st.get_json(txn, st.GROUPS, key)
            if doc is None:
                raise AwsError("ResourceNotFoundException", "The specified log group does not exist.", 400)
            change(doc)
            doc["metricFilterCount"] = len(doc.get("metricFilters") or {})
            st.put_json(txn, st.GROUPS, key, doc)

        await self.app.store.write(write)

    async def _group_doc(self, region: str, group: str) -> dict[str, Any]:
        doc = await self.app.store.read(lambda txn: st.get_json(txn, st.GROUPS, st.group_key(region, group)))
        if doc is None:
            raise AwsError("ResourceNotFoundException", "The specified log group does not exist.", 400)
        return doc

    # -- subscription filters ---------------------------------------------------------------

    async def put_subscription_filter(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        _check_pattern(params.get("filterPattern"))
        destination: str = params["destinationArn"]
        if destination.split(":")[2:3] != ["lambda"]:
            raise _invalid("nubes delivers subscription filters to Lambda functions only "
                           f"(not {destination})")  # fmt: skip
        record = {
            "filterName": params["filterName"], "logGroupName": params["logGroupName"],
            "filterPattern": params.get("filterPattern") or "", "destinationArn": destination,
            "distribution": params.get("distribution") or "ByLogStream", "creationTime": int(time.time() * 1000),
        }  # fmt: skip
        if params.get("roleArn"):
            record["roleArn"] = params["roleArn"]

        def change(doc: dict[str, Any]) -> None:
            subs = doc.setdefault("subscriptions", {})
            if record["filterName"] not in subs and len(subs) >= _MAX_SUBSCRIPTIONS:
                raise AwsError("LimitExceededException", "Resource limit exceeded.", 400)
            subs[record["filterName"]] = record

        await self._change_group(ctx.region, params["logGroupName"], change)
        return {}

    async def describe_subscription_filters(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        doc = await self._group_doc(ctx.region, params["logGroupName"])
        prefix = params.get("filterNamePrefix") or ""
        subs = [s for n, s in sorted((doc.get("subscriptions") or {}).items()) if n.startswith(prefix)]
        return {"subscriptionFilters": subs}

    async def delete_subscription_filter(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        def change(doc: dict[str, Any]) -> None:
            if doc.get("subscriptions", {}).pop(params["filterName"], None) is None:
                raise AwsError("ResourceNotFoundException", "The specified subscription filter does not exist.", 400)

        await self._change_group(ctx.region, params["logGroupName"], change)
        return {}

    # -- metric filters -----------------------------------------------------------------------

    async def put_metric_filter(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        _check_pattern(params.get("filterPattern"))
        transforms = params["metricTransformations"]
        for t in transforms:
            if not _SELECTOR.match(str(t["metricValue"])):
                try:
                    float(t["metricValue"])
                except ValueError:
                    raise _invalid(f"Invalid metric value: {t['metricValue']}") from None
        record = {"filterName": params["filterName"], "logGroupName": params["logGroupName"],
                  "filterPattern": params.get("filterPattern") or "", "metricTransformations": transforms,
                  "creationTime": int(time.time() * 1000)}  # fmt: skip

        def change(doc: dict[str, Any]) -> None:
            filters = doc.setdefault("metricFilters", {})
            if record["filterName"] not in filters and len(filters) >= _MAX_METRIC_FILTERS:
                raise AwsError("LimitExceededException", "Resource limit exceeded.", 400)
            filters[record["filterName"]] = record

        await self._change_group(ctx.region, params["logGroupName"], change)
        return {}

    async def describe_metric_filters(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("logGroupName"):
            docs = [await self._group_doc(ctx.region, params["logGroupName"])]
        else:
            rows = await self.app.store.read(lambda txn: txn.scan(st.GROUPS, prefix=pack(ctx.region)))
            docs = [orjson.loads(v) for _, v in rows]
        prefix = params.get("filterNamePrefix") or ""
        out = []
        for doc in docs:
            for name, f in sorted((doc.get("metricFilters") or {}).items()):
                names = {(t["metricNamespace"], t["metricName"]) for t in f["metricTransformations"]}
                if not name.startswith(prefix):
                    continue
                if params.get("metricName") and not any(n == params["metricName"] for _, n in names):
                    continue
                if params.get("metricNamespace") and not any(ns == params["metricNamespace"] for ns, _ in names):
                    continue
                out.append(f)
        return {"metricFilters": out}

    async def delete_metric_filter(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        def change(doc: dict[str, Any]) -> None:
            if doc.get("metricFilters", {}).pop(params["filterName"], None) is None:
                raise AwsError("ResourceNotFoundException", "The specified metric filter does not exist.", 400)

        await self._change_group(ctx.region, params["logGroupName"], change)
        return {}

    async def test_metric_filter(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        try:
            match = compile_pattern(params.get("filterPattern"))
        except PatternError as exc:
            raise _invalid(f"Invalid filter pattern: {exc}") from None
        matches = [{"eventNumber": i + 1, "eventMessage": m, "extractedValues": {}}
                   for i, m in enumerate(params["logEventMessages"]) if match(m)]  # fmt: skip
        return {"matches": matches}

    # -- applying them --------------------------------------------------------------------------

    async def apply_filters(self, region: str, group_doc: dict[str, Any], stream: str,
                            events: list[dict[str, Any]]) -> None:  # fmt: skip
        """Deliver just-stored events to the group's subscriptions and metric filters."""
        for sub in (group_doc.get("subscriptions") or {}).values():
            try:
                await self._deliver_subscription(region, group_doc, stream, sub, events)
            except Exception:
                log.exception("subscription filter %s of %s failed", sub["filterName"], group_doc["logGroupName"])
        for mf in (group_doc.get("metricFilters") or {}).values():
            try:
                await self._emit_metrics(region, mf, events)
            except Exception:
                log.exception("metric filter %s of %s failed", mf["filterName"], group_doc["logGroupName"])

    async def _deliver_subscription(self, region: str, group_doc: dict[str, Any], stream: str,
                                    sub: dict[str, Any], events: list[dict[str, Any]]) -> None:  # fmt: skip
        destination = sub["destinationArn"]
        function = destination.split(":")[6] if destination.count(":") >= 6 else ""
        if group_doc["logGroupName"] == f"/aws/lambda/{function}":
            return
        match = compile_pattern(sub["filterPattern"])
        matched = [e for e in events if match(e["message"])]
        if not matched:
            return
        body = {
            "messageType": "DATA_MESSAGE", "owner": self.app.settings.account_id,
            "logGroup": group_doc["logGroupName"], "logStream": stream,
            "subscriptionFilters": [sub["filterName"]],
            "logEvents": [{"id": f"{e['timestamp']}{i:08d}", "timestamp": e["timestamp"], "message": e["message"]}
                          for i, e in enumerate(matched)],
        }  # fmt: skip
        data = base64.b64encode(gzip.compress(orjson.dumps(body))).decode()
        payload = orjson.dumps({"awslogs": {"data": data}})
        await self.app.call("lambda", "Invoke", {"FunctionName": destination, "InvocationType": "Event",
                                                 "Payload": payload}, region=destination.split(":")[3])  # fmt: skip

    async def _emit_metrics(self, region: str, mf: dict[str, Any], events: list[dict[str, Any]]) -> None:
        match = compile_pattern(mf["filterPattern"])
        data = []
        for event in events:
            if not match(event["message"]):
                continue
            for t in mf["metricTransformations"]:
                value = metric_value(t, event["message"])
                if value is None:
                    continue
                datum: dict[str, Any] = {"MetricName": t["metricName"], "Value": value,
                                         "Timestamp": event["timestamp"] / 1000}  # fmt: skip
                if t.get("unit"):
                    datum["Unit"] = t["unit"]
                dims = []
                for name, selector in (t.get("dimensions") or {}).items():
                    dim = _json_value(event["message"], selector) if _SELECTOR.match(selector) else selector
                    if dim is not None:
                        dims.append({"Name": name, "Value": str(dim)})
                if dims:
                    datum["Dimensions"] = dims
                data.append((t["metricNamespace"], datum))
        by_namespace: dict[str, list[dict[str, Any]]] = {}
        for namespace, datum in data:
            by_namespace.setdefault(namespace, []).append(datum)
        for namespace, items in by_namespace.items():
            for i in range(0, len(items), 1000):
                await self.app.call("cloudwatch", "PutMetricData", {"Namespace": namespace,
                                                                    "MetricData": items[i : i + 1000]}, region=region)  # fmt: skip
