"""SQS and SNS on the PostgreSQL store (skipped when no PostgreSQL is reachable)."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from nubes.testing.server import NubesServer

PG_URL = os.environ.get("NUBES_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def pg_server() -> Iterator[NubesServer]:
    try:
        import psycopg

        admin = psycopg.connect(PG_URL, autocommit=True, connect_timeout=3)
    except Exception as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {PG_URL} is required with CI=true: {exc}")
        pytest.skip(f"PostgreSQL at {PG_URL} is not reachable: {exc}")
    schema = f"nubes_sqs_{uuid.uuid4().hex[:10]}"
    server = NubesServer(extra_args=["--store", f"{PG_URL}?options=-csearch_path%3D{schema}"])
    try:
        yield server.start()
    finally:
        server.close()
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.close()


def test_queues_and_fan_out_on_postgres(pg_server: NubesServer) -> None:
    sqs, sns = pg_server.client("sqs"), pg_server.client("sns")
    url = sqs.create_queue(QueueName="pg")["QueueUrl"]
    fifo = sqs.create_queue(
        QueueName="pg.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"}
    )
    for i in range(3):
        sqs.send_message(QueueUrl=fifo["QueueUrl"], MessageBody=str(i), MessageGroupId="g")
    got = sqs.receive_message(QueueUrl=fifo["QueueUrl"], MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in got] == ["0", "1", "2"]
    other = pg_server.client("sqs")
    threading.Thread(
        target=lambda: (time.sleep(0.3), other.send_message(QueueUrl=url, MessageBody="late"))
    ).start()
    started = time.monotonic()
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5)["Messages"][0]["Body"] == "late"
    assert time.monotonic() - started < 2
    topic = sns.create_topic(Name="pg-topic")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint="arn:aws:sqs:us-east-1:000000000000:pg",
                  Attributes={"RawMessageDelivery": "true"})  # fmt: skip
    sns.publish(TopicArn=topic, Message="via postgres")
    assert (
        sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5)["Messages"][0]["Body"]
        == "via postgres"
    )
