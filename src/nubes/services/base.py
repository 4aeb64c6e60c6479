"""What a service is to the rest of nubes.

Each ``services/<name>/__init__.py`` exposes ``SERVICE = ServiceSpec(...)``; the
registry discovers them, so adding a service touches no central file.

A provider has one ``async`` method per implemented operation, named after it in
snake_case (``GetParameter`` → ``get_parameter``), taking the request context and
the parsed input (a dict shaped like the botocore input shape, with ``bytes`` for
blobs and ``datetime`` for timestamps) and returning the output dict. Errors are
raised as :class:`nubes.aws.errors.AwsError`. Operations without a method answer
with a ``NotImplemented`` error naming them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nubes.app import App


@dataclass
class HttpRequest:
    """The raw HTTP request, for services that need more than the parsed input
    (S3 streams bodies, API Gateway forwards whole requests)."""

    method: str
    path: str
    query_string: bytes
    headers: Mapping[str, str]  # lower-cased names
    body: bytes
    client_ip: str = "127.0.0.1"
    #: the path as the client sent it, percent-escapes intact (what SigV4 signs);
    #: empty when the request was made in-process
    raw_path: str = ""
    #: ``https`` when the request came through the TLS listener
    scheme: str = "http"


@dataclass
class RequestContext:
    """Who is calling what, where."""

    app: App
    #: botocore service model name, e.g. ``ssm``, ``dynamodbstreams``
    service: str
    #: operation name, e.g. ``GetParameter``
    operation: str
    region: str
    account_id: str
    request_id: str
    #: access key id of the caller (None when unsigned / auth off)
    access_key: str | None = None
    #: base URL the client used to reach nubes, e.g. ``http://127.0.0.1:4566``
    endpoint: str = ""
    http: HttpRequest | None = None
    #: extra response headers a provider wants to send
    response_headers: dict[str, str] = field(default_factory=dict)
    #: the request came in the query protocol (form post with ``Action``), e.g. an
    #: old SDK talking to a JSON service that is ``awsQueryCompatible`` (SQS)
    query_protocol: bool = False

    @property
    def settings(self) -> Any:
        return self.app.settings

    def arn(self, service: str, resource: str, *, region: str | None = None) -> str:
        """``arn:aws:{service}:{region}:{account}:{resource}``."""
        reg = self.region if region is None else region
        return f"arn:aws:{service}:{reg}:{self.account_id}:{resource}"


class Provider:
    """Base class of service providers: holds the app, has lifecycle hooks."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def start(self) -> None:
        """Called once when the server starts (after the store is open)."""

    async def stop(self) -> None:
        """Called once when the server stops."""


@dataclass(frozen=True)
class HttpRoute:
    """A raw HTTP route a service serves outside the AWS API (execute-api hosts,
    JWKS documents, the SES mailbox, ...). Matched before AWS routing.

    The provider method is ``async def name(self, request: HttpRequest, match:
    re.Match[str]) -> WireResponse`` (``nubes.aws.protocol.types.WireResponse``).
    """

    #: provider method that answers
    method_name: str
    #: regex matched against the Host header without its port (None: any host)
    host: str | None = None
    #: regex matched against the percent-decoded path (None: any path)
    path: str | None = None
    #: HTTP methods this route takes (empty: all)
    methods: tuple[str, ...] = ()
    #: only requests whose Content-Type starts with this (S3 presigned POST forms)
    content_type: str | None = None
    #: only requests without AWS authentication (no Authorization header and no
    #: X-Amz-Credential): browser uploads and preflights, not SDK calls
    unsigned_only: bool = False


@dataclass(frozen=True)
class WebSocketRoute:
    """A WebSocket endpoint; the provider method is ``async def name(self, websocket,
    match)`` where ``websocket`` is ``nubes.gateway.websocket.WebSocket``."""

    method_name: str
    host: str | None = None
    path: str | None = None


@dataclass(frozen=True)
class ServiceSpec:
    """How the registry knows a service."""

    #: botocore model names served by this package (``["dynamodb", "dynamodbstreams"]``)
    models: tuple[str, ...]
    #: factory building the provider for one app; one provider may serve several models
    provider: type[Provider]
    #: raw HTTP routes (checked before AWS routing, in order)
    http_routes: tuple[HttpRoute, ...] = ()
    websocket_routes: tuple[WebSocketRoute, ...] = ()
