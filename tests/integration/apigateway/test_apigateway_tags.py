"""TagResource / UntagResource / GetTags for REST APIs, stages, API keys, usage plans
and HTTP APIs."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from nubes.testing import NubesServer


def test_rest_api_stage_key_and_plan_tags(nubes: NubesServer) -> None:
    gw = nubes.client("apigateway")
    api = gw.create_rest_api(name="tagged", tags={"a": "1"})
    arn = f"arn:aws:apigateway:us-east-1::/restapis/{api['id']}"
    assert gw.get_tags(resourceArn=arn)["tags"] == {"a": "1"}
    gw.tag_resource(resourceArn=arn, tags={"b": "2", "a": "3"})
    gw.untag_resource(resourceArn=arn, tagKeys=["b"])
    assert gw.get_tags(resourceArn=arn)["tags"] == {"a": "3"}
    assert gw.get_rest_api(restApiId=api["id"])["tags"] == {"a": "3"}
    gw.put_method(restApiId=api["id"], resourceId=api["rootResourceId"], httpMethod="GET", authorizationType="NONE")
    gw.create_deployment(restApiId=api["id"], stageName="prod")
    stage_arn = f"{arn}/stages/prod"
    gw.tag_resource(resourceArn=stage_arn, tags={"env": "prod"})
    assert gw.get_tags(resourceArn=stage_arn)["tags"] == {"env": "prod"}
    assert gw.get_stage(restApiId=api["id"], stageName="prod")["tags"] == {"env": "prod"}
    key = gw.create_api_key(name="tk")
    key_arn = f"arn:aws:apigateway:us-east-1::/apikeys/{key['id']}"
    gw.tag_resource(resourceArn=key_arn, tags={"k": "v"})
    assert gw.get_tags(resourceArn=key_arn)["tags"] == {"k": "v"}
    plan = gw.create_usage_plan(name="tp", tags={"p": "1"})
    assert gw.get_tags(resourceArn=f"arn:aws:apigateway:us-east-1::/usageplans/{plan['id']}")["tags"] == {"p": "1"}
    for bad_arn, code in ((f"{arn}/stages/nope", "NotFoundException"), ("arn:aws:s3:::bucket", "BadRequestException"),
                          ("arn:aws:apigateway:us-east-1::/restapis/missing", "NotFoundException")):  # fmt: skip
        with pytest.raises(ClientError) as err:
            gw.tag_resource(resourceArn=bad_arn, tags={"x": "y"})
        assert err.value.response["Error"]["Code"] == code, bad_arn
    with pytest.raises(ClientError) as err:
        gw.tag_resource(resourceArn=arn, tags={"aws:reserved": "y"})
    assert err.value.response["Error"]["Code"] == "BadRequestException"
    assert gw.get_tags(resourceArn=arn)["tags"] == {"a": "3"}


def test_http_api_tags(nubes: NubesServer) -> None:
    v2 = nubes.client("apigatewayv2")
    api = v2.create_api(Name="tagged2", ProtocolType="HTTP", Tags={"a": "1"})
    arn = f"arn:aws:apigateway:us-east-1::/apis/{api['ApiId']}"
    v2.tag_resource(ResourceArn=arn, Tags={"b": "2"})
    assert v2.get_tags(ResourceArn=arn)["Tags"] == {"a": "1", "b": "2"}
    v2.untag_resource(ResourceArn=arn, TagKeys=["a"])
    assert v2.get_tags(ResourceArn=arn)["Tags"] == {"b": "2"}
    assert v2.get_api(ApiId=api["ApiId"])["Tags"] == {"b": "2"}
    v2.create_stage(ApiId=api["ApiId"], StageName="dev")
    v2.tag_resource(ResourceArn=f"{arn}/stages/dev", Tags={"s": "1"})
    assert v2.get_stage(ApiId=api["ApiId"], StageName="dev")["Tags"] == {"s": "1"}
    with pytest.raises(ClientError) as err:
        v2.get_tags(ResourceArn="arn:aws:apigateway:us-east-1::/apis/nope")
    assert err.value.response["Error"]["Code"] == "NotFoundException"
