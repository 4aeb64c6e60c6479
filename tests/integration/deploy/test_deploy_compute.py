"""Lambda, SNS, EventBridge, Scheduler, Step Functions and CloudWatch resources
deployed through CloudFormation and used through their own APIs."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from nubes.testing.server import NubesServer

from .stacks import deploy_stack, wait_stack


def _wait(cfn: Any, name: str, timeout: float = 60.0) -> dict[str, Any]:
    return wait_stack(cfn, name, timeout)


def _deploy(cfn: Any, name: str, template: str) -> dict[str, str]:
    return deploy_stack(cfn, name, template, 60.0)


APP = """
Resources:
  Fn:
    Type: AWS::Lambda::Function
    Properties:
      Runtime: python3.12
      Handler: index.handler
      Role: arn:aws:iam::000000000000:role/lambda
      Environment: {Variables: {GREETING: hello}}
      Code:
        ZipFile: |
          import os, cfnresponse
          def handler(event, context):
              return {"greeting": os.environ["GREETING"], "send": callable(cfnresponse.send)}
  Topic:
    Type: AWS::SNS::Topic
  Inbox:
    Type: AWS::SQS::Queue
  Sub:
    Type: AWS::SNS::Subscription
    Properties: {TopicArn: !Ref Topic, Protocol: sqs, Endpoint: !GetAtt Inbox.Arn, RawMessageDelivery: true}
  Rule:
    Type: AWS::Events::Rule
    Properties:
      EventPattern: {source: [my.app]}
      Targets: [{Id: inbox, Arn: !GetAtt Inbox.Arn}]
  Machine:
    Type: AWS::StepFunctions::StateMachine
    Properties:
      RoleArn: arn:aws:iam::000000000000:role/sfn
      DefinitionString: '{"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": "${Word}", "End": true}}}'
      DefinitionSubstitutions: {Word: !Ref AWS::StackName}
Outputs:
  FnName: {Value: !Ref Fn}
  FnArn: {Value: !GetAtt Fn.Arn}
  TopicArn: {Value: !Ref Topic}
  TopicName: {Value: !GetAtt Topic.TopicName}
  Inbox: {Value: !Ref Inbox}
  RuleArn: {Value: !GetAtt Rule.Arn}
  Machine: {Value: !Ref Machine}
"""


def test_functions_topics_rules_machines(nubes: NubesServer) -> None:
    cfn = nubes.client("cloudformation")
    name = f"app-{uuid.uuid4().hex[:8]}"
    out = _deploy(cfn, name, APP)
    lam = nubes.client("lambda")
    result = json.loads(lam.invoke(FunctionName=out["FnName"], Payload=b"{}")["Payload"].read())
    assert result == {"greeting": "hello", "send": True}
    assert out["FnArn"].endswith(f":function:{out['FnName']}")
    assert out["TopicArn"].endswith(":" + out["TopicName"])
    nubes.client("sns").publish(TopicArn=out["TopicArn"], Message="via sns")
    nubes.client("events").put_events(
        Entries=[{"Source": "my.app", "DetailType": "t", "Detail": "{}"}]
    )
    sqs = nubes.client("sqs")
    bodies: list[str] = []
    deadline = time.monotonic() + 10
    while len(bodies) < 2 and time.monotonic() < deadline:
        for message in sqs.receive_message(
            QueueUrl=out["Inbox"], WaitTimeSeconds=1, MaxNumberOfMessages=10
        ).get("Messages", []):
            bodies.append(message["Body"])
    assert "via sns" in bodies
    assert any(json.loads(b).get("source") == "my.app" for b in bodies if b.startswith("{"))
    sfn = nubes.client("stepfunctions")
    execution = sfn.start_execution(stateMachineArn=out["Machine"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        described = sfn.describe_execution(executionArn=execution["executionArn"])
        if described["status"] != "RUNNING":
            break
        time.sleep(0.1)
    assert json.loads(described["output"]) == name
    stack_id = cfn.describe_stacks(StackName=name)["Stacks"][0]["StackId"]
    cfn.delete_stack(StackName=name)
    assert _wait(cfn, stack_id)["StackStatus"] == "DELETE_COMPLETE"
    assert out["FnName"] not in [f["FunctionName"] for f in lam.list_functions()["Functions"]]


LAMBDA_EXTRAS = """
Parameters:
  Bucket: {Type: String}
Resources:
  Layer:
    Type: AWS::Lambda::LayerVersion
    Properties:
      LayerName: !Sub "${AWS::StackName}-layer"
      Content: {S3Bucket: !Ref Bucket, S3Key: layer.zip}
      CompatibleRuntimes: [python3.12]
  Fn:
    Type: AWS::Lambda::Function
    Properties:
      Runtime: python3.12
      Handler: index.handler
      Role: arn:aws:iam::000000000000:role/fn
      Layers: [!Ref Layer]
      Code:
        ZipFile: |
          import shared
          def handler(event, context):
              return shared.VALUE
  Version:
    Type: AWS::Lambda::Version
    Properties: {FunctionName: !Ref Fn}
  Live:
    Type: AWS::Lambda::Alias
    Properties: {FunctionName: !Ref Fn, FunctionVersion: !GetAtt Version.Version, Name: live}
  Url:
    Type: AWS::Lambda::Url
    Properties: {TargetFunctionArn: !Ref Live, AuthType: NONE}
  Invoke:
    Type: AWS::Lambda::Permission
    Properties: {FunctionName: !Ref Fn, Action: lambda:InvokeFunction, Principal: sns.amazonaws.com}
  Async:
    Type: AWS::Lambda::EventInvokeConfig
    Properties: {FunctionName: !Ref Fn, Qualifier: $LATEST, MaximumRetryAttempts: 0}
Outputs:
  Version: {Value: !GetAtt Version.Version}
  Alias: {Value: !Ref Live}
  Url: {Value: !GetAtt Url.FunctionUrl}
  Layer: {Value: !Ref Layer}
  Fn: {Value: !Ref Fn}
"""


def test_lambda_versions_aliases_urls_layers(nubes: NubesServer) -> None:
    import io
    import zipfile

    s3, cfn, lam = nubes.client("s3"), nubes.client("cloudformation"), nubes.client("lambda")
    bucket = f"layers-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("python/shared.py", "VALUE = 'from the layer'\n")
    s3.put_object(Bucket=bucket, Key="layer.zip", Body=buffer.getvalue())
    name = f"lx-{uuid.uuid4().hex[:8]}"
    cfn.create_stack(StackName=name, TemplateBody=LAMBDA_EXTRAS, Parameters=[{"ParameterKey": "Bucket", "ParameterValue": bucket}])
    stack = _wait(cfn, name)
    failures = [(e["LogicalResourceId"], e.get("ResourceStatusReason")) for e in cfn.describe_stack_events(StackName=name)["StackEvents"] if "FAILED" in e["ResourceStatus"]]
    assert stack["StackStatus"] == "CREATE_COMPLETE", failures
    out = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    assert out["Version"] == "1"
    assert out["Alias"].endswith(f":function:{out['Fn']}:live")
    assert out["Layer"].endswith(":1") and ":layer:" in out["Layer"]
    payload = lam.invoke(FunctionName=out["Fn"], Qualifier="live")["Payload"].read()
    assert json.loads(payload) == "from the layer"
    policy = json.loads(lam.get_policy(FunctionName=out["Fn"])["Policy"])
    assert any(s["Principal"] == {"Service": "sns.amazonaws.com"} for s in policy["Statement"])
    assert lam.get_function_event_invoke_config(FunctionName=out["Fn"], Qualifier="$LATEST")["MaximumRetryAttempts"] == 0
    assert out["Url"].startswith("http")
    stack_id = stack["StackId"]
    cfn.delete_stack(StackName=name)
    assert _wait(cfn, stack_id)["StackStatus"] == "DELETE_COMPLETE"


def test_function_code_and_configuration_updates(nubes: NubesServer) -> None:
    cfn, lam = nubes.client("cloudformation"), nubes.client("lambda")
    name = f"fu-{uuid.uuid4().hex[:8]}"
    template = """
Parameters:
  Word: {Type: String}
  Memory: {Type: Number, Default: 128}
Resources:
  Fn:
    Type: AWS::Lambda::Function
    Properties:
      Runtime: python3.12
      Handler: index.handler
      Role: arn:aws:iam::000000000000:role/fn
      MemorySize: !Ref Memory
      Environment: {Variables: {WORD: !Ref Word}}
      Code:
        ZipFile: |
          import os
          def handler(event, context):
              return "%s " + os.environ["WORD"]
Outputs:
  Fn: {Value: !Ref Fn}
"""
    cfn.create_stack(StackName=name, TemplateBody=template % "v1", Parameters=[{"ParameterKey": "Word", "ParameterValue": "one"}])
    fn = _wait(cfn, name)["Outputs"][0]["OutputValue"]
    assert json.loads(lam.invoke(FunctionName=fn)["Payload"].read()) == "v1 one"
    cfn.update_stack(StackName=name, TemplateBody=template % "v2",
                     Parameters=[{"ParameterKey": "Word", "ParameterValue": "two"}, {"ParameterKey": "Memory", "ParameterValue": "256"}])
    stack = _wait(cfn, name)
    assert stack["StackStatus"] == "UPDATE_COMPLETE"
    assert stack["Outputs"][0]["OutputValue"] == fn  # modified in place, not replaced
    assert json.loads(lam.invoke(FunctionName=fn)["Payload"].read()) == "v2 two"
    assert lam.get_function_configuration(FunctionName=fn)["MemorySize"] == 256
    cfn.delete_stack(StackName=name)


def test_buses_archives_schedules_alarms(nubes: NubesServer) -> None:
    cfn = nubes.client("cloudformation")
    name = f"ev-{uuid.uuid4().hex[:8]}"
    template = f"""
Resources:
  Bus:
    Type: AWS::Events::EventBus
    Properties: {{Name: {name}-bus}}
  Archive:
    Type: AWS::Events::Archive
    Properties: {{SourceArn: !GetAtt Bus.Arn, RetentionDays: 1}}
  Target:
    Type: AWS::SQS::Queue
  OnBus:
    Type: AWS::Events::Rule
    Properties:
      EventBusName: !Ref Bus
      EventPattern: {{source: [x]}}
      Targets: [{{Id: q, Arn: !GetAtt Target.Arn}}]
  Group:
    Type: AWS::Scheduler::ScheduleGroup
    Properties: {{Name: {name}-group}}
  Tick:
    Type: AWS::Scheduler::Schedule
    Properties:
      GroupName: !Ref Group
      ScheduleExpression: rate(1 hour)
      FlexibleTimeWindow: {{Mode: "OFF"}}
      Target: {{Arn: !GetAtt Target.Arn, RoleArn: arn:aws:iam::000000000000:role/s}}
  Alarm:
    Type: AWS::CloudWatch::Alarm
    Properties:
      Namespace: App
      MetricName: Errors
      Statistic: Sum
      Period: 60
      EvaluationPeriods: 1
      Threshold: 1
      ComparisonOperator: GreaterThanOrEqualToThreshold
Outputs:
  Bus: {{Value: !Ref Bus}}
  Rule: {{Value: !Ref OnBus}}
  Tick: {{Value: !Ref Tick}}
  Alarm: {{Value: !Ref Alarm}}
  Archive: {{Value: !Ref Archive}}
"""
    cfn.create_stack(StackName=name, TemplateBody=template)
    stack = _wait(cfn, name)
    failures = [(e["LogicalResourceId"], e.get("ResourceStatusReason")) for e in cfn.describe_stack_events(StackName=name)["StackEvents"] if "FAILED" in e["ResourceStatus"]]
    assert stack["StackStatus"] == "CREATE_COMPLETE", failures
    out = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    assert out["Rule"].startswith(f"{name}-bus|")
    events = nubes.client("events")
    assert events.describe_event_bus(Name=f"{name}-bus")["Name"] == f"{name}-bus"
    assert events.describe_archive(ArchiveName=out["Archive"])["RetentionDays"] == 1
    schedule = nubes.client("scheduler").get_schedule(Name=out["Tick"], GroupName=f"{name}-group")
    assert schedule["ScheduleExpression"] == "rate(1 hour)"
    alarms = nubes.client("cloudwatch").describe_alarms(AlarmNames=[out["Alarm"]])["MetricAlarms"]
    assert alarms[0]["Threshold"] == 1.0
    stack_id = stack["StackId"]
    cfn.delete_stack(StackName=name)
    stack = _wait(cfn, stack_id)
    assert stack["StackStatus"] == "DELETE_COMPLETE", [(e["LogicalResourceId"], e.get("ResourceStatusReason")) for e in cfn.describe_stack_events(StackName=stack_id)["StackEvents"] if "FAILED" in e["ResourceStatus"]]
    assert not nubes.client("cloudwatch").describe_alarms(AlarmNames=[out["Alarm"]])["MetricAlarms"]
