"""The partitioned ledger (docs/ARCHIVE.md): appends crossing partition boundaries."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from eventstore import EventStore, InvalidEvent
from tests.blackbox_attack.ledger.attack_ledger_helpers import (
    assert_intact,
    claire_async,
    count_events,
    new,
    positions,
)

SIZE = 1000


@pytest.fixture
async def small_partitions_url(fresh_database_url):  # type: ignore[no-untyped-def]
    url = await fresh_database_url(migrate=False)
    conn = await asyncpg.connect(url)
    try:
        db = await conn.fetchval("SELECT current_database()")
        await conn.execute(f'ALTER DATABASE "{db}" SET claire.partition_size = {SIZE}')
    finally:
        await conn.close()
    done = await claire_async(url, "db", "upgrade")
    assert done.code == 0, done.text
    return url


async def _partitions(url: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        return [
            r[0]
            for r in await conn.fetch(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'ledger.events'::regclass ORDER BY 1"
            )
        ]
    finally:
        await conn.close()


async def test_appends_when_crossing_many_small_partitions_with_concurrent_writers_then_chain_holds(
    small_partitions_url: str,
) -> None:
    url = small_partitions_url
    stores = [await EventStore.connect(url) for _ in range(3)]
    try:
        await stores[0].append("pre", [new() for _ in range(SIZE - 3)])
        sizes = [7, 250, SIZE + 1, 199, 10_050]

        async def small(store: EventStore, name: str) -> int:
            n = 0
            for version in range(40):
                await store.append(name, [new()], expected_version=version)
                n += 1
            return n

        results = await asyncio.gather(
            *(stores[0].append("big", [new() for _ in range(n)]) for n in sizes),
            small(stores[1], "one"),
            small(stores[2], "two"),
        )
        total = SIZE - 3 + sum(sizes) + 80
        for got, n in zip(results, sizes, strict=False):
            assert got == list(range(got[0], got[0] + n))
        assert await count_events(url) == total
        assert await positions(url) == list(range(1, total + 1))
        assert len(await _partitions(url)) >= total // SIZE
        await assert_intact(stores[0], url)
    finally:
        for s in stores:
            await s.close()


async def test_append_when_invalid_at_end_of_boundary_crossing_batch_then_nothing_written(
    small_partitions_url: str,
) -> None:
    url = small_partitions_url
    store = await EventStore.connect(url)
    try:
        await store.append("pre", [new() for _ in range(SIZE - 1)])
        with pytest.raises(InvalidEvent):
            await store.append("big", [*[new() for _ in range(2 * SIZE)], new(event_id="x")])
        assert await count_events(url) == SIZE - 1
        await store.append("after", [new(), new(), new()])
        assert await positions(url) == list(range(1, SIZE + 3))
        await assert_intact(store, url)
    finally:
        await store.close()


async def test_reappend_when_stored_event_in_older_partition_then_idempotent_across_partitions(
    small_partitions_url: str,
) -> None:
    url = small_partitions_url
    store = await EventStore.connect(url)
    try:
        first = new()
        (pos,) = await store.append("old", [first])
        await store.append("fill", [new() for _ in range(2 * SIZE + 5)])
        assert await store.append("old", [first]) == [pos]
        batch = [new() for _ in range(300)]
        got = await store.append("old", [*batch[:150], first, *batch[150:]])
        assert got[150] == pos
        assert await count_events(url) == 1 + 2 * SIZE + 5 + 300
        await assert_intact(store, url)
    finally:
        await store.close()
