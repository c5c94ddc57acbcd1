"""Black-box ledger fixtures: a migrated database of the test's own, the README's audit query."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from eventstore import EventStore

ROOT = Path(__file__).resolve().parents[3]


def readme_audit_query() -> str:
    """The plain-SQL audit query exactly as the README prints it (a psql statement)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Verifying the chain with nothing but psql", 1)[1]
    match = re.search(r"```sql\n(.*?)```", section, re.S)
    assert match, "the README's audit query is missing"
    return match.group(1).strip().rstrip(";")


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
