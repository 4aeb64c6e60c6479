"""The draft-4 subset validator request bodies are checked with."""

from __future__ import annotations

from nubes.services.apigateway.schema import check_schema, validate

PET = {
    "type": "object",
    "required": ["name", "age"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 5, "pattern": "^[a-z]+$"},
        "age": {"type": "integer", "minimum": 0, "maximum": 30, "exclusiveMaximum": True},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "uniqueItems": True, "maxItems": 2},
        "owner": {"$ref": "#/definitions/owner"},
    },
    "definitions": {"owner": {"type": ["string", "null"]}},
}


def test_valid_instance_has_no_errors() -> None:
    assert validate({"name": "rex", "age": 3, "tags": ["a"], "owner": None}, PET) == []
    assert validate({"name": "rex", "age": 3.0}, PET) == []  # 3.0 is an integer in JSON Schema


def test_each_kind_of_failure_is_reported() -> None:
    assert validate({"name": "rex"}, PET) == ["/: object has missing required properties (['age'])"]
    assert validate({"name": "rex", "age": True}, PET)[0].startswith("/age: instance type (boolean)")
    assert any("regex" in e for e in validate({"name": "Rex", "age": 1}, PET))
    assert any("too long" in e for e in validate({"name": "abcdef", "age": 1}, PET))
    assert any("maximum" in e for e in validate({"name": "a", "age": 30}, PET))
    assert any("minimum" in e for e in validate({"name": "a", "age": -1}, PET))
    assert any("enum" in e for e in validate({"name": "a", "age": 1, "tags": ["c"]}, PET))
    assert any("duplicate" in e for e in validate({"name": "a", "age": 1, "tags": ["a", "a"]}, PET))
    assert any("not allowed" in e for e in validate({"name": "a", "age": 1, "extra": 1}, PET))
    assert any("owner" in e for e in validate({"name": "a", "age": 1, "owner": 5}, PET))
    assert validate([], PET)[0].startswith("/: instance type (array)")


def test_combinators_and_model_references() -> None:
    schema = {"oneOf": [{"type": "string"}, {"type": "integer"}], "not": {"enum": [7]}}
    assert validate("x", schema) == [] and validate(1, schema) == []
    assert validate(1.5, schema) and validate(7, schema)
    assert validate(True, {"anyOf": [{"type": "string"}, {"type": "number"}]})
    models = {"Pet": PET}
    ref = {"type": "array", "items": {"$ref": "https://apigateway.amazonaws.com/restapis/x/models/Pet"}}
    assert validate([{"name": "a", "age": 1}], ref, models.get) == []
    assert validate([{"name": "a"}], ref, models.get)
    assert validate([1], {"items": {"$ref": "#/nope"}})[0].endswith("unresolvable reference #/nope")


def test_check_schema_refuses_unusable_schemas() -> None:
    assert check_schema(PET) is None
    assert check_schema({"type": "strung"}) == "unknown type 'strung'"
    assert check_schema({"properties": {"a": {"pattern": "("}}}) == "invalid pattern '('"
    deep: dict[str, object] = {}
    node = deep
    for _ in range(100):
        child: dict[str, object] = {}
        node["not"] = child
        node = child
    assert check_schema(deep) == "the schema is nested too deeply"
