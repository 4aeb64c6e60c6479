"""SAM APIs (HTTP API and REST API events) deployed through CloudFormation and
called over HTTP, then updated and deleted."""

from __future__ import annotations

import json
import urllib.request
import uuid
from typing import Any

from nubes.testing.server import NubesServer

from .stacks import wait_stack

TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Parameters:
  Word: {Type: String, Default: one}
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.12
      Handler: index.handler
      Role: arn:aws:iam::000000000000:role/api
      Environment: {Variables: {WORD: !Ref Word}}
      InlineCode: |
        import json, os
        def handler(event, context):
            path = event.get("rawPath") or event.get("path")
            return {"statusCode": 200, "body": json.dumps({"path": path, "word": os.environ["WORD"]})}
      Events:
        Http: {Type: HttpApi, Properties: {Path: /hello, Method: get}}
        Rest: {Type: Api, Properties: {Path: /hi, Method: get}}
Outputs:
  HttpApi: {Value: !Ref ServerlessHttpApi}
  RestApi: {Value: !Ref ServerlessRestApi}
  HttpUrl: {Value: !Sub "https://${ServerlessHttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/"}
"""


def _wait(cfn: Any, name: str, timeout: float = 60.0) -> dict[str, Any]:
    return wait_stack(cfn, name, timeout)


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def test_sam_http_and_rest_apis(nubes: NubesServer) -> None:
    cfn = nubes.client("cloudformation")
    name = f"apis-{uuid.uuid4().hex[:8]}"
    cfn.create_stack(StackName=name, TemplateBody=TEMPLATE, Capabilities=["CAPABILITY_AUTO_EXPAND"])
    stack = _wait(cfn, name)
    failures = [(e["LogicalResourceId"], e.get("ResourceStatusReason")) for e in cfn.describe_stack_events(StackName=name)["StackEvents"] if "FAILED" in e["ResourceStatus"]]
    assert stack["StackStatus"] == "CREATE_COMPLETE", failures
    out = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    assert out["HttpUrl"] == f"https://{out['HttpApi']}.execute-api.us-east-1.amazonaws.com/"
    http = f"{nubes.endpoint}/_nubes/execute-api/{out['HttpApi']}/hello"
    rest = f"{nubes.endpoint}/_nubes/execute-api/{out['RestApi']}/Prod/hi"
    assert _get(http) == {"path": "/hello", "word": "one"}
    assert _get(rest) == {"path": "/hi", "word": "one"}
    cfn.update_stack(StackName=name, UsePreviousTemplate=True, Capabilities=["CAPABILITY_AUTO_EXPAND"],
                     Parameters=[{"ParameterKey": "Word", "ParameterValue": "two"}])
    assert _wait(cfn, name)["StackStatus"] == "UPDATE_COMPLETE"
    assert _get(http)["word"] == "two"
    stack_id = stack["StackId"]
    cfn.delete_stack(StackName=name)
    assert _wait(cfn, stack_id)["StackStatus"] == "DELETE_COMPLETE"
    assert out["HttpApi"] not in [a["ApiId"] for a in nubes.client("apigatewayv2").get_apis()["Items"]]


WEBSOCKET = """
Resources:
  Fn:
    Type: AWS::Lambda::Function
    Properties:
      Runtime: python3.12
      Handler: index.handler
      Role: arn:aws:iam::000000000000:role/ws
      Code: {ZipFile: "def handler(event, context):\\n    return {'statusCode': 200}\\n"}
  Api:
    Type: AWS::ApiGatewayV2::Api
    Properties: {Name: !Sub "${AWS::StackName}-ws", ProtocolType: WEBSOCKET, RouteSelectionExpression: $request.body.action}
  Integration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationType: AWS_PROXY
      IntegrationUri: !Sub "arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Fn.Arn}/invocations"
  Connect:
    Type: AWS::ApiGatewayV2::Route
    Properties: {ApiId: !Ref Api, RouteKey: $connect, Target: !Sub "integrations/${Integration}"}
  Stage:
    Type: AWS::ApiGatewayV2::Stage
    Properties: {ApiId: !Ref Api, StageName: prod, AutoDeploy: true}
  Invoke:
    Type: AWS::Lambda::Permission
    Properties: {FunctionName: !Ref Fn, Action: lambda:InvokeFunction, Principal: apigateway.amazonaws.com}
Outputs:
  Api: {Value: !Ref Api}
  Endpoint: {Value: !GetAtt Api.ApiEndpoint}
  Route: {Value: !Ref Connect}
  Stage: {Value: !Ref Stage}
"""


def test_websocket_api_resources(nubes: NubesServer) -> None:
    cfn, v2 = nubes.client("cloudformation"), nubes.client("apigatewayv2")
    name = f"ws-{uuid.uuid4().hex[:8]}"
    cfn.create_stack(StackName=name, TemplateBody=WEBSOCKET)
    stack = _wait(cfn, name)
    failures = [(e["LogicalResourceId"], e.get("ResourceStatusReason")) for e in cfn.describe_stack_events(StackName=name)["StackEvents"] if "FAILED" in e["ResourceStatus"]]
    assert stack["StackStatus"] == "CREATE_COMPLETE", failures
    out = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    assert out["Stage"] == "prod" and out["Endpoint"]
    routes = v2.get_routes(ApiId=out["Api"])["Items"]
    assert [(r["RouteId"], r["RouteKey"]) for r in routes] == [(out["Route"], "$connect")]
    assert v2.get_stage(ApiId=out["Api"], StageName="prod")["AutoDeploy"] is True
    stack_id = stack["StackId"]
    cfn.delete_stack(StackName=name)
    assert _wait(cfn, stack_id)["StackStatus"] == "DELETE_COMPLETE"
