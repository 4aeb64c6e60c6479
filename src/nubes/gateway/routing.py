"""Which service and operation a request is for — the way AWS endpoints decide.

Order: ``X-Amz-Target`` (JSON protocols), ``/service/<name>/operation/<op>``
(RPCv2 CBOR), the SigV4 credential scope's service plus ``Action`` (query) or
the REST route table, and for unsigned requests the ``Action`` name or S3.

The catalog knows each service by its metadata only; a service's model is
loaded when routing first picks it (or, for REST, first needs its routes).
"""

from __future__ import annotations

from dataclasses import dataclass

from botocore.model import OperationModel

from nubes.aws.errors import AwsError
from nubes.aws.facts import ServiceFacts
from nubes.aws.protocol.types import WireRequest
from nubes.aws.spec import Catalog, ServiceIndex


@dataclass
class Route:
    """The outcome of routing."""

    index: ServiceIndex
    operation: OperationModel
    #: URI labels of a REST operation
    labels: dict[str, str] | None = None
    #: form parameters of a query-protocol request (Action and Version removed)
    form: dict[str, str] | None = None
    #: the protocol this request speaks (answer in the same one)
    protocol: str = ""

    def __post_init__(self) -> None:
        if not self.protocol:
            self.protocol = "query" if self.form is not None else self.index.protocol


def _operation(index: ServiceIndex, name: str) -> OperationModel:
    if name not in index.operation_names:
        if "query" in index.protocols or index.query_compatible:
            raise AwsError("InvalidAction", f"The action {name} is not valid for this web service.", 400)
        raise AwsError("UnknownOperationException", f"Unknown operation {name}", 400)
    return index.model.operation_model(name)


def _by_target(catalog: Catalog, target: str) -> Route:
    cached: Route | None = catalog.target_routes.get(target)
    if cached is not None:
        return cached
    route = _resolve_target(catalog, target)
    # only targets that resolved are kept, so the cache holds model operations only
    catalog.target_routes[target] = route
    return route


def _resolve_target(catalog: Catalog, target: str) -> Route:
    prefix, _, name = target.rpartition(".")
    facts = catalog.by_target_prefix.get(prefix)
    if facts is None:
        raise AwsError("UnknownOperationException", f"Unknown target {target}", 400)
    index = catalog.index(facts)
    protocol = "json" if "json" in index.protocols else index.protocol
    return Route(index, _operation(index, name), protocol=protocol)


def _by_rpcv2(catalog: Catalog, path: str) -> Route:
    parts = path.strip("/").split("/")
    if len(parts) != 4 or parts[0] != "service" or parts[2] != "operation":
        raise AwsError("UnknownOperationException", f"Unknown RPC path {path}", 404)
    facts = catalog.by_target_prefix.get(parts[1])
    if facts is None:
        raise AwsError("UnknownOperationException", f"Unknown service {parts[1]}", 404)
    index = catalog.index(facts)
    return Route(index, _operation(index, parts[3]), protocol="smithy-rpc-v2-cbor")


def _by_action(catalog: Catalog, candidates: list[ServiceFacts], form: dict[str, str]) -> Route:
    action = form.pop("Action")
    form.pop("Version", None)
    for facts in candidates:
        if facts.speaks_query:
            index = catalog.index(facts)
            return Route(index, _operation(index, action), form=form)
    raise AwsError("InvalidAction", f"The action {action} is not valid for this web service.", 400)


def _by_rest(catalog: Catalog, candidates: list[ServiceFacts], request: WireRequest) -> Route | None:
    best: tuple[tuple[int, int, int, int], Route] | None = None
    for facts in candidates:
        if not facts.rest:
            continue
        index = catalog.index(facts)
        found = index.match_rest(request.method, request.path, request.query, request.headers)
        if found is None:
            continue
        route, labels = found
        if best is None or route.score > best[0]:
            best = (route.score, Route(index, index.model.operation_model(route.operation), labels))
    return best[1] if best is not None else None


def resolve(
    catalog: Catalog,
    request: WireRequest,
    signing_service: str | None,
    form: dict[str, str] | None,
) -> Route:
    """Route a request; raise the AWS error a real endpoint gives when it can't."""
    target = request.headers.get("x-amz-target")
    if target:
        return _by_target(catalog, target)
    if request.path.startswith("/service/") and "smithy-protocol" in request.headers:
        return _by_rpcv2(catalog, request.path)
    if form is not None and "Action" in form:
        if signing_service is not None and signing_service in catalog.by_signing_name:
            candidates = catalog.by_signing_name[signing_service]
        else:
            # unsigned: the first query-protocol model that has the action
            unsigned = next(catalog.query_action_candidates(form["Action"]), None)
            candidates = [catalog.by_name[unsigned.name]] if unsigned is not None else []
        if not candidates:
            raise AwsError("InvalidAction", f"The action {form['Action']} is not valid for this web service.", 400)
        return _by_action(catalog, candidates, form)
    if signing_service is not None:
        candidates = catalog.by_signing_name.get(signing_service) or []
        if not candidates:
            raise AwsError(
                "UnknownService", f"nubes does not serve the service '{signing_service}'", 400
            )
    else:
        s3 = catalog.by_name.get("s3")
        candidates = [s3] if s3 is not None else []
    route = _by_rest(catalog, candidates, request)
    if route is None:
        names = ", ".join(i.name for i in candidates) or "any service"
        raise AwsError(
            "UnknownOperationException",
            f"No operation of {names} matches {request.method} {request.path}",
            404,
        )
    return route
