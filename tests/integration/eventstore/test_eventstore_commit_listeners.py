"""In-process commit listeners: what a store's own appends committed, exactly as the log has it."""

from __future__ import annotations

import asyncio
from datetime import timedelta, timezone

import pytest

from aggregates.envelope import NewEvent, RecordedEvent
from eventstore import ConcurrencyConflict, EventStore
from tests.integration.eventstore.eventstore_helpers import alert, tick

pytestmark = [pytest.mark.db, pytest.mark.postgres_only]  # on_commit: EventStore's


async def test_listener_when_appends_commit_then_it_sees_exactly_the_rows_read_back(
    store: EventStore,
) -> None:
    seen: list[RecordedEvent] = []
    store.on_commit(seen.extend)
    plus_two = timezone(timedelta(hours=2))  # a caller's non-UTC time is stored (and told) as UTC
    shifted = tick(2)
    shifted = NewEvent(
        event=shifted.event,
        event_id=shifted.event_id,
        occurred_at=shifted.occurred_at.astimezone(plus_two),
    )
    await asyncio.gather(
        store.append("market-BTC_USDT", [tick(0), tick(1)]),
        store.append("market-ETH_USDT", [shifted]),
        store.append("alerts", [alert(1, 'línea\n"quoted"')]),
    )
    await store.append("market-BTC_USDT", [tick(0)])  # a re-sent id commits nothing new
    with pytest.raises(ConcurrencyConflict):
        await store.append("alerts", [alert(2, "late")], expected_version=0)

    logged = [recorded async for recorded in store.read_all()]
    assert seen == logged
    assert [r.position for r in seen] == [1, 2, 3, 4]
    assert all(
        r.occurred_at.tzinfo is not None and r.occurred_at.utcoffset() == timedelta(0) for r in seen
    )


async def test_listener_when_unregistered_or_failing_then_appends_carry_on(
    store: EventStore,
) -> None:
    seen: list[RecordedEvent] = []

    def broken(events: list[RecordedEvent]) -> None:
        raise RuntimeError("listener bug")

    store.on_commit(broken)
    unregister = store.on_commit(seen.extend)
    assert await store.append("market-BTC_USDT", [tick(0)]) == [1]
    unregister()
    assert await store.append("market-BTC_USDT", [tick(1)]) == [2]
    assert [r.position for r in seen] == [1]
