"""One gapless, commit-ordered log under concurrent writers, rollbacks and a slow transaction."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from aggregates import events as ev
from eventstore import EventStore
from eventstore.canonical import canonical_text, chain, render_jsonb
from tests.integration.eventstore.eventstore_helpers import tick

pytestmark = [pytest.mark.db]


async def _raw_append(conn: asyncpg.Connection, n: int, *, hold: float, commit: bool) -> int:
    """A writer outside EventStore that follows the head protocol by hand, then waits."""
    async with conn.transaction():
        head, previous = await conn.fetchrow("SELECT position, hash FROM ledger.head FOR UPDATE")
        stream, version = f"raw-{uuid.uuid4().hex[:12]}", 1
        new = tick(n, label=f"raw-{uuid.uuid4()}")
        payload = render_jsonb({"type": "market.trade", **_builtins(new.event)})
        recorded = datetime.now(UTC)
        digest = chain(
            previous,
            canonical_text(
                position=head + 1,
                stream=stream,
                stream_version=version,
                event_id=new.event_id,
                event_type="market.trade",
                schema_version=1,
                occurred_at=new.occurred_at,
                recorded_at=recorded,
                causation_id=None,
                causation_position=None,
                correlation_id=None,
                payload_text=payload,
            ),
        )
        await conn.execute(
            "INSERT INTO ledger.events (position, stream, stream_version, event_id, event_type,"
            " schema_version, occurred_at, recorded_at, payload, hash)"
            " VALUES ($1, $2, $3, $4, 'market.trade', 1, $5, $6, $7::jsonb, $8)",
            head + 1,
            stream,
            version,
            new.event_id,
            new.occurred_at,
            recorded,
            payload,
            digest,
        )
        await conn.execute("UPDATE ledger.head SET position = $1, hash = $2", head + 1, digest)
        await conn.execute("SELECT pg_notify('claire_ledger', $1)", str(head + 1))
        await asyncio.sleep(hold)
        if not commit:
            raise _Rollback
    return head + 1


class _Rollback(Exception):
    pass


def _builtins(event: ev.Event) -> dict:
    import msgspec

    data = msgspec.json.decode(ev.encode(event))
    data.pop("type")
    return data


async def test_subscribe_when_writers_race_roll_back_and_hold_locks_then_sees_each_commit_once_in_order(  # noqa: E501
    ledger_url: str,
) -> None:
    rng = random.Random(20250101)
    observer = await EventStore.connect(ledger_url)
    seen: list[int] = []
    committed: list[int] = []
    target: list[int] = []

    async def follow() -> None:
        async for record in observer.subscribe(after=0, poll_interval=0.2):
            seen.append(record.position)
            if target and record.position >= target[0]:
                return

    async def store_writer(index: int) -> None:
        store = await EventStore.connect(ledger_url, max_connections=1)
        try:
            for n in range(30):
                size = rng.choice([1, 1, 2, 5])
                positions = await store.append(
                    f"w{index}-{n % 3}",
                    [tick(n * 10 + k, label=f"w{index}") for k in range(size)],
                )
                committed.extend(positions)
                if rng.random() < 0.2:
                    await asyncio.sleep(0.01)
        finally:
            await store.close()

    async def rogue(index: int) -> None:
        conn = await asyncpg.connect(ledger_url)
        try:
            for n in range(8):
                with contextlib.suppress(_Rollback):
                    await _raw_append(conn, n, hold=rng.random() * 0.02, commit=False)
        finally:
            await conn.close()

    async def slow_holder() -> None:
        conn = await asyncpg.connect(ledger_url)
        try:
            await asyncio.sleep(0.05)
            committed.append(await _raw_append(conn, 1, hold=0.5, commit=True))
        finally:
            await conn.close()

    follower = asyncio.create_task(follow())
    await asyncio.gather(*(store_writer(i) for i in range(4)), rogue(0), rogue(1), slow_holder())
    # A last event after the target is known wakes the follower even if it is already idle.
    target.append(max(committed) + 1)
    committed.extend(await observer.append("end", [tick(0, label="end")]))
    await asyncio.wait_for(follower, timeout=60)
    await observer.close()

    assert seen == list(range(1, max(committed) + 1))
    assert sorted(set(committed)) == seen
    store = await EventStore.connect(ledger_url)
    try:
        result = await store.verify()
        assert result.ok, result.problem
        assert [r.position async for r in store.read_all()] == seen
    finally:
        await store.close()


async def test_subscribe_when_caught_up_then_follows_live_appends_without_repeats(
    store: EventStore,
) -> None:
    await store.append("s", [tick(n) for n in range(5)])
    received: list[int] = []
    reached_live = asyncio.Event()

    async def follow() -> None:
        async for record in store.subscribe(after=2, poll_interval=30):
            received.append(record.position)
            if record.position == 5:
                reached_live.set()
            if record.position == 9:
                return

    follower = asyncio.create_task(follow())
    await asyncio.wait_for(reached_live.wait(), timeout=10)
    for n in range(5, 9):
        await store.append("s", [tick(n)])
    # poll_interval=30 would time the test out: delivery comes from NOTIFY.
    await asyncio.wait_for(follower, timeout=10)
    assert received == [3, 4, 5, 6, 7, 8, 9]


async def test_subscribe_when_reader_sees_lock_holder_then_never_a_later_lower_position(
    ledger_url: str, store: EventStore
) -> None:
    """While a transaction holds the head, nobody commits: no reader can skip past it."""
    await store.append("s", [tick(0)])
    conn = await asyncpg.connect(ledger_url)
    try:
        holder = asyncio.create_task(_raw_append(conn, 1, hold=0.4, commit=True))
        await asyncio.sleep(0.1)
        blocked = asyncio.create_task(store.append("s", [tick(2)]))
        await asyncio.sleep(0.1)
        assert [r.position async for r in store.read_all()] == [1]
        assert not blocked.done()
        assert await holder == 2
        assert await blocked == [3]
    finally:
        await conn.close()
    assert [r.position async for r in store.read_all()] == [1, 2, 3]
