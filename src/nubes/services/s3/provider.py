"""The S3 provider: buckets, objects, listings, multipart uploads, notifications,
lifecycle, presigned POST and CORS, assembled from their mixins."""

from __future__ import annotations

import re

from nubes.aws.protocol.types import WireResponse
from nubes.services.base import HttpRequest
from nubes.services.s3.bucket_extras import BucketExtraOps
from nubes.services.s3.lifecycle import LifecycleOps
from nubes.services.s3.listing import ListingOps
from nubes.services.s3.multipart import MultipartOps
from nubes.services.s3.notify import NotifyOps
from nubes.services.s3.web import WebOps
from nubes.services.s3.website import WebsiteOps


class S3Provider(MultipartOps, LifecycleOps, WebOps, WebsiteOps, ListingOps, BucketExtraOps, NotifyOps):
    """Amazon S3."""

    async def start(self) -> None:
        """Open the blob store and start the notification, lifecycle and cleanup tasks."""
        _ = self.blobs
        self.app.spawn(self.deliver_forever(), name="s3-notifications")
        self.app.spawn(self.lifecycle_forever(), name="s3-lifecycle")
        self.app.spawn(self.clean_orphans(), name="s3-orphans")

    async def http_lifecycle_run(self, request: HttpRequest, match: re.Match[str]) -> WireResponse:
        """``POST /_nubes/s3/lifecycle``: run the lifecycle sweep now (tests, operators)."""
        done = await self.sweep_lifecycle()
        return WireResponse(200, {"Content-Type": "application/json"}, f'{{"expired": {done}}}'.encode())
