"""Secondary indexes, table updates and request validation against a real server."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    err = exc.value.response["Error"]
    return err["Code"], err["Message"]


@pytest.fixture
def ddb(nubes: Any) -> Any:
    return nubes.client("dynamodb")


@pytest.fixture
def orders(ddb: Any) -> str:
    name = f"o-{uuid.uuid4().hex[:10]}"
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "customer", "KeyType": "HASH"}, {"AttributeName": "order", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "customer", "AttributeType": "S"}, {"AttributeName": "order", "AttributeType": "S"},
            {"AttributeName": "status", "AttributeType": "S"}, {"AttributeName": "total", "AttributeType": "N"},
        ],
        GlobalSecondaryIndexes=[{
            "IndexName": "by-status",
            "KeySchema": [{"AttributeName": "status", "KeyType": "HASH"}, {"AttributeName": "total", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["note"]},
        }],
        LocalSecondaryIndexes=[{
            "IndexName": "by-total",
            "KeySchema": [{"AttributeName": "customer", "KeyType": "HASH"}, {"AttributeName": "total", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        }],
        BillingMode="PAY_PER_REQUEST",
    )  # fmt: skip
    rows = [("c1", "o1", "open", "30"), ("c1", "o2", "shipped", "10"), ("c1", "o3", None, "20"), ("c2", "o1", "open", "5")]
    for customer, order, status, total in rows:
        item = {"customer": {"S": customer}, "order": {"S": order}, "total": {"N": total},
                "note": {"S": f"{customer}/{order}"}, "secret": {"S": "s"}}  # fmt: skip
        if status:
            item["status"] = {"S": status}
        ddb.put_item(TableName=name, Item=item)
    return name


def test_gsi_is_sparse_projected_and_follows_updates(ddb: Any, orders: str) -> None:
    found = ddb.query(TableName=orders, IndexName="by-status", KeyConditionExpression="#s = :s",
                      ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":s": {"S": "open"}})  # fmt: skip
    assert [i["total"]["N"] for i in found["Items"]] == ["5", "30"]
    assert set(found["Items"][0]) == {"customer", "order", "status", "total", "note"}
    ddb.update_item(TableName=orders, Key={"customer": {"S": "c2"}, "order": {"S": "o1"}},
                    UpdateExpression="SET #s = :s", ExpressionAttributeNames={"#s": "status"},
                    ExpressionAttributeValues={":s": {"S": "shipped"}})  # fmt: skip
    ddb.delete_item(TableName=orders, Key={"customer": {"S": "c1"}, "order": {"S": "o1"}})
    found = ddb.query(TableName=orders, IndexName="by-status", KeyConditionExpression="#s = :s",
                      ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":s": {"S": "open"}})  # fmt: skip
    assert found["Items"] == []
    scanned = ddb.scan(TableName=orders, IndexName="by-status")
    assert scanned["Count"] == 2  # o3 has no status: not in the index
    with pytest.raises(ClientError) as exc:
        ddb.query(TableName=orders, IndexName="by-status", KeyConditionExpression="#s = :s", Select="ALL_ATTRIBUTES",
                  ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":s": {"S": "open"}})  # fmt: skip
    assert _error(exc)[0] == "ValidationException"


def test_lsi_orders_by_its_key_and_can_fetch_all(ddb: Any, orders: str) -> None:
    found = ddb.query(TableName=orders, IndexName="by-total", KeyConditionExpression="customer = :c AND #t >= :min",
                      ExpressionAttributeNames={"#t": "total"},
                      ExpressionAttributeValues={":c": {"S": "c1"}, ":min": {"N": "15"}})  # fmt: skip
    assert [i["order"]["S"] for i in found["Items"]] == ["o3", "o1"]
    assert set(found["Items"][0]) == {"customer", "order", "total"}
    full = ddb.query(TableName=orders, IndexName="by-total", KeyConditionExpression="customer = :c",
                     Select="ALL_ATTRIBUTES", ExpressionAttributeValues={":c": {"S": "c1"}})  # fmt: skip
    assert all("secret" in i for i in full["Items"])


def test_update_table_adds_and_removes_gsi(ddb: Any, orders: str) -> None:
    ddb.update_table(
        TableName=orders,
        AttributeDefinitions=[{"AttributeName": "note", "AttributeType": "S"}],
        GlobalSecondaryIndexUpdates=[{"Create": {
            "IndexName": "by-note", "KeySchema": [{"AttributeName": "note", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "ALL"}}}],
    )  # fmt: skip
    found = ddb.query(TableName=orders, IndexName="by-note", KeyConditionExpression="note = :n",
                      ExpressionAttributeValues={":n": {"S": "c1/o2"}})  # fmt: skip
    assert found["Items"][0]["secret"] == {"S": "s"}  # existing items were indexed
    ddb.update_table(TableName=orders, GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": "by-note"}}])
    names = [g["IndexName"] for g in ddb.describe_table(TableName=orders)["Table"]["GlobalSecondaryIndexes"]]
    assert names == ["by-status"]
    with pytest.raises(ClientError) as exc:
        ddb.query(TableName=orders, IndexName="by-note", KeyConditionExpression="note = :n",
                  ExpressionAttributeValues={":n": {"S": "x"}})  # fmt: skip
    assert _error(exc) == ("ValidationException", "The table does not have the specified index: by-note")


def test_index_key_type_mismatch_rejected(ddb: Any, orders: str) -> None:
    with pytest.raises(ClientError) as exc:
        ddb.put_item(TableName=orders, Item={"customer": {"S": "c9"}, "order": {"S": "o"}, "status": {"N": "1"}})
    assert _error(exc) == (
        "ValidationException",
        "One or more parameter values were invalid: Type mismatch for Index Key status Expected: S Actual: N IndexName: by-status",
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"KeyConditionExpression": "#o = :o", "ExpressionAttributeNames": {"#o": "order"},
          "ExpressionAttributeValues": {":o": {"S": "o1"}}}, "Query condition missed key schema element: customer"),
        ({"KeyConditionExpression": "customer = :c AND note = :o",
          "ExpressionAttributeValues": {":c": {"S": "c1"}, ":o": {"S": "x"}}}, "Query key condition not supported"),
        ({"KeyConditionExpression": "customer = :c OR customer = :o",
          "ExpressionAttributeValues": {":c": {"S": "c1"}, ":o": {"S": "x"}}},
         "Invalid KeyConditionExpression: Invalid operator used in KeyConditionExpression: OR"),
        ({"KeyConditionExpression": "customer = :c", "ExpressionAttributeValues": {":c": {"N": "1"}}},
         "One or more parameter values were invalid: Condition parameter type does not match schema type"),
    ],
)  # fmt: skip
def test_query_key_condition_errors(ddb: Any, orders: str, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ClientError) as exc:
        ddb.query(TableName=orders, **kwargs)
    assert _error(exc) == ("ValidationException", message)


def test_write_validation(ddb: Any, orders: str) -> None:
    key = {"customer": {"S": "c1"}, "order": {"S": "o2"}}
    with pytest.raises(ClientError) as exc:
        ddb.update_item(TableName=orders, Key=key, UpdateExpression="SET customer = :c",
                        ExpressionAttributeValues={":c": {"S": "x"}})  # fmt: skip
    assert _error(exc)[1] == "One or more parameter values were invalid: Cannot update attribute customer. This attribute is part of the key"
    with pytest.raises(ClientError) as exc:
        ddb.put_item(TableName=orders, Item={**key, "x": {"S": "1"}}, ReturnValues="ALL_NEW")
    assert _error(exc)[1] == "ReturnValues can only be ALL_OLD or NONE"
    with pytest.raises(ClientError) as exc:
        ddb.put_item(TableName=orders, Item={"customer": {"S": ""}, "order": {"S": "o"}})
    assert _error(exc)[1] == (
        "One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an empty string value. Key: customer"
    )
    with pytest.raises(ClientError) as exc:
        ddb.put_item(TableName=orders, Item={"customer": {"S": "x" * 2049}, "order": {"S": "o"}})
    assert "Size of hashkey has exceeded the maximum size limit of2048 bytes" in _error(exc)[1]
    too_many = [{"PutRequest": {"Item": {"customer": {"S": "b"}, "order": {"S": str(n)}}}} for n in range(26)]
    with pytest.raises(ClientError) as exc:
        ddb.batch_write_item(RequestItems={orders: too_many})
    assert _error(exc)[0] == "ValidationException"
    assert ddb.query(TableName=orders, KeyConditionExpression="customer = :c",
                     ExpressionAttributeValues={":c": {"S": "b"}})["Count"] == 0  # fmt: skip


def test_list_tables_pages(ddb: Any) -> None:
    prefix = f"lt-{uuid.uuid4().hex[:6]}"
    for n in range(3):
        ddb.create_table(TableName=f"{prefix}-{n}", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")  # fmt: skip
    names: list[str] = []
    for page in ddb.get_paginator("list_tables").paginate(PaginationConfig={"PageSize": 2}):
        names += page["TableNames"]
    assert [n for n in names if n.startswith(prefix)] == [f"{prefix}-{n}" for n in range(3)]
    assert names == sorted(names)


def test_create_table_validation(ddb: Any) -> None:
    with pytest.raises(ClientError) as exc:
        ddb.create_table(TableName="bad-one", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "other", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")  # fmt: skip
    assert _error(exc)[1].startswith("One or more parameter values were invalid: Some index key attributes are not defined")
    with pytest.raises(ClientError) as exc:
        ddb.create_table(TableName="bad-two", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])  # fmt: skip
    assert "ReadCapacityUnits and WriteCapacityUnits must both be specified" in _error(exc)[1]


@pytest.mark.parametrize("condition", ["customer <> :c", "contains(customer, :c)", "NOT customer = :c", "customer IN (:c)"])
def test_query_rejects_non_key_operators(ddb: Any, orders: str, condition: str) -> None:
    with pytest.raises(ClientError) as exc:
        ddb.query(TableName=orders, KeyConditionExpression=condition, ExpressionAttributeValues={":c": {"S": "c1"}})
    code, message = _error(exc)
    assert code == "ValidationException"
    assert message.startswith("Invalid KeyConditionExpression: Invalid operator used in KeyConditionExpression: ")


def test_describe_table_counts_items_and_index_entries(ddb: Any, orders: str) -> None:
    table = ddb.describe_table(TableName=orders)["Table"]
    assert table["ItemCount"] == 4 and table["TableSizeBytes"] > 0
    gsi = table["GlobalSecondaryIndexes"][0]
    assert gsi["IndexName"] == "by-status" and gsi["ItemCount"] == 3  # one order has no status
    assert table["LocalSecondaryIndexes"][0]["ItemCount"] == 4


def test_removed_index_attribute_definitions_go_and_sse_is_described(ddb: Any, orders: str) -> None:
    ddb.update_table(TableName=orders, GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": "by-status"}}])
    names = {d["AttributeName"] for d in ddb.describe_table(TableName=orders)["Table"]["AttributeDefinitions"]}
    assert names == {"customer", "order", "total"}  # total is still the LSI's sort key
    name = f"sse-{uuid.uuid4().hex[:8]}"
    ddb.create_table(TableName=name, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST",
                     SSESpecification={"Enabled": True})  # fmt: skip
    assert ddb.describe_table(TableName=name)["Table"]["SSEDescription"]["Status"] == "ENABLED"


def test_table_name_pattern(ddb: Any) -> None:
    with pytest.raises(ClientError) as exc:
        ddb.create_table(TableName="bad name!", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")  # fmt: skip
    assert _error(exc) == ("ValidationException", "1 validation error detected: Value 'bad name!' at 'tableName' failed to "
                           "satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+")  # fmt: skip
