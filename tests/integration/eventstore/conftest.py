"""Event-store fixtures: a migrated throwaway database, and an open store per test.

``store`` is each implementation of the port in turn (:class:`EventStore` on PostgreSQL, then
:class:`MemoryEventLog`), so a contract test written once proves both (STYLE.md principle 11).
A test that reaches into PostgreSQL (it asks for ``ledger_url``: tampering, triggers, a second
store on the same database) or uses what only the PostgreSQL store has (marked
``postgres_only``: chunk sinks, resumed verify, commit listeners) runs on PostgreSQL alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from eventstore import EventStore, MemoryEventLog

IMPLEMENTATIONS = ("postgres", "memory")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "store" not in metafunc.fixturenames:
        return
    postgres_only = "ledger_url" in metafunc.fixturenames or metafunc.definition.get_closest_marker(
        "postgres_only"
    )
    kinds = IMPLEMENTATIONS[:1] if postgres_only else IMPLEMENTATIONS
    metafunc.parametrize("store", kinds, indirect=True)


async def _ledger_url(request: pytest.FixtureRequest, fresh: Callable[..., Awaitable[str]]) -> str:
    # One database per test, whichever of ``ledger_url`` and ``store`` asks first.
    node: Any = request.node
    if not hasattr(node, "claire_ledger_url"):
        node.claire_ledger_url = await fresh(migrate=True)
    url: str = node.claire_ledger_url
    return url


@pytest.fixture
async def ledger_url(
    request: pytest.FixtureRequest, fresh_database_url: Callable[..., Awaitable[str]]
) -> str:
    """A database of this test's own, migrated to head (tests here tamper with it)."""
    return await _ledger_url(request, fresh_database_url)


@pytest.fixture
async def store(
    request: pytest.FixtureRequest, fresh_database_url: Callable[..., Awaitable[str]]
) -> AsyncIterator[Any]:
    """The store under test: an :class:`EventStore` on this test's database, or a
    :class:`MemoryEventLog` (typed ``Any``: tests call each implementation's own extras)."""
    log: Any
    if getattr(request, "param", "postgres") == "memory":
        log = MemoryEventLog()
    else:
        log = await EventStore.connect(await _ledger_url(request, fresh_database_url))
    try:
        yield log
    finally:
        await log.close()
