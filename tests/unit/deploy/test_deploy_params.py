"""Parameter types, defaults and constraints with CloudFormation's messages."""

from __future__ import annotations

from typing import Any

import pytest

from nubes.aws.errors import AwsError
from nubes.deploy.params import describe_parameters, resolve_parameters


def fails(declared: dict[str, Any], given: dict[str, str]) -> str:
    with pytest.raises(AwsError) as err:
        resolve_parameters(declared, given)
    assert err.value.code == "ValidationError"
    return err.value.message


def test_defaults_types_and_lists() -> None:
    declared = {
        "Name": {"Type": "String", "Default": "x"},
        "Count": {"Type": "Number"},
        "Ports": {"Type": "List<Number>"},
        "Names": {"Type": "CommaDelimitedList", "Default": "a, b"},
        "Subnet": {"Type": "List<AWS::EC2::Subnet::Id>", "Default": "s1,s2"},
        "Key": {"Type": "AWS::EC2::KeyPair::KeyName", "Default": "k"},
        "Ami": {"Type": "AWS::SSM::Parameter::Value<String>", "Default": "/ami/latest"},
        "Secret": {"Type": "String", "NoEcho": True},
    }
    out = resolve_parameters(declared, {"Count": "3", "Ports": "80,443", "Secret": "hunter2"})
    assert out.values["Name"] == "x"
    assert out.values["Count"] == "3"
    assert out.values["Ports"] == ["80", "443"]
    assert out.values["Names"] == ["a", "b"]
    assert out.values["Subnet"] == ["s1", "s2"]
    assert out.ssm == {"Ami": "/ami/latest"}
    shown = {p["ParameterKey"]: p["ParameterValue"] for p in describe_parameters(out)}
    assert shown["Secret"] == "****" and shown["Count"] == "3"


def test_missing_and_unknown() -> None:
    declared = {"A": {"Type": "String"}, "B": {"Type": "String"}}
    assert fails(declared, {}) == "Parameters: [A, B] must have values"
    assert fails(declared, {"A": "1", "B": "2", "C": "3"}) == "Parameters: [C] do not exist in the template"


def test_constraints() -> None:
    assert fails({"E": {"Type": "String", "AllowedValues": ["dev", "prod"]}}, {"E": "qa"}) == (
        "Parameter 'E' must be one of AllowedValues"
    )
    assert fails({"E": {"Type": "String", "AllowedPattern": "[a-z]+"}}, {"E": "A1"}) == (
        "Parameter 'E' must match pattern [a-z]+"
    )
    assert fails({"E": {"Type": "String", "MinLength": 3}}, {"E": "ab"}) == (
        "Parameter 'E' must contain at least 3 characters"
    )
    assert fails({"E": {"Type": "String", "MaxLength": 1}}, {"E": "ab"}) == (
        "Parameter 'E' must contain at most 1 characters"
    )
    assert fails({"N": {"Type": "Number"}}, {"N": "many"}) == "Parameter 'N' must be a number"
    assert fails({"N": {"Type": "Number", "MinValue": 2}}, {"N": "1"}) == (
        "Parameter 'N' must be a number not less than 2"
    )
    assert fails({"N": {"Type": "Number", "MaxValue": 2}}, {"N": "3"}) == (
        "Parameter 'N' must be a number not greater than 2"
    )
    assert fails({"N": {"Type": "Number", "MaxValue": 2, "ConstraintDescription": "small"}}, {"N": "3"}) == (
        "Parameter 'N' failed to satisfy constraint: small"
    )


def test_bad_declarations() -> None:
    assert fails({"A": {"Type": "Strin"}}, {}) == "Template format error: Unrecognized parameter type: Strin"
    assert fails({"A": {"Default": "x"}}, {}) == "Template format error: Every Parameters object must contain a Type member."


def test_use_previous_value() -> None:
    out = resolve_parameters({"A": {"Type": "String"}}, {}, previous={"A": "old"}, use_previous={"A"})
    assert out.values["A"] == "old"
