"""The interpreter: every state type, Retry/Catch, history events, limits."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from nubes.workflows.errors import StatesError
from nubes.workflows.history import TaskRequest

LAMBDA = "arn:aws:lambda:us-east-1:000000000000:function:f"


def go(wf: Any, definition: dict[str, Any], input: Any = None, handlers: Any = None) -> Any:
    executor = wf.Executor(handlers or {})
    outcome, sink, _clock = asyncio.run(wf.run(definition, input, executor))
    return outcome, sink, executor


def test_pass_chain_paths_and_history(wf: Any) -> None:
    definition = {
        "StartAt": "A",
        "States": {
            "A": {"Type": "Pass", "Result": {"x": 1}, "ResultPath": "$.a", "Next": "B"},
            "B": {"Type": "Pass", "InputPath": "$.a", "Parameters": {"y.$": "$.x",
                  "name.$": "$$.Execution.Name"}, "ResultPath": "$.b", "OutputPath": "$.b",
                  "End": True},
        },
    }
    outcome, sink, _ = go(wf, definition, {"in": True})
    assert outcome.status == "SUCCEEDED"
    assert outcome.output == {"y": 1, "name": "run1"}
    assert sink.types() == ["ExecutionStarted", "PassStateEntered", "PassStateExited",
                            "PassStateEntered", "PassStateExited", "ExecutionSucceeded"]
    ids = [e["id"] for e in sink.events]
    assert ids == [1, 2, 3, 4, 5, 6]
    assert [e["previousEventId"] for e in sink.events] == [0, 1, 2, 3, 4, 5]
    entered = sink.events[1]["stateEnteredEventDetails"]
    assert entered["name"] == "A" and orjson.loads(entered["input"]) == {"in": True}
    assert orjson.loads(sink.events[-1]["executionSucceededEventDetails"]["output"]) == {
        "y": 1, "name": "run1"}


def test_choice_operators(wf: Any) -> None:
    definition = {
        "StartAt": "C",
        "States": {
            "C": {"Type": "Choice", "Choices": [
                {"And": [{"Variable": "$.n", "NumericGreaterThan": 5},
                         {"Not": {"Variable": "$.s", "StringEquals": "no"}}], "Next": "Big"},
                {"Or": [{"Variable": "$.s", "StringMatches": "he*o"},
                        {"Variable": "$.t", "TimestampLessThan": "2020-01-01T00:00:00Z"}],
                 "Next": "Match"},
                {"Variable": "$.missing", "IsPresent": False, "Next": "Absent"},
            ], "Default": "Other"},
            "Big": {"Type": "Pass", "Result": "big", "End": True},
            "Match": {"Type": "Pass", "Result": "match", "End": True},
            "Absent": {"Type": "Pass", "Result": "absent", "End": True},
            "Other": {"Type": "Pass", "Result": "other", "End": True},
        },
    }
    assert go(wf, definition, {"n": 6, "s": "x"})[0].output == "big"
    late = "2021-01-01T00:00:00Z"
    assert go(wf, definition, {"n": 6, "s": "no", "missing": 1, "t": late})[0].output == "other"
    assert go(wf, definition, {"n": 1, "s": "hello"})[0].output == "match"
    assert go(wf, definition, {"n": 1, "s": "x", "t": "2019-05-05T00:00:00+02:00"})[0].output \
        == "match"
    assert go(wf, definition, {"n": 1, "s": "x", "t": late})[0].output == "absent"
    # a comparison on a missing field is a runtime error, as on AWS
    outcome = go(wf, definition, {"n": 1, "s": "x"})[0]
    assert outcome.error == "States.Runtime" and "$.t" in outcome.cause


def test_choice_more_operators(wf: Any) -> None:
    def machine(rule: dict[str, Any]) -> dict[str, Any]:
        return {"StartAt": "C", "States": {
            "C": {"Type": "Choice", "Choices": [{**rule, "Next": "Y"}], "Default": "N"},
            "Y": {"Type": "Succeed"}, "N": {"Type": "Fail", "Error": "No"}}}

    cases = [
        ({"Variable": "$.a", "NumericEqualsPath": "$.b"}, {"a": 2, "b": 2}, True),
        ({"Variable": "$.a", "NumericLessThanEquals": 2}, {"a": 2}, True),
        ({"Variable": "$.a", "StringGreaterThanEquals": "b"}, {"a": "a"}, False),
        ({"Variable": "$.a", "BooleanEquals": True}, {"a": 1}, False),
        ({"Variable": "$.a", "IsNull": True}, {"a": None}, True),
        ({"Variable": "$.a", "IsNumeric": True}, {"a": "1"}, False),
        ({"Variable": "$.a", "IsTimestamp": True}, {"a": "2020-01-01T00:00:00Z"}, True),
        ({"Variable": "$.a", "IsBoolean": True}, {"a": False}, True),
        ({"Variable": "$.a", "StringMatches": "a\\*b"}, {"a": "a*b"}, True),
        ({"Variable": "$.a", "StringMatches": "a\\*b"}, {"a": "axb"}, False),
        ({"Variable": "$.a", "TimestampEquals": "2020-01-01T00:00:00Z"},
         {"a": "2020-01-01T01:00:00+01:00"}, True),
    ]
    for rule, data, expected in cases:
        outcome = go(wf, machine(rule), data)[0]
        assert (outcome.status == "SUCCEEDED") is expected, (rule, data)


def test_choice_no_match_fails(wf: Any) -> None:
    definition = {"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [
            {"Variable": "$.a", "NumericEquals": 1, "Next": "Y"}]},
        "Y": {"Type": "Succeed"}}}
    outcome, sink, _ = go(wf, definition, {"a": 2})
    assert outcome.status == "FAILED" and outcome.error == "States.NoChoiceMatched"
    assert sink.types()[-1] == "ExecutionFailed"


def test_fail_state_with_paths(wf: Any) -> None:
    definition = {"StartAt": "F", "States": {
        "F": {"Type": "Fail", "ErrorPath": "$.e", "CausePath": "States.Format('bad {}', $.c)"}}}
    outcome, sink, _ = go(wf, definition, {"e": "MyError", "c": "why"})
    assert (outcome.status, outcome.error, outcome.cause) == ("FAILED", "MyError", "bad why")
    assert sink.types() == ["ExecutionStarted", "FailStateEntered", "ExecutionFailed"]
    assert sink.events[-1]["executionFailedEventDetails"] == {"error": "MyError",
                                                              "cause": "bad why"}


def test_wait_seconds_timestamp_and_paths(wf: Any) -> None:
    definition = {"StartAt": "W1", "States": {
        "W1": {"Type": "Wait", "Seconds": 10, "Next": "W2"},
        "W2": {"Type": "Wait", "SecondsPath": "$.s", "Next": "W3"},
        "W3": {"Type": "Wait", "TimestampPath": "$.t", "Next": "W4"},
        "W4": {"Type": "Wait", "Timestamp": "2000-01-01T00:00:00Z", "End": True}}}
    interp, sink, clock = wf.interpreter(definition, {"s": 5, "t": "2023-11-14T22:14:00Z"})
    outcome = asyncio.run(interp.run())
    assert outcome.status == "SUCCEEDED"
    # 1_700_000_000 is 2023-11-14T22:13:20Z: 10 s, 5 s, then until 22:14:00 (25 s), then past
    assert clock.slept == [10.0, 5.0, 25.0]
    assert sink.types().count("WaitStateEntered") == 4


def test_wait_bad_seconds_path(wf: Any) -> None:
    definition = {"StartAt": "W", "States": {"W": {"Type": "Wait", "SecondsPath": "$.s",
                                                    "End": True}}}
    outcome = go(wf, definition, {"s": "ten"})[0]
    assert outcome.status == "FAILED" and outcome.error == "States.Runtime"


def test_task_events_result_selector_and_result_path(wf: Any) -> None:
    async def invoke(req: TaskRequest) -> Any:
        return {"Payload": {"v": req.parameters["FunctionName"]}, "StatusCode": 200}

    definition = {"StartAt": "T", "States": {"T": {
        "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": "f", "Payload.$": "$"},
        "ResultSelector": {"out.$": "$.Payload.v"}, "ResultPath": "$.res", "End": True}}}
    outcome, sink, executor = go(wf, definition, {"k": 1},
                                 {"arn:aws:states:::lambda:invoke": invoke})
    assert outcome.output == {"k": 1, "res": {"out": "f"}}
    assert executor.calls[0].parameters == {"FunctionName": "f", "Payload": {"k": 1}}
    assert sink.types() == ["ExecutionStarted", "TaskStateEntered", "TaskScheduled",
                            "TaskStarted", "TaskSucceeded", "TaskStateExited",
                            "ExecutionSucceeded"]
    scheduled = sink.events[2]["taskScheduledEventDetails"]
    assert scheduled["resourceType"] == "lambda" and scheduled["resource"] == "invoke"
    assert orjson.loads(scheduled["parameters"]) == {"FunctionName": "f", "Payload": {"k": 1}}


def test_plain_lambda_arn_events(wf: Any) -> None:
    async def fn(req: TaskRequest) -> Any:
        return {"echo": req.parameters}

    definition = {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": LAMBDA,
                                                    "End": True}}}
    outcome, sink, _ = go(wf, definition, {"a": 1}, {LAMBDA: fn})
    assert outcome.output == {"echo": {"a": 1}}
    assert sink.types()[2:5] == ["LambdaFunctionScheduled", "LambdaFunctionStarted",
                                 "LambdaFunctionSucceeded"]


def test_retry_backoff_then_catch(wf: Any) -> None:
    attempts: list[int] = []

    async def flaky(req: TaskRequest) -> Any:
        attempts.append(1)
        raise StatesError("Boom", "kaput")

    definition = {"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": LAMBDA,
              "Retry": [{"ErrorEquals": ["Other"], "MaxAttempts": 5},
                        {"ErrorEquals": ["Boom"], "IntervalSeconds": 2, "BackoffRate": 3,
                         "MaxAttempts": 3, "MaxDelaySeconds": 10}],
              "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.err", "Next": "H"}],
              "End": True},
        "H": {"Type": "Pass", "End": True}}}
    interp, sink, clock = wf.interpreter(definition, {"a": 1}, wf.Executor({LAMBDA: flaky}))
    outcome = asyncio.run(interp.run())
    assert len(attempts) == 4
    assert clock.slept == [2.0, 6.0, 10.0]  # 2, 2*3, min(18, 10)
    assert outcome.status == "SUCCEEDED"
    assert outcome.output == {"a": 1, "err": {"Error": "Boom", "Cause": "kaput"}}
    assert sink.types().count("LambdaFunctionFailed") == 4
    assert "TaskStateExited" in sink.types()


def test_retry_succeeds_and_retry_count_in_context(wf: Any) -> None:
    seen: list[int] = []

    async def flaky(req: TaskRequest) -> Any:
        seen.append(req.parameters["n"])
        if len(seen) < 3:
            raise StatesError("States.TaskFailed", "x")
        return "ok"

    definition = {"StartAt": "T", "States": {"T": {
        "Type": "Task", "Resource": LAMBDA, "Parameters": {"n.$": "$$.State.RetryCount"},
        "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1,
                   "JitterStrategy": "FULL"}], "End": True}}}
    outcome = go(wf, definition, {}, {LAMBDA: flaky})[0]
    assert outcome.output == "ok" and seen == [0, 1, 2]


def test_uncaught_error_fails_execution(wf: Any) -> None:
    async def boom(req: TaskRequest) -> Any:
        raise StatesError("Custom", "c")

    definition = {"StartAt": "T", "States": {"T": {
        "Type": "Task", "Resource": LAMBDA,
        "Catch": [{"ErrorEquals": ["Other"], "Next": "T"}], "End": True}}}
    outcome, sink, _ = go(wf, definition, {}, {LAMBDA: boom})
    assert (outcome.status, outcome.error, outcome.cause) == ("FAILED", "Custom", "c")
    assert "TaskStateExited" not in sink.types()


def test_task_failed_wildcard_does_not_match_timeout(wf: Any) -> None:
    async def slow(req: TaskRequest) -> Any:
        await asyncio.sleep(5)

    definition = {"StartAt": "T", "States": {"T": {
        "Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage", "TimeoutSeconds": 1,
        "Catch": [{"ErrorEquals": ["States.TaskFailed"], "Next": "Caught"}], "End": True},
        "Caught": {"Type": "Succeed"}}}
    definition["States"]["T"]["TimeoutSeconds"] = 1
    executor = wf.Executor({"arn:aws:states:::sqs": slow})
    interp, sink, _ = wf.interpreter(definition, {}, executor)
    # the task timeout runs on the real loop clock; keep it short
    interp.machine.states["T"].raw["TimeoutSeconds"] = 0.05
    outcome = asyncio.run(interp.run())
    assert outcome.status == "FAILED" and outcome.error == "States.Timeout"
    assert "TaskTimedOut" in sink.types()


def test_data_limit_exceeded(wf: Any) -> None:
    async def big(req: TaskRequest) -> Any:
        return "x" * 300_000

    definition = {"StartAt": "T", "States": {"T": {
        "Type": "Task", "Resource": LAMBDA,
        "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "C"}], "End": True},
        "C": {"Type": "Succeed"}}}
    outcome = go(wf, definition, {}, {LAMBDA: big})[0]
    # States.ALL does not catch States.DataLimitExceeded
    assert outcome.status == "FAILED" and outcome.error == "States.DataLimitExceeded"


def test_parallel(wf: Any) -> None:
    definition = {"StartAt": "P", "States": {"P": {
        "Type": "Parallel", "End": True, "ResultSelector": {"both.$": "$"},
        "Branches": [
            {"StartAt": "A", "States": {"A": {"Type": "Pass", "Parameters": {"a.$": "$.v"},
                                              "End": True}}},
            {"StartAt": "B", "States": {"B": {"Type": "Wait", "Seconds": 1, "End": True}}},
        ]}}}
    outcome, sink, _ = go(wf, definition, {"v": 7})
    assert outcome.output == {"both": [{"a": 7}, {"v": 7}]}
    types = sink.types()
    assert types[1:3] == ["ParallelStateEntered", "ParallelStateStarted"]
    assert types[-3:] == ["ParallelStateSucceeded", "ParallelStateExited", "ExecutionSucceeded"]
    ids = {e["id"] for e in sink.events}
    assert all(e["previousEventId"] in ids | {0} for e in sink.events)


def test_parallel_branch_failure_is_caught(wf: Any) -> None:
    definition = {"StartAt": "P", "States": {
        "P": {"Type": "Parallel", "Next": "Done",
              "Catch": [{"ErrorEquals": ["BranchErr"], "Next": "Handled"}],
              "Branches": [
                  {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "BranchErr"}}},
                  {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 100,
                                                    "End": True}}}]},
        "Done": {"Type": "Succeed"},
        "Handled": {"Type": "Pass", "Result": "handled", "End": True}}}
    outcome, sink, _ = go(wf, definition, {})
    assert outcome.output == "handled"
    assert "ParallelStateFailed" in sink.types()


def test_inline_map(wf: Any) -> None:
    async def double(req: TaskRequest) -> Any:
        return req.parameters["v"] * 2

    definition = {"StartAt": "M", "States": {"M": {
        "Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 2,
        "ItemSelector": {"v.$": "$$.Map.Item.Value", "i.$": "$$.Map.Item.Index",
                         "k.$": "$.k"},
        "ItemProcessor": {"StartAt": "T", "States": {"T": {
            "Type": "Task", "Resource": LAMBDA, "End": True}}},
        "ResultPath": "$.out", "End": True}}}
    outcome, sink, executor = go(wf, definition, {"items": [1, 2, 3], "k": "x"},
                                 {LAMBDA: double})
    assert outcome.output == {"items": [1, 2, 3], "k": "x", "out": [2, 4, 6]}
    assert executor.calls[2].parameters["k"] == "x"
    types = sink.types()
    assert types.count("MapIterationStarted") == 3 and types.count("MapIterationSucceeded") == 3
    started = next(e for e in sink.events if e["type"] == "MapStateStarted")
    assert started["mapStateStartedEventDetails"] == {"length": 3}


def test_map_legacy_iterator_and_failure(wf: Any) -> None:
    definition = {"StartAt": "M", "States": {"M": {
        "Type": "Map", "End": True,
        "Iterator": {"StartAt": "C", "States": {
            "C": {"Type": "Choice", "Choices": [{"Variable": "$", "NumericEquals": 2,
                                                 "Next": "F"}], "Default": "OK"},
            "F": {"Type": "Fail", "Error": "Two"}, "OK": {"Type": "Succeed"}}}}}}
    outcome, sink, _ = go(wf, definition, [1, 2, 3])
    assert outcome.error == "Two"
    assert "MapIterationFailed" in sink.types() and "MapStateFailed" in sink.types()


def test_map_items_not_array(wf: Any) -> None:
    definition = {"StartAt": "M", "States": {"M": {
        "Type": "Map", "End": True, "ItemProcessor": {"StartAt": "P", "States": {
            "P": {"Type": "Pass", "End": True}}}}}}
    outcome = go(wf, definition, {"not": "a list"})[0]
    assert outcome.error == "States.Runtime"


def test_distributed_map_tolerance_batching_and_reader(wf: Any) -> None:
    async def s3(req: TaskRequest) -> Any:
        assert req.resource == "arn:aws:states:::aws-sdk:s3:getObject"
        assert req.parameters == {"Bucket": "b", "Key": "k.csv"}
        return {"Body": "id,name\n1,a\n2,b\n3,c\n4,d\n"}

    async def fn(req: TaskRequest) -> Any:
        if any(i["id"] == "4" for i in req.parameters["Items"]):
            raise StatesError("Bad", "item 4")
        return len(req.parameters["Items"])

    definition = {"StartAt": "M", "States": {"M": {
        "Type": "Map", "End": True,
        "ItemReader": {"Resource": "arn:aws:states:::s3:getObject",
                       "ReaderConfig": {"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW"},
                       "Parameters": {"Bucket": "b", "Key.$": "$.key"}},
        "ItemBatcher": {"MaxItemsPerBatch": 2, "BatchInput": {"tag": "t"}},
        "ToleratedFailurePercentage": 50,
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
                          "StartAt": "T", "States": {"T": {"Type": "Task", "Resource": LAMBDA,
                                                           "End": True}}}}}}
    outcome, sink, executor = go(wf, definition, {"key": "k.csv"},
                                 {"arn:aws:states:::aws-sdk:s3": s3, LAMBDA: fn})
    assert outcome.status == "SUCCEEDED", outcome
    assert outcome.output[0] == 2 and outcome.output[1]["Error"] == "Bad"
    assert [c.parameters.get("tag") for c in executor.calls[1:]] == ["t", "t"]
    types = sink.types()
    assert "MapRunStarted" in types and "MapRunSucceeded" in types
    assert "MapIterationStarted" not in types  # child workflows are not in the parent history

    definition["States"]["M"]["ToleratedFailurePercentage"] = 10
    outcome = go(wf, definition, {"key": "k.csv"},
                 {"arn:aws:states:::aws-sdk:s3": s3, LAMBDA: fn})[0]
    assert outcome.error == "States.ExceedToleratedFailureThreshold"


def test_abort(wf: Any) -> None:
    definition = {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 1000,
                                                    "End": True}}}

    async def scenario() -> Any:
        interp, sink, _clock = wf.interpreter(definition)
        interp.sleep = asyncio.sleep  # really block
        task = asyncio.create_task(interp.run())
        await asyncio.sleep(0.01)
        assert interp.abort("Stop", "user")
        return await task, sink

    outcome, sink = asyncio.run(scenario())
    assert outcome.status == "ABORTED"
    assert sink.types()[-2:] == ["WaitStateAborted", "ExecutionAborted"]
    assert sink.events[-1]["executionAbortedEventDetails"] == {"error": "Stop", "cause": "user"}


def test_execution_timeout(wf: Any) -> None:
    definition = {"StartAt": "W", "TimeoutSeconds": 1,
                  "States": {"W": {"Type": "Wait", "Seconds": 1000, "End": True}}}

    async def scenario() -> Any:
        interp, sink, clock = wf.interpreter(definition)
        interp.execution.start_time = clock.now - 0.95  # 50 ms of budget left
        interp.sleep = asyncio.sleep
        return await interp.run(), sink

    outcome, sink = asyncio.run(scenario())
    assert outcome.status == "TIMED_OUT" and outcome.error == "States.Timeout"
    assert sink.types()[-1] == "ExecutionTimedOut"


def test_variables_assign_jsonpath(wf: Any) -> None:
    definition = {"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Result": {"v": 5}, "Assign": {"x.$": "$.v", "c": "const"},
              "Next": "B"},
        "B": {"Type": "Pass", "Parameters": {"x.$": "$x", "c.$": "$c"}, "End": True}}}
    assert go(wf, definition, {})[0].output == {"x": 5, "c": "const"}


def test_runtime_error_names_the_state(wf: Any) -> None:
    definition = {"StartAt": "A", "States": {"A": {"Type": "Pass", "InputPath": "$.nope",
                                                    "End": True}}}
    outcome = go(wf, definition, {"x": 1})[0]
    assert outcome.error == "States.Runtime"
    assert outcome.cause == ("An error occurred while executing the state 'A' (entered at the "
                             "event id #2). Invalid path '$.nope' : No results for path: "
                             "$['nope']")


def test_jsonata_failure_emits_evaluation_failed(wf: Any) -> None:
    definition = {"QueryLanguage": "JSONata", "StartAt": "A", "States": {"A": {
        "Type": "Pass", "Output": "{% $error('custom') %}", "End": True}}}
    outcome, sink, _ = go(wf, definition, {})
    assert outcome.error == "States.QueryEvaluationError"
    failed = next(e for e in sink.events if e["type"] == "EvaluationFailed")
    assert failed["evaluationFailedEventDetails"]["state"] == "A"


def test_history_event_quota(wf: Any) -> None:
    definition = {"StartAt": "Loop", "States": {
        "Loop": {"Type": "Pass", "Next": "Loop2"},
        "Loop2": {"Type": "Choice", "Choices": [{"Variable": "$.stop", "IsPresent": True,
                                                 "Next": "End"}], "Default": "Loop"},
        "End": {"Type": "Succeed"}}}
    outcome, sink, _ = go(wf, definition, {})
    assert outcome.error == "States.Runtime" and "maximum number of history events" in \
        outcome.cause
    assert len(sink.events) <= 25_002


def test_executor_bug_fails_the_execution(wf: Any) -> None:
    async def broken(req: TaskRequest) -> Any:
        raise KeyError("oops")

    definition = {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": LAMBDA,
                                                    "End": True}}}
    outcome, sink, _ = go(wf, definition, {}, {LAMBDA: broken})
    # a failure inside nubes' own integration code is a task failure (catchable)
    assert outcome.status == "FAILED" and outcome.error == "States.TaskFailed"
    assert "KeyError" in outcome.cause and sink.types()[-2:] == ["LambdaFunctionFailed",
                                                                  "ExecutionFailed"]
