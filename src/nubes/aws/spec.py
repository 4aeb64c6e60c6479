"""botocore's service models, loaded on first use, and the indexes the gateway routes by.

Everything about the wire that the models say (protocols, target prefixes,
signing names, REST routes, error statuses) is read from them here; nothing
else in nubes hard-codes a service's wire details. Start-up reads only each
served model's metadata (:mod:`nubes.aws.facts`); a service's full model and
index are built on its first request.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from botocore.model import OperationModel, ServiceModel, Shape, StructureShape

from nubes.aws.facts import ServiceFacts, facts_from_metadata, model_data, service_facts

#: adjustments services make to nubes' own copy of their model, by model name
_MODEL_PATCHES: dict[str, list[Callable[[ServiceModel], None]]] = {}
#: names of the models loaded so far (each once: ``service_model`` caches them)
_LOADED: set[str] = set()


@cache
def service_model(name: str) -> ServiceModel:
    """The botocore model of a service (``ssm``, ``s3``, ...), with its patches applied."""
    model = ServiceModel(model_data(name), service_name=name)
    for patch in _MODEL_PATCHES.get(name, ()):
        patch(model)
    _LOADED.add(name)
    return model


def on_model_load(name: str, patch: Callable[[ServiceModel], None]) -> None:
    """Run ``patch`` on nubes' copy of ``name``'s model when it is loaded (at once if it
    already is), before any request uses it — so a service package that adjusts its
    model (SQS relaxes an enum) need not load it at import, i.e. at server start-up."""
    _MODEL_PATCHES.setdefault(name, []).append(patch)
    if name in _LOADED:
        patch(service_model(name))


def client_protocol(model: ServiceModel) -> str:
    """The protocol botocore's client uses for this model (first supported one)."""
    return _facts_of(model).protocol


def signing_name(model: ServiceModel) -> str:
    return _facts_of(model).signing_name


def _facts_of(model: ServiceModel) -> ServiceFacts:
    return facts_from_metadata(model.service_name, model.metadata)


@dataclass
class RestRoute:
    """One REST operation's URI template compiled to a matcher."""

    operation: str
    method: str
    #: the template as a regular expression (compiled on first use: a request only
    #: ever tries the routes whose ``prefix`` its path starts with)
    pattern: str
    #: the template's literal start (up to its first label): a path that does not
    #: start with it cannot match
    prefix: str
    #: query keys the template requires (``?uploads``, ``?partNumber&uploadId``)
    required_query: frozenset[str]
    #: query keys of required querystring members (rank, do not exclude)
    member_query: frozenset[str]
    #: fixed query values (``?x-id=GetObject``, ``?list-type=2``)
    query_values: dict[str, str]
    labels: tuple[str, ...]
    #: how specific the template is: more literal characters and query keys win
    score: tuple[int, int, int, int]
    #: required header members: they rank routes sharing a URI (CopyObject vs PutObject)
    required_headers: frozenset[str] = frozenset()
    _regex: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def path_regex(self) -> re.Pattern[str]:
        regex = self._regex
        if regex is None:
            regex = self._regex = re.compile(self.pattern)
        return regex


_LABEL = re.compile(r"\{([^}]+)\}")


def _compile_uri(op_name: str, op: dict[str, Any], shapes: dict[str, Any]) -> RestRoute:
    """An operation's route, from its raw model definition (building botocore's
    ``OperationModel`` and member shapes for every operation made a REST service's
    first request slow)."""
    http = op["http"]
    uri: str = http["requestUri"]
    path, _, query = uri.partition("?")
    labels: list[str] = []
    pattern = "^"
    pos = 0
    literal = 0
    first = _LABEL.search(path)
    prefix = path[: first.start()] if first is not None else path
    for m in _LABEL.finditer(path):
        chunk = path[pos : m.start()]
        pattern += re.escape(chunk)
        literal += len(chunk)
        name = m.group(1)
        if name.endswith("+"):
            name = name[:-1]
            pattern += f"(?P<{_group(name)}>.+)"
        else:
            pattern += f"(?P<{_group(name)}>[^/]+)"
        labels.append(name)
        pos = m.end()
    tail = path[pos:]
    literal += len(tail)
    pattern += re.escape(tail)
    # AWS accepts a trailing slash on most REST paths
    if not pattern.endswith("/"):
        pattern += "/?"
    pattern += "$"
    required: set[str] = set()
    values: dict[str, str] = {}
    # required query members tell operations with the same URI apart
    # (DeleteObject vs AbortMultipartUpload?uploadId); they rank routes rather
    # than exclude them, so a request missing one gets a validation error
    members = set(_required_members_at(op, shapes, "querystring"))
    for part in query.split("&"):
        if not part:
            continue
        key, eq, value = part.partition("=")
        if key == "x-id":
            continue  # optional hint some SDKs add
        required.add(key)
        if eq:
            values[key] = value
    return RestRoute(
        operation=op_name,
        method=http["method"],
        pattern=pattern,
        prefix=prefix,
        required_query=frozenset(required),
        member_query=frozenset(members),
        query_values=values,
        labels=tuple(labels),
        # deprecated operations lose ties (GetBucketLifecycle vs ...Configuration)
        score=(len(required) + len(values), literal, -len(labels), 0 if op.get("deprecated") else 1),
        # lower-cased names of required header members (``x-amz-copy-source``)
        required_headers=frozenset(n.lower() for n in _required_members_at(op, shapes, "header")),
    )


def _required_members_at(op: dict[str, Any], shapes: dict[str, Any], location: str) -> list[str]:
    """Wire names of the required input members serialized at ``location``; a member's
    traits are its shape's overlaid with the member reference's, as botocore merges them."""
    ref = op.get("input")
    if ref is None:
        return []
    shape = shapes[ref["shape"]]
    members: dict[str, Any] = shape.get("members", {})
    names = []
    for name in shape.get("required", ()):
        member = members[name]
        traits = {**shapes[member["shape"]], **member}
        if traits.get("location") == location:
            names.append(str(traits.get("locationName", name)))
    return names


def _group(label: str) -> str:
    """Regex group names must be identifiers; labels can contain dashes."""
    return "L_" + re.sub(r"\W", "_", label)


def label_group(label: str) -> str:
    return _group(label)


@dataclass
class ServiceIndex:
    """Routing facts of one model."""

    name: str
    model: ServiceModel
    protocol: str
    signing_name: str
    target_prefix: str | None
    rest_routes: dict[str, list[RestRoute]] = field(default_factory=dict)
    #: error code → HTTP status, from the model's error shapes
    error_status: dict[str, int] = field(default_factory=dict)
    #: operations that need no signature (``authtype: none``)
    unsigned_operations: frozenset[str] = frozenset()
    query_compatible: bool = False
    #: every protocol the model lists (a client may speak any of them)
    protocols: tuple[str, ...] = ()
    #: operation names as a set (the model's own list is linear to search)
    operation_names: frozenset[str] = frozenset()

    def match_rest(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str] | None = None
    ) -> tuple[RestRoute, dict[str, str]] | None:
        """The most specific route matching method, path and query keys."""
        best: tuple[tuple[int, ...], RestRoute, re.Match[str]] | None = None
        keys = query.keys()
        for route in self.rest_routes.get(method, ()):
            if not route.required_query.issubset(keys):
                continue
            if any(query.get(k, [None])[0] != v for k, v in route.query_values.items()):
                continue
            if not path.startswith(route.prefix):
                continue
            m = route.path_regex.match(path)
            if m is None:
                continue
            present = len(route.member_query & keys)
            rank = route.score[0] + 2 * present - len(route.member_query)
            if headers is not None and route.required_headers:
                # a required header that is there wins over a twin route; one missing loses
                rank += 2 * len(route.required_headers & headers.keys()) - len(route.required_headers)
            score = (rank, *route.score[1:])
            if best is None or score > best[0]:
                best = (score, route, m)
        if best is None:
            return None
        _, route, m = best
        return route, {label: m.group(_group(label)) for label in route.labels}


def _error_statuses(shapes: dict[str, Any]) -> dict[str, int]:
    """Error code → HTTP status, from the model's raw shape definitions (building a
    botocore ``Shape`` for each of hundreds of shapes made a first request slow)."""
    statuses: dict[str, int] = {}
    for name, shape in shapes.items():
        if not shape.get("exception"):
            continue
        err = shape.get("error") or {}
        status = int(err.get("httpStatusCode", 400))
        statuses[name] = status
        code = err.get("code")
        if code:
            statuses[str(code)] = status
    return statuses


def _unsigned(model: ServiceModel) -> frozenset[str]:
    names: set[str] = set()
    for op_name in model.operation_names:
        op = model.operation_model(op_name)
        auth = op.metadata.get("auth") or []
        if op.auth_type == "none" or "smithy.api#noAuth" in auth:
            names.add(op_name)
    return frozenset(names)


@cache
def service_index(name: str) -> ServiceIndex:
    """Routing facts of a model, computed once (on the service's first request)."""
    model = service_model(name)
    # the dicts the model was built from, read directly
    raw = model_data(name)
    facts = _facts_of(model)
    index = ServiceIndex(
        name=name,
        model=model,
        protocol=facts.protocol,
        signing_name=facts.signing_name,
        target_prefix=facts.target_prefix,
        error_status=_error_statuses(raw["shapes"]),
        unsigned_operations=_unsigned(model),
        query_compatible=facts.query_compatible,
        operation_names=frozenset(model.operation_names),
        protocols=facts.protocols,
    )
    if facts.rest:
        for op_name, op in raw["operations"].items():
            route = _compile_uri(op_name, op, raw["shapes"])
            index.rest_routes.setdefault(route.method, []).append(route)
    return index


@dataclass
class Catalog:
    """What routes a request to its model, across the served models.

    Built from each model's metadata only; :meth:`index` loads a model when a
    request first needs it.
    """

    by_name: dict[str, ServiceFacts]
    by_signing_name: dict[str, list[ServiceFacts]]
    by_target_prefix: dict[str, ServiceFacts]
    #: ``X-Amz-Target`` → its route (``nubes.gateway.routing.Route``), filled as
    #: targets are first resolved: the route of a target never changes
    target_routes: dict[str, Any] = field(default_factory=dict)

    def index(self, facts: ServiceFacts) -> ServiceIndex:
        """The full index (and model) of a served service, loaded on first use."""
        return service_index(facts.name)

    def query_action_candidates(self, action: str) -> Iterator[ServiceIndex]:
        """Query-protocol models that have the operation ``action``, in name order,
        for an unsigned form post (loads the query models, on the first such request)."""
        for facts in self.by_name.values():
            if facts.protocol != "query":
                continue
            index = self.index(facts)
            if action in index.operation_names:
                yield index


def build_catalog(models: Iterable[str]) -> Catalog:
    """Routing indexes over ``models``, from their metadata alone."""
    by_name: dict[str, ServiceFacts] = {}
    by_signing: dict[str, list[ServiceFacts]] = {}
    by_target: dict[str, ServiceFacts] = {}
    for name in sorted(models):
        facts = service_facts(name)
        by_name[name] = facts
        by_signing.setdefault(facts.signing_name, []).append(facts)
        if facts.target_prefix:
            by_target[facts.target_prefix] = facts
    return Catalog(by_name, by_signing, by_target)


def input_shape(op: OperationModel) -> StructureShape | None:
    shape = op.input_shape
    return shape if isinstance(shape, StructureShape) else None


def output_shape(op: OperationModel) -> StructureShape | None:
    shape = op.output_shape
    return shape if isinstance(shape, StructureShape) else None


def member_location_name(name: str, shape: Shape) -> str:
    return str(shape.serialization.get("name", name))
