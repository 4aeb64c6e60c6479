"""The CloudFormation provider in-process (real App, real SQLite store, real SSM)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from nubes.app import App
from nubes.aws.errors import AwsError
from nubes.deploy.stacks import StackStore
from nubes.settings import Settings

EXPORTER = """
Parameters:
  Value: {Type: String, Default: shared-value, Description: what to export}
Resources:
  P: {Type: AWS::SSM::Parameter, Properties: {Type: String, Value: !Ref Value}}
Outputs:
  Out: {Value: !GetAtt P.Value, Export: {Name: shared}}
"""
IMPORTER = """
Resources:
  P: {Type: AWS::SSM::Parameter, Properties: {Type: String, Value: !ImportValue shared}}
Outputs:
  Got: {Value: !GetAtt P.Value}
"""


async def _app(path: Path) -> App:
    app = App(Settings(data_dir=path))
    await app.start()
    return app


async def _settle(app: App, name: str) -> dict[str, Any]:
    for _ in range(200):
        stack: dict[str, Any] = (await app.call("cloudformation", "DescribeStacks", {"StackName": name}))["Stacks"][0]
        if not stack["StackStatus"].endswith("_IN_PROGRESS"):
            return stack
        await asyncio.sleep(0.02)
    raise AssertionError("still in progress")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_exports_and_imports(tmp_path: Path) -> None:
    async def scenario() -> None:
        app = await _app(tmp_path)
        try:
            await app.call("cloudformation", "CreateStack", {"StackName": "exporter", "TemplateBody": EXPORTER})
            assert (await _settle(app, "exporter"))["StackStatus"] == "CREATE_COMPLETE"
            await app.call("cloudformation", "CreateStack", {"StackName": "importer", "TemplateBody": IMPORTER})
            stack = await _settle(app, "importer")
            assert stack["Outputs"][0]["OutputValue"] == "shared-value"
            imports = await app.call("cloudformation", "ListImports", {"ExportName": "shared"})
            assert imports["Imports"] == ["importer"]
            # An imported export can be neither deleted nor changed.
            await app.call("cloudformation", "UpdateStack", {"StackName": "exporter", "UsePreviousTemplate": True,
                                                             "Parameters": [{"ParameterKey": "Value", "ParameterValue": "new"}]})
            stack = await _settle(app, "exporter")
            assert stack["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
            assert stack["Outputs"][0]["OutputValue"] == "shared-value"
            events = (await app.call("cloudformation", "DescribeStackEvents", {"StackName": "exporter"}))["StackEvents"]
            assert any(e.get("ResourceStatusReason") == "Cannot update export shared as it is in use by importer" for e in events)
            await app.call("cloudformation", "DeleteStack", {"StackName": "exporter"})
            stack = await _settle(app, "exporter")
            assert (stack["StackStatus"], stack["StackStatusReason"]) == (
                "DELETE_FAILED", "Export shared cannot be deleted as it is in use by importer")
            # A second stack exporting the same name fails and rolls back.
            await app.call("cloudformation", "CreateStack", {"StackName": "dup", "TemplateBody": EXPORTER})
            dup = await _settle(app, "dup")
            assert dup["StackStatus"] == "ROLLBACK_COMPLETE"
            events = (await app.call("cloudformation", "DescribeStackEvents", {"StackName": "dup"}))["StackEvents"]
            assert any("Export with name shared is already exported by stack exporter" in e.get("ResourceStatusReason", "") for e in events)
        finally:
            await app.stop()

    run(scenario())


def test_validate_and_summary(tmp_path: Path) -> None:
    async def scenario() -> None:
        app = await _app(tmp_path)
        try:
            out = await app.call("cloudformation", "ValidateTemplate", {"TemplateBody": EXPORTER})
            assert out["Parameters"] == [{"ParameterKey": "Value", "NoEcho": False, "Description": "what to export", "DefaultValue": "shared-value"}]
            with pytest.raises(AwsError) as err:
                await app.call("cloudformation", "ValidateTemplate", {"TemplateBody": "Resources: {}\n"})
            assert err.value.message == "Template format error: At least one Resources member must be defined."
            with pytest.raises(AwsError) as err:
                await app.call("cloudformation", "ValidateTemplate", {"TemplateBody": "Foo: 1\nResources: {A: {Type: X}}\n"})
            assert err.value.message == "Template format error: Invalid template property or properties [Foo]"
            summary = await app.call("cloudformation", "GetTemplateSummary", {"TemplateBody": "Transform: AWS::Serverless-2016-10-31\nResources: {F: {Type: AWS::Serverless::Function}}\n"})
            assert summary["DeclaredTransforms"] == ["AWS::Serverless-2016-10-31"]
            assert summary["ResourceTypes"] == ["AWS::Serverless::Function"]
        finally:
            await app.stop()

    run(scenario())


def test_stack_api_errors_and_settings(tmp_path: Path) -> None:
    async def scenario() -> None:
        app = await _app(tmp_path)
        try:
            with pytest.raises(AwsError) as err:
                await app.call("cloudformation", "DescribeStacks", {"StackName": "nope"})
            assert (err.value.code, err.value.message) == ("ValidationError", "Stack with id nope does not exist")
            assert await app.call("cloudformation", "DeleteStack", {"StackName": "nope"}) == {}
            with pytest.raises(AwsError) as err:
                await app.call("cloudformation", "CreateStack", {"StackName": "1bad", "TemplateBody": EXPORTER})
            assert "failed to satisfy constraint" in err.value.message
            await app.call("cloudformation", "CreateStack", {"StackName": "s", "TemplateBody": EXPORTER,
                                                             "EnableTerminationProtection": True})
            await _settle(app, "s")
            with pytest.raises(AwsError) as err:
                await app.call("cloudformation", "CreateStack", {"StackName": "s", "TemplateBody": EXPORTER})
            assert (err.value.code, err.value.message) == ("AlreadyExistsException", "Stack [s] already exists")
            with pytest.raises(AwsError) as err:
                await app.call("cloudformation", "DeleteStack", {"StackName": "s"})
            assert err.value.message == "Stack [s] cannot be deleted while TerminationProtection is enabled"
            await app.call("cloudformation", "SetStackPolicy", {"StackName": "s", "StackPolicyBody": '{"Statement": []}'})
            assert (await app.call("cloudformation", "GetStackPolicy", {"StackName": "s"}))["StackPolicyBody"] == '{"Statement": []}'
            listed = await app.call("cloudformation", "ListStacks", {"StackStatusFilter": ["CREATE_COMPLETE"]})
            assert [s["StackName"] for s in listed["StackSummaries"]] == ["s"]
        finally:
            await app.stop()

    run(scenario())


def test_restart_ends_interrupted_operations(tmp_path: Path) -> None:
    async def scenario() -> None:
        app = await _app(tmp_path)
        stacks = StackStore(app.store)
        record = {"StackId": "arn:aws:cloudformation:us-east-1:000000000000:stack/x/1", "StackName": "x",
                  "CreationTime": 1.0, "StackStatus": "CREATE_IN_PROGRESS", "Resources": {}}
        await stacks.insert(record)
        await app.stop()
        again = await _app(tmp_path)
        try:
            stack = await _settle(again, "x")
            assert stack["StackStatus"] == "CREATE_FAILED"
            assert stack["StackStatusReason"] == "nubes stopped while this operation was in progress"
        finally:
            await again.stop()

    run(scenario())


def test_bad_requests(tmp_path: Path) -> None:
    async def scenario() -> None:
        app = await _app(tmp_path)
        try:
            big = "Resources:\n  A: {Type: AWS::SNS::Topic}\n" + "# pad\n" * 9000
            with pytest.raises(AwsError) as err:
                await app.call("cloudformation", "CreateStack", {"StackName": "big", "TemplateBody": big})
            assert "Member must have length less than or equal to 51200" in err.value.message
            many = "Resources:\n" + "".join(f"  T{i}: {{Type: AWS::SNS::Topic}}\n" for i in range(501))
            with pytest.raises(AwsError) as err:
                await app.call("cloudformation", "CreateStack", {"StackName": "many", "TemplateBody": many})
            assert err.value.message == "Template format error: Number of resources, 501, is greater than maximum allowed, 500"
            with pytest.raises(AwsError) as err:
                await app.call("cloudformation", "CreateStack", {"StackName": "nokey", "TemplateBody": EXPORTER,
                                                                 "Parameters": [{"ParameterValue": "x"}]})
            assert err.value.code == "ValidationError"
            with pytest.raises(AwsError) as err:
                await app.call("cloudformation", "CreateStack", {"StackName": "none"})
            assert err.value.message == "Either Template URL or Template Body must be specified."
            with pytest.raises(AwsError) as err:
                await app.call("cloudformation", "CreateStack", {"StackName": "url", "TemplateURL": "ftp://x/y"})
            assert err.value.message == "TemplateURL must be a supported URL."
            listed = await app.call("cloudformation", "ListStacks", {})
            assert listed["StackSummaries"] == []
        finally:
            await app.stop()

    run(scenario())


def test_update_removes_resources_honouring_retain_and_changes_types(tmp_path: Path) -> None:
    first = """
Resources:
  Keep: {Type: AWS::SSM::Parameter, DeletionPolicy: Retain, Properties: {Name: /u/keep, Type: String, Value: k}}
  Drop: {Type: AWS::SSM::Parameter, Properties: {Name: /u/drop, Type: String, Value: d}}
  Thing: {Type: AWS::SSM::Parameter, Properties: {Name: /u/thing, Type: String, Value: t}}
"""
    second = """
Resources:
  Thing: {Type: AWS::SQS::Queue, Properties: {QueueName: u-thing}}
"""

    async def scenario() -> None:
        app = await _app(tmp_path)
        try:
            await app.call("cloudformation", "CreateStack", {"StackName": "u", "TemplateBody": first})
            assert (await _settle(app, "u"))["StackStatus"] == "CREATE_COMPLETE"
            await app.call("cloudformation", "UpdateStack", {"StackName": "u", "TemplateBody": second})
            assert (await _settle(app, "u"))["StackStatus"] == "UPDATE_COMPLETE"
            assert (await app.call("ssm", "GetParameter", {"Name": "/u/keep"}))["Parameter"]["Value"] == "k"
            for gone in ("/u/drop", "/u/thing"):
                with pytest.raises(AwsError):
                    await app.call("ssm", "GetParameter", {"Name": gone})
            resources = (await app.call("cloudformation", "ListStackResources", {"StackName": "u"}))["StackResourceSummaries"]
            assert [(r["LogicalResourceId"], r["ResourceType"]) for r in resources] == [("Thing", "AWS::SQS::Queue")]
            url = resources[0]["PhysicalResourceId"]
            assert url.endswith("/u-thing")
            events = (await app.call("cloudformation", "DescribeStackEvents", {"StackName": "u"}))["StackEvents"]
            statuses = [(e["LogicalResourceId"], e["ResourceStatus"]) for e in reversed(events)]
            assert ("Keep", "DELETE_SKIPPED") in statuses and ("Drop", "DELETE_COMPLETE") in statuses
            assert statuses.index(("u", "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS")) < statuses.index(("Drop", "DELETE_COMPLETE"))
        finally:
            await app.stop()

    run(scenario())


def test_stack_policy_guards_updates(tmp_path: Path) -> None:
    template = "Resources:\n  Db: {Type: AWS::SSM::Parameter, Properties: {Name: /sp/db, Type: String, Value: %s}}\n"
    policy = ('{"Statement": [{"Effect": "Allow", "Action": "Update:*", "Principal": "*", "Resource": "*"},'
              ' {"Effect": "Deny", "Action": "Update:Modify", "Principal": "*", "Resource": "LogicalResourceId/Db"}]}')

    async def scenario() -> None:
        app = await _app(tmp_path)
        try:
            await app.call("cloudformation", "CreateStack", {"StackName": "sp", "TemplateBody": template % "v1",
                                                             "StackPolicyBody": policy})
            await _settle(app, "sp")
            await app.call("cloudformation", "UpdateStack", {"StackName": "sp", "TemplateBody": template % "v2"})
            assert (await _settle(app, "sp"))["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
            events = (await app.call("cloudformation", "DescribeStackEvents", {"StackName": "sp"}))["StackEvents"]
            assert any(e.get("ResourceStatusReason", "").startswith(
                "Action denied by stack policy: Statement [#2] does not allow [Update:Modify] for resource [LogicalResourceId/Db]")
                for e in events)
            assert (await app.call("ssm", "GetParameter", {"Name": "/sp/db"}))["Parameter"]["Value"] == "v1"
            # A temporary policy for one update lets it through.
            await app.call("cloudformation", "UpdateStack", {"StackName": "sp", "TemplateBody": template % "v2",
                                                             "StackPolicyDuringUpdateBody": '{"Statement": [{"Effect": "Allow", "Action": "Update:*", "Principal": "*", "Resource": "*"}]}'})
            assert (await _settle(app, "sp"))["StackStatus"] == "UPDATE_COMPLETE"
            assert (await app.call("ssm", "GetParameter", {"Name": "/sp/db"}))["Parameter"]["Value"] == "v2"
            with pytest.raises(AwsError):
                await app.call("cloudformation", "SetStackPolicy", {"StackName": "sp", "StackPolicyBody": "not json"})
        finally:
            await app.stop()

    run(scenario())


def test_disable_rollback_then_rollback_stack(tmp_path: Path) -> None:
    good = "Resources:\n  P: {Type: AWS::SSM::Parameter, Properties: {Name: /dr/p, Type: String, Value: %s}}\n"
    bad = good + "  X: {Type: AWS::Not::Here, DependsOn: P}\n"

    async def scenario() -> None:
        app = await _app(tmp_path)
        try:
            await app.call("cloudformation", "CreateStack", {"StackName": "c", "TemplateBody": (bad % "v").replace("/dr/p", "/dr/c"),
                                                             "DisableRollback": True})
            stack = await _settle(app, "c")
            assert stack["StackStatus"] == "CREATE_FAILED"
            assert (await app.call("ssm", "GetParameter", {"Name": "/dr/c"}))["Parameter"]["Value"] == "v"  # kept for inspection
            await app.call("cloudformation", "RollbackStack", {"StackName": "c"})
            assert (await _settle(app, "c"))["StackStatus"] == "ROLLBACK_COMPLETE"
            with pytest.raises(AwsError):
                await app.call("ssm", "GetParameter", {"Name": "/dr/c"})

            await app.call("cloudformation", "CreateStack", {"StackName": "u", "TemplateBody": good % "v1"})
            await _settle(app, "u")
            await app.call("cloudformation", "UpdateStack", {"StackName": "u", "TemplateBody": bad % "v2", "DisableRollback": True})
            assert (await _settle(app, "u"))["StackStatus"] == "UPDATE_FAILED"
            assert (await app.call("ssm", "GetParameter", {"Name": "/dr/p"}))["Parameter"]["Value"] == "v2"
            await app.call("cloudformation", "RollbackStack", {"StackName": "u"})
            assert (await _settle(app, "u"))["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
            assert (await app.call("ssm", "GetParameter", {"Name": "/dr/p"}))["Parameter"]["Value"] == "v1"
            with pytest.raises(AwsError) as err:
                await app.call("cloudformation", "RollbackStack", {"StackName": "u"})
            assert err.value.code == "ValidationError"
            with pytest.raises(AwsError) as err:
                await app.call("cloudformation", "CancelUpdateStack", {"StackName": "u"})
            assert err.value.message == "CancelUpdateStack cannot be called from current stack status UPDATE_ROLLBACK_COMPLETE"
        finally:
            await app.stop()

    run(scenario())


def test_concurrent_updates_cannot_both_start(tmp_path: Path) -> None:
    template = "Resources:\n  P: {Type: AWS::SSM::Parameter, Properties: {Name: /cc/p, Type: String, Value: %s}}\n"

    async def scenario() -> None:
        app = await _app(tmp_path)
        try:
            await app.call("cloudformation", "CreateStack", {"StackName": "cc", "TemplateBody": template % "v0"})
            await _settle(app, "cc")
            results = await asyncio.gather(
                *(app.call("cloudformation", "UpdateStack", {"StackName": "cc", "TemplateBody": template % f"v{i}"}) for i in (1, 2)),
                return_exceptions=True,
            )
            errors = [r for r in results if isinstance(r, AwsError)]
            assert len(errors) == 1 and "can not be updated" in errors[0].message
            assert (await _settle(app, "cc"))["StackStatus"] == "UPDATE_COMPLETE"
        finally:
            await app.stop()

    run(scenario())
