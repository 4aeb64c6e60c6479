"""S3 buckets and their configurations through boto3: naming rules, location,
versioning, CORS, lifecycle, tagging, policy, public access block, encryption,
ownership controls, ACLs."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from nubes.testing.server import NubesServer


def _name(prefix: str = "bkt") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def s3(nubes: NubesServer) -> Any:
    return nubes.client("s3")


def _code(err: pytest.ExceptionInfo[ClientError]) -> str:
    return str(err.value.response["Error"]["Code"])


def test_create_list_head_delete(s3: Any) -> None:
    name = _name()
    assert s3.create_bucket(Bucket=name)["Location"] == f"/{name}"
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert s3.head_bucket(Bucket=name)["BucketRegion"] == "us-east-1"
    assert s3.get_bucket_location(Bucket=name)["LocationConstraint"] is None
    with pytest.raises(ClientError) as err:
        s3.create_bucket(Bucket=name)
    assert _code(err) == "BucketAlreadyOwnedByYou"
    s3.put_object(Bucket=name, Key="k", Body=b"x")
    with pytest.raises(ClientError) as err:
        s3.delete_bucket(Bucket=name)
    assert _code(err) == "BucketNotEmpty"
    s3.delete_object(Bucket=name, Key="k")
    s3.delete_bucket(Bucket=name)
    with pytest.raises(ClientError) as err:
        s3.head_bucket(Bucket=name)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as err:
        s3.delete_bucket(Bucket=name)
    assert _code(err) == "NoSuchBucket"


def test_other_region(nubes: NubesServer) -> None:
    s3 = nubes.client("s3", region_name="eu-west-1")
    name = _name()
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    assert s3.head_bucket(Bucket=name)["BucketRegion"] == "eu-west-1"
    assert s3.get_bucket_location(Bucket=name)["LocationConstraint"] == "eu-west-1"
    with pytest.raises(ClientError) as err:
        s3.create_bucket(Bucket=_name())
    assert _code(err) == "IllegalLocationConstraintException"
    listed = nubes.client("s3").list_buckets(BucketRegion="eu-west-1")["Buckets"]
    assert [b["Name"] for b in listed if b["Name"] == name] == [name]


@pytest.mark.parametrize(
    "bad",
    ["ab", "Upper-case", "under_score", "-starts-with-dash", "ends-with-dash-", "two..dots", "192.168.1.1", "x" * 64, "xn--punycode", "dot-.dash"],
)
def test_bucket_naming_rules(s3: Any, bad: str) -> None:
    with pytest.raises(ClientError) as err:
        s3.create_bucket(Bucket=bad)
    assert _code(err) == "InvalidBucketName"


def test_versioning_configuration(s3: Any) -> None:
    name = _name()
    s3.create_bucket(Bucket=name)
    assert "Status" not in s3.get_bucket_versioning(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket=name)["Status"] == "Enabled"
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Suspended"})
    assert s3.get_bucket_versioning(Bucket=name)["Status"] == "Suspended"


def test_stored_configurations(s3: Any) -> None:
    name = _name()
    s3.create_bucket(Bucket=name)
    for getter, code in [
        (s3.get_bucket_cors, "NoSuchCORSConfiguration"),
        (s3.get_bucket_lifecycle_configuration, "NoSuchLifecycleConfiguration"),
        (s3.get_bucket_tagging, "NoSuchTagSet"),
        (s3.get_bucket_policy, "NoSuchBucketPolicy"),
    ]:
        with pytest.raises(ClientError) as err:
            getter(Bucket=name)
        assert _code(err) == code
    cors = [{"AllowedOrigins": ["https://app.example"], "AllowedMethods": ["GET", "PUT"], "AllowedHeaders": ["*"], "MaxAgeSeconds": 300}]
    s3.put_bucket_cors(Bucket=name, CORSConfiguration={"CORSRules": cors})
    assert s3.get_bucket_cors(Bucket=name)["CORSRules"] == cors
    rules = [{"ID": "old", "Status": "Enabled", "Filter": {"Prefix": "tmp/"}, "Expiration": {"Days": 7}}]
    s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": rules})
    assert s3.get_bucket_lifecycle_configuration(Bucket=name)["Rules"] == rules
    s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": [{"Key": "team", "Value": "a"}]})
    assert s3.get_bucket_tagging(Bucket=name)["TagSet"] == [{"Key": "team", "Value": "a"}]
    policy = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{name}/*"}]})
    s3.put_bucket_policy(Bucket=name, Policy=policy)
    assert json.loads(s3.get_bucket_policy(Bucket=name)["Policy"]) == json.loads(policy)
    pab = {"BlockPublicAcls": True, "IgnorePublicAcls": False, "BlockPublicPolicy": True, "RestrictPublicBuckets": False}
    s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=pab)
    assert s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"] == pab
    enc = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "alias/x"}, "BucketKeyEnabled": True}]}
    assert s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration=enc)
    assert s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"] == enc
    assert s3.get_bucket_ownership_controls(Bucket=name)["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    s3.put_bucket_ownership_controls(Bucket=name, OwnershipControls={"Rules": [{"ObjectOwnership": "ObjectWriter"}]})
    assert s3.get_bucket_ownership_controls(Bucket=name)["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "ObjectWriter"}]
    site = {"IndexDocument": {"Suffix": "index.html"}, "ErrorDocument": {"Key": "404.html"}}
    s3.put_bucket_website(Bucket=name, WebsiteConfiguration=site)
    got = s3.get_bucket_website(Bucket=name)
    assert got["IndexDocument"] == site["IndexDocument"] and got["ErrorDocument"] == site["ErrorDocument"]
    s3.delete_bucket_website(Bucket=name)
    with pytest.raises(ClientError) as err:
        s3.get_bucket_website(Bucket=name)
    assert _code(err) == "NoSuchWebsiteConfiguration"
    for deleter in (s3.delete_bucket_cors, s3.delete_bucket_lifecycle, s3.delete_bucket_tagging, s3.delete_bucket_policy):
        deleter(Bucket=name)
    with pytest.raises(ClientError) as err:
        s3.get_bucket_cors(Bucket=name)
    assert _code(err) == "NoSuchCORSConfiguration"


def test_settings_tools_read(s3: Any) -> None:
    name = _name()
    s3.create_bucket(Bucket=name)
    assert "Status" not in s3.get_bucket_accelerate_configuration(Bucket=name)
    s3.put_bucket_accelerate_configuration(Bucket=name, AccelerateConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_accelerate_configuration(Bucket=name)["Status"] == "Enabled"
    assert s3.get_bucket_request_payment(Bucket=name)["Payer"] == "BucketOwner"
    s3.put_bucket_request_payment(Bucket=name, RequestPaymentConfiguration={"Payer": "Requester"})
    assert s3.get_bucket_request_payment(Bucket=name)["Payer"] == "Requester"
    assert "LoggingEnabled" not in s3.get_bucket_logging(Bucket=name)
    s3.put_bucket_logging(Bucket=name, BucketLoggingStatus={"LoggingEnabled": {"TargetBucket": name, "TargetPrefix": "logs/"}})
    assert s3.get_bucket_logging(Bucket=name)["LoggingEnabled"]["TargetPrefix"] == "logs/"
    for getter, code in ((s3.get_bucket_replication, "ReplicationConfigurationNotFoundError"),
                         (s3.get_object_lock_configuration, "ObjectLockConfigurationNotFoundError")):  # fmt: skip
        with pytest.raises(ClientError) as err:
            getter(Bucket=name)
        assert _code(err) == code
    with pytest.raises(ClientError) as err:
        s3.put_object_lock_configuration(Bucket=name, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"})
    assert _code(err) == "InvalidBucketState"
    locked = _name()
    s3.create_bucket(Bucket=locked, ObjectLockEnabledForBucket=True)
    assert s3.get_bucket_versioning(Bucket=locked)["Status"] == "Enabled"
    assert s3.get_object_lock_configuration(Bucket=locked)["ObjectLockConfiguration"]["ObjectLockEnabled"] == "Enabled"


def test_bad_configurations(s3: Any) -> None:
    name = _name()
    s3.create_bucket(Bucket=name)
    for bad in ("not json", '{"Statement": 5}', '{"Statement": [{"Effect": "Maybe", "Action": "s3:*", "Resource": "*"}]}',
                '{"Statement": [{"Effect": "Allow", "Resource": "*"}]}'):  # fmt: skip
        with pytest.raises(ClientError) as err:
            s3.put_bucket_policy(Bucket=name, Policy=bad)
        assert _code(err) == "MalformedPolicy"
    with pytest.raises(ClientError) as err:
        s3.put_bucket_cors(Bucket=name, CORSConfiguration={"CORSRules": [{"AllowedOrigins": ["*"], "AllowedMethods": ["PATCH"]}]})
    assert _code(err) == "InvalidRequest"
    with pytest.raises(ClientError) as err:
        s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": [{"Key": "a", "Value": "1"}, {"Key": "a", "Value": "2"}]})
    assert _code(err) == "InvalidTag"


def test_expected_bucket_owner(s3: Any) -> None:
    name = _name()
    s3.create_bucket(Bucket=name)
    s3.head_bucket(Bucket=name, ExpectedBucketOwner="000000000000")
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=name, Key="k", Body=b"x", ExpectedBucketOwner="111111111111")
    assert _code(err) == "AccessDenied"


def test_bucket_acl(s3: Any) -> None:
    name = _name()
    s3.create_bucket(Bucket=name)
    grants = s3.get_bucket_acl(Bucket=name)["Grants"]
    assert [g["Permission"] for g in grants] == ["FULL_CONTROL"]
    with pytest.raises(ClientError) as err:
        s3.put_bucket_acl(Bucket=name, ACL="public-read")
    assert _code(err) == "AccessControlListNotSupported"
    s3.put_bucket_ownership_controls(Bucket=name, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerPreferred"}]})
    s3.delete_public_access_block(Bucket=name)
    s3.put_bucket_acl(Bucket=name, ACL="public-read")
    perms = {g["Permission"] for g in s3.get_bucket_acl(Bucket=name)["Grants"]}
    assert perms == {"FULL_CONTROL", "READ"}


def test_resource_api(nubes: NubesServer) -> None:
    s3 = nubes.resource("s3")
    bucket = s3.Bucket(_name())
    bucket.create()
    bucket.put_object(Key="a/1", Body=b"one")
    bucket.put_object(Key="a/2", Body=b"two")
    assert sorted(o.key for o in bucket.objects.filter(Prefix="a/")) == ["a/1", "a/2"]
    assert s3.Object(bucket.name, "a/2").get()["Body"].read() == b"two"
    bucket.objects.all().delete()
    bucket.delete()
    assert bucket.name not in [b.name for b in s3.buckets.all()]
