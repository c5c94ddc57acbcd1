"""The services' view of the ledger: Redis for speed, the log for truth (real PostgreSQL, Redis)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from adapters.bus import RedisBus
from aggregates import events as ev
from aggregates.envelope import NewEvent, RecordedEvent
from eventstore import EventStore
from pipeline.relay import Relay
from pipeline.source import LedgerFeed, SharedFeed

pytestmark = [pytest.mark.db, pytest.mark.redis]


def _ticks(count: int, start_ms: int = 1_767_225_600_000) -> list[NewEvent]:
    return [
        NewEvent(
            event=ev.ClockTicked(at_ms=start_ms + i),
            event_id=uuid.uuid4(),
            occurred_at=datetime.fromtimestamp((start_ms + i) / 1000, tz=UTC),
        )
        for i in range(count)
    ]


@pytest.fixture
async def store(fresh_database_url) -> AsyncIterator[EventStore]:  # type: ignore[no-untyped-def]
    async with await EventStore.connect(await fresh_database_url()) as opened:
        yield opened


@pytest.fixture
async def bus(redis_url: str, redis_namespace: str) -> AsyncIterator[RedisBus]:
    async with await RedisBus.connect(redis_url, redis_namespace) as connected:
        yield connected


async def _collect(feed_events: AsyncIterator[RecordedEvent], count: int) -> list[int]:
    positions = []
    async with contextlib.aclosing(feed_events) as events:  # type: ignore[type-var]
        async for recorded in events:
            positions.append(recorded.position)
            if len(positions) == count:
                return positions
    return positions


async def _bus_of(bus: RedisBus) -> RedisBus:
    return bus


async def test_feed_when_no_relay_publishes_then_the_log_still_delivers_everything_in_order(
    store: EventStore, bus: RedisBus
) -> None:
    await store.append("clock", _ticks(3))
    feed = LedgerFeed(store, lambda: _bus_of(bus), after=1, stall_seconds=0.2)
    reader = asyncio.create_task(_collect(feed.events(), 12))
    await asyncio.sleep(0.5)  # subscribed to Redis, where nothing will ever arrive
    await store.append("clock", _ticks(10, 1_767_225_700_000))
    positions = await asyncio.wait_for(reader, 30)
    assert positions == list(range(2, 14))
    assert feed.source == "redis"  # it never gave up on Redis; the log filled the stall


async def test_shared_feed_when_relayed_then_every_consumer_sees_each_position_once(
    store: EventStore, bus: RedisBus
) -> None:
    await store.append("clock", _ticks(5))
    hub = SharedFeed(store, LedgerFeed(store, lambda: _bus_of(bus), after=5))
    relay = Relay(store, lambda: _bus_of(bus))
    tasks = [asyncio.create_task(hub.run()), asyncio.create_task(relay.run(after=5))]
    try:
        early = asyncio.create_task(_collect(hub.feed(0).events(), 25))
        await asyncio.sleep(0.3)
        late = asyncio.create_task(_collect(hub.feed(3).events(), 22))
        for batch in range(4):
            await store.append("clock", _ticks(5, 1_767_225_800_000 + 1000 * batch))
        assert await asyncio.wait_for(early, 30) == list(range(1, 26))
        assert await asyncio.wait_for(late, 30) == list(range(4, 26))
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_relay_when_its_first_publish_succeeds_then_it_reports_redis_up(
    store: EventStore, bus: RedisBus
) -> None:
    """``/health`` counts a declared dependency as down until someone says it is up: the relay
    must say so on its first publish, not only after a failure (else a process whose only
    Redis user is the relay answers 503 for ever)."""
    reports: list[tuple[bool, str]] = []
    relay = Relay(
        store, lambda: _bus_of(bus), on_bus=lambda up, detail: reports.append((up, detail))
    )
    task = asyncio.create_task(relay.run(after=0))
    try:
        await store.append("clock", _ticks(3))
        for _ in range(300):
            if relay.published >= 3:
                break
            await asyncio.sleep(0.05)
        assert relay.published == 3
        assert reports and reports[0][0] is True, reports
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
