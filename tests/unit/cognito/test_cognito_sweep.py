"""Abandoned challenge sessions, authorization codes and hosted UI sign-ins are
deleted once expired; live ones stay."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from nubes.app import App
from nubes.services.cognito_idp.provider import CognitoProvider
from nubes.services.cognito_idp.store import AUTH_CODES, LOGIN_SESSIONS, SESSIONS
from nubes.settings import Settings
from nubes.storage.base import Txn
from nubes.storage.keys import pack


def _keys_of(table: str) -> Callable[[Txn], list[bytes]]:
    return lambda txn: [key for key, _ in txn.scan(table)]


def test_expired_sessions_and_codes_are_swept(tmp_path: Path) -> None:
    async def main() -> None:
        app = App(Settings(data_dir=tmp_path, tls_port=-1))
        await app.start()
        try:
            provider = app.provider("cognito-idp")
            assert isinstance(provider, CognitoProvider)
            now = time.time()

            def seed(txn: Txn) -> None:
                for table in (SESSIONS, AUTH_CODES, LOGIN_SESSIONS):
                    txn.put(table, pack("old"), orjson.dumps({"Expires": now - 1}))
                    txn.put(table, pack("live"), orjson.dumps({"Expires": now + 600}))

            await app.store.write(seed)
            provider.SWEEP_EVERY = 2
            pool, client, user = {"Id": "us-east-1_x"}, {"ClientId": "c"}, {"Username": "u"}
            await provider._new_session(pool, client, user, "SOFTWARE_TOKEN_MFA")
            left = await app.store.read(lambda txn: [k for t in (SESSIONS, AUTH_CODES, LOGIN_SESSIONS) for k, _ in txn.scan(t)])
            assert pack("old") in left  # not yet: one session since the last sweep
            fresh = await provider._new_session(pool, client, user, "SOFTWARE_TOKEN_MFA")
            for table in (SESSIONS, AUTH_CODES, LOGIN_SESSIONS):
                keys = await app.store.read(_keys_of(table))
                assert pack("old") not in keys and pack("live") in keys
            assert await app.store.read(lambda txn: txn.get(SESSIONS, pack(fresh))) is not None
        finally:
            await app.stop()

    asyncio.run(main())
