"""Big appends (10,000+, the staged path) racing each other, with stored and repeated ids."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import msgspec
import pytest

from eventstore import ConcurrencyConflict, EventIdConflict, EventStore
from tests.blackbox_attack.ledger.attack_ledger_helpers import (
    assert_intact,
    claire_async,
    count_events,
    new,
    positions,
    trade,
)

BIG = 10_000


@pytest.fixture
async def url(fresh_database_url):  # type: ignore[no-untyped-def]
    return await fresh_database_url()


async def test_two_staged_appends_when_racing_same_expected_version_then_one_wins_whole(
    url: str,
) -> None:
    a = await EventStore.connect(url)
    b = await EventStore.connect(url)
    try:
        results = await asyncio.gather(
            a.append("same", [new() for _ in range(BIG)], expected_version=0),
            b.append("same", [new() for _ in range(BIG + 1)], expected_version=0),
            a.append("other-a", [new() for _ in range(BIG)]),
            b.append("other-b", [new() for _ in range(250)]),
            return_exceptions=True,
        )
        contest = results[:2]
        winners = [r for r in contest if isinstance(r, list)]
        losers = [r for r in contest if isinstance(r, ConcurrencyConflict)]
        assert len(winners) == 1 and len(losers) == 1, contest
        assert losers[0].actual == len(winners[0])
        assert all(isinstance(r, list) for r in results[2:]), results[2:]
        total = len(winners[0]) + BIG + 250
        assert await count_events(url) == total
        assert await positions(url) == list(range(1, total + 1))
        for got in (winners[0], results[2], results[3]):
            assert got == list(range(got[0], got[0] + len(got)))  # type: ignore[index]
        await assert_intact(a, url)
    finally:
        await a.close()
        await b.close()


async def test_staged_append_when_holding_stored_identical_id_then_original_position_rest_new(
    url: str,
) -> None:
    store = await EventStore.connect(url)
    try:
        stored = new()
        (pos,) = await store.append("s", [stored])
        await store.append("x", [new()])
        batch = [new() for _ in range(BIG)]
        got = await store.append("s", [*batch[:5000], stored, *batch[5000:]])
        assert got[5000] == pos
        rest = got[:5000] + got[5001:]
        assert rest == list(range(3, 3 + BIG))
        assert await count_events(url) == BIG + 2
        await assert_intact(store, url)
    finally:
        await store.close()


async def _repeat_with_other_content(url: str, size: int) -> EventIdConflict:
    store = await EventStore.connect(url)
    try:
        batch = [new() for _ in range(size)]
        twin = msgspec.structs.replace(batch[10], event=trade(price=Decimal("9")))
        with pytest.raises(EventIdConflict) as raised:
            await store.append("s", [*batch, twin])
        assert await count_events(url) == 0
        await store.append("s", [new()])
        assert await positions(url) == [1]
        return raised.value
    finally:
        await store.close()


async def test_small_append_when_id_repeated_with_other_content_then_conflict_position_none(
    url: str,
) -> None:
    conflict = await _repeat_with_other_content(url, 20)
    assert conflict.position is None


@pytest.mark.parametrize("size", [250, 9_999, BIG])
async def test_big_append_when_id_repeated_with_other_content_then_nothing_written(
    url: str, size: int
) -> None:
    await _repeat_with_other_content(url, size)


@pytest.mark.parametrize("size", [250, 9_999, BIG])
async def test_big_append_when_id_repeated_with_other_content_then_conflict_position_none(
    url: str, size: int
) -> None:
    conflict = await _repeat_with_other_content(url, size)
    assert conflict.position is None


async def test_verify_when_staged_append_in_flight_then_exit_0(url: str) -> None:
    store = await EventStore.connect(url)
    try:
        await store.append("s", [new() for _ in range(10)])
        big = asyncio.create_task(store.append("big", [new() for _ in range(3 * BIG)]))  # noqa: RUF006
        checks = 0
        while not big.done() or checks == 0:
            done = await claire_async(url, "verify")
            assert done.code == 0, done.text
            checks += 1
        await big
        await assert_intact(store, url)
    finally:
        await store.close()
