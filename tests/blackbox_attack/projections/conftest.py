"""Each test still gets a database of its own, but copied from one migrated template.

Migrating a database takes ~3 s and most tests here make one or more; ``CREATE DATABASE ..
TEMPLATE`` copies the migrated schema (roles are server-wide) in about the time an empty
database takes. The tests see exactly what ``tests/conftest.py``'s ``fresh_database_url`` gives:
a new, migrated, untouched database per call; nothing is shared between tests.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from eventstore.admin import create_database, drop_database, with_database
from tests.conftest import _migrate


def _name(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"


@pytest.fixture(scope="session")
async def migrated_template(postgres_server_url: str) -> AsyncIterator[str]:
    """The name of a migrated database nobody connects to, dropped at the end."""
    name = _name("claire_tmpl")
    url = await create_database(postgres_server_url, name)
    try:
        await _migrate(url)
        yield name
    finally:
        await drop_database(postgres_server_url, name)


@pytest.fixture
async def fresh_database_url(
    postgres_server_url: str, migrated_template: str
) -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """``url = await fresh_database_url(migrate=True)``: a new database, a copy of the template."""
    names: list[str] = []

    async def make(*, migrate: bool = True) -> str:
        name = _name("claire_test")
        if not migrate:
            names.append(name)
            return await create_database(postgres_server_url, name)
        conn = await asyncpg.connect(postgres_server_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{migrated_template}"')
        finally:
            await conn.close()
        names.append(name)
        return with_database(postgres_server_url, name)

    yield make
    for name in names:
        await drop_database(postgres_server_url, name)
