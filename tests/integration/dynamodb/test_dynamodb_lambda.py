"""A nubes function using AWS Lambda Powertools' idempotency on a nubes table."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from typing import Any

import pytest

HANDLER = '''
import os

import boto3
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent,
)

persistence = DynamoDBPersistenceLayer(table_name=os.environ["IDEMPOTENCY_TABLE"])
config = IdempotencyConfig(event_key_jmespath="order_id")
ddb = boto3.client("dynamodb")


@idempotent(persistence_store=persistence, config=config)
def handler(event, context):
    out = ddb.update_item(
        TableName=os.environ["COUNTER_TABLE"], Key={"id": {"S": "runs"}}, UpdateExpression="ADD n :one",
        ExpressionAttributeValues={":one": {"N": "1"}}, ReturnValues="UPDATED_NEW",
    )
    return {"order": event["order_id"], "run": int(out["Attributes"]["n"]["N"])}
'''


def _zip(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buf.getvalue()


def test_powertools_idempotency_inside_a_function(nubes: Any) -> None:
    pytest.importorskip("aws_lambda_powertools")
    ddb, lam = nubes.client("dynamodb"), nubes.client("lambda")
    suffix = uuid.uuid4().hex[:8]
    tables = {"IDEMPOTENCY_TABLE": f"idem-{suffix}", "COUNTER_TABLE": f"runs-{suffix}"}
    for name in tables.values():
        ddb.create_table(TableName=name, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")  # fmt: skip
    function = f"idem-fn-{suffix}"
    lam.create_function(FunctionName=function, Runtime="python3.12", Handler="app.handler", Timeout=30,
                        Role="arn:aws:iam::000000000000:role/lambda", Code={"ZipFile": _zip({"app.py": HANDLER})},
                        Environment={"Variables": tables})  # fmt: skip
    lam.get_waiter("function_active_v2").wait(FunctionName=function, WaiterConfig={"Delay": 0.1, "MaxAttempts": 300})

    def invoke(order: str) -> dict[str, Any]:
        out = lam.invoke(FunctionName=function, Payload=json.dumps({"order_id": order}).encode())
        body = json.loads(out["Payload"].read())
        assert "FunctionError" not in out, body
        return dict(body)

    assert invoke("o-1") == {"order": "o-1", "run": 1}
    assert invoke("o-1") == {"order": "o-1", "run": 1}  # answered from the idempotency table
    assert invoke("o-2") == {"order": "o-2", "run": 2}
    records = ddb.scan(TableName=tables["IDEMPOTENCY_TABLE"])["Items"]
    assert len(records) == 2 and {r["status"]["S"] for r in records} == {"COMPLETED"}
    assert ddb.get_item(TableName=tables["COUNTER_TABLE"], Key={"id": {"S": "runs"}})["Item"]["n"] == {"N": "2"}
