"""Dependency graph: references, order, cycles."""

from __future__ import annotations

import pytest

from nubes.aws.errors import AwsError
from nubes.deploy.graph import (
    check_outputs,
    creation_layers,
    deletion_layers,
    dependencies,
    references,
)
from nubes.deploy.template import parse_template


def test_references_from_ref_getatt_sub() -> None:
    value = {
        "A": {"Ref": "X"},
        "B": {"Fn::GetAtt": ["Y", "Arn"]},
        "C": {"Fn::GetAtt": "Z.Endpoint.Address"},
        "D": {"Fn::Sub": "${W}-${V.Arn}-${AWS::Region}-${!Lit}"},
        "E": {"Fn::Sub": ["${Local}-${U}", {"Local": {"Ref": "T"}}]},
    }
    assert references(value) == {"X", "Y", "Z", "W", "V", "AWS::Region", "U", "T"}


def test_layers_run_independent_resources_together() -> None:
    t = parse_template("""
Parameters: {P: {Type: String}}
Resources:
  Table: {Type: AWS::DynamoDB::Table}
  Queue: {Type: AWS::SQS::Queue}
  Role: {Type: AWS::IAM::Role, Properties: {Name: !Ref P}}
  Fn:
    Type: AWS::Lambda::Function
    Properties: {Role: !GetAtt Role.Arn, Env: !Sub "${Table}"}
    DependsOn: Queue
  Mapping: {Type: AWS::Lambda::EventSourceMapping, Properties: {F: !Ref Fn, Q: !GetAtt Queue.Arn}}
""")
    deps = dependencies(t)
    assert deps["Fn"] == {"Role", "Table", "Queue"}
    layers = creation_layers(deps)
    assert layers == [["Queue", "Role", "Table"], ["Fn"], ["Mapping"]]
    assert deletion_layers(deps)[0] == ["Mapping"]


def test_cycle_detected() -> None:
    t = parse_template("""
Resources:
  A: {Type: T, Properties: {X: !Ref B}}
  B: {Type: T, Properties: {X: !GetAtt A.Arn}}
  C: {Type: T, Properties: {X: !Ref A}}
""")
    with pytest.raises(AwsError) as err:
        creation_layers(dependencies(t))
    assert err.value.message == "Circular dependency between resources: [A, B]"


def test_unresolved_dependencies() -> None:
    t = parse_template("Resources:\n  A: {Type: T, Properties: {X: !Ref Nope}, DependsOn: [Ghost]}\n")
    with pytest.raises(AwsError) as err:
        dependencies(t)
    assert err.value.message == (
        "Template format error: Unresolved resource dependencies [Nope, Ghost] in the Resources block of the template"
    )


def test_conditional_branch_only_counts_when_taken() -> None:
    t = parse_template("Resources:\n  A: {Type: T, Properties: {X: !If [C, !Ref B, none]}}\n  B: {Type: T}\n")
    assert dependencies(t, condition=lambda name: False)["A"] == set()
    assert dependencies(t, condition=lambda name: True)["A"] == {"B"}


def test_outputs_checked() -> None:
    t = parse_template("Resources:\n  A: {Type: T}\nOutputs:\n  O: {Value: !GetAtt Missing.Arn}\n")
    with pytest.raises(AwsError) as err:
        check_outputs(t, ["A"])
    assert err.value.message == "Template format error: Unresolved resource dependencies [Missing] in the Outputs block of the template"
