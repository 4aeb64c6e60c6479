"""AWS Lambda Powertools runs inside a function unchanged."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from nubes.runtime import RuntimeManager

POWERTOOLS = """
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger(service="orders")
metrics = Metrics(namespace="Shop", service="orders")

@metrics.log_metrics
@logger.inject_lambda_context
def handler(event, context):
    logger.info("order placed", extra={"order_id": event["id"]})
    metrics.add_metric(name="Orders", unit=MetricUnit.Count, value=1)
    return {"ok": True}
"""


def test_powertools_logger_and_metrics(harness: Any, new_rid: Callable[[], str]) -> None:
    spec = harness.spec(harness.code(POWERTOOLS), name="orders-fn", memory_mb=256)
    request_id = new_rid()

    async def scenario(m: RuntimeManager) -> Any:
        return await m.invoke(spec, b'{"id": "o-1"}', request_id=request_id)

    result = harness.run(scenario)
    assert result.function_error is None, result.payload
    assert json.loads(result.payload) == {"ok": True}
    records = []
    for _, message in harness.logs[0][2]:
        if message.startswith("{"):
            records.append(json.loads(message))
    log = next(r for r in records if r.get("message") == "order placed")
    assert log["level"] == "INFO"
    assert log["service"] == "orders"
    assert log["order_id"] == "o-1"
    assert log["function_name"] == "orders-fn"
    assert log["function_request_id"] == request_id
    assert log["function_memory_size"] == "256"
    assert log["function_arn"] == spec.arn
    assert log["cold_start"] is True
    emf = next(r for r in records if "_aws" in r)
    assert emf["Orders"] == [1.0] or emf["Orders"] == 1.0
    assert emf["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Shop"


TRACER = """
from aws_lambda_powertools import Tracer

tracer = Tracer(service="orders")

@tracer.capture_method
def work(n):
    tracer.put_annotation(key="n", value=n)
    return n * 2

@tracer.capture_lambda_handler
def handler(event, context):
    return {"doubled": work(event["n"])}
"""


def test_powertools_tracer(harness: Any, new_rid: Callable[[], str]) -> None:
    spec = harness.spec(harness.code(TRACER))

    async def scenario(m: RuntimeManager) -> Any:
        return [await m.invoke(spec, b'{"n": 21}', request_id=new_rid()) for _ in range(2)]

    for result in harness.run(scenario):
        assert result.function_error is None, result.payload
        assert json.loads(result.payload) == {"doubled": 42}
