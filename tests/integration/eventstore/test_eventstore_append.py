"""Appending and reading: atomic batches, conflicts, idempotency, bad input, streaming reads.

The port's contract: tests taking only ``store`` run on PostgreSQL and in memory (conftest)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import msgspec
import pytest

from aggregates import events as ev
from aggregates.envelope import NewEvent
from aggregates.upcasting import Upcasters
from eventstore import (
    ConcurrencyConflict,
    CorruptEvent,
    EventLog,
    EventStore,
    InvalidEvent,
)
from eventstore.sql import COPY_MIN_EVENTS, STREAM_CHUNK_EVENTS
from tests.integration.eventstore.eventstore_helpers import (
    BASE_TIME,
    alert,
    audit,
    count_events,
    event_id,
    tick,
)

pytestmark = [pytest.mark.db]


async def _count(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval("SELECT count(*) FROM ledger.events")
    finally:
        await conn.close()


async def _all(store: EventStore, after: int = 0) -> list:
    return [record async for record in store.read_all(after=after)]


async def test_append_when_batch_given_then_positions_are_dense_and_events_read_back_typed(
    store: EventStore,
) -> None:
    batch = [tick(n) for n in range(5)]
    assert await store.append("market-BTC_USDT", batch, expected_version=0) == [1, 2, 3, 4, 5]
    assert await store.append("clock", [alert(1, "hi")]) == [6]

    records = await _all(store)
    assert [r.position for r in records] == [1, 2, 3, 4, 5, 6]
    assert [r.event for r in records[:5]] == [new.event for new in batch]
    first = records[0]
    assert (first.stream, first.stream_version, first.event_type) == (
        "market-BTC_USDT",
        1,
        "market.trade",
    )
    assert first.event_id == batch[0].event_id and first.occurred_at == batch[0].occurred_at
    assert records[5].correlation_id == event_id("corr/") and records[5].causation_position == 1
    assert await store.head() == (6, records[5].hash)


async def test_append_when_expected_version_is_wrong_then_conflict_names_it_and_nothing_is_written(
    store: EventLog,
) -> None:
    await store.append("order-a", [tick(1), tick(2)], expected_version=0)
    with pytest.raises(ConcurrencyConflict) as caught:
        await store.append("order-a", [tick(3), tick(4)], expected_version=1)
    assert (caught.value.stream, caught.value.expected, caught.value.actual) == ("order-a", 1, 2)
    assert "order-a" in str(caught.value) and "1" in str(caught.value)
    assert await count_events(store) == 2
    assert await store.append("order-a", [tick(3)], expected_version=2) == [3]


async def test_append_when_stream_exists_but_new_store_expects_new_stream_then_conflict(
    store: EventStore, ledger_url: str
) -> None:
    await store.append("order-b", [tick(1)])
    other = await EventStore.connect(ledger_url)
    try:
        with pytest.raises(ConcurrencyConflict) as caught:
            await other.append("order-b", [tick(2)], expected_version=0)
        assert caught.value.actual == 1
        assert await other.append("order-b", [tick(2)]) == [2]
    finally:
        await other.close()
    assert [r.stream_version async for r in store.read_stream("order-b")] == [1, 2]


async def test_append_when_ids_already_stored_then_original_positions_and_no_duplicate(
    store: EventLog,
) -> None:
    first = await store.append("s", [tick(1), tick(2)])
    await store.append("other", [tick(9, label="x")])
    assert await store.append("s", [tick(1), tick(2)], expected_version=0) == first
    assert await store.append("s", [tick(2), tick(3)]) == [2, 4]
    assert await store.append("s", [tick(5), tick(5)]) == [5, 5]
    assert await count_events(store) == 5


async def test_append_when_ids_stored_by_another_store_then_original_positions_and_no_duplicate(
    store: EventStore, ledger_url: str
) -> None:
    await store.append("s", [tick(1), tick(2)])
    assert await _count(ledger_url) == 2
    fresh = await EventStore.connect(ledger_url)
    try:
        assert await fresh.append("s", [tick(1)]) == [1]
    finally:
        await fresh.close()
    assert await _count(ledger_url) == 2


async def test_append_when_many_callers_at_once_then_conflicting_request_fails_alone(
    store: EventLog,
) -> None:
    await store.append("order-c", [tick(0, label="c")])
    calls = [store.append(f"order-{n}", [tick(n)], expected_version=0) for n in range(20)]
    calls.append(store.append("order-c", [tick(1, label="c")], expected_version=5))
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(results[-1], ConcurrencyConflict)
    positions = sorted(p for r in results[:-1] for p in r)
    assert positions == list(range(2, 22))
    assert await count_events(store) == 21
    assert (await store.verify()).ok


async def test_append_when_event_type_unknown_then_invalid_event_and_nothing_written(
    store: EventLog,
) -> None:
    class Stranger(ev.Event, tag="stranger.appeared"):
        name: str

    bad = NewEvent(event=Stranger(at_ms=1, name="x"), event_id=uuid.uuid4(), occurred_at=BASE_TIME)
    with pytest.raises(InvalidEvent, match="Stranger is not an event type"):
        await store.append("s", [tick(1), bad])
    assert await count_events(store) == 0


@pytest.mark.parametrize(
    ("new", "message"),
    [
        (
            NewEvent(event=ev.ClockTicked(at_ms=-5), event_id=uuid.uuid4(), occurred_at=BASE_TIME),
            "invalid clock.tick payload",
        ),
        (
            NewEvent(
                event=ev.AlertRaised(at_ms=1, severity="LOUD", code="x", message="m"),  # type: ignore[arg-type]
                event_id=uuid.uuid4(),
                occurred_at=BASE_TIME,
            ),
            "invalid alert.raised payload",
        ),
        (
            NewEvent(
                event=ev.AlertRaised(at_ms=1, severity="INFO", code="x", message="nul\x00"),
                event_id=uuid.uuid4(),
                occurred_at=BASE_TIME,
            ),
            "NUL",
        ),
        (
            NewEvent(
                event=ev.ClockTicked(at_ms=1),
                event_id=uuid.uuid4(),
                occurred_at=datetime(2025, 1, 1),  # noqa: DTZ001 - the point of the test
            ),
            "timezone-aware",
        ),
    ],
)
async def test_append_when_payload_or_envelope_invalid_then_clear_error_and_nothing_written(
    store: EventLog, new: NewEvent, message: str
) -> None:
    with pytest.raises(InvalidEvent, match=message):
        await store.append("s", [tick(1), new])
    assert await count_events(store) == 0


@pytest.mark.parametrize("stream", ["", "has space", "pipe|pipe", "x" * 201])
async def test_append_when_stream_name_invalid_then_invalid_event(
    store: EventStore, stream: str
) -> None:
    with pytest.raises(InvalidEvent, match="invalid stream name"):
        await store.append(stream, [tick(1)])


async def test_append_when_expected_version_negative_then_invalid_event(store: EventStore) -> None:
    with pytest.raises(InvalidEvent, match="expected_version"):
        await store.append("s", [tick(1)], expected_version=-1)


async def test_read_all_when_log_is_large_then_streams_in_order_in_small_batches(
    store: EventStore,
) -> None:
    for chunk in range(10):
        await store.append("market-BTC_USDT", [tick(chunk * 1000 + n) for n in range(1000)])
    seen = 0
    reader = store.read_all(after=0, batch_size=333)
    assert not isinstance(reader, list)
    async for record in reader:
        seen += 1
        assert record.position == seen
    assert seen == 10_000
    tail = [r.position async for r in store.read_all(after=9_990, batch_size=4)]
    assert tail == list(range(9_991, 10_001))
    versions = [r.stream_version async for r in store.read_stream("market-BTC_USDT", 9_998)]
    assert versions == [9_998, 9_999, 10_000]


async def test_position_at_when_occurred_at_not_monotonic_then_smallest_position_at_or_after(
    store: EventStore,
) -> None:
    seconds = [10, 30, 20, 40, 5]
    await store.append("s", [tick(n, seconds=s) for n, s in enumerate(seconds)])

    def at(seconds: int) -> datetime:
        return BASE_TIME + timedelta(seconds=seconds)

    assert await store.position_at(at(0)) == 1
    assert await store.position_at(at(20)) == 2
    assert await store.position_at(at(31)) == 4
    assert await store.position_at(at(41)) is None
    with pytest.raises(InvalidEvent):
        await store.position_at(datetime(2025, 1, 1))  # noqa: DTZ001 - the point of the test


async def test_read_when_row_has_older_schema_version_then_upcast_step_by_step(
    ledger_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await EventStore.connect(ledger_url)
    try:
        await store.append("s", [tick(1)])
    finally:
        await store.close()
    # The class moves to v3: v1 rows need two steps.
    monkeypatch.setattr(ev.TradeTicked, "schema_version", 3)
    upcasters = Upcasters()
    calls: list[int] = []

    @upcasters.register("market.trade", from_version=1)
    def _v1(data: dict) -> dict:
        calls.append(1)
        return {**data, "trade_id": data["trade_id"] + "-v2"}

    @upcasters.register("market.trade", from_version=2)
    def _v2(data: dict) -> dict:
        calls.append(2)
        return {**data, "self_trade": True}

    upcasting = await EventStore.connect(ledger_url, upcasters=upcasters)
    try:
        [record] = [r async for r in upcasting.read_all()]
    finally:
        await upcasting.close()
    assert calls == [1, 2]
    assert record.schema_version == 1
    assert record.event.trade_id == "t1-v2" and record.event.self_trade is True


async def test_read_when_payload_no_longer_decodes_then_corrupt_event_names_position(
    store: EventStore, ledger_url: str
) -> None:
    await store.append("s", [tick(1), tick(2)])
    conn = await asyncpg.connect(ledger_url)
    try:
        await conn.execute("SET session_replication_role = replica")
        await conn.execute(
            'UPDATE ledger.events SET payload = payload || \'{"price": "-1"}\' WHERE position = 2'
        )
    finally:
        await conn.close()
    with pytest.raises(CorruptEvent, match="position 2"):
        _ = [r async for r in store.read_all()]


async def test_append_when_decimal_payload_then_stored_as_json_strings(
    store: EventStore, ledger_url: str
) -> None:
    await store.append("s", [tick(1)])
    conn = await asyncpg.connect(ledger_url)
    try:
        price = await conn.fetchval("SELECT payload->'price' FROM ledger.events")
    finally:
        await conn.close()
    assert msgspec.json.decode(price) == "65001.5"
    assert Decimal(msgspec.json.decode(price)) == Decimal("65001.5")


async def test_recorded_at_when_appended_then_close_to_now_and_utc(store: EventStore) -> None:
    await store.append("s", [tick(1)])
    [record] = [r async for r in store.read_all()]
    assert record.recorded_at.tzinfo is not None
    assert abs(record.recorded_at - datetime.now(UTC)) < timedelta(minutes=5)


async def test_append_when_batches_are_big_then_copy_path_keeps_ids_conflicts_and_chain(
    store: EventStore, ledger_url: str
) -> None:
    size = COPY_MIN_EVENTS
    first = await store.append("big", [tick(n) for n in range(size)])
    assert first == list(range(1, size + 1))
    other = await EventStore.connect(ledger_url)
    try:  # another store moved the head: our fast path misses and the locked one COPYs
        await other.append("big-2", [tick(n, label="o") for n in range(size)])
        assert await store.append("big", [tick(n, label="b") for n in range(size)]) == list(
            range(2 * size + 1, 3 * size + 1)
        )
        # Re-sent ids inside a big batch: COPY hits UNIQUE(event_id), the locked path answers.
        resent = [tick(n) for n in range(size - 1)] + [tick(0, label="new")]
        assert await store.append("big", resent) == [*first[:-1], 3 * size + 1]
        with pytest.raises(ConcurrencyConflict):
            await store.append("big", [tick(n, label="c") for n in range(size)], expected_version=0)
    finally:
        await other.close()
    assert await _count(ledger_url) == 3 * size + 1
    assert (await store.verify()).ok
    assert await audit(ledger_url) is None


async def test_append_when_big_batch_streams_in_chunks_then_all_or_nothing_with_ids_deduplicated(
    store: EventLog,
) -> None:
    size = 2 * STREAM_CHUNK_EVENTS + 7  # three chunks
    await store.append("warm", [tick(0, label="warm")])  # the head is known: the streamed path
    bad = NewEvent(event=ev.ClockTicked(at_ms=-5), event_id=uuid.uuid4(), occurred_at=BASE_TIME)
    with pytest.raises(InvalidEvent, match=r"invalid clock\.tick payload"):
        await store.append("big", [*(tick(n) for n in range(size - 1)), bad])
    assert await count_events(store) == 1  # the first two chunks were copied, then rolled back
    # An id repeated in a later chunk is stored once and answers with its first position.
    events = [tick(n) for n in range(size)]
    events[-1] = tick(3)
    positions = await store.append("big", events, expected_version=0)
    assert positions == [*range(2, size + 1), 5]
    assert await count_events(store) == size
    with pytest.raises(ConcurrencyConflict):
        await store.append("big", [tick(n, label="c") for n in range(size)], expected_version=0)
    assert await store.append(
        "big", [tick(n, label="d") for n in range(size)], expected_version=size - 1
    ) == list(range(size + 1, 2 * size + 1))
    versions = [r.stream_version async for r in store.read_stream("big")]
    assert versions == list(range(1, 2 * size))
    assert (await store.verify()).ok
    if isinstance(store, EventStore):  # the plain-SQL cross-check
        assert await audit(store.url) is None
