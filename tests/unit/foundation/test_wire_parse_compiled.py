"""The compiled JSON-like input parsers against the model walk they stand in for:
for random inputs of every operation of the JSON, rest-json and CBOR services —
valid ones and ones with a wrong type, a broken constraint, a missing required
member, an unknown member or a null somewhere — the compiled parser either
returns exactly what the walk returns (the walk recording no problem), or
refuses exactly the inputs the walk words an error for."""

from __future__ import annotations

import base64
import random
import zlib
from typing import Any

import pytest
from botocore.model import Shape

from nubes.aws.errors import AwsError
from nubes.aws.protocol.values import Problems, _walk_json, from_json, json_parser
from nubes.aws.spec import service_index
from nubes.services.registry import discover

_PROTOCOLS = ("json", "rest-json", "smithy-rpc-v2-cbor")
MODELS = sorted(m for m in discover() if set(service_index(m).protocols) & set(_PROTOCOLS))


class _Inputs:
    """Random JSON-like values for a shape; ``bad`` is the chance of a mistake per node."""

    def __init__(self, seed: int, bad: float) -> None:
        self.rng = random.Random(seed)
        self.bad = bad

    def value(self, shape: Shape, depth: int = 0) -> Any:
        rng = self.rng
        if rng.random() < self.bad:
            return rng.choice([None, True, 0, 1.5, -3, "", "x", "AAE=", [], {}, ["x"], {"a": 1}, 2.0])
        kind = shape.type_name
        meta = shape.metadata
        if kind == "structure":
            if meta.get("document"):
                return {"free": [1, "two", None]}
            members = list(shape.members.items())
            out: dict[str, Any] = {}
            for name, member in members:
                required = name in shape.required_members
                if (required or (depth < 3 and rng.random() < 0.5)) and rng.random() > self.bad / 2:
                    out[member.serialization.get("name", name)] = self.value(member, depth + 1)
            if rng.random() < self.bad:
                out["NotAMember"] = 1
            return out
        if kind in ("list", "map"):
            low = int(meta.get("min", 0))
            count = rng.choice([low, low + 1, low + 2]) if depth < 4 else low
            if rng.random() < self.bad:
                count = max(0, low - 1) if rng.random() < 0.5 else int(meta.get("max", 3)) + 1
            count = min(count, 40)
            if kind == "list":
                return [self.value(shape.member, depth + 1) for _ in range(count)]
            return {f"k{i}": self.value(shape.value, depth + 1) for i in range(count)}
        if kind == "string":
            if shape.enum:
                return rng.choice(shape.enum)
            low = int(meta.get("min", 0))
            high = min(int(meta.get("max", low + 8)), low + 64)  # some allow 2 GB
            return "s" * rng.choice([low, min(high, low + 5), high])
        if kind in ("integer", "long"):
            low, high = meta.get("min", -5), meta.get("max", 50)
            return rng.choice([low, high, float(low), (low + high) // 2])
        if kind in ("float", "double"):
            return rng.choice([meta.get("min", 0.5), 2, 7.25])
        if kind == "boolean":
            return rng.random() < 0.5
        if kind == "blob":
            size = min(max(int(meta.get("min", 0)), 2), 64)
            raw = b"\x00\x01" * size
            return rng.choice([base64.b64encode(raw).decode(), raw, "@@not base64"])
        if kind == "timestamp":
            return rng.choice([1577836800, 1577836800.25, "2020-01-01T00:00:00Z", "Wed, 01 Jan 2020 00:00:00 GMT", "soon"])
        return "x"


def _walk(shape: Shape, value: Any) -> str:
    problems = Problems()
    try:
        result = _walk_json(shape, value, "", problems)
    except Exception as error:
        return f"raised {type(error).__name__}: {error}"
    if problems.items:
        return "problems: " + "; ".join(problems.items)
    return repr(result)


def _compiled(shape: Shape, value: Any) -> str | None:
    if value is None:
        return "None"  # from_json's own answer: compiled parsers never see a null
    try:
        return repr(json_parser(shape)(value))
    except Exception:
        return None  # refused


@pytest.mark.parametrize("model", MODELS)
def test_compiled_parser_agrees_with_the_walk(model: str) -> None:
    index = service_index(model)
    checked = refused = 0
    for op_name in sorted(index.model.operation_names):
        shape = index.model.operation_model(op_name).input_shape
        if shape is None:
            continue
        for seed, bad in enumerate((0.0, 0.0, 0.0, 0.02, 0.05, 0.05, 0.1, 0.15, 0.2, 0.3)):
            value = _Inputs(zlib.crc32(op_name.encode()) + seed, bad).value(shape)
            walked = _walk(shape, value)
            compiled = _compiled(shape, value)
            if compiled is None:
                refused += 1
                assert walked.startswith(("raised", "problems")), (op_name, value, walked)
            else:
                assert compiled == walked, (op_name, value)
            checked += 1
    assert checked and refused  # both outcomes were exercised


def test_refused_input_gets_the_walks_problems_in_the_shared_collector() -> None:
    """rest-json parses body members one by one into one collector: a refused
    member adds its problems after those already recorded, as before."""
    shape = service_index("dynamodb").model.operation_model("Scan").input_shape
    problems = Problems()
    problems.add("x", "earlier", "Member must be first")
    assert from_json(shape, {"TableName": "", "Limit": 0}, "", problems) == {"TableName": "", "Limit": 0}
    assert problems.items == [
        "Value 'x' at 'earlier' failed to satisfy constraint: Member must be first",
        "Value '' at 'tableName' failed to satisfy constraint: Member must have length greater than or equal to 1",
        "Value '0' at 'limit' failed to satisfy constraint: Member must have value greater than or equal to 1",
    ]


def test_a_recursive_shape_compiles_as_deep_as_input_goes() -> None:
    shape = service_index("dynamodb").model.operation_model("PutItem").input_shape
    item: dict[str, Any] = {"S": "leaf"}
    for depth in range(30):
        item = {"M": {"m": item}} if depth % 2 else {"L": [item, {"N": "1"}]}
    parsed = from_json(shape, {"TableName": "t", "Item": {"a": item}}, "", Problems())
    assert parsed["Item"]["a"] == item
    item["M"]["m"]["L"][0]["M"]["m"]["L"][1] = {"N": 1}
    with pytest.raises(AwsError, match=r"item\.a\.m\.m\.l\.1\.member\.m\.m\.l\.2\.member\.n: expected string"):
        from_json(shape, {"TableName": "t", "Item": {"a": item}}, "", Problems())
