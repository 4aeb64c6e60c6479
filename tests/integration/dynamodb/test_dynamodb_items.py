"""DynamoDB items through boto3's client and resource APIs against a real server."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError


def _name() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def ddb(nubes: Any) -> Any:
    return nubes.client("dynamodb")


@pytest.fixture
def table(nubes: Any, ddb: Any) -> Any:
    name = _name()
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
            {"AttributeName": "g", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {"IndexName": "by-g", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
             "Projection": {"ProjectionType": "KEYS_ONLY"}},
        ],
        BillingMode="PAY_PER_REQUEST",
    )  # fmt: skip
    return nubes.resource("dynamodb").Table(name)


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    err = exc.value.response["Error"]
    return err["Code"], err["Message"]


def test_put_get_roundtrip_all_types(table: Any) -> None:
    item = {
        "pk": "a", "sk": Decimal("1"), "s": "héllo", "n": Decimal("3.14159265358979323846264338327950288"),
        "b": b"\x00\x01", "t": True, "z": None, "m": {"x": [Decimal(1), "two", {"y": b"z"}]},
        "ss": {"a", "b"}, "ns": {Decimal(1), Decimal(2)}, "bs": {b"x", b"y"},
    }  # fmt: skip
    table.put_item(Item=item)
    got = table.get_item(Key={"pk": "a", "sk": 1})["Item"]
    assert got["n"] == Decimal("3.14159265358979323846264338327950288")
    assert got["b"].value == b"\x00\x01"
    assert got["m"]["x"][2]["y"].value == b"z"
    assert got["ss"] == {"a", "b"} and got["ns"] == {1, 2}
    assert got["z"] is None and got["t"] is True


def test_conditions_and_return_values(table: Any) -> None:
    table.put_item(Item={"pk": "c", "sk": 1, "v": 1})
    with pytest.raises(ClientError) as exc:
        table.put_item(Item={"pk": "c", "sk": 1, "v": 2}, ConditionExpression=Attr("pk").not_exists())
    assert _error(exc) == ("ConditionalCheckFailedException", "The conditional request failed")
    with pytest.raises(ClientError) as exc:
        table.put_item(
            Item={"pk": "c", "sk": 1}, ConditionExpression=Attr("v").eq(5),
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )  # fmt: skip
    assert exc.value.response["Item"]["v"] == {"N": "1"}
    old = table.put_item(Item={"pk": "c", "sk": 1, "v": 3}, ReturnValues="ALL_OLD")["Attributes"]
    assert old["v"] == 1
    out = table.update_item(
        Key={"pk": "c", "sk": 1},
        UpdateExpression="SET v = v + :one, l = list_append(if_not_exists(l, :empty), :x) ADD c :one",
        ExpressionAttributeValues={":one": 1, ":empty": [], ":x": ["a"]},
        ReturnValues="UPDATED_NEW",
    )
    assert out["Attributes"] == {"v": 4, "l": ["a"], "c": 1}
    deleted = table.delete_item(Key={"pk": "c", "sk": 1}, ReturnValues="ALL_OLD")["Attributes"]
    assert deleted["v"] == 4
    assert "Item" not in table.get_item(Key={"pk": "c", "sk": 1})


def test_validation_errors(ddb: Any, table: Any) -> None:
    name = table.name
    cases = [
        (dict(Item={"pk": {"S": "x"}}), "One or more parameter values were invalid: Missing the key sk in the item"),
        (dict(Item={"pk": {"N": "1"}, "sk": {"N": "1"}}),
         "One or more parameter values were invalid: Type mismatch for key pk expected: S actual: N"),
        (dict(Item={"pk": {"S": "x"}, "sk": {"N": "abc"}}), "The parameter cannot be converted to a numeric value: abc"),
        (dict(Item={"pk": {"S": "x"}, "sk": {"N": "1"}, "s": {"SS": ["a", "a"]}}),
         "One or more parameter values were invalid: Input collection [a, a] contains duplicates."),
        (dict(Item={"pk": {"S": "x"}, "sk": {"N": "1"}}, ConditionExpression="a = :v"),
         "Invalid ConditionExpression: An expression attribute value used in expression is not defined; attribute value: :v"),
        (dict(Item={"pk": {"S": "x"}, "sk": {"N": "1"}}, ConditionExpression="a = :v",
              ExpressionAttributeValues={":v": {"S": "1"}, ":w": {"S": "2"}}),
         "Value provided in ExpressionAttributeValues unused in expressions: keys: {:w}"),
        (dict(Item={"pk": {"S": "x"}, "sk": {"N": "1"}}, ConditionExpression="a = = :v",
              ExpressionAttributeValues={":v": {"S": "1"}}),
         'Invalid ConditionExpression: Syntax error; token: "=", near: "= = :v"'),
        (dict(Item={"pk": {"S": "x"}, "sk": {"N": "1"}, "big": {"S": "x" * 410_000}}),
         "Item size has exceeded the maximum allowed size"),
    ]  # fmt: skip
    for params, message in cases:
        with pytest.raises(ClientError) as exc:
            ddb.put_item(TableName=name, **params)
        assert _error(exc) == ("ValidationException", message)
    assert ddb.scan(TableName=name)["Count"] == 0
    with pytest.raises(ClientError) as exc:
        ddb.get_item(TableName=name, Key={"pk": {"S": "x"}})
    assert _error(exc) == ("ValidationException", "The provided key element does not match the schema")
    with pytest.raises(ClientError) as exc:
        ddb.get_item(TableName="missing-table", Key={"pk": {"S": "x"}})
    assert _error(exc)[0] == "ResourceNotFoundException"


def test_query_order_paging_and_index(table: Any) -> None:
    with table.batch_writer() as batch:
        for n in [-10, -1.5, 0, 2, 10, 100, 7]:
            batch.put_item(Item={"pk": "q", "sk": Decimal(str(n)), "g": "even" if int(n) % 2 == 0 else "odd"})
        batch.put_item(Item={"pk": "other", "sk": 1})
    result = table.query(KeyConditionExpression=Key("pk").eq("q"))
    assert [i["sk"] for i in result["Items"]] == [-10, Decimal("-1.5"), 0, 2, 7, 10, 100]
    desc = table.query(KeyConditionExpression=Key("pk").eq("q") & Key("sk").between(0, 10), ScanIndexForward=False)
    assert [i["sk"] for i in desc["Items"]] == [10, 7, 2, 0]
    seen: list[Any] = []
    kwargs: dict[str, Any] = {"KeyConditionExpression": Key("pk").eq("q"), "Limit": 3}
    while True:
        page = table.query(**kwargs)
        seen += [i["sk"] for i in page["Items"]]
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    assert len(seen) == 7 and seen == sorted(seen)
    filtered = table.query(KeyConditionExpression=Key("pk").eq("q"), FilterExpression=Attr("g").eq("odd"))
    assert filtered["Count"] == 2 and filtered["ScannedCount"] == 7
    with pytest.raises(ClientError) as exc:
        table.query(KeyConditionExpression=Key("pk").eq("q"), FilterExpression=Attr("sk").gt(5))
    assert _error(exc) == (
        "ValidationException", "Filter Expression can only contain non-primary key attributes: Primary key attribute: sk"
    )
    count = table.query(KeyConditionExpression=Key("pk").eq("q"), Select="COUNT")
    assert count["Count"] == 7 and "Items" not in count
    evens = table.query(IndexName="by-g", KeyConditionExpression=Key("g").eq("even"))
    assert sorted(i["sk"] for i in evens["Items"]) == [-10, 0, 2, 10, 100]
    assert set(evens["Items"][0]) == {"pk", "sk", "g"}


def test_scan_segments_cover_table(table: Any) -> None:
    with table.batch_writer() as batch:
        for n in range(40):
            batch.put_item(Item={"pk": f"p{n}", "sk": n})
    keys: list[str] = []
    for segment in range(3):
        keys += [i["pk"] for i in table.scan(Segment=segment, TotalSegments=3)["Items"]]
    assert sorted(keys) == sorted(f"p{n}" for n in range(40))


def test_transactions_all_or_nothing(ddb: Any, table: Any) -> None:
    name = table.name
    table.put_item(Item={"pk": "t", "sk": 1, "v": 1})
    with pytest.raises(ClientError) as exc:
        ddb.transact_write_items(TransactItems=[
            {"Put": {"TableName": name, "Item": {"pk": {"S": "t"}, "sk": {"N": "2"}}}},
            {"ConditionCheck": {"TableName": name, "Key": {"pk": {"S": "t"}, "sk": {"N": "1"}},
                                "ConditionExpression": "v = :two", "ExpressionAttributeValues": {":two": {"N": "2"}}}},
        ])  # fmt: skip
    assert exc.value.response["Error"]["Code"] == "TransactionCanceledException"
    reasons = exc.value.response["CancellationReasons"]
    assert [r["Code"] for r in reasons] == ["None", "ConditionalCheckFailed"]
    assert "Item" not in table.get_item(Key={"pk": "t", "sk": 2})
    with pytest.raises(ClientError) as exc:
        ddb.transact_write_items(TransactItems=[
            {"Put": {"TableName": name, "Item": {"pk": {"S": "t"}, "sk": {"N": "1"}}}},
            {"Delete": {"TableName": name, "Key": {"pk": {"S": "t"}, "sk": {"N": "1"}}}},
        ])  # fmt: skip
    assert _error(exc) == ("ValidationException", "Transaction request cannot include multiple operations on one item")
    items = [{"Update": {"TableName": name, "Key": {"pk": {"S": "t"}, "sk": {"N": "1"}},
                         "UpdateExpression": "ADD v :one", "ExpressionAttributeValues": {":one": {"N": "1"}}}}]  # fmt: skip
    ddb.transact_write_items(TransactItems=items, ClientRequestToken="tok-1")
    ddb.transact_write_items(TransactItems=items, ClientRequestToken="tok-1")
    assert table.get_item(Key={"pk": "t", "sk": 1})["Item"]["v"] == 2
    got = ddb.transact_get_items(TransactItems=[{"Get": {"TableName": name, "Key": {"pk": {"S": "t"}, "sk": {"N": "1"}}}}])
    assert got["Responses"][0]["Item"]["v"] == {"N": "2"}


def test_table_lifecycle(ddb: Any) -> None:
    name = _name()
    ddb.create_table(
        TableName=name, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
        Tags=[{"Key": "team", "Value": "a"}],
    )  # fmt: skip
    ddb.get_waiter("table_exists").wait(TableName=name)
    with pytest.raises(ClientError) as exc:
        ddb.create_table(
            TableName=name, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST",
        )  # fmt: skip
    assert _error(exc) == ("ResourceInUseException", f"Table already exists: {name}")
    assert name in ddb.list_tables()["TableNames"]
    arn = ddb.describe_table(TableName=name)["Table"]["TableArn"]
    assert ddb.list_tags_of_resource(ResourceArn=arn)["Tags"] == [{"Key": "team", "Value": "a"}]
    ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "exp"})
    assert ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]["TimeToLiveStatus"] == "ENABLED"
    ddb.delete_table(TableName=name)
    with pytest.raises(ClientError) as exc:
        ddb.describe_table(TableName=name)
    assert _error(exc) == ("ResourceNotFoundException", f"Requested resource not found: Table: {name} not found")


def test_legacy_parameters(ddb: Any, table: Any) -> None:
    name = table.name
    key = {"pk": {"S": "legacy"}, "sk": {"N": "1"}}
    ddb.put_item(TableName=name, Item={**key, "v": {"N": "1"}}, Expected={"pk": {"Exists": False}})
    with pytest.raises(ClientError) as exc:
        ddb.put_item(TableName=name, Item=key, Expected={"pk": {"Exists": False}})
    assert _error(exc)[0] == "ConditionalCheckFailedException"
    ddb.update_item(TableName=name, Key=key, AttributeUpdates={"v": {"Action": "ADD", "Value": {"N": "2"}},
                                                               "w": {"Action": "PUT", "Value": {"S": "x"}}},
                    Expected={"v": {"ComparisonOperator": "EQ", "AttributeValueList": [{"N": "1"}]}})  # fmt: skip
    got = ddb.get_item(TableName=name, Key=key, AttributesToGet=["v", "w"])["Item"]
    assert got == {"v": {"N": "3"}, "w": {"S": "x"}}
    found = ddb.query(TableName=name, KeyConditions={"pk": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "legacy"}]}},
                      QueryFilter={"w": {"ComparisonOperator": "BEGINS_WITH", "AttributeValueList": [{"S": "x"}]}})  # fmt: skip
    assert found["Count"] == 1
    scanned = ddb.scan(TableName=name, ScanFilter={"v": {"ComparisonOperator": "GT", "AttributeValueList": [{"N": "5"}]}})
    assert scanned["Count"] == 0 and scanned["ScannedCount"] == 1
    with pytest.raises(ClientError) as exc:
        ddb.get_item(TableName=name, Key=key, AttributesToGet=["v"], ProjectionExpression="w")
    assert _error(exc)[1].startswith("Can not use both expression and non-expression parameters in the same request")


def test_reverse_paging_and_filtered_scan_pages(table: Any) -> None:
    with table.batch_writer() as batch:
        for n in range(25):
            batch.put_item(Item={"pk": "rev", "sk": n, "odd": n % 2 == 1})
    seen: list[int] = []
    kwargs: dict[str, Any] = {"KeyConditionExpression": Key("pk").eq("rev"), "ScanIndexForward": False, "Limit": 4}
    while True:
        page = table.query(**kwargs)
        seen += [int(i["sk"]) for i in page["Items"]]
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    assert seen == list(range(24, -1, -1))
    odd: list[int] = []
    scan_kwargs: dict[str, Any] = {"FilterExpression": Attr("odd").eq(True) & Attr("pk").eq("rev"), "Limit": 7}
    pages = 0
    while True:
        page = table.scan(**scan_kwargs)
        pages += 1
        odd += [int(i["sk"]) for i in page["Items"]]
        if "LastEvaluatedKey" not in page:
            break
        scan_kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    assert sorted(odd) == list(range(1, 25, 2)) and pages >= 4


def test_consumed_capacity_is_reported_when_asked(ddb: Any, table: Any) -> None:
    name = table.name
    out = ddb.put_item(TableName=name, Item={"pk": {"S": "cc"}, "sk": {"N": "1"}}, ReturnConsumedCapacity="TOTAL")
    assert out["ConsumedCapacity"] == {"TableName": name, "CapacityUnits": 1.0}
    assert "ConsumedCapacity" not in ddb.put_item(TableName=name, Item={"pk": {"S": "cc"}, "sk": {"N": "1"}})
    batch = ddb.batch_write_item(RequestItems={name: [{"PutRequest": {"Item": {"pk": {"S": "cc"}, "sk": {"N": "2"}}}}]},
                                 ReturnConsumedCapacity="TOTAL")  # fmt: skip
    assert batch["ConsumedCapacity"] == [{"TableName": name, "CapacityUnits": 1.0}]
    tx = ddb.transact_get_items(TransactItems=[{"Get": {"TableName": name, "Key": {"pk": {"S": "cc"}, "sk": {"N": "2"}}}}],
                                ReturnConsumedCapacity="TOTAL")  # fmt: skip
    assert tx["ConsumedCapacity"][0]["TableName"] == name


def test_updated_return_values_cover_nested_paths(ddb: Any, table: Any) -> None:
    name = table.name
    key = {"pk": {"S": "nested"}, "sk": {"N": "1"}}
    ddb.put_item(TableName=name, Item={**key, "m": {"M": {"a": {"N": "1"}, "b": {"N": "2"}}}, "other": {"S": "x"}})
    out = ddb.update_item(TableName=name, Key=key, UpdateExpression="SET m.a = :v", ExpressionAttributeValues={":v": {"N": "5"}},
                          ReturnValues="UPDATED_OLD")  # fmt: skip
    assert out["Attributes"] == {"m": {"M": {"a": {"N": "1"}}}}
    out = ddb.update_item(TableName=name, Key=key, UpdateExpression="SET m.a = :v, fresh = :v",
                          ExpressionAttributeValues={":v": {"N": "6"}}, ReturnValues="UPDATED_NEW")  # fmt: skip
    assert out["Attributes"] == {"m": {"M": {"a": {"N": "6"}}}, "fresh": {"N": "6"}}
    with pytest.raises(ClientError) as exc:  # validation comes before the (failing) condition
        ddb.update_item(TableName=name, Key=key, UpdateExpression="SET pk = :v", ConditionExpression="attribute_not_exists(pk)",
                        ExpressionAttributeValues={":v": {"S": "z"}})  # fmt: skip
    assert _error(exc) == ("ValidationException",
                           "One or more parameter values were invalid: Cannot update attribute pk. This attribute is part of the key")  # fmt: skip
