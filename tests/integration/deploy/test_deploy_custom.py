"""Custom resources backed by a Lambda function that answers with cfnresponse."""

from __future__ import annotations

import time
import uuid
from typing import Any

from nubes.testing.server import NubesServer

from .stacks import wait_stack

TEMPLATE = """
Parameters:
  N: {Type: Number, Default: 21}
  Fail: {Type: String, Default: "no"}
Resources:
  Provider:
    Type: AWS::Lambda::Function
    Properties:
      Runtime: python3.12
      Handler: index.handler
      Role: arn:aws:iam::000000000000:role/provider
      Code:
        ZipFile: |
          import cfnresponse
          def handler(event, context):
              props = event["ResourceProperties"]
              if event["RequestType"] != "Delete" and props.get("Fail") == "yes":
                  cfnresponse.send(event, context, cfnresponse.FAILED, {}, reason="told to fail")
                  return
              data = {"Doubled": str(int(props["N"]) * 2), "Type": event["RequestType"]}
              cfnresponse.send(event, context, cfnresponse.SUCCESS, data, physicalResourceId="doubler-" + props["N"])
  Doubler:
    Type: Custom::Doubler
    Properties: {ServiceToken: !GetAtt Provider.Arn, N: !Ref N, Fail: !Ref Fail}
Outputs:
  Doubled: {Value: !GetAtt Doubler.Doubled}
  Id: {Value: !Ref Doubler}
"""


def _wait(cfn: Any, name: str, timeout: float = 60.0) -> dict[str, Any]:
    return wait_stack(cfn, name, timeout)


def test_custom_resource_lifecycle(nubes: NubesServer) -> None:
    cfn = nubes.client("cloudformation")
    name = f"custom-{uuid.uuid4().hex[:8]}"
    cfn.create_stack(StackName=name, TemplateBody=TEMPLATE)
    stack = _wait(cfn, name)
    assert stack["StackStatus"] == "CREATE_COMPLETE", cfn.describe_stack_events(StackName=name)[
        "StackEvents"
    ][:3]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    assert outputs == {"Doubled": "42", "Id": "doubler-21"}
    resource = cfn.describe_stack_resource(StackName=name, LogicalResourceId="Doubler")[
        "StackResourceDetail"
    ]
    assert resource["ResourceType"] == "Custom::Doubler"

    cfn.update_stack(
        StackName=name,
        TemplateBody=TEMPLATE,
        Parameters=[{"ParameterKey": "N", "ParameterValue": "5"}],
    )
    stack = _wait(cfn, name)
    assert stack["StackStatus"] == "UPDATE_COMPLETE"
    assert {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}["Doubled"] == "10"

    cfn.update_stack(
        StackName=name,
        TemplateBody=TEMPLATE,
        Parameters=[{"ParameterKey": "Fail", "ParameterValue": "yes"}],
    )
    stack = _wait(cfn, name)
    assert stack["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
    reasons = [
        e.get("ResourceStatusReason", "")
        for e in cfn.describe_stack_events(StackName=name)["StackEvents"]
        if e["ResourceStatus"] == "UPDATE_FAILED"
    ]
    assert reasons and reasons[0].startswith(
        "Received response status [FAILED] from custom resource. Message returned: told to fail"
    )
    stack_id = stack["StackId"]
    cfn.delete_stack(StackName=name)
    assert _wait(cfn, stack_id)["StackStatus"] == "DELETE_COMPLETE"


def test_provider_function_that_crashes_fails_fast(nubes: NubesServer) -> None:
    cfn = nubes.client("cloudformation")
    name = f"crash-{uuid.uuid4().hex[:8]}"
    template = """
Resources:
  Provider:
    Type: AWS::Lambda::Function
    Properties:
      Runtime: python3.12
      Handler: index.handler
      Role: arn:aws:iam::000000000000:role/provider
      Code:
        ZipFile: |
          def handler(event, context):
              raise RuntimeError("provider exploded")
  Thing:
    Type: AWS::CloudFormation::CustomResource
    Properties: {ServiceToken: !GetAtt Provider.Arn}
"""
    started = time.monotonic()
    cfn.create_stack(StackName=name, TemplateBody=template)
    stack = _wait(cfn, name)
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    assert time.monotonic() - started < 30
    reasons = [e.get("ResourceStatusReason", "") for e in cfn.describe_stack_events(StackName=name)["StackEvents"]
               if e["LogicalResourceId"] == "Thing" and e["ResourceStatus"] == "CREATE_FAILED"]
    assert reasons[0].startswith("The custom resource provider function failed without responding: ")
    assert "provider exploded" in reasons[0]
