"""Buckets and their configurations: versioning, CORS, lifecycle, tagging, policy,
public access block, encryption, ownership controls and ACLs."""

from __future__ import annotations

from typing import Any

import orjson

from nubes.aws.errors import AwsError
from nubes.services.base import RequestContext
from nubes.services.s3.base import S3Base
from nubes.services.s3.models import (
    BUCKETS,
    OBJECTS,
    OWNER,
    PARTS,
    UPLOADS,
    VERSIONS,
    Record,
    check_bucket_name,
    config_missing,
    dump,
    load,
    malformed_xml,
    no_such_bucket,
    now,
)
from nubes.storage.base import Txn

DEFAULT_ENCRYPTION = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": False}]}
_CANNED_ACLS = ("private", "public-read", "public-read-write", "authenticated-read", "log-delivery-write",
                "bucket-owner-read", "bucket-owner-full-control", "aws-exec-read")  # fmt: skip
_ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


def acl_grants(acl: str | None) -> list[dict[str, Any]]:
    """The grants a canned ACL stands for, as GetBucketAcl/GetObjectAcl list them."""
    owner = {"Grantee": {"Type": "CanonicalUser", **OWNER}, "Permission": "FULL_CONTROL"}
    grants = [owner]
    if acl in ("public-read", "public-read-write"):
        grants.append({"Grantee": {"Type": "Group", "URI": _ALL_USERS}, "Permission": "READ"})
    if acl == "public-read-write":
        grants.append({"Grantee": {"Type": "Group", "URI": _ALL_USERS}, "Permission": "WRITE"})
    return grants


def acl_from_policy(policy: dict[str, Any] | None) -> str:
    """A canned ACL name for an AccessControlPolicy document (public-read if AllUsers may read)."""
    perms = {
        g.get("Permission")
        for g in (policy or {}).get("Grants") or []
        if (g.get("Grantee") or {}).get("URI") == _ALL_USERS
    }
    if "WRITE" in perms:
        return "public-read-write"
    return "public-read" if "READ" in perms else "private"


def check_canned_acl(acl: str | None) -> None:
    if acl is not None and acl not in _CANNED_ACLS:
        raise AwsError("InvalidArgument", "", 400, fields={"ArgumentName": "x-amz-acl", "ArgumentValue": acl})


class BucketOps(S3Base):
    """Bucket operations."""

    async def create_bucket(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Create a bucket in the request's region."""
        name: str = params["Bucket"]
        check_bucket_name(name)
        check_canned_acl(params.get("ACL"))
        constraint = (params.get("CreateBucketConfiguration") or {}).get("LocationConstraint")
        region = ctx.region
        if constraint is not None and constraint != region:
            if constraint == "us-east-1" == region:
                raise AwsError("InvalidLocationConstraint", "The specified location-constraint is not valid", 400)
            raise AwsError("IllegalLocationConstraintException",
                           f"The {constraint} location constraint is incompatible for the region specific endpoint this request was sent to.", 400)  # fmt: skip
        if constraint == "us-east-1":
            raise AwsError("InvalidLocationConstraint", "The specified location-constraint is not valid", 400, fields={"LocationConstraint": constraint})
        if constraint is None and region != "us-east-1":
            raise AwsError("IllegalLocationConstraintException",
                           "The unspecified location constraint is incompatible for the region specific endpoint this request was sent to.", 400)  # fmt: skip
        record: Record = {
            "name": name, "region": region, "created": now(), "versioning": None,
            "acl": params.get("ACL") or "private",
            "ownership": {"Rules": [{"ObjectOwnership": params.get("ObjectOwnership") or "BucketOwnerEnforced"}]},
            "pab": {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True},
        }  # fmt: skip
        if params.get("ObjectLockEnabledForBucket"):
            record["versioning"] = "Enabled"
            record["object_lock"] = {"ObjectLockEnabled": "Enabled"}

        def create(txn: Txn) -> None:
            if not txn.insert(BUCKETS, name.encode(), dump(record)):
                raise AwsError("BucketAlreadyOwnedByYou",
                               "Your previous request to create the named bucket succeeded and you already own it.",
                               409, fields={"BucketName": name})  # fmt: skip

        await self.app.store.write(create)
        self.forget_bucket(name)
        return {"Location": f"/{name}", "BucketArn": f"arn:aws:s3:::{name}"}

    async def delete_bucket(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Delete an empty bucket (aborting its unfinished multipart uploads)."""
        name: str = params["Bucket"]
        await self.bucket(ctx, name, "s3:DeleteBucket")
        prefix = name.encode() + b"\x00"

        def delete(txn: Txn) -> list[str]:
            if txn.scan(OBJECTS, prefix=prefix, limit=1) or txn.scan(VERSIONS, prefix=prefix, limit=1):
                raise AwsError("BucketNotEmpty", "The bucket you tried to delete is not empty", 409, fields={"BucketName": name})
            blobs: list[str] = []
            for key, raw in txn.scan(UPLOADS, prefix=prefix):
                upload = load(raw)
                for _, part in txn.scan(PARTS, prefix=upload["id"].encode() + b"\x00"):
                    blobs.append(load(part)["blob"])
                txn.delete_prefix(PARTS, upload["id"].encode() + b"\x00")
                txn.delete(UPLOADS, key)
            if not txn.delete(BUCKETS, name.encode()):
                raise no_such_bucket(name)
            return blobs

        try:
            await self.discard(await self.app.store.write(delete))
        finally:
            self.forget_bucket(name)
        return {}

    async def list_buckets(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Every bucket, by name, with optional prefix, region filter and paging."""
        if ctx.access_key is None and ctx.http is not None and not self.app.settings.no_auth:
            raise AwsError("AccessDenied", "Access Denied", 403)
        prefix = str(params.get("Prefix") or "")
        start = params.get("ContinuationToken")
        limit = int(params.get("MaxBuckets") or 10000)
        rows = await self.app.store.read(
            lambda txn: txn.scan(BUCKETS, prefix=prefix.encode(), start=(start.encode() + b"\x00") if start else None)
        )
        buckets = [load(raw) for _, raw in rows]
        if params.get("BucketRegion"):
            buckets = [b for b in buckets if b["region"] == params["BucketRegion"]]
        out: dict[str, Any] = {
            "Buckets": [{"Name": b["name"], "CreationDate": b["created"], "BucketRegion": b["region"],
                         "BucketArn": f"arn:aws:s3:::{b['name']}"} for b in buckets[:limit]],
            "Owner": dict(OWNER),
        }  # fmt: skip
        if params.get("Prefix") is not None:
            out["Prefix"] = prefix
        if len(buckets) > limit:
            out["ContinuationToken"] = buckets[limit - 1]["name"]
        return out

    async def head_bucket(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Whether a bucket exists (and its region)."""
        record = await self.bucket(ctx, params["Bucket"], "s3:ListBucket")
        return {"BucketRegion": record["region"], "BucketArn": f"arn:aws:s3:::{record['name']}"}

    async def get_bucket_location(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """The bucket's region (empty for us-east-1, as S3 answers)."""
        record = await self.bucket(ctx, params["Bucket"], "s3:GetBucketLocation")
        region = record["region"]
        # S3's document is a bare root element (botocore reads its text), not the
        # <GetBucketLocationOutput> wrapper the model implies
        text = "" if region == "us-east-1" else region
        body = f'<?xml version="1.0" encoding="UTF-8"?>\n<LocationConstraint xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{text}</LocationConstraint>'
        setattr(ctx, "response_body", body.encode())  # noqa: B010 - optional gateway hook
        ctx.response_headers["Content-Type"] = "application/xml"
        return {} if region == "us-east-1" else {"LocationConstraint": region}

    # -- versioning ---------------------------------------------------------------

    async def put_bucket_versioning(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Enable or suspend versioning (a bucket never goes back to unversioned)."""
        status = (params.get("VersioningConfiguration") or {}).get("Status")
        if status not in ("Enabled", "Suspended"):
            raise malformed_xml()

        def change(record: Record) -> None:
            if record.get("object_lock") and status == "Suspended":
                raise AwsError("InvalidBucketState", "An Object Lock configuration is present on this bucket, so the versioning state cannot be changed.", 409)
            record["versioning"] = status

        await self.update_bucket(ctx, params["Bucket"], change, "s3:PutBucketVersioning")
        return {}

    async def get_bucket_versioning(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        record = await self.bucket(ctx, params["Bucket"], "s3:GetBucketVersioning")
        return {"Status": record["versioning"]} if record.get("versioning") else {}

    # -- simple stored configurations ----------------------------------------------

    async def _put_config(self, ctx: RequestContext, params: dict[str, Any], field: str, value: Any) -> dict[str, Any]:
        def change(record: Record) -> None:
            record[field] = value

        await self.update_bucket(ctx, params["Bucket"], change, "s3:PutBucket")
        return {}

    async def _get_config(self, ctx: RequestContext, params: dict[str, Any], field: str, code: str, message: str) -> Any:
        record = await self.bucket(ctx, params["Bucket"], "s3:GetBucket")
        value = record.get(field)
        if value is None:
            raise config_missing(code, message, params["Bucket"])
        return value

    async def put_bucket_cors(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Store CORS rules (enforced on preflights and browser requests)."""
        rules = (params.get("CORSConfiguration") or {}).get("CORSRules") or []
        for rule in rules:
            bad = set(rule.get("AllowedMethods", [])) - {"GET", "PUT", "POST", "DELETE", "HEAD"}
            if bad:
                raise AwsError("InvalidRequest", f"Found unsupported HTTP method in CORS config. Unsupported method is {sorted(bad)[0]}", 400)
            if not rule.get("AllowedOrigins") or not rule.get("AllowedMethods"):
                raise malformed_xml()
        return await self._put_config(ctx, params, "cors", rules)

    async def get_bucket_cors(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        rules = await self._get_config(ctx, params, "cors", "NoSuchCORSConfiguration", "The CORS configuration does not exist")
        return {"CORSRules": rules}

    async def delete_bucket_cors(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return await self._put_config(ctx, params, "cors", None)

    async def put_bucket_lifecycle_configuration(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Store lifecycle rules; expiration rules are applied by the lifecycle sweep."""
        rules = (params.get("LifecycleConfiguration") or {}).get("Rules") or []
        ids = [r.get("ID") for r in rules if r.get("ID")]
        if len(ids) != len(set(ids)):
            raise AwsError("InvalidArgument", "Rule ID must be unique. Found same ID for more than one rule", 400)
        for rule in rules:
            if rule.get("Status") not in ("Enabled", "Disabled"):
                raise malformed_xml()
            exp = rule.get("Expiration") or {}
            if exp.get("Days") is not None and int(exp["Days"]) <= 0:
                raise AwsError("InvalidArgument", "'Days' for Expiration action must be a positive integer", 400)
        return await self._put_config(ctx, params, "lifecycle", rules)

    async def get_bucket_lifecycle_configuration(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        rules = await self._get_config(ctx, params, "lifecycle", "NoSuchLifecycleConfiguration", "The lifecycle configuration does not exist")
        return {"Rules": rules}

    async def delete_bucket_lifecycle(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return await self._put_config(ctx, params, "lifecycle", None)

    async def put_bucket_tagging(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        tags = (params.get("Tagging") or {}).get("TagSet") or []
        keys = [t["Key"] for t in tags]
        if len(keys) != len(set(keys)):
            raise AwsError("InvalidTag", "Cannot provide multiple Tags with the same key", 400)
        if any(k.lower().startswith("aws:") for k in keys):
            raise AwsError("InvalidTag", "System tags cannot be added/updated by requester", 400)
        return await self._put_config(ctx, params, "tags", tags)

    async def get_bucket_tagging(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        tags = await self._get_config(ctx, params, "tags", "NoSuchTagSet", "The TagSet does not exist")
        return {"TagSet": tags}

    async def delete_bucket_tagging(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return await self._put_config(ctx, params, "tags", None)

    async def put_bucket_policy(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Store a bucket policy (anonymous requests are checked against it)."""
        policy = params.get("Policy")
        if isinstance(policy, bytes):
            policy = policy.decode()
        try:
            doc = orjson.loads(policy or "")
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict) or not str(policy).lstrip().startswith("{"):
            raise AwsError("MalformedPolicy", "Policies must be valid JSON and the first byte must be '{'", 400)
        if "Statement" not in doc:
            raise AwsError("MalformedPolicy", "Missing required field Statement", 400)
        statements = doc["Statement"] if isinstance(doc["Statement"], list) else [doc["Statement"]]
        for st in statements:
            if not isinstance(st, dict) or st.get("Effect") not in ("Allow", "Deny"):
                raise AwsError("MalformedPolicy", "Invalid effect", 400)
            if "Action" not in st and "NotAction" not in st:
                raise AwsError("MalformedPolicy", "Missing required field Action", 400)
            if "Resource" not in st and "NotResource" not in st:
                raise AwsError("MalformedPolicy", "Policy has no resource", 400)
        return await self._put_config(ctx, params, "policy", policy)

    async def get_bucket_policy(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        policy = await self._get_config(ctx, params, "policy", "NoSuchBucketPolicy", "The bucket policy does not exist")
        return {"Policy": policy}

    async def delete_bucket_policy(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return await self._put_config(ctx, params, "policy", None)

    async def get_bucket_policy_status(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        record = await self.bucket(ctx, params["Bucket"], "s3:GetBucketPolicyStatus")
        if not record.get("policy"):
            raise config_missing("NoSuchBucketPolicy", "The bucket policy does not exist", params["Bucket"])
        from nubes.services.s3.base import anonymous_allowed

        public = anonymous_allowed({**record, "pab": {}, "acl": "private"}, "s3:GetObject", "*")
        return {"PolicyStatus": {"IsPublic": public}}

    async def put_public_access_block(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        config = params.get("PublicAccessBlockConfiguration") or {}
        return await self._put_config(ctx, params, "pab", {k: bool(v) for k, v in config.items()})

    async def get_public_access_block(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        config = await self._get_config(ctx, params, "pab", "NoSuchPublicAccessBlockConfiguration",
                                        "The public access block configuration was not found")  # fmt: skip
        return {"PublicAccessBlockConfiguration": config}

    async def delete_public_access_block(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return await self._put_config(ctx, params, "pab", None)

    async def put_bucket_encryption(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        config = params.get("ServerSideEncryptionConfiguration") or {}
        for rule in config.get("Rules") or []:
            alg = (rule.get("ApplyServerSideEncryptionByDefault") or {}).get("SSEAlgorithm")
            if alg not in ("AES256", "aws:kms", "aws:kms:dsse"):
                raise malformed_xml()
        return await self._put_config(ctx, params, "encryption", config)

    async def get_bucket_encryption(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        record = await self.bucket(ctx, params["Bucket"], "s3:GetEncryptionConfiguration")
        return {"ServerSideEncryptionConfiguration": record.get("encryption") or DEFAULT_ENCRYPTION}

    async def delete_bucket_encryption(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return await self._put_config(ctx, params, "encryption", None)

    async def put_bucket_ownership_controls(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        config = params.get("OwnershipControls") or {}
        for rule in config.get("Rules") or []:
            if rule.get("ObjectOwnership") not in ("BucketOwnerPreferred", "ObjectWriter", "BucketOwnerEnforced"):
                raise malformed_xml()
        return await self._put_config(ctx, params, "ownership", config)

    async def get_bucket_ownership_controls(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        config = await self._get_config(ctx, params, "ownership", "OwnershipControlsNotFoundError",
                                        "The bucket ownership controls were not found")  # fmt: skip
        return {"OwnershipControls": config}

    async def delete_bucket_ownership_controls(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return await self._put_config(ctx, params, "ownership", None)

    async def put_bucket_website(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Store a website configuration (nubes does not serve website endpoints)."""
        config = params.get("WebsiteConfiguration") or {}
        if not config.get("IndexDocument") and not config.get("RedirectAllRequestsTo"):
            raise AwsError("InvalidArgument", "A value for IndexDocument Suffix must be provided if RedirectAllRequestsTo is empty", 400)
        return await self._put_config(ctx, params, "website", config)

    async def get_bucket_website(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        config = await self._get_config(ctx, params, "website", "NoSuchWebsiteConfiguration",
                                        "The specified bucket does not have a website configuration")  # fmt: skip
        return dict(config)

    async def delete_bucket_website(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return await self._put_config(ctx, params, "website", None)

    async def put_bucket_acl(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Store a canned ACL (or the one an AccessControlPolicy amounts to)."""
        acl = params.get("ACL")
        check_canned_acl(acl)
        if acl is None:
            acl = acl_from_policy(params.get("AccessControlPolicy"))
        record = await self.bucket(ctx, params["Bucket"], "s3:PutBucketAcl")
        _check_acls_allowed(record, acl)
        return await self._put_config(ctx, params, "acl", acl)

    async def get_bucket_acl(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        record = await self.bucket(ctx, params["Bucket"], "s3:GetBucketAcl")
        return {"Owner": dict(OWNER), "Grants": acl_grants(record.get("acl"))}


def _check_acls_allowed(bucket: Record, acl: str) -> None:
    """BucketOwnerEnforced buckets accept no ACL but ``private``; BlockPublicAcls rejects public ones."""
    rules = (bucket.get("ownership") or {}).get("Rules") or []
    if acl != "private" and any(r.get("ObjectOwnership") == "BucketOwnerEnforced" for r in rules):
        raise AwsError("AccessControlListNotSupported", "The bucket does not allow ACLs", 400)
    if acl.startswith("public") and (bucket.get("pab") or {}).get("BlockPublicAcls"):
        raise AwsError("AccessDenied", "Access Denied", 403)


check_acls_allowed = _check_acls_allowed
