"""AWS::S3::Bucket (Ref: bucket name; GetAtt Arn, DomainName, RegionalDomainName,
DualStackDomainName, WebsiteURL) and AWS::S3::BucketPolicy.

CloudFormation spells several bucket configurations differently from the S3 API
(``CorsRules`` vs ``CORSRules``, ``LambdaConfigurations`` vs
``LambdaFunctionConfigurations``); the converters below translate them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nubes.aws.errors import AwsError
from nubes.deploy.resources.base import (
    HandlerContext,
    Outcome,
    ResourceHandler,
    as_bool,
    as_int,
    ignore_missing,
    json_text,
    tags_list,
)

_BUCKET_MISSING = ("NoSuchBucket",)


def _filter(value: dict[str, Any] | None) -> dict[str, Any] | None:
    rules = ((value or {}).get("S3Key") or {}).get("Rules")
    return {"Key": {"FilterRules": [{"Name": r["Name"], "Value": r["Value"]} for r in rules]}} if rules else None


def notification_configuration(config: dict[str, Any]) -> dict[str, Any]:
    """CloudFormation's NotificationConfiguration → PutBucketNotificationConfiguration's."""
    out: dict[str, Any] = {}
    kinds = (("LambdaConfigurations", "LambdaFunctionConfigurations", "Function", "LambdaFunctionArn"),
             ("QueueConfigurations", "QueueConfigurations", "Queue", "QueueArn"),
             ("TopicConfigurations", "TopicConfigurations", "Topic", "TopicArn"))
    for cfn_key, api_key, target, arn_key in kinds:
        items = []
        for item in config.get(cfn_key) or []:
            entry: dict[str, Any] = {arn_key: item[target], "Events": [item["Event"]]}
            flt = _filter(item.get("Filter"))
            if flt:
                entry["Filter"] = flt
            items.append(entry)
        if items:
            out[api_key] = items
    if as_bool((config.get("EventBridgeConfiguration") or {}).get("EventBridgeEnabled", False)):
        out["EventBridgeConfiguration"] = {}
    return out


def cors_configuration(config: dict[str, Any]) -> dict[str, Any]:
    """``CorsRules`` → ``CORSRules`` with the API's member names."""
    rules = []
    for rule in config.get("CorsRules") or []:
        out: dict[str, Any] = {"AllowedMethods": rule["AllowedMethods"], "AllowedOrigins": rule["AllowedOrigins"]}
        for cfn_key, api_key in (("AllowedHeaders", "AllowedHeaders"), ("ExposedHeaders", "ExposeHeaders"), ("Id", "ID")):
            if cfn_key in rule:
                out[api_key] = rule[cfn_key]
        if "MaxAge" in rule:
            out["MaxAgeSeconds"] = as_int(rule["MaxAge"])
        rules.append(out)
    return {"CORSRules": rules}


def lifecycle_configuration(config: dict[str, Any]) -> dict[str, Any]:
    """The common lifecycle rule forms (expiration, noncurrent expiration, aborts)."""
    rules = []
    for rule in config.get("Rules") or []:
        out: dict[str, Any] = {"Status": rule.get("Status", "Enabled"), "Filter": {"Prefix": rule.get("Prefix", "")}}
        if "Id" in rule:
            out["ID"] = rule["Id"]
        if "ExpirationInDays" in rule:
            out["Expiration"] = {"Days": as_int(rule["ExpirationInDays"])}
        if "ExpirationDate" in rule:
            out["Expiration"] = {"Date": rule["ExpirationDate"]}
        if "NoncurrentVersionExpirationInDays" in rule:
            out["NoncurrentVersionExpiration"] = {"NoncurrentDays": as_int(rule["NoncurrentVersionExpirationInDays"])}
        if "NoncurrentVersionExpiration" in rule:
            out["NoncurrentVersionExpiration"] = {"NoncurrentDays": as_int(rule["NoncurrentVersionExpiration"]["NoncurrentDays"])}
        if "AbortIncompleteMultipartUpload" in rule:
            out["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": as_int(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])}
        rules.append(out)
    return {"Rules": rules}


def encryption_configuration(config: dict[str, Any]) -> dict[str, Any]:
    """``ServerSideEncryptionByDefault`` is ``ApplyServerSideEncryptionByDefault`` in the API."""
    rules = []
    for rule in config.get("ServerSideEncryptionConfiguration") or []:
        out: dict[str, Any] = {}
        if "ServerSideEncryptionByDefault" in rule:
            out["ApplyServerSideEncryptionByDefault"] = dict(rule["ServerSideEncryptionByDefault"])
        if "BucketKeyEnabled" in rule:
            out["BucketKeyEnabled"] = as_bool(rule["BucketKeyEnabled"])
        rules.append(out)
    return {"Rules": rules}


def website_configuration(config: dict[str, Any]) -> dict[str, Any]:
    """``IndexDocument``/``ErrorDocument`` strings → the API's objects."""
    out: dict[str, Any] = {}
    if "IndexDocument" in config:
        out["IndexDocument"] = {"Suffix": config["IndexDocument"]}
    if "ErrorDocument" in config:
        out["ErrorDocument"] = {"Key": config["ErrorDocument"]}
    if "RedirectAllRequestsTo" in config:
        out["RedirectAllRequestsTo"] = config["RedirectAllRequestsTo"]
    return out


#: property → (put operation, its parameter, converter, delete operation or None)
_CONFIGS: dict[str, tuple[str, str, Callable[[Any], Any], str | None]] = {
    "VersioningConfiguration": ("PutBucketVersioning", "VersioningConfiguration", lambda v: {"Status": v["Status"]}, None),
    "BucketEncryption": ("PutBucketEncryption", "ServerSideEncryptionConfiguration", encryption_configuration,
                         "DeleteBucketEncryption"),
    "PublicAccessBlockConfiguration": ("PutPublicAccessBlock", "PublicAccessBlockConfiguration",
                                       lambda v: {k: as_bool(x) for k, x in v.items()}, "DeletePublicAccessBlock"),
    "CorsConfiguration": ("PutBucketCors", "CORSConfiguration", cors_configuration, "DeleteBucketCors"),
    "LifecycleConfiguration": ("PutBucketLifecycleConfiguration", "LifecycleConfiguration", lifecycle_configuration, "DeleteBucketLifecycle"),
    "NotificationConfiguration": ("PutBucketNotificationConfiguration", "NotificationConfiguration", notification_configuration, None),
    "WebsiteConfiguration": ("PutBucketWebsite", "WebsiteConfiguration", website_configuration, "DeleteBucketWebsite"),
    "OwnershipControls": ("PutBucketOwnershipControls", "OwnershipControls", lambda v: v, "DeleteBucketOwnershipControls"),
    "Tags": ("PutBucketTagging", "Tagging", lambda v: {"TagSet": tags_list(v)}, "DeleteBucketTagging"),
}  # fmt: skip


class Bucket(ResourceHandler):
    """A bucket and its configurations; only the name forces replacement."""

    type_name = "AWS::S3::Bucket"
    attributes = ("Arn", "DomainName", "RegionalDomainName", "DualStackDomainName", "WebsiteURL")
    replace_on = frozenset({"BucketName", "ObjectLockEnabled"})
    name_property = "BucketName"

    def _outcome(self, ctx: HandlerContext, name: str) -> Outcome:
        return Outcome(name, {
            "Arn": f"arn:aws:s3:::{name}",
            "DomainName": f"{name}.s3.amazonaws.com",
            "RegionalDomainName": f"{name}.s3.{ctx.region}.amazonaws.com",
            "DualStackDomainName": f"{name}.s3.dualstack.{ctx.region}.amazonaws.com",
            "WebsiteURL": f"http://{name}.s3-website-{ctx.region}.amazonaws.com",
        })  # fmt: skip

    async def _configure(self, ctx: HandlerContext, name: str, props: dict[str, Any], old: dict[str, Any]) -> None:
        for key, (put, param, convert, remove) in _CONFIGS.items():
            if props.get(key) == old.get(key):
                continue
            if key in props:
                await ctx.call("s3", put, {"Bucket": name, param: convert(props[key])})
            elif key == "VersioningConfiguration":
                await ctx.call("s3", put, {"Bucket": name, param: {"Status": "Suspended"}})
            elif key == "NotificationConfiguration":
                await ctx.call("s3", put, {"Bucket": name, param: {}})
            elif remove is not None:
                await ctx.call("s3", remove, {"Bucket": name})

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        name = props.get("BucketName") or ctx.physical_name(63).lower()
        params: dict[str, Any] = {"Bucket": name}
        if ctx.region != "us-east-1":
            params["CreateBucketConfiguration"] = {"LocationConstraint": ctx.region}
        if as_bool(props.get("ObjectLockEnabled", False)):
            params["ObjectLockEnabledForBucket"] = True
        await ctx.call("s3", "CreateBucket", params)
        await self._configure(ctx, name, props, {})
        return self._outcome(ctx, name)

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        await self._configure(ctx, physical_id, props, old)
        return self._outcome(ctx, physical_id)

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        try:
            await ctx.call("s3", "DeleteBucket", {"Bucket": physical_id})
        except AwsError as exc:
            ignore_missing(exc, *_BUCKET_MISSING)


class BucketPolicy(ResourceHandler):
    """A bucket's policy; Ref is the bucket name."""

    type_name = "AWS::S3::BucketPolicy"
    attributes = ()
    replace_on = frozenset({"Bucket"})

    async def create(self, ctx: HandlerContext, props: dict[str, Any]) -> Outcome:
        await ctx.call("s3", "PutBucketPolicy", {"Bucket": props["Bucket"], "Policy": json_text(props["PolicyDocument"])})
        return Outcome(str(props["Bucket"]))

    async def update(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any], old: dict[str, Any]) -> Outcome:
        return await self.create(ctx, props)

    async def delete(self, ctx: HandlerContext, physical_id: str, props: dict[str, Any]) -> None:
        try:
            await ctx.call("s3", "DeleteBucketPolicy", {"Bucket": props.get("Bucket", physical_id)})
        except AwsError as exc:
            ignore_missing(exc, *_BUCKET_MISSING)


HANDLERS = (Bucket, BucketPolicy)
