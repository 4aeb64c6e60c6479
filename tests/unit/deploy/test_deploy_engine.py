"""Engine scheduling, change set diffs, and handler conversions (no server)."""

from __future__ import annotations

import asyncio
import io
import zipfile
from typing import Any

import pytest

from nubes.aws.errors import AwsError
from nubes.deploy.engine import Engine, ResourceFailed, failure_reason
from nubes.deploy.intrinsics import StackInfo
from nubes.deploy.prepare import check_capabilities, plan, required_capabilities
from nubes.deploy.resources import handler_for, supported_types
from nubes.deploy.resources.base import api_params
from nubes.deploy.resources.custom import _strings
from nubes.deploy.resources.lambda_ import inline_zip
from nubes.deploy.resources.s3 import cors_configuration, notification_configuration
from nubes.deploy.template import parse_template
from nubes.services.cloudformation.changesets import diff
from nubes.services.cloudformation.common import s3_location


def _engine() -> Engine:
    return Engine(None, None)  # type: ignore[arg-type]  # scheduling needs neither


def test_independent_resources_run_concurrently_and_deps_wait() -> None:
    running: set[str] = set()
    overlap: list[set[str]] = []
    finished: list[str] = []

    async def action(name: str) -> None:
        running.add(name)
        overlap.append(set(running))
        await asyncio.sleep(0.02)
        running.discard(name)
        finished.append(name)

    deps = {"A": set(), "B": set(), "C": {"A", "B"}}
    failure = asyncio.run(_engine()._run_ordered(["A", "B", "C"], deps, action))
    assert failure is None
    assert {"A", "B"} in overlap  # A and B were in flight together
    assert finished[-1] == "C"


def test_failure_stops_new_work_but_lets_running_finish() -> None:
    started: list[str] = []

    async def action(name: str) -> None:
        started.append(name)
        if name == "A":
            raise ResourceFailed("A", "boom")
        await asyncio.sleep(0.05)

    deps = {"A": set(), "B": set(), "C": {"A"}, "D": {"B"}}
    failure = asyncio.run(_engine()._run_ordered(["A", "B", "C", "D"], deps, action))
    assert failure is not None and failure.logical_id == "A" and failure.reason == "boom"
    assert "C" not in started and "D" not in started and "B" in started


def test_failure_reason_wording() -> None:
    assert failure_reason(AwsError("UnsupportedResourceType", "Resource type X is not supported by nubes")) == (
        "Resource type X is not supported by nubes"
    )
    reason = failure_reason(AwsError("ResourceAlreadyExistsException", "exists"))
    assert reason.startswith('Resource handler returned message: "exists" (RequestToken: ')
    assert reason.endswith("HandlerErrorCode: AlreadyExists)")


def test_every_issue_resource_type_has_a_handler() -> None:
    for type_name in ("AWS::SSM::Parameter", "AWS::SecretsManager::Secret", "AWS::KMS::Key", "AWS::KMS::Alias",
                      "AWS::DynamoDB::Table", "AWS::SQS::Queue", "AWS::SQS::QueuePolicy", "AWS::SNS::Topic",
                      "AWS::SNS::Subscription", "AWS::Lambda::Function", "AWS::Lambda::Permission",
                      "AWS::Lambda::EventSourceMapping", "AWS::Lambda::Version", "AWS::Lambda::Alias",
                      "AWS::Logs::LogGroup", "AWS::S3::Bucket", "AWS::S3::BucketPolicy", "AWS::IAM::Role",
                      "AWS::Events::Rule", "AWS::StepFunctions::StateMachine", "AWS::CloudWatch::Alarm"):
        assert type_name in supported_types(), type_name
    assert handler_for("Custom::Anything") is handler_for("AWS::CloudFormation::CustomResource")
    assert handler_for("AWS::Nope::Nope") is None


def _plan(body: str, given: dict[str, str] | None = None) -> Any:
    return asyncio.run(plan(parse_template(body), given or {}, StackInfo("s", "arn:aws:cloudformation:us-east-1:000000000000:stack/s/1")))


def test_change_set_diff() -> None:
    before = _plan("Resources:\n  Q: {Type: AWS::SQS::Queue, Properties: {VisibilityTimeout: 30}}\n  T: {Type: AWS::SNS::Topic}\n")
    record = {"Resources": {
        "Q": {"PhysicalResourceId": "url", "ResourceType": "AWS::SQS::Queue", "Definition": before.template["Resources"]["Q"]},
        "T": {"PhysicalResourceId": "arn", "ResourceType": "AWS::SNS::Topic", "Definition": before.template["Resources"]["T"]},
    }, "ParameterValues": {}}  # fmt: skip
    after = _plan("Resources:\n  Q: {Type: AWS::SQS::Queue, Properties: {VisibilityTimeout: 60, QueueName: x}}\n  P: {Type: AWS::SNS::Topic}\n")
    changes = {c["ResourceChange"]["LogicalResourceId"]: c["ResourceChange"] for c in diff(record, after)}
    assert changes["Q"]["Action"] == "Modify" and changes["Q"]["Replacement"] == "True"
    assert changes["P"]["Action"] == "Add"
    assert changes["T"]["Action"] == "Remove"


def test_capabilities() -> None:
    template = parse_template("Resources:\n  R: {Type: AWS::IAM::Role, Properties: {RoleName: x}}\n")
    assert required_capabilities(template, False) == ["CAPABILITY_NAMED_IAM"]
    with pytest.raises(AwsError) as err:
        check_capabilities(["CAPABILITY_IAM"], [])
    assert err.value.code == "InsufficientCapabilitiesException"
    assert err.value.message == "Requires capabilities : [CAPABILITY_IAM]"
    check_capabilities(["CAPABILITY_IAM"], ["CAPABILITY_NAMED_IAM"])


def test_template_url_locations() -> None:
    assert s3_location("http://127.0.0.1:4566/bucket/dir/t.yaml") == ("bucket", "dir/t.yaml")
    assert s3_location("https://bucket.s3.us-east-1.amazonaws.com/t.yaml") == ("bucket", "t.yaml")
    assert s3_location("https://s3.amazonaws.com/bucket/t.yaml") == ("bucket", "t.yaml")
    assert s3_location("s3://bucket/key") == ("bucket", "key")
    with pytest.raises(AwsError):
        s3_location("ftp://x/y")


def test_handler_conversions() -> None:
    archive = zipfile.ZipFile(io.BytesIO(inline_zip("def handler(e, c): pass", "python3.12")))
    assert sorted(archive.namelist()) == ["cfnresponse.py", "index.py"]
    assert zipfile.ZipFile(io.BytesIO(inline_zip("x", "nodejs20.x"))).namelist() == ["index.js"]
    assert _strings({"N": 3, "B": True, "L": [1, {"F": 1.5}]}) == {"N": "3", "B": "true", "L": ["1", {"F": "1.5"}]}
    notif = notification_configuration({"LambdaConfigurations": [{"Event": "s3:ObjectCreated:*", "Function": "arn:f",
                                        "Filter": {"S3Key": {"Rules": [{"Name": "prefix", "Value": "up/"}]}}}]})
    assert notif == {"LambdaFunctionConfigurations": [{"LambdaFunctionArn": "arn:f", "Events": ["s3:ObjectCreated:*"],
                     "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "up/"}]}}}]}
    cors = cors_configuration({"CorsRules": [{"AllowedMethods": ["GET"], "AllowedOrigins": ["*"], "MaxAge": "60", "ExposedHeaders": ["ETag"]}]})
    assert cors == {"CORSRules": [{"AllowedMethods": ["GET"], "AllowedOrigins": ["*"], "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 60}]}


def test_api_params_follow_the_botocore_shapes() -> None:
    integration = {"Type": "AWS_PROXY", "IntegrationHttpMethod": "POST", "Uri": "arn:x", "IntegrationResponses": []}
    assert api_params("apigateway", "PutIntegration", integration, camel=True) == {
        "type": "AWS_PROXY", "integrationHttpMethod": "POST", "uri": "arn:x",
    }
    pool = {"UserPoolName": "users", "AutoVerifiedAttributes": ["email"], "Nonsense": 1}
    assert api_params("cognito-idp", "CreateUserPool", pool, rename={"UserPoolName": "PoolName"}) == {
        "PoolName": "users", "AutoVerifiedAttributes": ["email"],
    }
