"""The few facts about a service the gateway routes by, read without loading its model.

Routing a request needs, per served service, only its protocols, signing name,
``X-Amz-Target`` prefix and whether it is ``awsQueryCompatible`` — all in the
model's ``metadata``, which botocore's files put before the (large) operations
and shapes. Reading just that head of each file costs ~0.1 ms a service, where
loading and indexing every served model cost ~0.2–1 s and ~40 MB at start-up;
the full model of a service is loaded on its first request instead
(:func:`nubes.aws.spec.service_index`).
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import IO, Any

import orjson
from botocore.exceptions import DataNotFoundError
from botocore.loaders import Loader, deep_merge

#: how much of a model file is read at a time while looking for its metadata
_CHUNK = 4096
#: past this, a file whose metadata has not ended is read whole (never seen in botocore)
_HEAD_LIMIT = 1 << 20
_METADATA_KEY = b'"metadata"'
#: the one botocore loader nubes reads models through (it caches what it loaded)
LOADER = Loader()

#: protocols nubes parses and serializes, in botocore's order of preference
#: (botocore.utils.PRIORITY_ORDERED_SUPPORTED_PROTOCOLS): botocore walks this order,
#: not the model's list order — for cloudwatch (["smithy-rpc-v2-cbor", "json",
#: "query"]) it sends JSON
SUPPORTED_PROTOCOLS = ("json", "rest-json", "rest-xml", "smithy-rpc-v2-cbor", "query")


@dataclass(frozen=True)
class ServiceFacts:
    """What routing knows about a service before its model is loaded."""

    name: str
    #: the protocol botocore's client speaks to it
    protocol: str
    #: every protocol the model lists (a client may speak any of them)
    protocols: tuple[str, ...]
    signing_name: str
    target_prefix: str | None
    query_compatible: bool

    @property
    def rest(self) -> bool:
        """Whether requests reach it by REST route (method, path, query)."""
        return self.protocol in ("rest-json", "rest-xml")

    @property
    def speaks_query(self) -> bool:
        """Whether a form post with ``Action`` may be for it."""
        return "query" in self.protocols or self.query_compatible


def facts_from_metadata(name: str, meta: dict[str, Any]) -> ServiceFacts:
    """A service's routing facts from its model's ``metadata``."""
    protocols = tuple(meta.get("protocols") or [meta["protocol"]])
    return ServiceFacts(
        name=name,
        protocol=client_protocol(protocols, str(meta["protocol"])),
        protocols=protocols,
        signing_name=str(meta.get("signingName") or meta.get("endpointPrefix") or name),
        target_prefix=meta.get("targetPrefix"),
        query_compatible="awsQueryCompatible" in meta,
    )


def client_protocol(protocols: tuple[str, ...], default: str) -> str:
    """The protocol botocore's client uses, given the model's list (first supported
    one in botocore's own priority order)."""
    for proto in SUPPORTED_PROTOCOLS:
        if proto in protocols:
            return proto
    return default


@cache
def service_facts(name: str) -> ServiceFacts:
    """The routing facts of a botocore service model, from the head of its file."""
    meta = _read_metadata(LOADER, name)
    return facts_from_metadata(name, meta)


def _read_metadata(loader: Loader, name: str) -> dict[str, Any]:
    """The ``metadata`` object of ``name``'s newest ``service-2`` model, found the way
    botocore's loader finds the file (search paths in order, ``.json`` then
    ``.json.gz``), with what its sdk-extras files merge into it."""
    version = loader.determine_latest_version(name, "service-2")
    path = _model_path(loader, name, version)
    if path is None:
        data: dict[str, Any] = loader.load_service_model(name, "service-2")
        return dict(data["metadata"])
    opener: Any = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as fh:
        meta = _metadata_in_head(fh)
    if meta is None:
        with opener(path, "rb") as fh:
            meta = dict(json.loads(fh.read())["metadata"])
    for extras in _extras(loader, name, version):
        deep_merge(meta, extras.get("merge", {}).get("metadata", {}))
    return meta


@cache
def model_data(name: str) -> dict[str, Any]:
    """The whole ``service-2`` model of ``name``, equal to what botocore's loader
    returns, parsed with orjson into plain dicts: botocore's ``json`` with an
    ``OrderedDict`` hook took ~3x the time and ~2x the memory, on each service's
    first request now that models load then."""
    version = LOADER.determine_latest_version(name, "service-2")  # UnknownServiceError if not
    path = _model_path(LOADER, name, version)
    if path is None:
        loaded: dict[str, Any] = LOADER.load_service_model(name, "service-2")
        return loaded
    opener: Any = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as fh:
        data: dict[str, Any] = orjson.loads(fh.read())
    for extras in _extras(LOADER, name, version):
        deep_merge(data, extras.get("merge", {}))
    return data


def _extras(loader: Loader, name: str, version: str) -> Iterator[dict[str, Any]]:
    """The sdk-extras data botocore merges into the model (small files: s3's adds a
    shape, secretsmanager's changes ``serviceId``)."""
    for extras_type in loader.extras_types:
        try:
            yield loader.load_data(os.path.join(name, version, f"service-2.{extras_type}-extras"))
        except DataNotFoundError:
            pass


def _model_path(loader: Loader, name: str, version: str) -> str | None:
    for search_path in loader.search_paths:
        base = os.path.join(search_path, name, version, "service-2")
        for ext in (".json", ".json.gz"):
            if os.path.isfile(base + ext):
                return base + ext
    return None


def _metadata_in_head(fh: IO[bytes]) -> dict[str, Any] | None:
    """Parse the ``"metadata": {...}`` object from the start of a model file, reading
    only as far as it goes; None when it is not near the start."""
    head = b""
    decoder = json.JSONDecoder()
    while len(head) < _HEAD_LIMIT:
        chunk = fh.read(_CHUNK)
        head += chunk
        at = head.find(_METADATA_KEY)
        if at >= 0:
            start = head.find(b"{", at + len(_METADATA_KEY))
            # only whitespace and a colon may stand between the key and its object
            if start >= 0 and head[at + len(_METADATA_KEY) : start].strip() == b":":
                try:
                    value, _ = decoder.raw_decode(head[start:].decode("utf-8"))
                except (json.JSONDecodeError, UnicodeDecodeError):
                    value = None  # not all of it read yet (or a cut character)
                if isinstance(value, dict):
                    return value
        if not chunk:
            return None
    return None
