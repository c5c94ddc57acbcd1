"""Expected versions inside one group commit, and an identical retry racing its original."""

from __future__ import annotations

import asyncio

import pytest

from eventstore import ConcurrencyConflict, EventStore
from tests.blackbox_attack.ledger.attack_ledger_helpers import assert_intact, count_events, new


@pytest.fixture
async def url(fresh_database_url):  # type: ignore[no-untyped-def]
    return await fresh_database_url()


async def test_group_commit_when_same_store_sends_same_expected_version_twice_then_one_conflicts(
    url: str,
) -> None:
    store = await EventStore.connect(url)
    try:
        for version in range(0, 12, 2):
            results = await asyncio.gather(
                *(store.append("g", [new(), new()], expected_version=version) for _ in range(3)),
                return_exceptions=True,
            )
            winners = [r for r in results if isinstance(r, list)]
            losers = [r for r in results if isinstance(r, ConcurrencyConflict)]
            assert len(winners) == 1 and len(losers) == 2, results
            assert all(loser.actual == version + 2 for loser in losers)
        assert await count_events(url) == 12
        await assert_intact(store, url)
    finally:
        await store.close()


async def test_identical_retry_when_racing_its_original_from_other_store_then_one_row(
    url: str,
) -> None:
    a = await EventStore.connect(url)
    b = await EventStore.connect(url)
    try:
        for _ in range(10):
            events = [new() for _ in range(3)]
            first, second = await asyncio.gather(a.append("r", events), b.append("r", events))
            assert first == second
        assert await count_events(url) == 30
        await assert_intact(a, url)
    finally:
        await a.close()
        await b.close()


async def test_identical_retry_when_in_same_group_commit_then_one_row(url: str) -> None:
    store = await EventStore.connect(url)
    try:
        events = [new() for _ in range(4)]
        results = await asyncio.gather(*(store.append("r", events) for _ in range(5)))
        assert all(r == results[0] for r in results)
        assert await count_events(url) == 4
        await assert_intact(store, url)
    finally:
        await store.close()
