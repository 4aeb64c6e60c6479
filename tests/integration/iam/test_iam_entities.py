"""IAM as templates and scripts use it: roles with policies, managed policy
versions, users with access keys that sign requests, and SAM functions whose
roles SAM generates."""

from __future__ import annotations

import json
import time

import pytest
from botocore.exceptions import ClientError

from nubes.testing import NubesServer

TRUST = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}


def test_roles_inline_and_managed_policies(nubes: NubesServer) -> None:
    iam = nubes.client("iam")
    role = iam.create_role(RoleName="app-role", AssumeRolePolicyDocument=json.dumps(TRUST), Path="/svc/")["Role"]
    assert role["Arn"] == "arn:aws:iam::000000000000:role/svc/app-role" and role["RoleId"].startswith("AROA")
    assert iam.get_role(RoleName="app-role")["Role"]["AssumeRolePolicyDocument"] == TRUST
    with pytest.raises(ClientError) as err:
        iam.create_role(RoleName="app-role", AssumeRolePolicyDocument=json.dumps(TRUST))
    assert err.value.response["Error"]["Code"] == "EntityAlreadyExists"
    iam.put_role_policy(RoleName="app-role", PolicyName="read", PolicyDocument=json.dumps(POLICY))
    assert iam.get_role_policy(RoleName="app-role", PolicyName="read")["PolicyDocument"] == POLICY
    assert iam.list_role_policies(RoleName="app-role")["PolicyNames"] == ["read"]
    arn = iam.create_policy(PolicyName="custom", PolicyDocument=json.dumps(POLICY))["Policy"]["Arn"]
    iam.attach_role_policy(RoleName="app-role", PolicyArn=arn)
    iam.attach_role_policy(RoleName="app-role", PolicyArn="arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole")
    attached = {p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName="app-role")["AttachedPolicies"]}
    assert arn in attached and len(attached) == 2
    with pytest.raises(ClientError) as err:
        iam.delete_role(RoleName="app-role")
    assert err.value.response["Error"]["Code"] == "DeleteConflict"
    v2 = iam.create_policy_version(PolicyArn=arn, PolicyDocument=json.dumps(POLICY), SetAsDefault=True)["PolicyVersion"]
    assert v2["VersionId"] == "v2" and iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"] == "v2"
    with pytest.raises(ClientError) as err:
        iam.create_policy(PolicyName="bad", PolicyDocument="{not json")
    assert err.value.response["Error"]["Code"] == "MalformedPolicyDocument"
    with pytest.raises(ClientError) as err:
        iam.get_role(RoleName="missing")
    assert err.value.response["Error"]["Code"] == "NoSuchEntity"


def test_user_access_keys_sign_requests(nubes: NubesServer) -> None:
    iam = nubes.client("iam")
    iam.create_user(UserName="ci")
    key = iam.create_access_key(UserName="ci")["AccessKey"]
    sts = nubes.client("sts", aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
    assert sts.get_caller_identity()["Arn"] == "arn:aws:iam::000000000000:user/ci"
    iam.delete_access_key(UserName="ci", AccessKeyId=key["AccessKeyId"])
    stale = nubes.client("sts", aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
    with pytest.raises(ClientError):
        stale.get_caller_identity()


SAM = """
Transform: AWS::Serverless-2016-10-31
Resources:
  Hello:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.12
      Handler: index.handler
      InlineCode: |
        def handler(event, context):
            return {"hello": event.get("name")}
      Policies:
        - AWSLambdaBasicExecutionRole
        - S3ReadPolicy:
            BucketName: some-bucket
"""


def test_sam_function_with_generated_role(nubes: NubesServer) -> None:
    cfn = nubes.client("cloudformation")
    cfn.create_stack(StackName="sam-role", TemplateBody=SAM, Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"])
    deadline = time.time() + 60
    status = ""
    while time.time() < deadline:
        status = cfn.describe_stacks(StackName="sam-role")["Stacks"][0]["StackStatus"]
        if not status.endswith("IN_PROGRESS"):
            break
        time.sleep(0.2)
    events = [e.get("ResourceStatusReason") for e in cfn.describe_stack_events(StackName="sam-role")["StackEvents"] if e.get("ResourceStatusReason")]
    assert status == "CREATE_COMPLETE", events
    role = cfn.describe_stack_resource(StackName="sam-role", LogicalResourceId="HelloRole")["StackResourceDetail"]["PhysicalResourceId"]
    policies = nubes.client("iam").list_attached_role_policies(RoleName=role)["AttachedPolicies"]
    assert any(p["PolicyName"] == "AWSLambdaBasicExecutionRole" for p in policies)
    fn = cfn.describe_stack_resource(StackName="sam-role", LogicalResourceId="Hello")["StackResourceDetail"]["PhysicalResourceId"]
    out = nubes.client("lambda").invoke(FunctionName=fn, Payload=b'{"name": "sam"}')
    assert json.loads(out["Payload"].read()) == {"hello": "sam"}
