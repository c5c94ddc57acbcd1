"""The read side (eventstore/reader.py): chunked JSON reads, the row-by-row path, prefetch."""

from __future__ import annotations

import contextlib
import gc
import warnings
from datetime import UTC

import asyncpg
import pytest

from aggregates import events as ev
from aggregates.upcasting import Upcasters
from eventstore import CorruptEvent, EventStore, reader
from tests.integration.eventstore.eventstore_helpers import alert, tick

pytestmark = [pytest.mark.db]


async def _execute(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def test_read_when_chunk_mixes_old_and_current_versions_then_only_old_rows_upcast(
    ledger_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader, "CHUNK", 2)
    async with await EventStore.connect(ledger_url) as store:
        await store.append("s", [tick(n) for n in range(3)])  # v1 rows: positions 1..3
        monkeypatch.setattr(ev.TradeTicked, "schema_version", 2)
        await store.append("s", [tick(n) for n in range(3, 6)])  # v2 rows: positions 4..6
    upcasters = Upcasters()

    @upcasters.register("market.trade", from_version=1)
    def _v1(data: dict) -> dict:
        return {**data, "trade_id": data["trade_id"] + "-v2"}

    async with await EventStore.connect(ledger_url, upcasters=upcasters) as store:
        records = [r async for r in store.read_all()]
        streamed = [r async for r in store.read_stream("s", 2, batch_size=3)]
    assert [r.position for r in records] == [1, 2, 3, 4, 5, 6]
    assert [r.schema_version for r in records] == [1, 1, 1, 2, 2, 2]
    assert [r.event.trade_id for r in records] == ["t0-v2", "t1-v2", "t2-v2", "t3", "t4", "t5"]
    assert [r.stream_version for r in streamed] == [2, 3, 4, 5, 6]
    assert streamed == records[1:]


async def test_read_when_payload_tag_differs_from_row_type_then_corrupt_event_names_position(
    store: EventStore, ledger_url: str
) -> None:
    await store.append("s", [tick(1), tick(2), tick(3)])
    await _execute(
        ledger_url,
        "SET session_replication_role = replica",
        "UPDATE ledger.events SET event_type = 'ops.alert' WHERE position = 2",
    )
    seen: list[int] = []
    with pytest.raises(CorruptEvent, match="position 2"):
        async for record in store.read_all():
            seen.append(record.position)
    assert seen == [1]


async def test_read_when_database_timezone_is_not_utc_then_times_are_utc_and_exact(
    ledger_url: str,
) -> None:
    await _execute(
        ledger_url,
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET timezone = ''Asia/Kathmandu''',"
        " current_database()); END $$",
    )
    batch = [tick(1), alert(2, 'quote " and \\ and é')]
    async with await EventStore.connect(ledger_url) as store:
        await store.append("s", batch)
        records = [r async for r in store.read_all()]
    for record, new in zip(records, batch, strict=True):
        assert record.occurred_at.tzinfo is UTC and record.recorded_at.tzinfo is UTC
        assert record.occurred_at == new.occurred_at
        assert (record.event_id, record.event) == (new.event_id, new.event)
        assert record.causation_id == new.causation_id
        assert record.correlation_id == new.correlation_id
    assert records[1].event.message == 'quote " and \\ and é'


async def test_read_all_when_consumer_stops_early_then_prefetch_is_dropped_quietly(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader, "CHUNK", 4)
    await store.append("s", [tick(n) for n in range(20)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        async with contextlib.aclosing(store.read_all()) as records:
            async for record in records:
                if record.position == 5:  # the second chunk is consumed, the third in flight
                    break
        gc.collect()
    assert [r.position async for r in store.read_all(after=17)] == [18, 19, 20]


@pytest.mark.postgres_only  # read_all_batches: EventStore's
async def test_read_all_batches_when_read_then_the_same_events_as_read_all_a_chunk_at_a_time(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader, "CHUNK", 4)
    await store.append("s", [tick(n) for n in range(10)])
    sizes = [len(batch) async for batch in store.read_all_batches(after=1)]
    flat = [fact async for batch in store.read_all_batches(after=1) for fact in batch]
    assert sizes == [4, 4, 1]
    assert flat == [fact async for fact in store.read_all(after=1)]


async def test_read_all_batches_when_a_row_is_corrupt_then_rows_before_it_come_first(
    store: EventStore, ledger_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader, "CHUNK", 4)
    await store.append("s", [tick(n) for n in range(6)])
    await _execute(
        ledger_url,
        "SET session_replication_role = replica",
        "UPDATE ledger.events SET event_type = 'ops.alert' WHERE position = 6",
    )
    seen: list[list[int]] = []
    with pytest.raises(CorruptEvent, match="position 6"):
        async for batch in store.read_all_batches():
            seen.append([fact.position for fact in batch])
    assert seen == [[1, 2, 3, 4], [5]]
