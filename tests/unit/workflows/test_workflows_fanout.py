"""Map details: item readers, batching, tolerated failures, concurrency limits."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from nubes.workflows.errors import StatesError
from nubes.workflows.fanout import first_error, parse_items
from nubes.workflows.history import TaskRequest

FN = "arn:aws:lambda:us-east-1:000000000000:function:f"


def test_parse_items_formats() -> None:
    assert parse_items('[{"a": 1}, 2]', {"InputType": "JSON"}) == [{"a": 1}, 2]
    assert parse_items('{"a": 1}\n\n{"a": 2}\n', {"InputType": "JSONL"}) == [{"a": 1}, {"a": 2}]
    assert parse_items("1|x\n2|y\n", {"InputType": "CSV", "CSVHeaderLocation": "GIVEN",
                                      "CSVHeaders": ["n", "s"], "CSVDelimiter": "PIPE"}) == [
        {"n": "1", "s": "x"}, {"n": "2", "s": "y"}]
    with pytest.raises(StatesError) as err:
        parse_items('{"not": "a list"}', {"InputType": "JSON"})
    assert err.value.error == "States.ItemReaderFailed"
    with pytest.raises(StatesError):
        parse_items("{", {"InputType": "JSONL"})


def test_first_error_limits_concurrency_and_cancels() -> None:
    running, peak, cancelled = [0], [0], []

    async def work(i: int) -> int:
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        try:
            await asyncio.sleep(0.01 if i != 3 else 0.001)
            if i == 3:
                raise StatesError("Boom", str(i))
            await asyncio.sleep(0.05)
            return i
        except asyncio.CancelledError:
            cancelled.append(i)
            raise
        finally:
            running[0] -= 1

    assert asyncio.run(first_error([work(i) for i in range(3)], 2)) == [0, 1, 2]
    assert peak[0] == 2
    with pytest.raises(StatesError):
        asyncio.run(first_error([work(i) for i in range(6)], 0))
    assert cancelled  # the others were cancelled


def test_list_objects_reader_with_paging_and_max_items(wf: Any) -> None:
    pages = {None: {"Contents": [{"Key": "a"}, {"Key": "b"}], "IsTruncated": True,
                    "NextContinuationToken": "t"},
             "t": {"Contents": [{"Key": "c"}], "IsTruncated": False}}

    async def s3(req: TaskRequest) -> Any:
        assert req.resource == "arn:aws:states:::aws-sdk:s3:listObjectsV2"
        return pages[req.parameters.get("ContinuationToken")]

    async def key(req: TaskRequest) -> Any:
        return req.parameters["Key"]

    definition = {"StartAt": "M", "States": {"M": {
        "Type": "Map", "End": True,
        "ItemReader": {"Resource": "arn:aws:states:::s3:listObjectsV2",
                       "Parameters": {"Bucket": "b"}, "ReaderConfig": {"MaxItems": 2}},
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED"}, "StartAt": "T",
                          "States": {"T": {"Type": "Task", "Resource": FN, "End": True}}}}}}
    executor = wf.Executor({"arn:aws:states:::aws-sdk:s3": s3, FN: key})
    outcome, _, _ = asyncio.run(wf.run(definition, {}, executor))
    assert outcome.output == ["a", "b"]


def test_tolerated_failure_count_and_batch_bytes(wf: Any) -> None:
    async def fn(req: TaskRequest) -> Any:
        if req.parameters["Items"][0] % 2:
            raise StatesError("Odd", "")
        return len(req.parameters["Items"])

    definition = {"StartAt": "M", "States": {"M": {
        "Type": "Map", "End": True, "ToleratedFailureCount": 2,
        "ItemBatcher": {"MaxInputBytesPerBatch": 1},
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED"}, "StartAt": "T",
                          "States": {"T": {"Type": "Task", "Resource": FN, "End": True}}}}}}
    outcome, _, _ = asyncio.run(wf.run(definition, [0, 1, 2, 3], wf.Executor({FN: fn})))
    # one item per 1-byte batch; two odd items fail, which the count tolerates
    assert outcome.status == "SUCCEEDED"
    assert [o if isinstance(o, int) else o["Error"] for o in outcome.output] == [1, "Odd", 1, "Odd"]
    outcome, _, _ = asyncio.run(wf.run(definition, [1, 3, 5], wf.Executor({FN: fn})))
    assert outcome.error == "States.ExceedToleratedFailureThreshold"


def test_map_retry_and_catch(wf: Any) -> None:
    calls: list[int] = []

    async def flaky(req: TaskRequest) -> Any:
        calls.append(req.parameters)
        raise StatesError("Flaky", "")

    definition = {"StartAt": "M", "States": {
        "M": {"Type": "Map", "Next": "Done",
              "Retry": [{"ErrorEquals": ["Flaky"], "MaxAttempts": 1}],
              "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Done"}],
              "ItemsPath": "$.items",
              "ItemProcessor": {"StartAt": "T", "States": {"T": {
                  "Type": "Task", "Resource": FN, "End": True}}}},
        "Done": {"Type": "Succeed"}}}
    outcome, _, _ = asyncio.run(wf.run(definition, {"items": [7]}, wf.Executor({FN: flaky})))
    assert calls == [7, 7]  # the whole Map was retried once
    assert outcome.output == {"items": [7], "error": {"Error": "Flaky", "Cause": ""}}
