"""Pure parts of async invokes and event source mappings: records and parsing."""

from __future__ import annotations

import datetime as dt

import pytest

from nubes.events.async_invoke import (
    DEFAULT_RETRY_DELAYS,
    AsyncTarget,
    destination_record,
    event_record,
    retry_delays_from_tags,
)
from nubes.events.esm import _failed_items, _jsonable
from nubes.runtime.spec import InvocationResult
from nubes.services.lambda_.common import pick_version
from nubes.services.lambda_.models import parse_function_name


def _result(payload: bytes, error: str | None = None) -> InvocationResult:
    return InvocationResult(payload=payload, function_error=error, log_tail="", request_id="r",
                            duration_ms=1.0, billed_duration_ms=1, max_memory_used_mb=1,
                            init_duration_ms=None, log_stream="s")  # fmt: skip


def test_retry_delays_tag() -> None:
    assert retry_delays_from_tags({}) == DEFAULT_RETRY_DELAYS
    assert retry_delays_from_tags({"nubes:retry-delays": "0.5, 2"}) == (0.5, 2.0)
    assert retry_delays_from_tags({"nubes:retry-delays": "soon"}) == DEFAULT_RETRY_DELAYS


def test_destination_record_shapes() -> None:
    item = event_record(region="us-east-1", function_name="f", qualifier=None, payload=b'{"a": 1}', request_id="rid")
    item["attempt"] = 2
    target = AsyncTarget(function_arn="arn:aws:lambda:us-east-1:000000000000:function:f:$LATEST",
                         version="$LATEST", timeout_s=3.0)  # fmt: skip
    failed = destination_record(item, target, _result(b'{"errorMessage": "x"}', "Unhandled"), "RetriesExhausted")
    assert failed["requestContext"] == {"requestId": "rid", "functionArn": target.function_arn,
                                        "condition": "RetriesExhausted", "approximateInvokeCount": 3}  # fmt: skip
    assert failed["requestPayload"] == {"a": 1} and failed["responsePayload"] == {"errorMessage": "x"}
    assert failed["responseContext"]["functionError"] == "Unhandled"
    dt.datetime.strptime(failed["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
    expired = destination_record(item, target, None, "EventAgeExceeded")
    assert "responseContext" not in expired and expired["requestContext"]["approximateInvokeCount"] == 2


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"", []),
        (b"null", []),
        (b'{"batchItemFailures": []}', []),
        (b'{"batchItemFailures": [{"itemIdentifier": "m1"}]}', ["m1"]),
        (b'{"batchItemFailures": [{"itemIdentifier": ""}]}', None),
        (b'{"batchItemFailures": [{"other": 1}]}', None),
        (b'{"batchItemFailures": "m1"}', None),
        (b"not json", None),
    ],
)
def test_report_batch_item_failures(payload: bytes, expected: list[str] | None) -> None:
    assert _failed_items(_result(payload)) == expected


def test_jsonable_converts_bytes_and_times() -> None:
    when = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    assert _jsonable({"B": b"\x00\x01", "t": when, "l": [b"a"]}) == {"B": "AAE=", "t": when.timestamp(), "l": ["YQ=="]}


def test_parse_function_name_forms() -> None:
    arn = "arn:aws:lambda:eu-west-1:000000000000:function:f:live"
    assert parse_function_name(arn, "us-east-1") == parse_function_name("f:live", "eu-west-1")
    assert parse_function_name("000000000000:function:f", "us-east-1").name == "f"
    assert parse_function_name("f", "us-east-1", "$LATEST").qualifier == "$LATEST"
    with pytest.raises(Exception, match="does not match"):
        parse_function_name("f:1", "us-east-1", "2")
    with pytest.raises(Exception, match="validation error"):
        parse_function_name("bad name!", "us-east-1")


def test_alias_routing_weights() -> None:
    alias = {"FunctionVersion": "1", "RoutingConfig": {"AdditionalVersionWeights": {"2": 0.25}}}
    picks = [pick_version(alias) for _ in range(4000)]
    share = picks.count("2") / len(picks)
    assert 0.2 < share < 0.3 and set(picks) == {"1", "2"}
    assert pick_version({"FunctionVersion": "3"}) == "3"
