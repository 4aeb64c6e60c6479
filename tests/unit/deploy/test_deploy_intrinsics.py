"""Intrinsic functions, pseudo parameters, Conditions and Mappings."""

from __future__ import annotations

from typing import Any

import pytest

from nubes.aws.errors import AwsError
from nubes.deploy.intrinsics import Evaluator, StackInfo
from nubes.deploy.template import parse_template

STACK = StackInfo("app", "arn:aws:cloudformation:eu-west-1:000000000000:stack/app/1", region="eu-west-1")


class Resources:
    def ref(self, logical_id: str) -> Any:
        return f"phys-{logical_id}"

    def get_att(self, logical_id: str, attribute: str) -> Any:
        return f"{logical_id}.{attribute}"

    def import_value(self, name: str) -> Any:
        if name == "shared":
            return "exported-value"
        raise AwsError("ValidationError", f"No export named {name} found.")


TEMPLATE = parse_template("""
Parameters:
  Env: {Type: String}
  Subnets: {Type: CommaDelimitedList}
Mappings:
  Sizes:
    prod: {mem: 1024}
    dev: {mem: 128}
Conditions:
  IsProd: !Equals [!Ref Env, prod]
  NotProd: !Not [!Condition IsProd]
  Both: !And [!Condition NotProd, !Equals [a, a]]
  Either: !Or [!Condition IsProd, !Condition Both]
Resources:
  Bucket: {Type: AWS::S3::Bucket}
  ProdOnly: {Type: AWS::SNS::Topic, Condition: IsProd}
""")


def ev(env: str = "dev") -> Evaluator:
    return Evaluator(TEMPLATE, {"Env": env, "Subnets": ["a", "b"]}, STACK, Resources())


def test_ref_parameters_pseudo_and_resources() -> None:
    e = ev()
    assert e.evaluate({"Ref": "Env"}) == "dev"
    assert e.evaluate({"Ref": "Subnets"}) == ["a", "b"]
    assert e.evaluate({"Ref": "Bucket"}) == "phys-Bucket"
    assert e.evaluate({"Ref": "AWS::Region"}) == "eu-west-1"
    assert e.evaluate({"Ref": "AWS::AccountId"}) == "000000000000"
    assert e.evaluate({"Ref": "AWS::StackName"}) == "app"
    assert e.evaluate({"Ref": "AWS::StackId"}) == STACK.stack_id
    assert e.evaluate({"Ref": "AWS::Partition"}) == "aws"
    assert e.evaluate({"Ref": "AWS::URLSuffix"}) == "amazonaws.com"
    assert e.evaluate({"Ref": "AWS::NotificationARNs"}) == []


def test_no_value_removes_property_and_list_item() -> None:
    value = {"A": {"Ref": "AWS::NoValue"}, "B": [1, {"Fn::If": ["IsProd", 2, {"Ref": "AWS::NoValue"}]}], "C": 3}
    assert ev().evaluate(value) == {"B": [1], "C": 3}
    assert ev("prod").evaluate(value) == {"B": [1, 2], "C": 3}


def test_conditions() -> None:
    e = ev()
    assert (e.condition("IsProd"), e.condition("NotProd"), e.condition("Both"), e.condition("Either")) == (
        False, True, True, True,
    )
    assert not e.resource_active("ProdOnly")
    p = ev("prod")
    assert p.condition("IsProd") and not p.condition("Both") and p.condition("Either")
    assert p.resource_active("ProdOnly")


def test_ref_to_resource_removed_by_condition_is_unresolved() -> None:
    with pytest.raises(AwsError) as err:
        ev().evaluate({"Ref": "ProdOnly"})
    assert err.value.message == "Template format error: Unresolved resource dependencies [ProdOnly] in the Resources block of the template"
    # ...but the untaken branch of Fn::If may name it.
    assert ev().evaluate({"Fn::If": ["IsProd", {"Ref": "ProdOnly"}, "none"]}) == "none"


def test_sub() -> None:
    e = ev()
    assert e.evaluate({"Fn::Sub": "${AWS::StackName}-${Env}-${Bucket}-${Bucket.Arn}-${!Literal}"}) == (
        "app-dev-phys-Bucket-Bucket.Arn-${Literal}"
    )
    assert e.evaluate({"Fn::Sub": ["${X}/${Env}", {"X": {"Ref": "Bucket"}}]}) == "phys-Bucket/dev"
    with pytest.raises(AwsError) as err:
        e.evaluate({"Fn::Sub": "${Subnets}"})
    assert "does not resolve to a string" in err.value.message
    with pytest.raises(AwsError) as err:
        e.evaluate({"Fn::Sub": "${a-b}"})
    assert "variable names in Fn::Sub syntax" in err.value.message


def test_join_select_split_length_json() -> None:
    e = ev()
    assert e.evaluate({"Fn::Join": ["-", ["a", {"Ref": "Env"}, 3]]}) == "a-dev-3"
    assert e.evaluate({"Fn::Select": ["1", {"Fn::Split": [",", "x,y,z"]}]}) == "y"
    assert e.evaluate({"Fn::Length": {"Ref": "Subnets"}}) == 2
    assert e.evaluate({"Fn::ToJsonString": {"k": [1, {"Ref": "Env"}]}}) == '{"k":[1,"dev"]}'
    with pytest.raises(AwsError) as err:
        e.evaluate({"Fn::Select": [5, ["a"]]})
    assert err.value.message == "Template error: Fn::Select cannot select nonexistent value at index 5"


def test_find_in_map_and_default() -> None:
    e = ev()
    assert e.evaluate({"Fn::FindInMap": ["Sizes", {"Ref": "Env"}, "mem"]}) == 128
    assert e.evaluate({"Fn::FindInMap": ["Sizes", "qa", "mem", {"DefaultValue": 64}]}) == 64
    with pytest.raises(AwsError) as err:
        e.evaluate({"Fn::FindInMap": ["Sizes", "qa", "mem"]})
    assert err.value.message == "Template error: Unable to get mapping for Sizes::qa::mem"


def test_import_azs_base64_cidr_getatt() -> None:
    e = ev()
    assert e.evaluate({"Fn::ImportValue": "shared"}) == "exported-value"
    assert e.evaluate({"Fn::GetAZs": ""}) == ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
    assert e.evaluate({"Fn::Base64": "hi"}) == "aGk="
    assert e.evaluate({"Fn::Cidr": ["10.0.0.0/16", 3, 8]}) == ["10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24"]
    assert e.evaluate({"Fn::GetAtt": "Bucket.Arn"}) == "Bucket.Arn"
    with pytest.raises(AwsError) as err:
        e.evaluate({"Fn::GetAtt": ["Nope", "Arn"]})
    assert err.value.message == "Template error: instance of Fn::GetAtt references undefined resource Nope"


def test_unknown_function_and_undefined_condition() -> None:
    with pytest.raises(AwsError) as err:
        ev().evaluate({"Fn::Magic": 1})
    assert err.value.message.startswith("Template format error: Encountered unsupported function: Fn::Magic Supported functions are: [")
    with pytest.raises(AwsError) as err:
        ev().evaluate({"Fn::If": ["Missing", 1, 2]})
    assert err.value.message == "Template error: unresolved condition dependency Missing in Fn::If"


def test_conditions_cannot_reference_resources() -> None:
    template = parse_template("Conditions:\n  C: !Equals [!Ref Bucket, x]\nResources:\n  Bucket: {Type: AWS::S3::Bucket}\n")
    with pytest.raises(AwsError) as err:
        Evaluator(template, {}, STACK, Resources()).condition("C")
    assert err.value.message == (
        "Template format error: Unresolved dependencies [Bucket]. Cannot reference resources in the Conditions block of the template"
    )


def test_equals_compares_as_strings() -> None:
    assert ev().evaluate({"Fn::Equals": [3, "3"]}) is True
    assert ev().evaluate({"Fn::Equals": [True, "true"]}) is True
    assert ev().evaluate({"Fn::Equals": ["a", "b"]}) is False


def test_rules_refuse_bad_parameter_combinations() -> None:
    from nubes.deploy.rules import check_rules

    template = parse_template("""
Parameters:
  Env: {Type: String}
  Size: {Type: String}
  Users: {Type: CommaDelimitedList}
Rules:
  ProdIsLarge:
    RuleCondition: !Equals [!Ref Env, prod]
    Assertions:
      - Assert: !Contains [[large, xlarge], !Ref Size]
        AssertDescription: Production needs a large size
  KnownUsers:
    Assertions:
      - Assert: !EachMemberIn [!Ref Users, [ann, bob]]
Resources:
  Bucket: {Type: AWS::S3::Bucket}
""")

    def check(env: str, size: str, users: list[str]) -> None:
        check_rules(template, Evaluator(template, {"Env": env, "Size": size, "Users": users}, STACK))

    check("dev", "small", ["ann"])
    check("prod", "large", ["ann", "bob"])
    with pytest.raises(AwsError) as err:
        check("prod", "small", ["ann"])
    assert (err.value.code, err.value.message) == ("ValidationError", "Production needs a large size")
    with pytest.raises(AwsError) as err:
        check("dev", "small", ["eve"])
    assert err.value.message == "Assertion of rule KnownUsers failed"
