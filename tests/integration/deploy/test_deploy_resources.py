"""Resource handlers against the real services, through CloudFormation."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from nubes.testing.server import NubesServer

from .stacks import deploy_stack, wait_stack


def _wait(cfn: Any, name: str, timeout: float = 30.0) -> dict[str, Any]:
    return wait_stack(cfn, name, timeout)


def _deploy(cfn: Any, name: str, template: str, **kwargs: Any) -> dict[str, Any]:
    return deploy_stack(cfn, name, template, 30.0, **kwargs)


DATA = """
Resources:
  Dlq:
    Type: AWS::SQS::Queue
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 45
      RedrivePolicy: {deadLetterTargetArn: !GetAtt Dlq.Arn, maxReceiveCount: 3}
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
      StreamSpecification: {StreamViewType: NEW_AND_OLD_IMAGES}
  Key:
    Type: AWS::KMS::Key
    Properties: {Description: stack key}
  KeyAlias:
    Type: AWS::KMS::Alias
    Properties: {AliasName: !Sub "alias/${AWS::StackName}", TargetKeyId: !Ref Key}
  Secret:
    Type: AWS::SecretsManager::Secret
    Properties:
      GenerateSecretString: {SecretStringTemplate: '{"user": "app"}', GenerateStringKey: password, PasswordLength: 20}
  Logs:
    Type: AWS::Logs::LogGroup
    Properties: {RetentionInDays: 7}
    DeletionPolicy: Retain
Outputs:
  QueueUrl: {Value: !Ref Queue}
  QueueArn: {Value: !GetAtt Queue.Arn}
  DlqName: {Value: !GetAtt Dlq.QueueName}
  Table: {Value: !Ref Table}
  TableArn: {Value: !GetAtt Table.Arn}
  StreamArn: {Value: !GetAtt Table.StreamArn}
  KeyId: {Value: !Ref Key}
  KeyArn: {Value: !GetAtt Key.Arn}
  Secret: {Value: !Ref Secret}
  LogGroup: {Value: !Ref Logs}
  LogArn: {Value: !GetAtt Logs.Arn}
"""


def test_data_resources(nubes: NubesServer) -> None:
    cfn = nubes.client("cloudformation")
    name = f"data-{uuid.uuid4().hex[:8]}"
    out = _deploy(cfn, name, DATA)
    sqs = nubes.client("sqs")
    attrs = sqs.get_queue_attributes(QueueUrl=out["QueueUrl"], AttributeNames=["All"])["Attributes"]
    assert attrs["VisibilityTimeout"] == "45"
    assert json.loads(attrs["RedrivePolicy"])["maxReceiveCount"] == 3
    assert out["QueueArn"] == attrs["QueueArn"]
    assert out["DlqName"].startswith(f"{name}-Dlq-")
    ddb = nubes.client("dynamodb")
    table = ddb.describe_table(TableName=out["Table"])["Table"]
    assert table["TableArn"] == out["TableArn"] and out["StreamArn"] == table["LatestStreamArn"]
    kms = nubes.client("kms")
    assert kms.describe_key(KeyId=f"alias/{name}")["KeyMetadata"]["Arn"] == out["KeyArn"]
    secret = json.loads(
        nubes.client("secretsmanager").get_secret_value(SecretId=out["Secret"])["SecretString"]
    )
    assert secret["user"] == "app" and len(secret["password"]) == 20
    logs = nubes.client("logs")
    groups = logs.describe_log_groups(logGroupNamePrefix=out["LogGroup"])["logGroups"]
    assert groups[0]["retentionInDays"] == 7
    assert out["LogArn"].endswith(f":log-group:{out['LogGroup']}:*")

    stack_id = cfn.describe_stacks(StackName=name)["Stacks"][0]["StackId"]
    cfn.delete_stack(StackName=name)
    stack = _wait(cfn, stack_id)
    assert stack["StackStatus"] == "DELETE_COMPLETE"
    with pytest.raises(ClientError):
        sqs.get_queue_attributes(QueueUrl=out["QueueUrl"], AttributeNames=["All"])
    with pytest.raises(ClientError):
        ddb.describe_table(TableName=out["Table"])
    # DeletionPolicy: Retain keeps the log group.
    assert logs.describe_log_groups(logGroupNamePrefix=out["LogGroup"])["logGroups"]


def test_update_replaces_queue_when_name_changes(nubes: NubesServer) -> None:
    cfn, sqs = nubes.client("cloudformation"), nubes.client("sqs")
    name = f"repl-{uuid.uuid4().hex[:8]}"
    template = "Resources:\n  Q:\n    Type: AWS::SQS::Queue\n    Properties: {QueueName: %s, VisibilityTimeout: 30}\nOutputs:\n  Url: {Value: !Ref Q}\n"
    first = _deploy(cfn, name, template % f"{name}-a")["Url"]
    # In-place modification keeps the queue.
    cfn.update_stack(StackName=name, TemplateBody=template.replace("30", "60") % f"{name}-a")
    assert _wait(cfn, name)["StackStatus"] == "UPDATE_COMPLETE"
    assert (
        sqs.get_queue_attributes(QueueUrl=first, AttributeNames=["VisibilityTimeout"])[
            "Attributes"
        ]["VisibilityTimeout"]
        == "60"
    )
    # A new name replaces it: the new queue exists, the old one is cleaned up.
    cfn.update_stack(StackName=name, TemplateBody=template % f"{name}-b")
    stack = _wait(cfn, name)
    assert stack["StackStatus"] == "UPDATE_COMPLETE"
    second = stack["Outputs"][0]["OutputValue"]
    assert second.endswith(f"{name}-b") and second != first
    sqs.get_queue_attributes(QueueUrl=second, AttributeNames=["All"])
    with pytest.raises(ClientError):
        sqs.get_queue_attributes(QueueUrl=first, AttributeNames=["All"])
    cfn.delete_stack(StackName=name)


def test_failed_update_rolls_back(nubes: NubesServer) -> None:
    cfn, ssm = nubes.client("cloudformation"), nubes.client("ssm")
    name = f"urb-{uuid.uuid4().hex[:8]}"
    good = f"Resources:\n  P:\n    Type: AWS::SSM::Parameter\n    Properties: {{Name: /{name}/p, Type: String, Value: v1}}\n"
    _deploy(cfn, name, good)
    bad = good.replace("v1", "v2") + "  Broken:\n    Type: AWS::Unknown::Thing\n    DependsOn: P\n"
    cfn.update_stack(StackName=name, TemplateBody=bad)
    stack = _wait(cfn, name)
    assert stack["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
    assert ssm.get_parameter(Name=f"/{name}/p")["Parameter"]["Value"] == "v1"
    assert cfn.get_template(StackName=name)["TemplateBody"] == good
    cfn.delete_stack(StackName=name)


def test_custom_named_resource_cannot_be_replaced(nubes: NubesServer) -> None:
    cfn = nubes.client("cloudformation")
    name = f"named-{uuid.uuid4().hex[:8]}"
    template = (
        "Resources:\n  T:\n    Type: AWS::DynamoDB::Table\n    Properties:\n"
        f"      TableName: {name}-t\n      BillingMode: PAY_PER_REQUEST\n"
        "      AttributeDefinitions: [{AttributeName: %s, AttributeType: S}]\n"
        "      KeySchema: [{AttributeName: %s, KeyType: HASH}]\n"
    )
    _deploy(cfn, name, template % ("pk", "pk"))
    # A new key schema needs a new table, but the table keeps its custom name.
    cfn.update_stack(StackName=name, TemplateBody=template % ("id", "id"))
    assert _wait(cfn, name)["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
    failed = [
        e
        for e in cfn.describe_stack_events(StackName=name)["StackEvents"]
        if e["ResourceStatus"] == "UPDATE_FAILED"
    ]
    assert failed[0]["ResourceStatusReason"] == (
        f"CloudFormation cannot update a stack when a custom-named resource requires replacing. Rename {name}-t and update the stack again."
    )
    table = nubes.client("dynamodb").describe_table(TableName=f"{name}-t")["Table"]
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    cfn.delete_stack(StackName=name)


def test_on_failure_delete_and_update_replace_policy(nubes: NubesServer) -> None:
    cfn, ssm = nubes.client("cloudformation"), nubes.client("ssm")
    name = f"onf-{uuid.uuid4().hex[:8]}"
    stack_id = cfn.create_stack(
        StackName=name, TemplateBody="Resources:\n  X: {Type: AWS::Not::Real}\n", OnFailure="DELETE"
    )["StackId"]
    assert _wait(cfn, stack_id)["StackStatus"] == "DELETE_COMPLETE"

    keep = f"Resources:\n  P:\n    Type: AWS::SSM::Parameter\n    UpdateReplacePolicy: Retain\n    Properties: {{Name: /{name}/%s, Type: String, Value: v}}\n"
    _deploy(cfn, name, keep % "a")
    cfn.update_stack(StackName=name, TemplateBody=keep % "b")
    assert _wait(cfn, name)["StackStatus"] == "UPDATE_COMPLETE"
    assert ssm.get_parameter(Name=f"/{name}/a")["Parameter"]["Value"] == "v"  # retained
    assert ssm.get_parameter(Name=f"/{name}/b")["Parameter"]["Value"] == "v"
    cfn.delete_stack(StackName=name)


def test_ses_template_and_identity(nubes: NubesServer) -> None:
    cfn = nubes.client("cloudformation")
    name = f"ses-{uuid.uuid4().hex[:8]}"
    template = f"""
Resources:
  Welcome:
    Type: AWS::SES::Template
    Properties:
      Template: {{TemplateName: {name}-welcome, SubjectPart: "Hi {{{{name}}}}", TextPart: "Welcome {{{{name}}}}"}}
  Sender:
    Type: AWS::SES::EmailIdentity
    Properties: {{EmailIdentity: {name}@example.com}}
Outputs:
  Template: {{Value: !Ref Welcome}}
  Identity: {{Value: !Ref Sender}}
"""
    out = _deploy(cfn, name, template)
    assert out == {"Template": f"{name}-welcome", "Identity": f"{name}@example.com"}
    ses = nubes.client("ses")
    assert (
        ses.get_template(TemplateName=f"{name}-welcome")["Template"]["SubjectPart"] == "Hi {{name}}"
    )
    identity = nubes.client("sesv2").get_email_identity(EmailIdentity=f"{name}@example.com")
    assert identity["IdentityType"] == "EMAIL_ADDRESS"
    stack_id = cfn.describe_stacks(StackName=name)["Stacks"][0]["StackId"]
    cfn.delete_stack(StackName=name)
    assert _wait(cfn, stack_id)["StackStatus"] == "DELETE_COMPLETE"
    with pytest.raises(ClientError):
        ses.get_template(TemplateName=f"{name}-welcome")


def test_cognito_pool_client_and_group(nubes: NubesServer) -> None:
    cfn = nubes.client("cloudformation")
    name = f"cog-{uuid.uuid4().hex[:8]}"
    template = f"""
Resources:
  Pool:
    Type: AWS::Cognito::UserPool
    Properties:
      UserPoolName: {name}-users
      AutoVerifiedAttributes: [email]
      UsernameAttributes: [email]
      Policies: {{PasswordPolicy: {{MinimumLength: 8}}}}
  Client:
    Type: AWS::Cognito::UserPoolClient
    Properties:
      UserPoolId: !Ref Pool
      ClientName: web
      ExplicitAuthFlows: [ALLOW_USER_PASSWORD_AUTH, ALLOW_REFRESH_TOKEN_AUTH]
  Inspectors:
    Type: AWS::Cognito::UserPoolGroup
    Properties: {{UserPoolId: !Ref Pool, GroupName: inspectors, Precedence: 1}}
Outputs:
  Pool: {{Value: !Ref Pool}}
  PoolArn: {{Value: !GetAtt Pool.Arn}}
  Issuer: {{Value: !GetAtt Pool.ProviderURL}}
  Client: {{Value: !Ref Client}}
  Group: {{Value: !Ref Inspectors}}
"""
    out = _deploy(cfn, name, template)
    idp = nubes.client("cognito-idp")
    pool = idp.describe_user_pool(UserPoolId=out["Pool"])["UserPool"]
    assert pool["Name"] == f"{name}-users" and pool["Arn"] == out["PoolArn"]
    assert out["Issuer"] == f"https://cognito-idp.us-east-1.amazonaws.com/{out['Pool']}"
    client = idp.describe_user_pool_client(UserPoolId=out["Pool"], ClientId=out["Client"])["UserPoolClient"]
    assert client["ClientName"] == "web"
    assert idp.get_group(UserPoolId=out["Pool"], GroupName="inspectors")["Group"]["Precedence"] == 1
    assert out["Group"] == "inspectors"
    stack_id = cfn.describe_stacks(StackName=name)["Stacks"][0]["StackId"]
    cfn.delete_stack(StackName=name)
    assert _wait(cfn, stack_id)["StackStatus"] == "DELETE_COMPLETE"
    with pytest.raises(ClientError):
        idp.describe_user_pool(UserPoolId=out["Pool"])


def test_log_filters_streams_and_inline_policies(nubes: NubesServer) -> None:
    cfn = nubes.client("cloudformation")
    name = f"lf-{uuid.uuid4().hex[:8]}"
    template = """
Resources:
  Group: {Type: AWS::Logs::LogGroup}
  Stream: {Type: AWS::Logs::LogStream, Properties: {LogGroupName: !Ref Group, LogStreamName: main}}
  Errors:
    Type: AWS::Logs::MetricFilter
    Properties:
      LogGroupName: !Ref Group
      FilterPattern: ERROR
      MetricTransformations: [{MetricName: Errors, MetricNamespace: App, MetricValue: "1"}]
  Q: {Type: AWS::SQS::Queue}
  QPolicy:
    Type: AWS::SQS::QueueInlinePolicy
    Properties:
      Queue: !Ref Q
      PolicyDocument: {Statement: [{Effect: Allow, Principal: "*", Action: "sqs:SendMessage", Resource: !GetAtt Q.Arn}]}
  T: {Type: AWS::SNS::Topic}
  TPolicy:
    Type: AWS::SNS::TopicInlinePolicy
    Properties:
      TopicArn: !Ref T
      PolicyDocument: {Statement: [{Effect: Allow, Principal: "*", Action: "sns:Publish", Resource: !Ref T}]}
Outputs:
  Group: {Value: !Ref Group}
  Filter: {Value: !Ref Errors}
  Queue: {Value: !Ref Q}
  Topic: {Value: !Ref T}
"""
    out = _deploy(cfn, name, template)
    logs = nubes.client("logs")
    assert [s["logStreamName"] for s in logs.describe_log_streams(logGroupName=out["Group"])["logStreams"]] == ["main"]
    filters = logs.describe_metric_filters(logGroupName=out["Group"])["metricFilters"]
    assert filters[0]["filterName"] == out["Filter"] and filters[0]["metricTransformations"][0]["metricName"] == "Errors"
    policy = nubes.client("sqs").get_queue_attributes(QueueUrl=out["Queue"], AttributeNames=["Policy"])["Attributes"]["Policy"]
    assert json.loads(policy)["Statement"][0]["Action"] == "sqs:SendMessage"
    topic_policy = nubes.client("sns").get_topic_attributes(TopicArn=out["Topic"])["Attributes"]["Policy"]
    assert json.loads(topic_policy)["Statement"][0]["Action"] == "sns:Publish"
    stack_id = cfn.describe_stacks(StackName=name)["Stacks"][0]["StackId"]
    cfn.delete_stack(StackName=name)
    assert _wait(cfn, stack_id)["StackStatus"] == "DELETE_COMPLETE"
