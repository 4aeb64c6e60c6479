"""The durable store: the contract (``base``) and its backends.

``open_store`` picks the backend from the settings: SQLite in
``data_dir/nubes.db`` by default, PostgreSQL for a ``postgresql://`` URL.
"""

from __future__ import annotations

import asyncio

from nubes.settings import Settings
from nubes.storage.base import QueueMessage, Store, StoreError, Txn

__all__ = ["QueueMessage", "Store", "StoreError", "Txn", "open_store", "open_store_sync"]


def open_store_sync(settings: Settings) -> Store:
    """Open the store ``settings`` name (blocking: connects and creates the schema)."""
    if settings.store_backend == "postgresql":
        from nubes.storage.postgres import PostgresStore

        return PostgresStore(settings.store)
    if settings.store != "sqlite":
        raise StoreError(f"unknown store {settings.store!r}: use 'sqlite' or a postgresql:// URL")
    from nubes.storage.sqlite import SqliteStore

    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteStore(data_dir / "nubes.db", durability=settings.durability)


async def open_store(settings: Settings) -> Store:
    """Open the store ``settings`` name, off the event loop."""
    return await asyncio.to_thread(open_store_sync, settings)
