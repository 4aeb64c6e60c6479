"""Bucket settings that nubes stores and returns but does not act on: transfer
acceleration, requester pays, logging, replication and the object lock
configuration (tools such as Terraform read all of them on every refresh)."""

from __future__ import annotations

from typing import Any

from nubes.aws.errors import AwsError
from nubes.services.base import RequestContext
from nubes.services.s3.buckets import BucketOps
from nubes.services.s3.models import malformed_xml


class BucketExtraOps(BucketOps):
    """Stored-only bucket settings."""

    async def put_bucket_accelerate_configuration(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        status = (params.get("AccelerateConfiguration") or {}).get("Status")
        if status not in ("Enabled", "Suspended"):
            raise malformed_xml()
        if "." in params["Bucket"]:
            raise AwsError("InvalidRequest", "S3 Transfer Acceleration is not supported for buckets with periods (.) in their names", 400)
        return await self._put_config(ctx, params, "accelerate", status)

    async def get_bucket_accelerate_configuration(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        record = await self.bucket(ctx, params["Bucket"], "s3:GetAccelerateConfiguration")
        return {"Status": record["accelerate"]} if record.get("accelerate") else {}

    async def put_bucket_request_payment(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        payer = (params.get("RequestPaymentConfiguration") or {}).get("Payer")
        if payer not in ("Requester", "BucketOwner"):
            raise malformed_xml()
        return await self._put_config(ctx, params, "payer", payer)

    async def get_bucket_request_payment(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        record = await self.bucket(ctx, params["Bucket"], "s3:GetBucketRequestPayment")
        return {"Payer": record.get("payer") or "BucketOwner"}

    async def put_bucket_logging(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        enabled = (params.get("BucketLoggingStatus") or {}).get("LoggingEnabled")
        if enabled is not None:
            target = str(enabled.get("TargetBucket", ""))
            if not await self._bucket_record(target):
                raise AwsError("InvalidTargetBucketForLogging", "The target bucket for logging does not exist", 400, fields={"TargetBucket": target})
        return await self._put_config(ctx, params, "logging", enabled)

    async def get_bucket_logging(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        record = await self.bucket(ctx, params["Bucket"], "s3:GetBucketLogging")
        return {"LoggingEnabled": record["logging"]} if record.get("logging") else {}

    async def put_bucket_replication(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        record = await self.bucket(ctx, params["Bucket"], "s3:PutReplicationConfiguration")
        if record.get("versioning") != "Enabled":
            raise AwsError("InvalidRequest", "Versioning must be 'Enabled' on the bucket to apply a replication configuration", 400)
        return await self._put_config(ctx, params, "replication", params.get("ReplicationConfiguration") or {})

    async def get_bucket_replication(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        config = await self._get_config(ctx, params, "replication", "ReplicationConfigurationNotFoundError",
                                        "The replication configuration was not found")  # fmt: skip
        return {"ReplicationConfiguration": config}

    async def delete_bucket_replication(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return await self._put_config(ctx, params, "replication", None)

    async def put_object_lock_configuration(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        """Stored only: nubes does not enforce retention or legal holds."""
        record = await self.bucket(ctx, params["Bucket"], "s3:PutBucketObjectLockConfiguration")
        if record.get("versioning") != "Enabled":
            raise AwsError("InvalidBucketState", "Versioning must be 'Enabled' on the bucket to apply a Object Lock configuration", 409)
        return await self._put_config(ctx, params, "object_lock", params.get("ObjectLockConfiguration") or {})

    async def get_object_lock_configuration(self, ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        config = await self._get_config(ctx, params, "object_lock", "ObjectLockConfigurationNotFoundError",
                                        "Object Lock configuration does not exist for this bucket")  # fmt: skip
        return {"ObjectLockConfiguration": config}
