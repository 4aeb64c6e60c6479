"""PartiQL through boto3, and DynamoDB through the aws CLI, against a real server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError


@pytest.fixture
def table_name(nubes: Any) -> str:
    name = f"p-{uuid.uuid4().hex[:10]}"
    nubes.client("dynamodb").create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def test_partiql_insert_select_update_delete(nubes: Any, table_name: str) -> None:
    ddb = nubes.client("dynamodb")
    t = f'"{table_name}"'
    ddb.execute_statement(Statement=f"INSERT INTO {t} VALUE {{'pk': 'a', 'sk': 1, 'tags': <<'x', 'y'>>, 'm': {{'k': [1, 'two']}}}}")
    ddb.execute_statement(Statement=f"INSERT INTO {t} VALUE {{'pk': ?, 'sk': ?, 'n': 5}}", Parameters=[{"S": "a"}, {"N": "2"}])
    with pytest.raises(ClientError) as exc:
        ddb.execute_statement(Statement=f"INSERT INTO {t} VALUE {{'pk': 'a', 'sk': 1}}")
    assert exc.value.response["Error"]["Code"] == "DuplicateItemException"
    rows = ddb.execute_statement(Statement=f"SELECT * FROM {t} WHERE pk = 'a' AND sk > 1")["Items"]
    assert rows == [{"pk": {"S": "a"}, "sk": {"N": "2"}, "n": {"N": "5"}}]
    rows = ddb.execute_statement(Statement=f"SELECT m.k[1], sk FROM {t} WHERE pk = ? AND sk = 1", Parameters=[{"S": "a"}])["Items"]
    assert rows == [{"m": {"M": {"k": {"L": [{"S": "two"}]}}}, "sk": {"N": "1"}}]
    ddb.execute_statement(Statement=f"UPDATE {t} SET n = n + 1 SET extra = 'e' WHERE pk = 'a' AND sk = 2")
    got = ddb.get_item(TableName=table_name, Key={"pk": {"S": "a"}, "sk": {"N": "2"}})["Item"]
    assert got["n"] == {"N": "6"} and got["extra"] == {"S": "e"}
    with pytest.raises(ClientError) as exc:
        ddb.execute_statement(Statement=f"UPDATE {t} SET n = 1 WHERE pk = 'a' AND sk = 99")
    assert exc.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    with pytest.raises(ClientError) as exc:
        ddb.execute_statement(Statement=f"UPDATE {t} SET n = 1 WHERE pk = 'a'")
    assert exc.value.response["Error"]["Message"] == "Where clause does not contain a mandatory equality on all key attributes"
    ddb.execute_statement(Statement=f"DELETE FROM {t} WHERE pk = 'a' AND sk = 1")
    assert len(ddb.execute_statement(Statement=f"SELECT * FROM {t}")["Items"]) == 1
    with pytest.raises(ClientError) as exc:
        ddb.execute_statement(Statement=f"SELEKT * FROM {t}")
    assert exc.value.response["Error"]["Message"].startswith("Statement wasn't well formed, can't be processed")
    with pytest.raises(ClientError) as exc:
        ddb.execute_statement(Statement=f"SELECT * FROM {t} WHERE pk = ?")
    assert exc.value.response["Error"]["Message"] == "Number of parameters in request and statement don't match."


def test_partiql_batch(nubes: Any, table_name: str) -> None:
    ddb = nubes.client("dynamodb")
    t = f'"{table_name}"'
    out = ddb.batch_execute_statement(Statements=[
        {"Statement": f"INSERT INTO {t} VALUE {{'pk': 'b', 'sk': 1}}"},
        {"Statement": f"INSERT INTO {t} VALUE {{'pk': 'b', 'sk': 1}}"},
        {"Statement": f"SELECT * FROM {t} WHERE pk = 'b' AND sk = 1"},
    ])["Responses"]  # fmt: skip
    assert "Error" not in out[0]
    assert out[1]["Error"]["Code"] == "DuplicateItem"
    assert out[2]["Item"] == {"pk": {"S": "b"}, "sk": {"N": "1"}}


def test_resource_api_and_batch_writer(nubes: Any, table_name: str) -> None:
    from boto3.dynamodb.conditions import Attr, Key

    table = nubes.resource("dynamodb").Table(table_name)
    with table.batch_writer() as batch:
        for n in range(60):
            batch.put_item(Item={"pk": "r", "sk": n, "even": n % 2 == 0})
    evens = table.query(KeyConditionExpression=Key("pk").eq("r") & Key("sk").lt(10), FilterExpression=Attr("even").eq(True))
    assert [int(i["sk"]) for i in evens["Items"]] == [0, 2, 4, 6, 8]
    batch = nubes.resource("dynamodb").batch_get_item(
        RequestItems={table_name: {"Keys": [{"pk": "r", "sk": 1}, {"pk": "r", "sk": 99}], "ProjectionExpression": "sk"}}
    )
    assert batch["Responses"][table_name] == [{"sk": 1}]


@pytest.mark.skipif(shutil.which("aws") is None, reason="aws CLI not installed")
def test_aws_cli(nubes: Any, table_name: str) -> None:
    env = {**os.environ, **nubes.env_vars(), "AWS_PAGER": ""}

    def aws(*args: str) -> Any:
        done = subprocess.run(["aws", "dynamodb", *args, "--output", "json"], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout) if done.stdout.strip() else None

    aws("put-item", "--table-name", table_name, "--item", '{"pk": {"S": "cli"}, "sk": {"N": "1"}, "v": {"S": "x"}}')
    got = aws("get-item", "--table-name", table_name, "--key", '{"pk": {"S": "cli"}, "sk": {"N": "1"}}')
    assert got["Item"]["v"] == {"S": "x"}
    found = aws("query", "--table-name", table_name, "--key-condition-expression", "pk = :p",
                "--expression-attribute-values", '{":p": {"S": "cli"}}')  # fmt: skip
    assert found["Count"] == 1
    assert table_name in aws("list-tables")["TableNames"]
    done = subprocess.run(
        ["aws", "dynamodb", "get-item", "--table-name", "nope-missing", "--key", '{"pk": {"S": "x"}}'],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0 and "ResourceNotFoundException" in done.stderr


def test_powertools_idempotency_on_a_nubes_table(nubes_env: Any) -> None:
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )

    name = f"idem-{uuid.uuid4().hex[:8]}"
    nubes_env.client("dynamodb").create_table(
        TableName=name, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST",
    )  # fmt: skip
    calls: list[dict[str, Any]] = []

    @idempotent_function(
        data_keyword_argument="order",
        persistence_store=DynamoDBPersistenceLayer(table_name=name),
        config=IdempotencyConfig(event_key_jmespath="id"),
    )
    def process(order: dict[str, Any]) -> dict[str, Any]:
        calls.append(order)
        return {"calls": len(calls)}

    assert process(order={"id": "o-1"}) == {"calls": 1}
    assert process(order={"id": "o-1"}) == {"calls": 1}  # answered from the table
    assert process(order={"id": "o-2"}) == {"calls": 2}
    assert len(calls) == 2
    stored = nubes_env.client("dynamodb").scan(TableName=name)["Items"]
    assert len(stored) == 2 and all(item["status"] == {"S": "COMPLETED"} for item in stored)


def test_partiql_transaction_all_or_nothing(nubes: Any, table_name: str) -> None:
    ddb = nubes.client("dynamodb")
    t = f'"{table_name}"'
    ddb.execute_transaction(TransactStatements=[
        {"Statement": f"INSERT INTO {t} VALUE {{'pk': 'tx', 'sk': 1}}"},
        {"Statement": f"INSERT INTO {t} VALUE {{'pk': 'tx', 'sk': 2}}"},
    ])  # fmt: skip
    with pytest.raises(ClientError) as exc:
        ddb.execute_transaction(TransactStatements=[
            {"Statement": f"INSERT INTO {t} VALUE {{'pk': 'tx', 'sk': 3}}"},
            {"Statement": f"INSERT INTO {t} VALUE {{'pk': 'tx', 'sk': 1}}"},
        ])  # fmt: skip
    assert exc.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert [r["Code"] for r in exc.value.response["CancellationReasons"]] == ["None", "DuplicateItem"]
    rows = ddb.execute_statement(Statement=f"SELECT sk FROM {t} WHERE pk = 'tx'")["Items"]
    assert sorted(int(r["sk"]["N"]) for r in rows) == [1, 2]
    read = ddb.execute_transaction(TransactStatements=[
        {"Statement": f"SELECT * FROM {t} WHERE pk = 'tx' AND sk = 2"},
        {"Statement": f"SELECT * FROM {t} WHERE pk = 'tx' AND sk = 9"},
    ])["Responses"]  # fmt: skip
    assert read[0]["Item"]["sk"] == {"N": "2"} and "Item" not in read[1]


def test_point_in_time_recovery_setting_round_trips(nubes: Any, table_name: str) -> None:
    ddb = nubes.client("dynamodb")
    status = ddb.describe_continuous_backups(TableName=table_name)["ContinuousBackupsDescription"]
    assert status["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "DISABLED"
    ddb.update_continuous_backups(TableName=table_name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
    status = ddb.describe_continuous_backups(TableName=table_name)["ContinuousBackupsDescription"]
    assert status["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"


def test_partiql_order_by_returning_and_paging(nubes: Any, table_name: str) -> None:
    ddb = nubes.client("dynamodb")
    t = f'"{table_name}"'
    for n in range(5):
        ddb.execute_statement(Statement=f"INSERT INTO {t} VALUE {{'pk': 'o', 'sk': {n}, 'b': ?}}", Parameters=[{"B": bytes([n])}])
    rows = ddb.execute_statement(Statement=f"SELECT sk FROM {t} WHERE pk = 'o' ORDER BY sk DESC")["Items"]
    assert [r["sk"]["N"] for r in rows] == ["4", "3", "2", "1", "0"]
    page = ddb.execute_statement(Statement=f"SELECT * FROM {t} WHERE pk = 'o'", Limit=2)
    rest = ddb.execute_statement(Statement=f"SELECT * FROM {t} WHERE pk = 'o'", NextToken=page["NextToken"])
    assert [r["sk"]["N"] for r in page["Items"] + rest["Items"]] == ["0", "1", "2", "3", "4"]
    out = ddb.execute_statement(Statement=f"UPDATE {t} SET x = 'y' WHERE pk = 'o' AND sk = 1 RETURNING MODIFIED NEW *")
    assert out["Items"] == [{"x": {"S": "y"}}]
    out = ddb.execute_statement(Statement=f"DELETE FROM {t} WHERE pk = 'o' AND sk = 1 RETURNING ALL OLD *")
    assert out["Items"][0]["x"] == {"S": "y"}
    with pytest.raises(ClientError) as exc:
        ddb.execute_statement(Statement=f"SELECT * FROM {t} ORDER BY sk")
    assert exc.value.response["Error"]["Code"] == "ValidationException"
