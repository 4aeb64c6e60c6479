"""Lambda's tables (the only module that knows them).

* ``lambda.functions`` — ``(region, name)`` → function document: ``config`` ($LATEST),
  ``tags``, ``concurrency``, ``policy`` statements, ``next_version``,
  ``event_invoke`` (qualifier → config), ``urls`` (qualifier → url id)
* ``lambda.versions`` — ``(region, name, version:int)`` → published configuration
* ``lambda.aliases`` — ``(region, name, alias)`` → alias document
* ``lambda.layers`` — ``(region, layer, version:int)`` → layer version document
* ``lambda.urls`` — ``(url_id,)`` → ``{region, name, qualifier, config}``
* ``lambda.esm`` — ``(uuid,)`` → event source mapping document
* ``lambda.usage`` — ``(region, name)`` → requests, GB-seconds, last invocation
"""

from __future__ import annotations

from typing import Any

import orjson

from nubes.storage.base import Txn
from nubes.storage.keys import pack

FUNCTIONS = "lambda.functions"
VERSIONS = "lambda.versions"
ALIASES = "lambda.aliases"
LAYERS = "lambda.layers"
URLS = "lambda.urls"
ESM = "lambda.esm"
USAGE = "lambda.usage"


def get(txn: Txn, table: str, key: bytes) -> dict[str, Any] | None:
    """A JSON record or None."""
    raw = txn.get(table, key)
    return None if raw is None else orjson.loads(raw)


def put(txn: Txn, table: str, key: bytes, doc: dict[str, Any]) -> None:
    """Store a JSON record."""
    txn.put(table, key, orjson.dumps(doc))


def scan(txn: Txn, table: str, *parts: str | int) -> list[dict[str, Any]]:
    """Every record under a key prefix, in key order."""
    return [orjson.loads(v) for _, v in txn.scan(table, prefix=pack(*parts))]


def function_key(region: str, name: str) -> bytes:
    """Key of a function document."""
    return pack(region, name)


def version_key(region: str, name: str, version: int) -> bytes:
    """Key of a published version."""
    return pack(region, name, version)


def alias_key(region: str, name: str, alias: str) -> bytes:
    """Key of an alias."""
    return pack(region, name, alias)


def layer_key(region: str, layer: str, version: int) -> bytes:
    """Key of a layer version."""
    return pack(region, layer, version)


def delete_function(txn: Txn, region: str, name: str) -> list[str]:
    """Remove a function with its versions and aliases; returns its URL ids."""
    doc = get(txn, FUNCTIONS, function_key(region, name))
    txn.delete(FUNCTIONS, function_key(region, name))
    txn.delete_prefix(VERSIONS, pack(region, name))
    txn.delete_prefix(ALIASES, pack(region, name))
    url_ids = list((doc or {}).get("urls", {}).values())
    for url_id in url_ids:
        txn.delete(URLS, pack(url_id))
    return url_ids


def dumps(doc: dict[str, Any]) -> bytes:
    """Encode a record."""
    return orjson.dumps(doc)
