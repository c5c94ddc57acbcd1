"""Black-box ledger fixtures: a migrated database of the test's own and a store on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from eventstore import EventStore


@pytest.fixture
async def ledger_url(fresh_database_url: Callable[..., Awaitable[str]]) -> str:
    return await fresh_database_url(migrate=True)


@pytest.fixture
async def store(ledger_url: str) -> AsyncIterator[EventStore]:
    store = await EventStore.connect(ledger_url)
    try:
        yield store
    finally:
        await store.close()
