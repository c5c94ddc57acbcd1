"""Fixtures of the differential attack: one migrated database and one in-memory log per test.

Written from docs/LEDGER.md ("The port and the in-memory log") and the public signatures only;
never from the implementations.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from eventstore import EventStore, MemoryEventLog


@pytest.fixture
async def ledger_url(fresh_database_url: Callable[..., Awaitable[str]]) -> str:
    """A database of this test's own, migrated to head."""
    return await fresh_database_url(migrate=True)


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
