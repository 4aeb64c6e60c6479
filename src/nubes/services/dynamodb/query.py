"""Query and Scan: key ranges in the store's ordered tables, filters,
projections, Limit, the 1 MB page size and LastEvaluatedKey."""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any

import orjson

from nubes.services.dynamodb.expressions.evaluate import evaluate, project
from nubes.services.dynamodb.expressions.lexer import expression_error
from nubes.services.dynamodb.expressions.nodes import (
    And,
    Between,
    Compare,
    Condition,
    Function,
    Path,
    walk,
)
from nubes.services.dynamodb.items import Effects
from nubes.services.dynamodb.keys import (
    attribute_types,
    extract_key,
    index_entry_key,
    index_prefix,
    item_key,
)
from nubes.services.dynamodb.prepare import Prepared
from nubes.services.dynamodb.tables import INDEXES, ITEMS, Table, find_index, key_names, uid_bytes
from nubes.services.dynamodb.types import (
    AttributeValue,
    Item,
    encode_key_value,
    encode_prefix,
    invalid_parameter,
    item_size,
    load_item,
    validate_item,
    validation,
)
from nubes.storage.base import Txn
from nubes.storage.keys import prefix_end

PAGE_BYTES = 1024 * 1024
_CHUNK = 256
KIND = "KeyConditionExpression"


@dataclass
class Source:
    """Where a Query/Scan reads: the table or one of its indexes."""

    table: Table
    index: dict[str, Any] | None
    index_kind: str | None
    hash_key: str
    range_key: str | None

    @property
    def store_table(self) -> str:
        return ITEMS if self.index is None else INDEXES

    def prefix(self) -> bytes:
        if self.index is None:
            return uid_bytes(self.table)
        return index_prefix(self.table, self.index["IndexName"])

    def entry_key(self, item: Item) -> bytes | None:
        if self.index is None:
            return item_key(self.table, item)
        return index_entry_key(self.table, self.index, item)

    def page_key(self, item: Item) -> Item:
        """The LastEvaluatedKey of an item: table key plus index key."""
        key = extract_key(self.table, item)
        key[self.hash_key] = item[self.hash_key]
        if self.range_key is not None:
            key[self.range_key] = item[self.range_key]
        return key


def source_for(table: Table, params: dict[str, Any]) -> Source:
    """The table or the named index, with DynamoDB's errors."""
    name = params.get("IndexName")
    if name is None:
        hash_key, range_key = key_names(table["KeySchema"])
        return Source(table, None, None, hash_key, range_key)
    found = find_index(table, name)
    if found is None:
        raise validation(
            f"The table does not have the specified index: {name}"
        )
    kind, index = found
    if kind == "GSI" and params.get("ConsistentRead"):
        raise validation("Consistent reads are not supported on global secondary indexes")
    hash_key, range_key = key_names(index["KeySchema"])
    return Source(table, index, kind, hash_key, range_key)


# -- key conditions ------------------------------------------------------------------


def _invalid_operator(operator: str) -> Exception:
    return expression_error(KIND, f"Invalid operator used in KeyConditionExpression: {operator}")


def _parts(node: Condition) -> list[Condition]:
    if isinstance(node, And):
        return [*_parts(node.left), *_parts(node.right)]
    return [node]


def _attribute(node: Condition, prepared: Prepared) -> str | None:
    target: Any
    if isinstance(node, Compare):
        if node.op == "<>":
            raise _invalid_operator("<>")
        target = node.left if isinstance(node.left, Path) else node.right
    elif isinstance(node, Between):
        target = node.operand
    elif isinstance(node, Function) and node.name == "begins_with":
        target = node.args[0]
    else:
        operator = node.name if isinstance(node, Function) else type(node).__name__.upper()
        raise _invalid_operator(operator)
    if not isinstance(target, Path):
        raise validation("Query key condition not supported")
    if len(target.elements) != 1:
        raise validation("KeyConditionExpressions cannot have conditions on nested attributes")
    name = prepared.bindings.resolve(target)[0]
    return str(name)


def _value(operand: Any, prepared: Prepared) -> AttributeValue:
    from nubes.services.dynamodb.expressions.evaluate import operand_value

    value = operand_value(operand, {}, prepared.bindings)
    if value is None:
        raise validation("Query key condition not supported")
    return value


def check_filter(source: Source, prepared: Prepared) -> None:
    """A Query filter may not test the key attributes of what it queries."""
    if prepared.filter is None:
        return
    for node in walk(prepared.filter):
        if isinstance(node, Path):
            name = prepared.bindings.resolve(node)[0]
            if name in (source.hash_key, source.range_key):
                raise validation(
                    f"Filter Expression can only contain non-primary key attributes: Primary key attribute: {name}"
                )


def key_range(source: Source, prepared: Prepared) -> tuple[bytes, bytes | None, bytes | None]:
    """(partition prefix, start, end) in the store for a key condition."""
    if prepared.key_condition is None:
        raise validation("Either the KeyConditions or KeyConditionExpression parameter must be specified in the request.")
    parts = _parts(prepared.key_condition)
    by_name: dict[str, Condition] = {}
    for part in parts:
        name = _attribute(part, prepared)
        if name in by_name:
            raise validation("KeyConditionExpressions must only contain one condition per key")
        if name is None or name not in (source.hash_key, source.range_key):
            raise validation("Query key condition not supported")
        by_name[name] = part
    hash_part = by_name.get(source.hash_key)
    if hash_part is None:
        raise validation(f"Query condition missed key schema element: {source.hash_key}")
    if not isinstance(hash_part, Compare) or hash_part.op != "=":
        raise validation("Query key condition not supported")
    types = attribute_types(source.table)
    hash_value = _value(hash_part.right if isinstance(hash_part.left, Path) else hash_part.left, prepared)
    if next(iter(hash_value)) != types[source.hash_key]:
        raise invalid_parameter("Condition parameter type does not match schema type")
    prefix = source.prefix() + encode_key_value(hash_value)
    range_part = by_name.get(source.range_key or "")
    if range_part is None:
        return prefix, None, None
    return (prefix, *_range_bounds(prefix, range_part, prepared, types[source.range_key or ""]))


def _range_bounds(prefix: bytes, part: Condition, prepared: Prepared, expected: str) -> tuple[bytes | None, bytes | None]:
    def encoded(operand: Any) -> bytes:
        value = _value(operand, prepared)
        if next(iter(value)) != expected:
            raise invalid_parameter("Condition parameter type does not match schema type")
        return prefix + encode_key_value(value)

    if isinstance(part, Between):
        return encoded(part.low), prefix_end(encoded(part.high))
    if isinstance(part, Function):
        value = _value(part.args[1], prepared)
        kind = next(iter(value))
        if kind not in ("S", "B"):
            raise expression_error(
                KIND, f"Incorrect operand type for operator or function; operator or function: begins_with, operand type: {kind}"
            )
        if kind != expected:
            raise invalid_parameter("Condition parameter type does not match schema type")
        start = prefix + encode_prefix(value)
        return start, prefix_end(start)
    assert isinstance(part, Compare)
    op = part.op
    if not isinstance(part.left, Path):  # ":v < sk" means "sk > :v"
        op = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}.get(op, op)
    bound = encoded(part.right if isinstance(part.left, Path) else part.left)
    if op == "=":
        return bound, prefix_end(bound)
    if op == "<":
        return None, bound
    if op == "<=":
        return None, prefix_end(bound)
    if op == ">":
        return prefix_end(bound), None
    if op == ">=":
        return bound, None
    raise _invalid_operator(op)


# -- reading pages -------------------------------------------------------------------


def _select(source: Source, params: dict[str, Any], prepared: Prepared) -> str:
    select = params.get("Select")
    given = "AttributesToGet" if params.get("AttributesToGet") is not None else "ProjectionExpression"
    if select == "COUNT" and prepared.projection is not None:
        raise validation(f"Cannot specify the {given} when choosing to get only the Count")
    if select == "SPECIFIC_ATTRIBUTES" and prepared.projection is None:
        raise validation("1 validation error detected: SPECIFIC_ATTRIBUTES requires ProjectionExpression or AttributesToGet")
    if select == "ALL_ATTRIBUTES" and prepared.projection is not None:
        raise validation(f"Cannot specify the {given} when choosing to get ALL_ATTRIBUTES")
    if select == "ALL_PROJECTED_ATTRIBUTES" and prepared.projection is not None:
        raise validation(f"Cannot specify the {given} when choosing to get ALL_PROJECTED_ATTRIBUTES")
    if select is None:
        select = "SPECIFIC_ATTRIBUTES" if prepared.projection is not None else (
            "ALL_ATTRIBUTES" if source.index is None else "ALL_PROJECTED_ATTRIBUTES"
        )
    if select == "ALL_PROJECTED_ATTRIBUTES" and source.index is None:
        raise validation("ALL_PROJECTED_ATTRIBUTES can be used only when Querying using an IndexName")
    if (
        select == "ALL_ATTRIBUTES"
        and source.index_kind == "GSI"
        and source.index is not None
        and source.index["Projection"]["ProjectionType"] != "ALL"
    ):
        raise validation(
            f"One or more parameter values were invalid: Select type ALL_ATTRIBUTES is not supported for global secondary index {source.index['IndexName']} because its projection type is not ALL"
        )
    return str(select)


def _start_key(source: Source, params: dict[str, Any]) -> bytes | None:
    esk = params.get("ExclusiveStartKey")
    if esk is None:
        return None
    needed = {*key_names(source.table["KeySchema"]), source.hash_key, source.range_key} - {None}
    esk = validate_item(esk) if isinstance(esk, dict) else {}
    types = attribute_types(source.table)
    if set(esk) != needed or any(next(iter(v)) != types[k] for k, v in esk.items()):
        raise validation("The provided starting key is invalid: The provided key element does not match the schema")
    return source.entry_key(esk)


def read_page(txn: Txn, source: Source, params: dict[str, Any], prepared: Prepared, bounds: tuple[bytes, bytes | None, bytes | None],
              segment: tuple[int, int] | None = None, *, effects: Effects | None = None,
              as_stored: bool = False) -> dict[str, Any]:  # fmt: skip
    """Read one page of a Query or Scan. With ``as_stored``, items that go out
    whole are their stored JSON as ``orjson.Fragment`` (see ``items.get_item``)."""
    select = _select(source, params, prepared)
    limit = params.get("Limit")
    if limit is not None and limit < 1:
        raise validation("1 validation error detected: Value '" + str(limit) + "' at 'limit' failed to satisfy constraint: Member must have value greater than or equal to 1")
    prefix, start, end = bounds
    start = start or prefix
    end = end if end is not None else prefix_end(prefix)
    forward = params.get("ScanIndexForward", True)
    after = _start_key(source, params)
    if after is not None and segment is not None:
        esk = params["ExclusiveStartKey"]
        if _segment_of(source, validate_item(esk), segment[1]) != segment[0]:
            raise validation(
                "The provided Exclusive start key does not map to the provided Segment and TotalSegments values."
            )
    if after is not None:
        if forward:
            start = max(start, after + b"\x00")
        else:
            end = after if end is None else min(end, after)
    items: list[Item] = []
    raws: list[bytes] = []
    scanned = 0
    size = 0
    last: Item | None = None
    more = False
    while True:
        # read no further than Limit needs (one more tells whether a next page exists);
        # segments skip rows, so a parallel scan reads whole chunks
        wanted = _CHUNK if limit is None or segment is not None else min(_CHUNK, limit - scanned + 1)
        chunk = txn.scan(source.store_table, start=start, end=end, reverse=not forward, limit=wanted)
        for raw_key, raw in chunk:
            if (limit is not None and scanned >= limit) or size > PAGE_BYTES:
                more = True
                break
            item = load_item(raw)
            if forward:
                start = raw_key + b"\x00"
            else:
                end = raw_key
            if segment is not None and _segment_of(source, item, segment[1]) != segment[0]:
                continue
            scanned += 1
            size += item_size(item)
            last = item
            if prepared.filter is not None and not evaluate(prepared.filter, item, prepared.bindings, prepared.filter_kind):
                continue
            items.append(item)
            raws.append(raw)
        if more or len(chunk) < wanted:
            break
    if effects is not None:  # 1 unit per 4 KB read, half for eventually consistent reads
        effects.charge(source.table, max(1, math.ceil(size / 4096)) * (1.0 if params.get("ConsistentRead") else 0.5))
    result: dict[str, Any] = {"Count": len(items), "ScannedCount": scanned}
    if select != "COUNT":
        if as_stored and prepared.projection is None and not _fetches(source, select):
            result["Items"] = [orjson.Fragment(raw) for raw in raws]
        else:
            result["Items"] = [_shape(txn, source, item, select, prepared) for item in items]
    if more and last is not None:
        result["LastEvaluatedKey"] = source.page_key(last)
    return result


def _fetches(source: Source, select: str) -> bool:
    """Whether items come from the table rather than as the index stores
    them: an LSI fetches what it does not project (a GSI cannot)."""
    partial_index = source.index is not None and source.index["Projection"]["ProjectionType"] != "ALL"
    return source.index_kind == "LSI" and partial_index and select in ("ALL_ATTRIBUTES", "SPECIFIC_ATTRIBUTES")


def _shape(txn: Txn, source: Source, item: Item, select: str, prepared: Prepared) -> Item:
    if _fetches(source, select):
        raw = txn.get(ITEMS, item_key(source.table, item))
        if raw is not None:
            item = load_item(raw)
    if prepared.projection is not None:
        return project(item, prepared.projection)
    return item


def _segment_of(source: Source, item: Item, total: int) -> int:
    # Segments split partitions by a hash of the partition key, so each
    # partition (and each item) belongs to exactly one segment.
    return zlib.crc32(encode_key_value(item[source.hash_key])) % total


def scan_segment(params: dict[str, Any]) -> tuple[int, int] | None:
    """(Segment, TotalSegments) of a parallel scan, validated."""
    segment = params.get("Segment")
    total = params.get("TotalSegments")
    if segment is None and total is None:
        return None
    if total is None:
        raise validation("The TotalSegments parameter is required but was not present in the request when Segment parameter is present")
    if segment is None:
        raise validation("The Segment parameter is required but was not present in the request when parameter TotalSegments is present")
    if segment >= total:
        raise validation(
            f"The Segment parameter is zero-based and must be less than parameter TotalSegments: Segment: {segment} is not less than TotalSegments: {total}"
        )
    return segment, total
