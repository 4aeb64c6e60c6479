"""Definition validation: AWS's diagnostics, codes and locations."""

from __future__ import annotations

from typing import Any

import pytest

from nubes.workflows.definition import load
from nubes.workflows.errors import InvalidDefinition
from nubes.workflows.validate import check


def diags(definition: dict[str, Any]) -> list[str]:
    return [d.render() for d in check(definition)]


def test_valid_definition_loads() -> None:
    machine = load('{"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true}}}')
    assert machine.start_at == "A" and machine.states["A"].type == "Pass"


def test_missing_target_and_unreachable_message() -> None:
    definition = {"StartAt": "pass1", "States": {
        "pass1": {"Type": "Pass", "Next": "pass3"},
        "pass2": {"Type": "Pass", "End": True}}}
    with pytest.raises(InvalidDefinition) as err:
        load(definition)
    assert err.value.message == (
        "Invalid State Machine Definition: 'MISSING_TRANSITION_TARGET: Missing 'Next' target: "
        "pass3 at /States/pass1/Next, MISSING_TRANSITION_TARGET: State \"pass2\" is not "
        "reachable. at /States/pass2'")


def test_no_terminal_state() -> None:
    definition = {"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"},
                                             "B": {"Type": "Pass", "Next": "A"}}}
    assert diags(definition) == ["MISSING_END_STATE: Workflow has no terminal state"]


def test_invalid_json() -> None:
    with pytest.raises(InvalidDefinition) as err:
        load("{nope")
    assert err.value.diagnostics[0].code == "INVALID_JSON_DESCRIPTION"


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"Type": "Pass"}, "Exactly one of these fields is required: [Next, End] at /States/A"),
        ({"Type": "Pass", "End": True, "Next": "A"},
         "There should only be one of the following fields: [Next, End] at /States/A"),
        ({"Type": "Nope", "End": True}, "should have one of these values"),
        ({"End": True}, "These fields are required: [Type] at /States/A"),
        ({"Type": "Pass", "End": True, "Bogus": 1},
         'The field "Bogus" is not supported by Step Functions at /States/A/Bogus'),
        ({"Type": "Task", "End": True}, "These fields are required: [Resource] at /States/A"),
        ({"Type": "Pass", "End": True, "InputPath": "nope"},
         "SCHEMA_VALIDATION_FAILED: Value must be a valid JSONPath. at /States/A/InputPath"),
        ({"Type": "Pass", "End": True, "ResultPath": "$.a[*]"},
         "Value is not a Reference Path at /States/A/ResultPath"),
        ({"Type": "Pass", "End": True, "Parameters": {"x.$": "States.Nope()"}},
         "The value for the field 'x.$' must be a valid JSONPath or a valid intrinsic function "
         "call at /States/A/Parameters"),
        ({"Type": "Pass", "End": True, "Parameters": {"x.$": "$..["}}, "'x.$'"),
        ({"Type": "Pass", "End": True, "Parameters": {"x.$": "States.ArrayLength(1, 2)"}},
         "valid intrinsic function call"),
        ({"Type": "Pass", "End": True, "Parameters": {
            "x.$": "States.Array(States.MathAdd(1))"}}, "valid intrinsic function call"),
        ({"Type": "Task", "Resource": "my-function", "End": True},
         "Value is not a valid resource ARN at /States/A/Resource"),
        ({"Type": "Wait", "End": True}, "Exactly one of these fields is required: [Seconds"),
        ({"Type": "Wait", "End": True, "Seconds": 1, "SecondsPath": "$.s"},
         "Exactly one of these fields is required"),
        ({"Type": "Wait", "End": True, "Timestamp": "yesterday"}, "ISO-8601"),
        ({"Type": "Choice", "Choices": []}, "'Choices' must be a non-empty ARRAY"),
        ({"Type": "Choice", "Choices": [{"Variable": "$.a", "Next": "A"}]},
         "exactly one comparison operator"),
        ({"Type": "Choice", "Choices": [{"Variable": "$.a", "NumericEquals": "1", "Next": "A"}]},
         "'NumericEquals' must be a NUMBER at /States/A/Choices[0]/NumericEquals"),
        ({"Type": "Choice", "Choices": [{"Not": {"Variable": "$.a", "IsNull": True,
                                                 "Next": "A"}, "Next": "A"}]},
         "nested rule"),
        ({"Type": "Task", "Resource": "r", "End": True,
          "Retry": [{"ErrorEquals": ["States.ALL", "X"]}]}, "States.ALL must appear alone"),
        ({"Type": "Task", "Resource": "r", "End": True,
          "Retry": [{"ErrorEquals": ["X"], "BackoffRate": 0.5}]}, "Retry[0]/BackoffRate"),
        ({"Type": "Task", "Resource": "r", "End": True,
          "Retry": [{"ErrorEquals": ["X"], "JitterStrategy": "SOME"}]}, "JitterStrategy"),
        ({"Type": "Task", "Resource": "r", "End": True, "Catch": [{"ErrorEquals": ["X"]}]},
         "These fields are required: [Next] at /States/A/Catch[0]"),
        ({"Type": "Task", "Resource": "r", "End": True, "TimeoutSeconds": 5,
          "HeartbeatSeconds": 10}, "HeartbeatSeconds"),
        ({"Type": "Task", "Resource": "r", "End": True, "TimeoutSeconds": 0},
         "'TimeoutSeconds' must be a positive INTEGER"),
        ({"Type": "Fail", "Error": "E", "ErrorPath": "$.e"},
         "There should only be one of the following fields: [Error, ErrorPath]"),
        ({"Type": "Parallel", "End": True, "Branches": []}, "'Branches' must be a non-empty"),
        ({"Type": "Map", "End": True}, "These fields are required: [ItemProcessor]"),
        ({"Type": "Map", "End": True, "ItemBatcher": {}, "ItemProcessor": {
            "StartAt": "X", "States": {"X": {"Type": "Succeed"}}}}, "DISTRIBUTED mode"),
        ({"Type": "Map", "End": True, "ToleratedFailurePercentage": 120, "ItemProcessor": {
            "ProcessorConfig": {"Mode": "DISTRIBUTED"},
            "StartAt": "X", "States": {"X": {"Type": "Succeed"}}}},
         "Maximum value is 100.0 at /States/A/ToleratedFailurePercentage"),
        ({"Type": "Map", "End": True, "MaxConcurrency": -1, "ItemProcessor": {
            "StartAt": "X", "States": {"X": {"Type": "Succeed"}}}},
         "Minimum value is 0 at /States/A/MaxConcurrency"),
        ({"Type": "Pass", "End": True, "Output": {"a": 1}},
         "The QueryLanguage is set to 'JSONPath', but field 'Output' is only supported for the "
         "'JSONata' QueryLanguage at /States/A/Output"),
        ({"Type": "Pass", "End": True, "Assign": {"bad-name": 1}}, "variable name"),
    ],
)
def test_schema_errors(state: dict[str, Any], expected: str) -> None:
    found = diags({"StartAt": "A", "States": {"A": state}})
    assert any(expected in d for d in found), found


def test_nested_locations() -> None:
    definition = {"StartAt": "P", "States": {"P": {
        "Type": "Parallel", "End": True,
        "Branches": [{"StartAt": "X", "States": {"X": {"Type": "Pass", "Next": "Y"}}}]}}}
    assert diags(definition) == [
        "MISSING_TRANSITION_TARGET: Missing 'Next' target: Y at /States/P/Branches[0]/States/X/Next",
        "MISSING_END_STATE: Workflow has no terminal state",
    ]
    definition = {"StartAt": "M", "States": {"M": {
        "Type": "Map", "End": True,
        "ItemProcessor": {"StartAt": "Nope", "States": {"X": {"Type": "Succeed"}}}}}}
    found = diags(definition)
    assert "MISSING_TRANSITION_TARGET: Missing 'Next' target: Nope at /States/M/ItemProcessor/StartAt" \
        in found


def test_catch_and_choice_targets() -> None:
    definition = {"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage", "Next": "C",
              "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Gone"}]},
        "C": {"Type": "Choice", "Choices": [{"Variable": "$.a", "IsNull": True, "Next": "X"}],
              "Default": "Y"}}}
    found = diags(definition)
    assert "MISSING_TRANSITION_TARGET: Missing 'Next' target: Gone at /States/T/Catch[0]/Next" \
        in found
    assert "MISSING_TRANSITION_TARGET: Missing 'Next' target: X at /States/C/Choices[0]/Next" \
        in found
    assert "MISSING_TRANSITION_TARGET: Missing 'Next' target: Y at /States/C/Default" in found


def test_jsonata_checks() -> None:
    base = {"QueryLanguage": "JSONata", "StartAt": "A"}
    ok = dict(base, States={"A": {"Type": "Pass", "Output": "{% $states.input.a + 1 %}",
                                  "End": True}})
    assert diags(ok) == []
    bad = dict(base, States={"A": {"Type": "Pass", "Output": "{% $states.input.a + %}",
                                   "End": True}})
    assert any("not valid" in d and "/States/A/Output" in d for d in diags(bad))
    path_field = dict(base, States={"A": {"Type": "Pass", "InputPath": "$", "End": True}})
    assert any("The QueryLanguage is set to 'JSONata', but field 'InputPath'" in d
               for d in diags(path_field))
    downgrade = dict(base, States={"A": {"Type": "Pass", "QueryLanguage": "JSONPath",
                                         "End": True}})
    assert any("cannot use JSONPath" in d for d in diags(downgrade))
    no_condition = dict(base, States={
        "A": {"Type": "Choice", "Choices": [{"Next": "B"}]}, "B": {"Type": "Succeed"}})
    assert any("[Condition]" in d for d in diags(no_condition))
