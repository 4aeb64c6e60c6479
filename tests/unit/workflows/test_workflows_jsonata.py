"""JSONata mode: Arguments, Output, Assign, variables, Choice conditions, errors."""

from __future__ import annotations

import asyncio
from typing import Any

from nubes.workflows.errors import StatesError
from nubes.workflows.history import TaskRequest

FN = "arn:aws:lambda:us-east-1:000000000000:function:f"


def go(wf: Any, definition: dict[str, Any], input: Any = None, handlers: Any = None) -> Any:
    executor = wf.Executor(handlers or {})
    outcome, sink, _clock = asyncio.run(wf.run(definition, input, executor))
    return outcome, sink, executor


def test_arguments_output_and_states_fields(wf: Any) -> None:
    async def fn(req: TaskRequest) -> Any:
        return {"sum": req.parameters["a"] + req.parameters["b"]}

    definition = {"QueryLanguage": "JSONata", "StartAt": "T", "States": {"T": {
        "Type": "Task", "Resource": FN,
        "Arguments": {"a": "{% $states.input.x %}", "b": 2, "name":
                      "{% $states.context.Execution.Name %}"},
        "Output": {"total": "{% $states.result.sum %}", "orig": "{% $states.input %}"},
        "End": True}}}
    outcome, _, executor = go(wf, definition, {"x": 40}, {FN: fn})
    assert executor.calls[0].parameters == {"a": 40, "b": 2, "name": "run1"}
    assert outcome.output == {"total": 42, "orig": {"x": 40}}


def test_assign_variables_and_scoping(wf: Any) -> None:
    definition = {"QueryLanguage": "JSONata", "StartAt": "A", "States": {
        "A": {"Type": "Pass", "Assign": {"count": 1, "items": "{% [1,2,3] %}"}, "Next": "B"},
        # Assign and Output of one state both see the variables as they were before it
        "B": {"Type": "Pass", "Assign": {"count": "{% $count + 10 %}"},
              "Output": {"before": "{% $count %}"}, "Next": "P"},
        "P": {"Type": "Parallel", "Next": "C", "Branches": [{"StartAt": "In", "States": {
            "In": {"Type": "Pass", "Assign": {"count": 999},
                   "Output": "{% $count + $sum($items) %}", "End": True}}}]},
        "C": {"Type": "Pass", "Output": {"count": "{% $count %}", "branch": "{% $states.input %}"},
              "End": True}}}
    outcome = go(wf, definition, {})[0]
    assert outcome.status == "SUCCEEDED", outcome
    # the branch read the outer variable (11 + 6) and its own assignment stayed inside
    assert outcome.output == {"count": 11, "branch": [17]}


def test_choice_condition_and_default(wf: Any) -> None:
    definition = {"QueryLanguage": "JSONata", "StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [
            {"Condition": "{% $states.input.n > 10 %}", "Next": "Big",
             "Output": {"kind": "big"}}],
            "Default": "Small"},
        "Big": {"Type": "Succeed"},
        "Small": {"Type": "Pass", "Output": "{% 'small:' & $string($states.input.n) %}",
                  "End": True}}}
    assert go(wf, definition, {"n": 11})[0].output == {"kind": "big"}
    assert go(wf, definition, {"n": 1})[0].output == "small:1"


def test_catch_error_output_and_fail(wf: Any) -> None:
    async def boom(req: TaskRequest) -> Any:
        raise StatesError("Oops", "bad")

    definition = {"QueryLanguage": "JSONata", "StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": FN, "End": True, "Catch": [{
            "ErrorEquals": ["States.ALL"], "Next": "F",
            "Assign": {"why": "{% $states.errorOutput.Cause %}"},
            "Output": "{% $states.errorOutput %}"}]},
        "F": {"Type": "Fail", "Error": "{% 'Wrapped.' & $states.input.Error %}",
              "Cause": "{% $why %}"}}}
    outcome = go(wf, definition, {}, {FN: boom})[0]
    assert (outcome.error, outcome.cause) == ("Wrapped.Oops", "bad")


def test_map_items_and_item_selector(wf: Any) -> None:
    definition = {"QueryLanguage": "JSONata", "StartAt": "M", "States": {"M": {
        "Type": "Map", "Items": "{% $states.input.list %}",
        "ItemSelector": {"v": "{% $states.context.Map.Item.Value * 10 %}",
                         "i": "{% $states.context.Map.Item.Index %}"},
        "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}},
        "End": True}}}
    outcome = go(wf, definition, {"list": [1, 2]})[0]
    assert outcome.output == [{"v": 10, "i": 0}, {"v": 20, "i": 1}]


def test_wait_seconds_expression(wf: Any) -> None:
    definition = {"QueryLanguage": "JSONata", "StartAt": "W", "States": {"W": {
        "Type": "Wait", "Seconds": "{% $states.input.s * 2 %}", "End": True}}}
    interp, _, clock = wf.interpreter(definition, {"s": 3})
    assert asyncio.run(interp.run()).status == "SUCCEEDED"
    assert clock.slept == [6.0]


def test_evaluation_error(wf: Any) -> None:
    definition = {"QueryLanguage": "JSONata", "StartAt": "A", "States": {"A": {
        "Type": "Pass", "Output": "{% $number('abc') + $undefinedFn() %}", "End": True}}}
    outcome = go(wf, definition, {})[0]
    assert outcome.status == "FAILED" and outcome.error == "States.QueryEvaluationError"


def test_state_level_language_mix(wf: Any) -> None:
    definition = {"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Parameters": {"v.$": "$.v"}, "Next": "B"},
        "B": {"Type": "Pass", "QueryLanguage": "JSONata", "Output": "{% $states.input.v * 3 %}",
              "End": True}}}
    assert go(wf, definition, {"v": 2})[0].output == 6


def test_aws_jsonata_functions(wf: Any) -> None:
    definition = {"QueryLanguage": "JSONata", "StartAt": "A", "States": {"A": {
        "Type": "Pass", "End": True, "Output": {
            "parts": "{% $partition([1, 2, 3], 2) %}",
            "range": "{% $range(0, 10, 5) %}",
            "hash": "{% $hash('x', 'SHA-256') %}",
            "parsed": "{% $parse($states.input.text).a %}",
            "uuid": "{% $length($uuid()) %}",
            "random": "{% $random() < 1 %}"}}}}
    outcome = go(wf, definition, {"text": '{"a": 5}'})[0]
    assert outcome.status == "SUCCEEDED", outcome
    out = outcome.output
    assert out["parts"] == [[1, 2], [3]] and out["range"] == [0, 5, 10]
    assert out["hash"] == "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
    assert out["parsed"] == 5 and out["uuid"] == 36 and out["random"] is True
