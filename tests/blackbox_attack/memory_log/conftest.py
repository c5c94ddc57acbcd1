"""Fixtures of the differential attack: a migrated database and an in-memory log per test.

Written from docs/LEDGER.md ("The port and the in-memory log") and the public signatures only;
never from the implementations. Each test's database is a copy of one migrated template
(``CREATE DATABASE .. TEMPLATE``): the same schema as a fresh migration, in a fraction of the
time, so positions, heads and verify results compare absolutely between the two logs.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from eventstore import EventStore, MemoryEventLog


@pytest.fixture(scope="session")
async def migrated_template(
    postgres_server_url: str, fresh_database_url_session: Callable[..., Awaitable[str]]
) -> str:
    url = await fresh_database_url_session()
    return urlsplit(url).path.lstrip("/")


@pytest.fixture(scope="session")
async def fresh_database_url_session(postgres_server_url: str) -> AsyncIterator[Any]:
    from eventstore.admin import create_database, drop_database
    from tests.conftest import _migrate

    names: list[str] = []

    async def make() -> str:
        name = f"claire_test_memtmpl_{secrets.token_hex(4)}"
        names.append(name)
        url = await create_database(postgres_server_url, name)
        await _migrate(url)
        return url

    yield make
    for name in names:
        await drop_database(postgres_server_url, name)


@pytest.fixture(scope="session")
async def copies_to_drop(postgres_server_url: str) -> AsyncIterator[list[str]]:
    """Names of the per-test copies, all dropped at the end (a drop costs as much as a copy)."""
    from eventstore.admin import drop_database

    names: list[str] = []
    yield names
    # Concurrent drops share the server's checkpoints: one by one they cost ~0.8 s each.
    limit = asyncio.Semaphore(16)

    async def drop(name: str) -> None:
        async with limit:
            await drop_database(postgres_server_url, name)

    await asyncio.gather(*(drop(name) for name in names))


@pytest.fixture(scope="session")
async def shared_url(fresh_database_url_session: Callable[..., Awaitable[str]]) -> str:
    """One migrated database for the tests whose answers do not depend on positions."""
    return await fresh_database_url_session()


@pytest.fixture
async def database_copy(
    postgres_server_url: str, migrated_template: str, copies_to_drop: list[str]
) -> Callable[[], Awaitable[str]]:
    """Factory of databases of this test's own: copies of the migrated template."""

    async def make() -> str:
        name = f"claire_test_mem_{secrets.token_hex(4)}"
        copies_to_drop.append(name)
        admin = await asyncpg.connect(postgres_server_url)
        try:
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{migrated_template}"')
        finally:
            await admin.close()
        return urlunsplit(urlsplit(postgres_server_url)._replace(path=f"/{name}"))

    return make


@pytest.fixture
async def ledger_url(database_copy: Callable[[], Awaitable[str]]) -> str:
    """A database of this test's own."""
    return await database_copy()


@pytest.fixture
async def pg(ledger_url: str) -> AsyncIterator[EventStore]:
    store = await EventStore.connect(ledger_url)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def mem() -> AsyncIterator[MemoryEventLog]:
    log = MemoryEventLog()
    try:
        yield log
    finally:
        await log.close()
