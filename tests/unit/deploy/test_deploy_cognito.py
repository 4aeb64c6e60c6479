"""Cognito's OAuth pieces from a template: a domain, a resource server with custom
scopes, and a machine client granted one of them (real App, real store)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from nubes.app import App
from nubes.aws.errors import AwsError
from nubes.settings import Settings

TEMPLATE = """
Parameters:
  Extra: {Type: String, Default: write}
Resources:
  Pool: {Type: AWS::Cognito::UserPool, Properties: {UserPoolName: m2m}}
  Domain: {Type: AWS::Cognito::UserPoolDomain, Properties: {UserPoolId: !Ref Pool, Domain: m2m-orders}}
  Orders:
    Type: AWS::Cognito::UserPoolResourceServer
    Properties:
      UserPoolId: !Ref Pool
      Identifier: orders
      Name: Orders API
      Scopes:
        - {ScopeName: read, ScopeDescription: read orders}
        - {ScopeName: !Ref Extra, ScopeDescription: !Sub "${Extra} orders"}
  Worker:
    Type: AWS::Cognito::UserPoolClient
    Properties:
      UserPoolId: !Ref Pool
      GenerateSecret: true
      AllowedOAuthFlows: [client_credentials]
      AllowedOAuthFlowsUserPoolClient: true
      AllowedOAuthScopes: [!Sub "${Orders}/read"]
Outputs:
  Server: {Value: !Ref Orders}
  Pool: {Value: !Ref Pool}
"""


async def _settle(app: App, name: str) -> dict[str, Any]:
    for _ in range(300):
        stack: dict[str, Any] = (await app.call("cloudformation", "DescribeStacks", {"StackName": name}))["Stacks"][0]
        if not stack["StackStatus"].endswith("_IN_PROGRESS"):
            return stack
        await asyncio.sleep(0.02)
    raise AssertionError("still in progress")


def test_resource_server_created_updated_and_deleted(tmp_path: Path) -> None:
    async def scenario() -> None:
        app = App(Settings(data_dir=tmp_path, tls_port=-1))
        await app.start()
        try:
            await app.call("cloudformation", "CreateStack", {"StackName": "m2m", "TemplateBody": TEMPLATE})
            stack = await _settle(app, "m2m")
            assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
            outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
            assert outputs["Server"] == "orders"
            pool = outputs["Pool"]
            server = (await app.call("cognito-idp", "DescribeResourceServer",
                                     {"UserPoolId": pool, "Identifier": "orders"}))["ResourceServer"]  # fmt: skip
            assert server["Name"] == "Orders API"
            assert sorted(s["ScopeName"] for s in server["Scopes"]) == ["read", "write"]

            await app.call("cloudformation", "UpdateStack", {
                "StackName": "m2m", "UsePreviousTemplate": True,
                "Parameters": [{"ParameterKey": "Extra", "ParameterValue": "admin"}]})  # fmt: skip
            assert (await _settle(app, "m2m"))["StackStatus"] == "UPDATE_COMPLETE"
            server = (await app.call("cognito-idp", "DescribeResourceServer",
                                     {"UserPoolId": pool, "Identifier": "orders"}))["ResourceServer"]  # fmt: skip
            assert sorted(s["ScopeName"] for s in server["Scopes"]) == ["admin", "read"]

            stack_id = stack["StackId"]
            await app.call("cloudformation", "DeleteStack", {"StackName": "m2m"})
            assert (await _settle(app, stack_id))["StackStatus"] == "DELETE_COMPLETE"
            with pytest.raises(AwsError) as gone:
                await app.call("cognito-idp", "DescribeUserPool", {"UserPoolId": pool})
            assert gone.value.code == "ResourceNotFoundException"
        finally:
            await app.stop()

    asyncio.run(scenario())
