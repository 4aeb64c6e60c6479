"""CloudFormation stacks through boto3 against a real server."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from nubes.testing.server import NubesServer

from .stacks import wait_stack


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _wait(cfn: Any, name: str, timeout: float = 30.0) -> dict[str, Any]:
    return wait_stack(cfn, name, timeout)


TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Description: ssm stack
Parameters:
  Env: {Type: String, AllowedValues: [dev, prod], Default: dev}
  Secret: {Type: String, NoEcho: true, Default: shh}
Conditions:
  IsProd: !Equals [!Ref Env, prod]
Resources:
  First:
    Type: AWS::SSM::Parameter
    Properties:
      Name: !Sub "/${AWS::StackName}/first"
      Type: String
      Value: !Sub "${Env}-${AWS::Region}"
  Second:
    Type: AWS::SSM::Parameter
    Properties:
      Name: !Sub "/${AWS::StackName}/second"
      Type: String
      Value: !Join ["|", [!Ref First, !GetAtt First.Value]]
  ProdOnly:
    Type: AWS::SSM::Parameter
    Condition: IsProd
    Properties: {Type: String, Value: prod}
Outputs:
  FirstName: {Value: !Ref First, Export: {Name: !Sub "${AWS::StackName}-first"}}
  SecondValue: {Value: !GetAtt Second.Value}
"""


def test_create_update_delete_ssm_stack(nubes: NubesServer) -> None:
    cfn, ssm = nubes.client("cloudformation"), nubes.client("ssm")
    name = _name("params")
    stack_id = cfn.create_stack(StackName=name, TemplateBody=TEMPLATE)["StackId"]
    assert stack_id.startswith(f"arn:aws:cloudformation:us-east-1:000000000000:stack/{name}/")
    stack = _wait(cfn, name)
    assert stack["StackStatus"] == "CREATE_COMPLETE", cfn.describe_stack_events(StackName=name)
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    assert outputs == {"FirstName": f"/{name}/first", "SecondValue": f"/{name}/first|dev-us-east-1"}
    params = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    assert params == {"Env": "dev", "Secret": "****"}
    assert (
        ssm.get_parameter(Name=f"/{name}/second")["Parameter"]["Value"]
        == f"/{name}/first|dev-us-east-1"
    )
    resources = {
        r["LogicalResourceId"]: r
        for r in cfn.list_stack_resources(StackName=name)["StackResourceSummaries"]
    }
    assert set(resources) == {"First", "Second"}
    assert resources["First"]["PhysicalResourceId"] == f"/{name}/first"
    exports = {e["Name"]: e["Value"] for e in cfn.list_exports()["Exports"]}
    assert exports[f"{name}-first"] == f"/{name}/first"

    # Update: a modified value, and a new conditional resource.
    cfn.update_stack(
        StackName=name,
        TemplateBody=TEMPLATE,
        Parameters=[{"ParameterKey": "Env", "ParameterValue": "prod"}],
    )
    stack = _wait(cfn, name)
    assert stack["StackStatus"] == "UPDATE_COMPLETE"
    assert ssm.get_parameter(Name=f"/{name}/first")["Parameter"]["Value"] == "prod-us-east-1"
    prod = cfn.describe_stack_resource(StackName=name, LogicalResourceId="ProdOnly")[
        "StackResourceDetail"
    ]
    assert prod["PhysicalResourceId"].startswith("CFN-ProdOnly-")
    with pytest.raises(ClientError) as err:
        cfn.update_stack(
            StackName=name,
            TemplateBody=TEMPLATE,
            Parameters=[{"ParameterKey": "Env", "UsePreviousValue": True}],
        )
    assert err.value.response["Error"]["Message"] == "No updates are to be performed."

    cfn.delete_stack(StackName=name)
    stack = _wait(cfn, stack_id)
    assert stack["StackStatus"] == "DELETE_COMPLETE"
    with pytest.raises(ClientError):
        ssm.get_parameter(Name=f"/{name}/first")
    with pytest.raises(ClientError) as err:
        cfn.describe_stacks(StackName=name)
    assert err.value.response["Error"]["Message"] == f"Stack with id {name} does not exist"
    events = cfn.describe_stack_events(StackName=stack_id)["StackEvents"]
    assert (
        events[0]["ResourceStatus"] == "DELETE_COMPLETE" and events[0]["LogicalResourceId"] == name
    )


def test_failure_rolls_back_with_reason(nubes: NubesServer) -> None:
    cfn, ssm = nubes.client("cloudformation"), nubes.client("ssm")
    name = _name("fail")
    template = {
        "Resources": {
            "Good": {
                "Type": "AWS::SSM::Parameter",
                "Properties": {"Name": f"/{name}/good", "Type": "String", "Value": "x"},
            },
            "Weird": {"Type": "AWS::Nope::Thing", "DependsOn": "Good"},
        }
    }
    cfn.create_stack(StackName=name, TemplateBody=json.dumps(template))
    stack = _wait(cfn, name)
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    events = cfn.describe_stack_events(StackName=name)["StackEvents"]
    failed = [e for e in events if e["ResourceStatus"] == "CREATE_FAILED"]
    assert failed[0]["LogicalResourceId"] == "Weird"
    assert (
        failed[0]["ResourceStatusReason"]
        == "Resource type AWS::Nope::Thing is not supported by nubes"
    )
    with pytest.raises(ClientError):
        ssm.get_parameter(Name=f"/{name}/good")
    cfn.delete_stack(StackName=name)
    assert _wait(cfn, stack["StackId"])["StackStatus"] == "DELETE_COMPLETE"


@pytest.mark.parametrize(
    ("template", "params", "message"),
    [
        (
            "Resources:\n  A:\n    Type: [x\n",
            [],
            "Template format error: YAML not well-formed. (line 4, column 1)",
        ),
        (
            "Parameters: {P: {Type: String}}\nResources:\n  A: {Type: AWS::SNS::Topic}\n",
            [],
            "Parameters: [P] must have values",
        ),
        (
            "Resources:\n  A: {Type: AWS::SSM::Parameter, Properties: {Value: !Ref B, Type: String}}\n  B: {Type: AWS::SSM::Parameter, Properties: {Value: !Ref A, Type: String}}\n",
            [],
            "Circular dependency between resources: [A, B]",
        ),
        (
            "Resources:\n  A: {Type: AWS::SSM::Parameter, Properties: {Value: !Ref Missing, Type: String}}\n",
            [],
            "Template format error: Unresolved resource dependencies [Missing] in the Resources block of the template",
        ),
        (
            "Resources:\n  A: {Type: AWS::SSM::Parameter, Properties: {Value: !GetAtt B.Nope, Type: String}}\n  B: {Type: AWS::SSM::Parameter, Properties: {Value: x, Type: String}}\n",
            [],
            "Template error: resource B does not support attribute type Nope in Fn::GetAtt",
        ),
        (
            "Resources:\n  A: {Type: AWS::SQS::Queue, Properties: {QueueName: !Sub '${B.Nope}-x'}}\n  B: {Type: AWS::SQS::Queue}\n",
            [],
            "Template error: resource B does not support attribute type Nope in Fn::GetAtt",
        ),
    ],
)
def test_invalid_templates_rejected_before_creation(
    nubes: NubesServer, template: str, params: list[Any], message: str
) -> None:
    cfn = nubes.client("cloudformation")
    name = _name("bad")
    with pytest.raises(ClientError) as err:
        cfn.create_stack(StackName=name, TemplateBody=template, Parameters=params)
    assert err.value.response["Error"]["Code"] == "ValidationError"
    assert err.value.response["Error"]["Message"] == message
    with pytest.raises(ClientError):
        cfn.describe_stacks(StackName=name)


def test_change_set_create_and_execute(nubes: NubesServer) -> None:
    cfn, ssm = nubes.client("cloudformation"), nubes.client("ssm")
    name = _name("cs")
    template = f"Resources:\n  P:\n    Type: AWS::SSM::Parameter\n    Properties: {{Name: /{name}/p, Type: String, Value: one}}\n"
    created = cfn.create_change_set(
        StackName=name, ChangeSetName="first", ChangeSetType="CREATE", TemplateBody=template
    )
    cfn.get_waiter("change_set_create_complete").wait(
        ChangeSetName=created["Id"], WaiterConfig={"Delay": 1}
    )
    described = cfn.describe_change_set(ChangeSetName="first", StackName=name)
    assert described["ExecutionStatus"] == "AVAILABLE"
    assert [c["ResourceChange"]["Action"] for c in described["Changes"]] == ["Add"]
    assert cfn.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"] == "REVIEW_IN_PROGRESS"
    cfn.execute_change_set(ChangeSetName=created["Id"])
    cfn.get_waiter("stack_create_complete").wait(StackName=name, WaiterConfig={"Delay": 1})
    assert ssm.get_parameter(Name=f"/{name}/p")["Parameter"]["Value"] == "one"

    cfn.create_change_set(StackName=name, ChangeSetName="same", TemplateBody=template)
    same = cfn.describe_change_set(ChangeSetName="same", StackName=name)
    assert same["Status"] == "FAILED"
    assert (
        same["StatusReason"]
        == "The submitted information didn't contain changes. Submit different information to create a change set."
    )

    changed = template.replace("one", "two")
    second = cfn.create_change_set(StackName=name, ChangeSetName="second", TemplateBody=changed)
    change = cfn.describe_change_set(ChangeSetName=second["Id"])["Changes"][0]["ResourceChange"]
    assert (change["Action"], change["Replacement"]) == ("Modify", "False")
    cfn.execute_change_set(ChangeSetName="second", StackName=name)
    cfn.get_waiter("stack_update_complete").wait(StackName=name, WaiterConfig={"Delay": 1})
    assert ssm.get_parameter(Name=f"/{name}/p")["Parameter"]["Value"] == "two"
    assert cfn.get_template(StackName=name)["TemplateBody"] == changed
    cfn.delete_stack(StackName=name)
    cfn.get_waiter("stack_delete_complete").wait(StackName=name, WaiterConfig={"Delay": 1})


def test_stack_events_go_to_notification_topics(nubes: NubesServer) -> None:
    cfn, sns, sqs = nubes.client("cloudformation"), nubes.client("sns"), nubes.client("sqs")
    name = _name("notify")
    topic = sns.create_topic(Name=name)["TopicArn"]
    queue = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    template = f"Resources:\n  P: {{Type: AWS::SSM::Parameter, Properties: {{Name: /{name}/p, Type: String, Value: v}}}}\n"
    cfn.create_stack(StackName=name, TemplateBody=template, NotificationARNs=[topic])
    assert _wait(cfn, name)["StackStatus"] == "CREATE_COMPLETE"
    bodies: list[str] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(
        f"LogicalResourceId='{name}'" in b and "CREATE_COMPLETE" in b for b in bodies
    ):
        bodies += [
            m["Body"]
            for m in sqs.receive_message(
                QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1
            ).get("Messages", [])
        ]
    assert any(
        "LogicalResourceId='P'" in b and "ResourceStatus='CREATE_COMPLETE'" in b for b in bodies
    )
    assert any(
        f"StackName='{name}'" in b and "ResourceType='AWS::CloudFormation::Stack'" in b
        for b in bodies
    )
    cfn.delete_stack(StackName=name)


def test_unknown_function_rejected_before_anything_is_created(nubes: NubesServer) -> None:
    cfn, ssm = nubes.client("cloudformation"), nubes.client("ssm")
    name = _name("fn")
    template = (
        f"Resources:\n  A: {{Type: AWS::SSM::Parameter, Properties: {{Name: /{name}/a, Type: String, Value: a}}}}\n"
        f"  B: {{Type: AWS::SSM::Parameter, DependsOn: A, Properties: {{Name: /{name}/b, Type: String, Value: {{'Fn::Magic': x}}}}}}\n"
    )
    for call in (lambda: cfn.validate_template(TemplateBody=template), lambda: cfn.create_stack(StackName=name, TemplateBody=template)):
        with pytest.raises(ClientError) as err:
            call()
        assert err.value.response["Error"]["Message"].startswith("Template format error: Encountered unsupported function: Fn::Magic")
    with pytest.raises(ClientError):
        ssm.get_parameter(Name=f"/{name}/a")
