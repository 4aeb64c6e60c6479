"""SAM templates (Transform: AWS::Serverless-2016-10-31) deployed through
CreateStack and through a CREATE change set, as ``sam deploy`` does."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from nubes.testing.server import NubesServer

from .stacks import wait_stack

SAM = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.12
    Timeout: 10
Resources:
  Table:
    Type: AWS::Serverless::SimpleTable
  Queue:
    Type: AWS::SQS::Queue
  Worker:
    Type: AWS::Serverless::Function
    Properties:
      Handler: index.handler
      Role: arn:aws:iam::000000000000:role/worker
      Environment: {Variables: {TABLE: !Ref Table}}
      InlineCode: |
        import os, boto3
        def handler(event, context):
            table = boto3.resource("dynamodb").Table(os.environ["TABLE"])
            for record in event["Records"]:
                table.put_item(Item={"id": record["body"]})
      Events:
        Jobs:
          Type: SQS
          Properties: {Queue: !GetAtt Queue.Arn, BatchSize: 1}
Outputs:
  QueueUrl: {Value: !Ref Queue}
  Table: {Value: !Ref Table}
  Worker: {Value: !Ref Worker}
"""


def _wait(cfn: Any, name: str, timeout: float = 60.0) -> dict[str, Any]:
    return wait_stack(cfn, name, timeout)


def test_sam_requires_auto_expand(nubes: NubesServer) -> None:
    cfn = nubes.client("cloudformation")
    with pytest.raises(ClientError) as err:
        cfn.create_stack(StackName=f"sam-{uuid.uuid4().hex[:8]}", TemplateBody=SAM)
    assert err.value.response["Error"]["Code"] == "InsufficientCapabilitiesException"
    assert (
        err.value.response["Error"]["Message"] == "Requires capabilities : [CAPABILITY_AUTO_EXPAND]"
    )


def test_sam_application_via_change_set(nubes: NubesServer) -> None:
    cfn = nubes.client("cloudformation")
    name = f"sam-{uuid.uuid4().hex[:8]}"
    change_set = cfn.create_change_set(
        StackName=name,
        ChangeSetName="deploy",
        ChangeSetType="CREATE",
        TemplateBody=SAM,
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    cfn.get_waiter("change_set_create_complete").wait(
        ChangeSetName=change_set["Id"], WaiterConfig={"Delay": 1}
    )
    actions = {
        c["ResourceChange"]["LogicalResourceId"]: c["ResourceChange"]["ResourceType"]
        for c in cfn.describe_change_set(ChangeSetName=change_set["Id"])["Changes"]
    }
    assert actions["Worker"] == "AWS::Lambda::Function"
    assert actions["WorkerJobs"] == "AWS::Lambda::EventSourceMapping"
    cfn.execute_change_set(ChangeSetName=change_set["Id"])
    stack = _wait(cfn, name)
    assert stack["StackStatus"] == "CREATE_COMPLETE", [
        (e["LogicalResourceId"], e.get("ResourceStatusReason"))
        for e in cfn.describe_stack_events(StackName=name)["StackEvents"]
        if "FAILED" in e["ResourceStatus"]
    ]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    nubes.client("sqs").send_message(QueueUrl=outputs["QueueUrl"], MessageBody="job-1")
    ddb = nubes.client("dynamodb")
    deadline = time.monotonic() + 20
    item = None
    while time.monotonic() < deadline and item is None:
        item = ddb.get_item(TableName=outputs["Table"], Key={"id": {"S": "job-1"}}).get("Item")
        time.sleep(0.2)
    assert item == {"id": {"S": "job-1"}}
    original = cfn.get_template(StackName=name, TemplateStage="Original")["TemplateBody"]
    processed = cfn.get_template(StackName=name, TemplateStage="Processed")["TemplateBody"]
    assert "AWS::Serverless::Function" in original
    processed_doc = processed if isinstance(processed, dict) else json.loads(processed)
    assert processed_doc["Resources"]["Worker"]["Type"] == "AWS::Lambda::Function"
    stack_id = stack["StackId"]
    cfn.delete_stack(StackName=name)
    assert _wait(cfn, stack_id)["StackStatus"] == "DELETE_COMPLETE"
