"""Two nodes sharing a store wake each other through NATS (127.0.0.1:4222)."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from pathlib import Path

import pytest

from nubes.events.broker import NatsRelay, cluster_subject
from nubes.events.bus import EventBus

NATS_URL = "nats://127.0.0.1:4222"


def _nats_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 4222), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def nats_url() -> str:
    if not _nats_up():
        if os.environ.get("CI") == "true":
            pytest.fail("NATS must be running on 127.0.0.1:4222 in CI")
        pytest.skip("NATS is not running on 127.0.0.1:4222")
    return NATS_URL


def test_wake_crosses_nodes(nats_url: str) -> None:
    async def scenario() -> tuple[bool, bool, bool]:
        subject = cluster_subject(f"postgresql://test-{uuid.uuid4()}")
        a, b = EventBus(), EventBus()
        relay_a, relay_b = NatsRelay(nats_url, a, subject), NatsRelay(nats_url, b, subject)
        await relay_a.start()
        await relay_b.start()
        try:
            waiter = asyncio.create_task(b.wait("sqs:queue-1", 5))
            await asyncio.sleep(0.05)
            a.wake("sqs:queue-1")
            woken_remote = await waiter
            # a node's own wake-ups are not echoed back to it
            own = asyncio.create_task(a.wait("x", 0.3))
            await asyncio.sleep(0.05)
            b.wake("x", relay=False)
            not_woken = not await own
            other = asyncio.create_task(a.wait("other", 0.3))
            await asyncio.sleep(0.05)
            b.wake("unrelated")
            unrelated_not_woken = not await other
            return woken_remote, not_woken, unrelated_not_woken
        finally:
            await relay_a.stop()
            await relay_b.stop()

    assert asyncio.run(scenario()) == (True, True, True)


def test_clusters_are_separate(nats_url: str) -> None:
    async def scenario() -> bool:
        a, b = EventBus(), EventBus()
        relay_a = NatsRelay(nats_url, a, cluster_subject("postgresql://one"))
        relay_b = NatsRelay(nats_url, b, cluster_subject("postgresql://two"))
        await relay_a.start()
        await relay_b.start()
        try:
            waiter = asyncio.create_task(b.wait("q", 0.3))
            await asyncio.sleep(0.05)
            a.wake("q")
            return await waiter
        finally:
            await relay_a.stop()
            await relay_b.stop()

    assert asyncio.run(scenario()) is False


def test_server_with_broker_reports_it(nats_url: str, tmp_path: Path) -> None:
    from nubes.testing import NubesServer

    with NubesServer(tmp_path / "d", extra_args=["--broker", nats_url]) as server:
        import json
        import urllib.request

        with urllib.request.urlopen(server.endpoint + "/_nubes/health") as resp:
            assert json.loads(resp.read())["broker"] == "nats"
        assert server.client("sts").get_caller_identity()["Account"] == "000000000000"


def _pg_url(schema: str) -> str:
    return f"postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"


def _pg_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def test_two_nodes_share_a_postgresql_store(nats_url: str, tmp_path: Path) -> None:
    """Writes on one node are read on the other, SecureStrings included."""
    if not _pg_up():
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL must be running on 127.0.0.1:5432 in CI")
        pytest.skip("PostgreSQL is not running")
    import psycopg

    from nubes.testing import NubesServer

    schema = f"cluster_{uuid.uuid4().hex[:10]}"
    args = ["--store", _pg_url(schema), "--broker", nats_url]
    try:
        with NubesServer(tmp_path / "a", extra_args=args) as a, NubesServer(tmp_path / "b", extra_args=args) as b:
            a.client("ssm").put_parameter(Name="/shared/x", Value="secret-1", Type="SecureString")
            got = b.client("ssm").get_parameter(Name="/shared/x", WithDecryption=True)["Parameter"]["Value"]
            assert got == "secret-1"
            b.client("secretsmanager").create_secret(Name="shared", SecretString="s")
            assert a.client("secretsmanager").get_secret_value(SecretId="shared")["SecretString"] == "s"
    finally:
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
