"""Template loading: JSON, YAML, short-form tags, error wording."""

from __future__ import annotations

import pytest

from nubes.aws.errors import AwsError
from nubes.deploy.template import parse_template


def test_short_form_tags_become_long_form() -> None:
    body = """
AWSTemplateFormatVersion: 2010-09-09
Resources:
  Q:
    Type: AWS::SQS::Queue
    Properties:
      A: !Ref Name
      B: !GetAtt Other.Arn
      C: !GetAtt [Other, Endpoint.Address]
      D: !Sub "${AWS::Region}-x"
      E: !If [IsProd, 1, 2]
      F: !Join [",", [a, b]]
      G: !Select [0, !Split [",", "a,b"]]
      H: !FindInMap [M, k, v]
      I: !ImportValue exported
      J: !GetAZs ""
      K: !Base64 hi
      L: !Cidr ["10.0.0.0/16", 2, 8]
      M: !Equals [a, b]
      N: !And [!Condition X, !Not [!Or [!Condition Y, !Condition Z]]]
      O: !ToJsonString {a: 1}
      P: !Length [1, 2]
      R: !GetAtt Other.Endpoint.Port
"""
    t = parse_template(body)
    assert t["AWSTemplateFormatVersion"] == "2010-09-09"
    p = t["Resources"]["Q"]["Properties"]
    assert p["A"] == {"Ref": "Name"}
    assert p["B"] == {"Fn::GetAtt": ["Other", "Arn"]}
    assert p["C"] == {"Fn::GetAtt": ["Other", "Endpoint.Address"]}
    assert p["R"] == {"Fn::GetAtt": ["Other", "Endpoint.Port"]}
    assert p["D"] == {"Fn::Sub": "${AWS::Region}-x"}
    assert p["E"] == {"Fn::If": ["IsProd", 1, 2]}
    assert p["G"] == {"Fn::Select": [0, {"Fn::Split": [",", "a,b"]}]}
    assert p["H"] == {"Fn::FindInMap": ["M", "k", "v"]}
    assert p["I"] == {"Fn::ImportValue": "exported"}
    assert p["J"] == {"Fn::GetAZs": ""}
    assert p["K"] == {"Fn::Base64": "hi"}
    assert p["L"] == {"Fn::Cidr": ["10.0.0.0/16", 2, 8]}
    assert p["M"] == {"Fn::Equals": ["a", "b"]}
    assert p["N"] == {
        "Fn::And": [{"Condition": "X"}, {"Fn::Not": [{"Fn::Or": [{"Condition": "Y"}, {"Condition": "Z"}]}]}]
    }
    assert p["O"] == {"Fn::ToJsonString": {"a": 1}}
    assert p["P"] == {"Fn::Length": [1, 2]}


def test_json_template() -> None:
    t = parse_template(b'{"Resources": {"A": {"Type": "AWS::SNS::Topic"}}}')
    assert t["Resources"]["A"]["Type"] == "AWS::SNS::Topic"


def test_yaml_error_has_line_and_column() -> None:
    with pytest.raises(AwsError) as err:
        parse_template("Resources:\n  A:\n    Type: [unclosed\n  B: x\n")
    assert err.value.code == "ValidationError"
    assert err.value.message.startswith("Template format error: YAML not well-formed. (line ")


def test_json_error_has_line_and_column() -> None:
    with pytest.raises(AwsError) as err:
        parse_template('{\n  "Resources": {,}\n}')
    assert err.value.message == "Template format error: JSON not well-formed. (line 2, column 17)"


def test_duplicate_keys_rejected() -> None:
    with pytest.raises(AwsError) as err:
        parse_template("Resources:\n  A: {Type: X}\n  A: {Type: Y}\n")
    assert "(line 3, column 3)" in err.value.message


@pytest.mark.parametrize("body", ["", "just a string", "- a\n- b\n"])
def test_non_mapping_templates_rejected(body: str) -> None:
    with pytest.raises(AwsError) as err:
        parse_template(body)
    assert err.value.message == "Template format error: unsupported structure."
