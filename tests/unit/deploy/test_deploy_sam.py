"""The SAM transform and AWS::Include."""

from __future__ import annotations

from typing import Any

import pytest

from nubes.aws.errors import AwsError
from nubes.deploy.sam import apply_top_level_include, has_serverless, transform_serverless
from nubes.deploy.template import parse_template

SAM = """
Transform: AWS::Serverless-2016-10-31
Parameters:
  Stage: {Type: String, Default: dev}
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.12
      Handler: app.handler
      InlineCode: "def handler(e, c): return 1"
      Policies:
        - DynamoDBCrudPolicy: {TableName: !Ref Table}
        - AWSLambdaBasicExecutionRole
      Events:
        Get:
          Type: Api
          Properties: {Path: /items, Method: get}
  Table:
    Type: AWS::Serverless::SimpleTable
"""


def test_sam_becomes_plain_cloudformation() -> None:
    t = parse_template(SAM)
    assert has_serverless(t)
    out = transform_serverless(t, {"Stage": "dev"}, region="eu-west-1")
    assert "Transform" not in out
    types = {r["Type"] for r in out["Resources"].values()}
    assert "AWS::Lambda::Function" in types and "AWS::IAM::Role" in types
    assert "AWS::ApiGateway::RestApi" in types and "AWS::DynamoDB::Table" in types
    assert not any(t.startswith("AWS::Serverless::") for t in types)
    role = out["Resources"]["FnRole"]["Properties"]
    assert "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole" in role["ManagedPolicyArns"]
    statements = role["Policies"][0]["PolicyDocument"]["Statement"]
    assert any("dynamodb:PutItem" in s["Action"] for s in statements)


def test_sam_errors_are_validation_errors() -> None:
    t = parse_template("Transform: AWS::Serverless-2016-10-31\nResources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties: {Runtime: 7}\n")
    with pytest.raises(AwsError) as err:
        transform_serverless(t, {})
    assert err.value.code == "ValidationError"
    assert err.value.message.startswith("Transform AWS::Serverless-2016-10-31 failed with: ")


def test_include() -> None:
    snippets: dict[str, Any] = {
        "s3://b/res.yaml": {"Extra": {"Type": "AWS::SNS::Topic"}},
        "s3://b/top.yaml": {"Outputs": {"O": {"Value": "v"}}},
    }
    t = {
        "Transform": {"Name": "AWS::Include", "Parameters": {"Location": "s3://b/top.yaml"}},
        "Resources": {"Fn::Transform": {"Name": "AWS::Include", "Parameters": {"Location": "s3://b/res.yaml"}}},
    }
    out = apply_top_level_include(t, snippets.__getitem__)
    assert out == {"Resources": {"Extra": {"Type": "AWS::SNS::Topic"}}, "Outputs": {"O": {"Value": "v"}}}


def test_include_location_with_sub_and_snippet_intrinsics() -> None:
    import asyncio

    from nubes.deploy.intrinsics import StackInfo
    from nubes.deploy.prepare import expand_template

    body = """
Parameters: {Bucket: {Type: String, Default: snips}}
Transform: {Name: AWS::Include, Parameters: {Location: !Sub "s3://${Bucket}/top-${AWS::Region}.yaml"}}
Resources:
  A: {Type: AWS::SNS::Topic}
"""
    seen: list[str] = []

    async def fetch(location: str) -> bytes:
        seen.append(location)
        return b"Outputs:\n  O: {Value: !Sub '${AWS::StackName}-x'}\n"

    out = asyncio.run(expand_template(body, {"Bucket": "mine"}, StackInfo("s", "id", region="eu-west-1"), fetch))
    assert seen == ["s3://mine/top-eu-west-1.yaml"]
    assert out["Outputs"] == {"O": {"Value": {"Fn::Sub": "${AWS::StackName}-x"}}}
    assert "Transform" not in out


def test_language_extensions_foreach() -> None:
    import asyncio

    from nubes.deploy.intrinsics import StackInfo
    from nubes.deploy.prepare import expand_template

    body = """
Transform: AWS::LanguageExtensions
Parameters:
  Names: {Type: CommaDelimitedList, Default: "a-b,c"}
Resources:
  Fn::ForEach::Topics:
    - Name
    - !Ref Names
    - Topic&{Name}:
        Type: AWS::SNS::Topic
        DeletionPolicy: !If [Never, Retain, Delete]
        Properties: {TopicName: !Sub "t-${Name}", DisplayName: !Ref Name}
Conditions:
  Never: !Equals [a, b]
Outputs:
  Fn::ForEach::Out:
    - Name
    - [x, y]
    - Out${Name}: {Value: !Sub "${Name}!"}
"""
    out = asyncio.run(expand_template(body, {}, StackInfo("s", "id"), None))
    assert "Transform" not in out
    assert out["Resources"] == {
        "Topicab": {"Type": "AWS::SNS::Topic", "DeletionPolicy": "Delete",
                    "Properties": {"TopicName": {"Fn::Sub": "t-a-b"}, "DisplayName": "a-b"}},
        "Topicc": {"Type": "AWS::SNS::Topic", "DeletionPolicy": "Delete",
                   "Properties": {"TopicName": {"Fn::Sub": "t-c"}, "DisplayName": "c"}},
    }
    assert out["Outputs"] == {"Outx": {"Value": {"Fn::Sub": "x!"}}, "Outy": {"Value": {"Fn::Sub": "y!"}}}
