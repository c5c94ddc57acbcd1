"""Fixtures of the ledger-writer black-box tests: a migrated database of the test's own.

These tests use only what the README documents: ``from eventstore import ...``, ``claire
verify`` and plain SQL on ``ledger.events``; never the store's internals.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from eventstore import EventStore

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
async def ledger_url(fresh_database_url: Callable[..., Awaitable[str]]) -> str:
    """A database of this test's own, migrated to head."""
    return await fresh_database_url(migrate=True)


@pytest.fixture
async def store(ledger_url: str) -> AsyncIterator[EventStore]:
    store = await EventStore.connect(ledger_url)
    try:
        yield store
    finally:
        await store.close()
