"""``claire db upgrade`` takes an empty database to head, and again is a no-op."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from eventstore.migrations import head_revision
from pipeline.cli import main

pytestmark = [pytest.mark.db]


async def test_db_upgrade_when_database_empty_then_ledger_at_head_and_rerun_is_noop(
    fresh_database_url: Callable[..., Awaitable[str]],
) -> None:
    url = await fresh_database_url(migrate=False)
    for _ in range(2):
        assert await asyncio.to_thread(main, ["--database-url", url, "db", "upgrade"]) == 0
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT version_num FROM alembic_version") == head_revision()
        assert await conn.fetchrow("SELECT position, hash FROM ledger.head") == (0, bytes(32))
        roles = await conn.fetch(
            "SELECT rolname FROM pg_roles WHERE rolname IN ('claire_app', 'claire_auditor')"
        )
        assert len(roles) == 2
    finally:
        await conn.close()
