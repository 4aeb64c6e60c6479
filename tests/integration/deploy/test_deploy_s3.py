"""Templates on nubes' S3: TemplateURL, AWS::Include, nested stacks, buckets with
notifications and policies, and the SAM CLI's managed bootstrap stack."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from nubes.testing.server import NubesServer

from .stacks import wait_stack


def _wait(cfn: Any, name: str, timeout: float = 60.0) -> dict[str, Any]:
    return wait_stack(cfn, name, timeout)


def _failures(cfn: Any, name: str) -> list[tuple[str, str]]:
    events = cfn.describe_stack_events(StackName=name)["StackEvents"]
    return [
        (e["LogicalResourceId"], e.get("ResourceStatusReason", ""))
        for e in events
        if "FAILED" in e["ResourceStatus"]
    ]


@pytest.fixture
def bucket(nubes: NubesServer) -> str:
    name = f"templates-{uuid.uuid4().hex[:8]}"
    nubes.client("s3").create_bucket(Bucket=name)
    return name


def test_template_url_include_and_nested_stack(nubes: NubesServer, bucket: str) -> None:
    s3, cfn, ssm = nubes.client("s3"), nubes.client("cloudformation"), nubes.client("ssm")
    name = f"url-{uuid.uuid4().hex[:8]}"
    child = "Parameters: {Prefix: {Type: String}}\nResources:\n  P: {Type: AWS::SSM::Parameter, Properties: {Name: !Sub '${Prefix}/child', Type: String, Value: c}}\nOutputs:\n  Name: {Value: !Ref P}\n"
    snippet = "Extra:\n  Type: AWS::SSM::Parameter\n  Properties: {Name: !Sub '/${AWS::StackName}/included', Type: String, Value: i}\n"
    s3.put_object(Bucket=bucket, Key="child.yaml", Body=child.encode())
    s3.put_object(Bucket=bucket, Key="snippet.yaml", Body=snippet.encode())
    parent = f"""
Resources:
  Child:
    Type: AWS::CloudFormation::Stack
    Properties:
      TemplateURL: {nubes.endpoint}/{bucket}/child.yaml
      Parameters: {{Prefix: /{name}}}
  Fn::Transform:
    Name: AWS::Include
    Parameters: {{Location: !Sub "s3://{bucket}/snippet.yaml"}}
Outputs:
  ChildName: {{Value: !GetAtt Child.Outputs.Name}}
"""
    s3.put_object(Bucket=bucket, Key="parent.yaml", Body=parent.encode())
    cfn.create_stack(StackName=name, TemplateURL=f"{nubes.endpoint}/{bucket}/parent.yaml")
    stack = _wait(cfn, name)
    assert stack["StackStatus"] == "CREATE_COMPLETE", _failures(cfn, name)
    assert stack["Outputs"][0]["OutputValue"] == f"/{name}/child"
    assert ssm.get_parameter(Name=f"/{name}/included")["Parameter"]["Value"] == "i"
    child_id = cfn.describe_stack_resource(StackName=name, LogicalResourceId="Child")[
        "StackResourceDetail"
    ]["PhysicalResourceId"]
    assert cfn.describe_stacks(StackName=child_id)["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
    stack_id = stack["StackId"]
    cfn.delete_stack(StackName=name)
    assert _wait(cfn, stack_id)["StackStatus"] == "DELETE_COMPLETE"
    assert cfn.describe_stacks(StackName=child_id)["Stacks"][0]["StackStatus"] == "DELETE_COMPLETE"
    with pytest.raises(ClientError):
        ssm.get_parameter(Name=f"/{name}/child")


def test_missing_template_url_object(nubes: NubesServer, bucket: str) -> None:
    cfn = nubes.client("cloudformation")
    with pytest.raises(ClientError) as err:
        cfn.create_stack(
            StackName=f"miss-{uuid.uuid4().hex[:8]}",
            TemplateURL=f"{nubes.endpoint}/{bucket}/nope.yaml",
        )
    assert err.value.response["Error"]["Code"] == "ValidationError"
    assert err.value.response["Error"]["Message"].startswith("S3 error: ")


BUCKETS = """
Resources:
  Inbox:
    Type: AWS::SQS::Queue
  InboxPolicy:
    Type: AWS::SQS::QueuePolicy
    Properties:
      Queues: [!Ref Inbox]
      PolicyDocument:
        Statement: [{Effect: Allow, Principal: {Service: s3.amazonaws.com}, Action: sqs:SendMessage, Resource: !GetAtt Inbox.Arn}]
  Uploads:
    Type: AWS::S3::Bucket
    DependsOn: InboxPolicy
    Properties:
      VersioningConfiguration: {Status: Enabled}
      NotificationConfiguration:
        QueueConfigurations:
          - Event: s3:ObjectCreated:*
            Queue: !GetAtt Inbox.Arn
            Filter: {S3Key: {Rules: [{Name: prefix, Value: up/}]}}
  UploadsPolicy:
    Type: AWS::S3::BucketPolicy
    Properties:
      Bucket: !Ref Uploads
      PolicyDocument:
        Statement:
          - {Effect: Deny, Principal: "*", Action: "s3:*", Resource: [!GetAtt Uploads.Arn, !Sub "${Uploads.Arn}/*"],
             Condition: {Bool: {"aws:SecureTransport": "false"}}}
Outputs:
  Bucket: {Value: !Ref Uploads}
  Domain: {Value: !GetAtt Uploads.RegionalDomainName}
  Queue: {Value: !Ref Inbox}
"""


def test_bucket_with_notifications_and_policy(nubes: NubesServer) -> None:
    cfn, s3, sqs = nubes.client("cloudformation"), nubes.client("s3"), nubes.client("sqs")
    name = f"bkt-{uuid.uuid4().hex[:8]}"
    cfn.create_stack(StackName=name, TemplateBody=BUCKETS)
    stack = _wait(cfn, name)
    assert stack["StackStatus"] == "CREATE_COMPLETE", _failures(cfn, name)
    out = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    assert out["Bucket"] == out["Bucket"].lower() and out["Bucket"].startswith(name)
    assert out["Domain"] == f"{out['Bucket']}.s3.us-east-1.amazonaws.com"
    assert s3.get_bucket_versioning(Bucket=out["Bucket"])["Status"] == "Enabled"
    policy = json.loads(s3.get_bucket_policy(Bucket=out["Bucket"])["Policy"])
    assert policy["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    s3.put_object(Bucket=out["Bucket"], Key="up/photo.jpg", Body=b"jpg")
    # The first message is S3's s3:TestEvent; the upload's record follows.
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not records:
        for message in sqs.receive_message(
            QueueUrl=out["Queue"], WaitTimeSeconds=1, MaxNumberOfMessages=10
        ).get("Messages", []):
            records += json.loads(message["Body"]).get("Records", [])
    assert records and records[0]["s3"]["object"]["key"] == "up/photo.jpg"
    # A bucket that still holds objects cannot be deleted: the stack says why.
    cfn.delete_stack(StackName=name)
    stack = _wait(cfn, name)
    assert stack["StackStatus"] == "DELETE_FAILED"
    assert any(logical == "Uploads" for logical, _ in _failures(cfn, name))
    for version in s3.list_object_versions(Bucket=out["Bucket"]).get("Versions", []):
        s3.delete_object(Bucket=out["Bucket"], Key=version["Key"], VersionId=version["VersionId"])
    cfn.delete_stack(StackName=name)
    assert _wait(cfn, stack["StackId"])["StackStatus"] == "DELETE_COMPLETE"


SAM_MANAGED = """
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Description: Managed Stack for AWS SAM CLI
Resources:
  SamCliSourceBucket:
    Type: AWS::S3::Bucket
    Properties:
      PublicAccessBlockConfiguration:
        BlockPublicPolicy: true
        BlockPublicAcls: true
        IgnorePublicAcls: true
        RestrictPublicBuckets: true
      BucketEncryption:
        ServerSideEncryptionConfiguration:
          - ServerSideEncryptionByDefault: {SSEAlgorithm: aws:kms}
      VersioningConfiguration: {Status: Enabled}
      Tags:
        - {Key: ManagedStackSource, Value: AwsSamCli}
  SamCliSourceBucketBucketPolicy:
    Type: AWS::S3::BucketPolicy
    Properties:
      Bucket: !Ref SamCliSourceBucket
      PolicyDocument:
        Statement:
          - Action: ["s3:GetObject"]
            Effect: Allow
            Resource: !Join ["", ["arn:", !Ref AWS::Partition, ":s3:::", !Ref SamCliSourceBucket, "/*"]]
            Principal: {Service: serverlessrepo.amazonaws.com}
            Condition: {StringEquals: {"aws:SourceAccount": !Ref AWS::AccountId}}
          - Action: ["s3:*"]
            Effect: Deny
            Resource:
              - !Join ["", ["arn:", !Ref AWS::Partition, ":s3:::", !Ref SamCliSourceBucket]]
              - !Join ["", ["arn:", !Ref AWS::Partition, ":s3:::", !Ref SamCliSourceBucket, "/*"]]
            Principal: "*"
            Condition: {Bool: {"aws:SecureTransport": false}}
Outputs:
  SourceBucket:
    Value: !Ref SamCliSourceBucket
"""


def test_sam_cli_managed_stack_and_template_url_change_set(nubes: NubesServer) -> None:
    cfn, s3 = nubes.client("cloudformation"), nubes.client("s3")
    name = f"managed-{uuid.uuid4().hex[:8]}"
    created = cfn.create_change_set(
        StackName=name,
        ChangeSetName="InitialCreation",
        ChangeSetType="CREATE",
        TemplateBody=SAM_MANAGED,
        Tags=[{"Key": "ManagedStackSource", "Value": "AwsSamCli"}],
    )
    cfn.get_waiter("change_set_create_complete").wait(
        ChangeSetName=created["Id"], WaiterConfig={"Delay": 1}
    )
    cfn.execute_change_set(ChangeSetName=created["Id"])
    cfn.get_waiter("stack_create_complete").wait(StackName=name, WaiterConfig={"Delay": 1})
    stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
    assert {"Key": "ManagedStackSource", "Value": "AwsSamCli"} in stack["Tags"]
    source = stack["Outputs"][0]["OutputValue"]
    assert stack["Outputs"][0]["OutputKey"] == "SourceBucket"
    # Uploads over plain HTTP still work despite the SecureTransport deny.
    app = "Resources:\n  P: {Type: AWS::SSM::Parameter, Properties: {Type: String, Value: from-s3}}\nOutputs:\n  V: {Value: !GetAtt P.Value}\n"
    s3.put_object(Bucket=source, Key="app/template.yaml", Body=app.encode())
    app_name = f"{name}-app"
    change_set = cfn.create_change_set(
        StackName=app_name,
        ChangeSetName="samcli-deploy1",
        ChangeSetType="CREATE",
        TemplateURL=f"{nubes.endpoint}/{source}/app/template.yaml",
    )
    cfn.get_waiter("change_set_create_complete").wait(
        ChangeSetName=change_set["Id"], WaiterConfig={"Delay": 1}
    )
    cfn.execute_change_set(ChangeSetName=change_set["Id"])
    cfn.get_waiter("stack_create_complete").wait(StackName=app_name, WaiterConfig={"Delay": 1})
    assert (
        cfn.describe_stacks(StackName=app_name)["Stacks"][0]["Outputs"][0]["OutputValue"]
        == "from-s3"
    )
    cfn.delete_stack(StackName=app_name)


SAM_S3_EVENT = """
Transform: AWS::Serverless-2016-10-31
Resources:
  Photos:
    Type: AWS::S3::Bucket
  Seen:
    Type: AWS::Serverless::SimpleTable
  OnUpload:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.12
      Handler: index.handler
      Role: arn:aws:iam::000000000000:role/upload
      Environment: {Variables: {TABLE: !Ref Seen}}
      InlineCode: |
        import os, boto3
        def handler(event, context):
            table = boto3.resource("dynamodb").Table(os.environ["TABLE"])
            for record in event["Records"]:
                table.put_item(Item={"id": record["s3"]["object"]["key"]})
      Events:
        Upload:
          Type: S3
          Properties: {Bucket: !Ref Photos, Events: s3:ObjectCreated:*}
Outputs:
  Bucket: {Value: !Ref Photos}
  Table: {Value: !Ref Seen}
"""


def test_sam_s3_event_invokes_function(nubes: NubesServer) -> None:
    cfn, s3, ddb = nubes.client("cloudformation"), nubes.client("s3"), nubes.client("dynamodb")
    name = f"s3ev-{uuid.uuid4().hex[:8]}"
    cfn.create_stack(StackName=name, TemplateBody=SAM_S3_EVENT, Capabilities=["CAPABILITY_AUTO_EXPAND"])
    stack = _wait(cfn, name)
    assert stack["StackStatus"] == "CREATE_COMPLETE", _failures(cfn, name)
    out = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    s3.put_object(Bucket=out["Bucket"], Key="a.jpg", Body=b"x")
    item = None
    deadline = time.monotonic() + 20
    while item is None and time.monotonic() < deadline:
        item = ddb.get_item(TableName=out["Table"], Key={"id": {"S": "a.jpg"}}).get("Item")
        time.sleep(0.2)
    assert item == {"id": {"S": "a.jpg"}}
    s3.delete_object(Bucket=out["Bucket"], Key="a.jpg")
    cfn.delete_stack(StackName=name)
    assert _wait(cfn, stack["StackId"])["StackStatus"] == "DELETE_COMPLETE", _failures(cfn, stack["StackId"])
