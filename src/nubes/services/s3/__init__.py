"""Amazon S3: buckets, objects streamed to the blob store, versions, multipart
uploads, listings, notifications, lifecycle, presigned URLs/POST and CORS."""

from nubes.services.base import HttpRoute, ServiceSpec
from nubes.services.s3.provider import S3Provider
from nubes.services.s3.website import WEBSITE_HOST, WEBSITE_PATH

SERVICE = ServiceSpec(
    models=("s3",),
    provider=S3Provider,
    http_routes=(
        HttpRoute("http_lifecycle_run", path=r"/_nubes/s3/lifecycle$", methods=("POST",)),
        # static website endpoints (before the REST API claims the host as a bucket's)
        HttpRoute("http_website", host=WEBSITE_HOST, methods=("GET", "HEAD")),
        HttpRoute("http_website", path=WEBSITE_PATH, methods=("GET", "HEAD")),
        # browser form uploads: POST /bucket (or / on a bucket's virtual host)
        HttpRoute(
            "http_post_object",
            path=r"/(?!_nubes/)[^/]*/?$",
            methods=("POST",),
            content_type="multipart/form-data",
            unsigned_only=True,
        ),
        HttpRoute("http_preflight", path=r"/(?!_nubes/)", methods=("OPTIONS",), unsigned_only=True),
    ),
)
