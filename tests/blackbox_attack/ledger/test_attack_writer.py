"""Group commit, idempotency, id conflicts, expected versions across stores, big appends."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta, timezone
from decimal import Decimal

import msgspec
import pytest

from eventstore import (
    ConcurrencyConflict,
    EventIdConflict,
    EventStore,
    EventStoreError,
    InvalidEvent,
)
from tests.blackbox_attack.ledger.attack_ledger_helpers import (
    all_recorded,
    assert_intact,
    count_events,
    new,
    positions,
    trade,
)


@pytest.fixture
async def url(fresh_database_url):  # type: ignore[no-untyped-def]
    return await fresh_database_url()


async def test_group_commit_when_bad_requests_mixed_with_good_then_only_bad_fail_with_their_error(
    url: str,
) -> None:
    store = await EventStore.connect(url)
    try:
        stored = new()
        await store.append("s-stored", [stored])
        await store.append("s-versioned", [new()])
        changed = msgspec.structs.replace(stored, event=trade(price=Decimal("1")))
        nan = trade()
        msgspec.structs.force_setattr(nan, "price", Decimal("NaN"))
        good = [(f"good-{i}", [new(), new()], None) for i in range(20)]
        bad = [
            ("bad-invalid", [new(), new(nan)], None, InvalidEvent),
            ("s-stored", [new(), changed], None, EventIdConflict),
            ("s-versioned", [new()], 0, ConcurrencyConflict),
            ("bad-stream name", [new()], None, InvalidEvent),
        ]
        calls = [store.append(s, e, expected_version=v) for s, e, v in good]
        calls += [store.append(s, e, expected_version=v) for s, e, v, _ in bad]
        results = await asyncio.gather(*calls, return_exceptions=True)
        for result in results[: len(good)]:
            assert isinstance(result, list) and len(result) == 2, result
        for result, (_, _, _, kind) in zip(results[len(good) :], bad, strict=True):
            assert isinstance(result, kind), result
            assert isinstance(result, EventStoreError)
        assert await count_events(url) == 2 + 2 * len(good)
        assert await positions(url) == list(range(1, 3 + 2 * len(good)))
        await assert_intact(store, url)
    finally:
        await store.close()


async def test_reappend_when_identical_from_same_and_other_store_then_original_position_no_write(
    url: str,
) -> None:
    a = await EventStore.connect(url)
    b = await EventStore.connect(url)
    try:
        first = new(causation_id=uuid.uuid4(), correlation_id=uuid.uuid4(), causation_position=0)
        (pos,) = await a.append("idem", [first])
        assert await a.append("idem", [first]) == [pos]
        assert await b.append("idem", [first]) == [pos]
        fresh = new()
        got = await b.append("idem", [first, fresh])
        assert got[0] == pos and got[1] == pos + 1
        assert await count_events(url) == 2
        await assert_intact(a, url)
    finally:
        await a.close()
        await b.close()


async def _conflict_after(url: str, original, changed) -> None:  # type: ignore[no-untyped-def]
    store = await EventStore.connect(url)
    try:
        (pos,) = await store.append("idem", [original])
        with pytest.raises(EventIdConflict) as raised:
            await store.append("idem", [new(), changed])
        assert raised.value.position == pos
        assert str(original.event_id) in str(raised.value) or raised.value.event_id in (
            original.event_id,
            str(original.event_id),
        )
        assert await count_events(url) == 1
    finally:
        await store.close()


@pytest.mark.parametrize(
    "change",
    [
        {"event": trade(price=Decimal("100.0"))},
        {"event": trade(price=Decimal("1E+2"))},
        {"causation_id": uuid.UUID(int=0)},
        {"correlation_id": uuid.UUID(int=0)},
        {"causation_position": 0},
    ],
    ids=["trailing-zero", "exponent-form", "causation", "correlation", "causation-position"],
)
async def test_reappend_when_same_id_with_equal_valued_but_different_content_then_event_id_conflict(
    url: str, change: dict[str, object]
) -> None:
    original = new(event=trade(price=Decimal("100")))
    await _conflict_after(url, original, msgspec.structs.replace(original, **change))


async def test_reappend_when_same_id_to_other_stream_then_event_id_conflict_nothing_written(
    url: str,
) -> None:
    store = await EventStore.connect(url)
    try:
        original = new()
        (pos,) = await store.append("one", [original])
        with pytest.raises(EventIdConflict) as raised:
            await store.append("two", [new(), original])
        assert raised.value.position == pos
        assert await count_events(url) == 1
    finally:
        await store.close()


async def test_reappend_when_same_instant_in_other_timezone_then_no_new_row_and_verifies(
    url: str,
) -> None:
    store = await EventStore.connect(url)
    try:
        original = new()
        (pos,) = await store.append("tz", [original])
        shifted = msgspec.structs.replace(
            original, occurred_at=original.occurred_at.astimezone(timezone(timedelta(hours=5)))
        )
        try:
            assert await store.append("tz", [shifted]) == [pos]
        except EventIdConflict as conflict:
            assert conflict.position == pos
        assert await count_events(url) == 1
        await assert_intact(store, url)
    finally:
        await store.close()


async def test_one_call_when_same_id_twice_with_different_content_then_conflict_position_none(
    url: str,
) -> None:
    store = await EventStore.connect(url)
    try:
        one = new()
        other = msgspec.structs.replace(one, event=trade(price=Decimal("7")))
        with pytest.raises(EventIdConflict) as raised:
            await store.append("dup", [one, new(), other])
        assert raised.value.position is None
        assert await count_events(url) == 0
    finally:
        await store.close()


async def test_expected_version_when_other_store_appended_last_then_stale_hint_never_refuses(
    url: str,
) -> None:
    a = await EventStore.connect(url)
    b = await EventStore.connect(url)
    try:
        await a.append("race", [new()], expected_version=0)
        await b.append("race", [new()], expected_version=1)
        await a.append("race", [new(), new()], expected_version=2)
        await b.append("race", [new()], expected_version=4)
        with pytest.raises(ConcurrencyConflict) as raised:
            await a.append("race", [new()], expected_version=4)
        assert (raised.value.stream, raised.value.expected, raised.value.actual) == ("race", 4, 5)
        with pytest.raises(ConcurrencyConflict) as raised:
            await b.append("race", [new()], expected_version=0)
        assert raised.value.actual == 5
        assert await count_events(url) == 5
        await assert_intact(a, url)
    finally:
        await a.close()
        await b.close()


async def test_expected_version_when_many_stores_race_same_version_then_exactly_one_wins(
    url: str,
) -> None:
    stores = [await EventStore.connect(url) for _ in range(4)]
    try:
        for round_ in range(5):
            results = await asyncio.gather(
                *(s.append("contest", [new()], expected_version=round_) for s in stores),
                *(s.append(f"own-{i}", [new()]) for i, s in enumerate(stores)),
                return_exceptions=True,
            )
            contest = results[: len(stores)]
            winners = [r for r in contest if isinstance(r, list)]
            losers = [r for r in contest if isinstance(r, ConcurrencyConflict)]
            assert len(winners) == 1 and len(losers) == len(stores) - 1, contest
            assert all(loser.actual == round_ + 1 for loser in losers)
            assert all(isinstance(r, list) for r in results[len(stores) :])
        assert await positions(url) == list(range(1, await count_events(url) + 1))
        await assert_intact(stores[0], url)
    finally:
        for s in stores:
            await s.close()


async def _writers(url: str, stop: asyncio.Event) -> int:
    store = await EventStore.connect(url)
    written = 0
    try:
        version = 0
        while not stop.is_set():
            await store.append("side", [new()], expected_version=version)
            version += 1
            await store.append("side-free", [new()])
            written += 2
            await asyncio.sleep(0)
    finally:
        await store.close()
    return written


@pytest.mark.parametrize("size", [200, 250, 10_000])
async def test_big_append_when_invalid_event_last_then_nothing_written_writers_unharmed(
    url: str, size: int
) -> None:
    store = await EventStore.connect(url)
    stop = asyncio.Event()
    writer = asyncio.create_task(_writers(url, stop))
    try:
        events = [new(trade(price=Decimal(i + 1))) for i in range(size - 1)]
        bad = trade()
        msgspec.structs.force_setattr(bad, "contracts", Decimal("Infinity"))
        with pytest.raises(InvalidEvent):
            await store.append("big", [*events, new(bad)])
        assert [r async for r in store.read_stream("big")] == []
    finally:
        stop.set()
        written = await writer
    assert await count_events(url) == written
    assert await positions(url) == list(range(1, written + 1))
    try:
        await assert_intact(store, url)
    finally:
        await store.close()


@pytest.mark.parametrize("size", [200, 10_000])
async def test_big_append_when_stored_id_changed_at_end_then_conflict_and_nothing_written(
    url: str, size: int
) -> None:
    store = await EventStore.connect(url)
    try:
        stored = new()
        (pos,) = await store.append("small", [stored])
        changed = msgspec.structs.replace(stored, event=trade(price=Decimal("3")))
        events = [new(trade(price=Decimal(i + 1))) for i in range(size - 1)]
        with pytest.raises(EventIdConflict) as raised:
            await store.append("big", [*events, changed])
        assert raised.value.position == pos
        assert await count_events(url) == 1
        await assert_intact(store, url)
    finally:
        await store.close()


@pytest.mark.parametrize("size", [200, 10_001])
async def test_big_append_when_concurrent_writers_then_consecutive_gapless_and_reads_back_equal(
    url: str, size: int
) -> None:
    store = await EventStore.connect(url)
    stop = asyncio.Event()
    writer = asyncio.create_task(_writers(url, stop))
    try:
        await asyncio.sleep(0.05)
        events = [
            new(trade(price=Decimal(f"{i + 1}.{i:04d}"), trade_id=f"t\u00e9{i}"))
            for i in range(size)
        ]
        got = await store.append("big", events, expected_version=0)
        assert got == list(range(got[0], got[0] + size))
        back = [r async for r in store.read_stream("big")]
        assert [r.event for r in back] == [e.event for e in events]
        assert [str(r.event.price) for r in back] == [str(e.event.price) for e in events]
        assert [r.event_id for r in back] == [e.event_id for e in events]
        again = await store.append("big", events)
        assert again == got
    finally:
        stop.set()
        written = await writer
    assert await count_events(url) == written + size
    assert await positions(url) == list(range(1, written + size + 1))
    try:
        await assert_intact(store, url)
    finally:
        await store.close()


async def test_big_append_when_expected_version_stale_then_conflict_nothing_written(
    url: str,
) -> None:
    store = await EventStore.connect(url)
    try:
        await store.append("big", [new()])
        with pytest.raises(ConcurrencyConflict) as raised:
            await store.append("big", [new() for _ in range(300)], expected_version=0)
        assert raised.value.actual == 1
        assert await count_events(url) == 1
    finally:
        await store.close()


async def test_read_all_after_big_appends_then_every_recorded_event_in_order(url: str) -> None:
    store = await EventStore.connect(url)
    try:
        await store.append("a", [new() for _ in range(450)])
        await store.append("b", [new() for _ in range(3)])
        recorded = await all_recorded(store)
        assert [r.position for r in recorded] == list(range(1, 454))
    finally:
        await store.close()
