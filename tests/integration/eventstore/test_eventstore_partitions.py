"""The partitioned ledger (alembic 0005): every guarantee of the log holds across partitions.

Written from issue 18 item 1 and docs/ARCHIVE.md: the migration converts a ledger made by the
previous schema in place (same rows, same hashes, same table file), partitions appear ahead of
need, and gapless positions, the hash chain, idempotent ids, stream versions, the refusal
triggers, the roles and the auditor's plain-SQL query all hold when events span partitions.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli.main import main
from eventstore import ConcurrencyConflict, EventStore, sql
from eventstore.canonical import GENESIS, canonical_text, chain, render_jsonb
from eventstore.migrations import upgrade
from tests.integration.eventstore.eventstore_helpers import audit, tick

pytestmark = [pytest.mark.db]

BASE = datetime(2026, 1, 5, tzinfo=UTC)


async def _fill_0004_ledger(url: str, count: int) -> None:
    """Append ``count`` chained events with plain SQL, as the pre-0005 schema stored them."""
    conn = await asyncpg.connect(url)
    try:
        previous = GENESIS
        for position in range(1, count + 1):
            payload = {"type": "market.trade", "at_ms": position, "price": f"{position}.5"}
            text = render_jsonb(payload)
            event_id = uuid.uuid5(uuid.NAMESPACE_URL, f"old/{position}")
            occurred = BASE + timedelta(seconds=position)
            digest = chain(
                previous,
                canonical_text(
                    position=position,
                    stream=f"old-{position % 3}",
                    stream_version=position // 3 + 1,
                    event_id=event_id,
                    event_type="market.trade",
                    schema_version=1,
                    occurred_at=occurred,
                    recorded_at=occurred,
                    causation_id=None,
                    causation_position=None,
                    correlation_id=None,
                    payload_text=text,
                ),
            )
            await conn.execute(
                "INSERT INTO ledger.events (position, stream, stream_version, event_id,"
                " event_type, schema_version, occurred_at, recorded_at, payload, hash)"
                " VALUES ($1, $2, $3, $4, 'market.trade', 1, $5, $5, $6::jsonb, $7)",
                position, f"old-{position % 3}", position // 3 + 1, event_id, occurred, text,
                digest,
            )  # fmt: skip
            previous = digest
        await conn.execute("UPDATE ledger.head SET position = $1, hash = $2", count, previous)
    finally:
        await conn.close()


async def _rows_and_file(url: str) -> tuple[list[asyncpg.Record], int]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT *, payload::text AS payload_text FROM ledger.events ORDER BY position"
        )
        table = "ledger.events_p0" if await conn.fetchval(
            "SELECT to_regclass('ledger.events_p0') IS NOT NULL"
        ) else "ledger.events"  # fmt: skip
        node = await conn.fetchval(f"SELECT pg_relation_filenode('{table}')")
        return rows, node
    finally:
        await conn.close()


async def _partitioned_ledger(fresh_database_url: Callable[..., Awaitable[str]], size: int) -> str:
    """A ledger at head whose partitions hold ``size`` positions each (set before 0005 runs)."""
    url = await fresh_database_url(migrate=False)
    conn = await asyncpg.connect(url)
    try:
        name = await conn.fetchval("SELECT current_database()")
        await conn.execute(f'ALTER DATABASE "{name}" SET claire.partition_size = {size}')
    finally:
        await conn.close()
    await asyncio.to_thread(upgrade, url)
    return url


async def _partitions(url: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT relid::text FROM pg_partition_tree('ledger.events') WHERE isleaf"
            " ORDER BY relid::text"
        )
        return [row[0] for row in rows]
    finally:
        await conn.close()


async def test_upgrade_when_ledger_made_by_0004_then_rows_hashes_and_table_file_unchanged(
    fresh_database_url: Callable[..., Awaitable[str]],
) -> None:
    url = await fresh_database_url(migrate=False)
    await asyncio.to_thread(upgrade, url, "0004")
    await _fill_0004_ledger(url, 300)
    before, node_before = await _rows_and_file(url)

    assert await asyncio.to_thread(main, ["--database-url", url, "db", "upgrade"]) == 0

    after, node_after = await _rows_and_file(url)
    assert [dict(row) for row in after] == [dict(row) for row in before]
    assert node_after == node_before  # the old table is the first partition: not rewritten
    assert await audit(url) is None
    async with await EventStore.connect(url) as store:
        result = await store.verify()
        assert result.ok, result.problem
        assert result.head_position == 300 and result.head_hash == before[-1]["hash"]
        # The converted ledger takes appends: versions continue, an old id stays idempotent.
        assert await store.append("old-1", [tick(1, label="new")], expected_version=100) == [301]
        with pytest.raises(ConcurrencyConflict):
            await store.append("old-2", [tick(2, label="new")], expected_version=0)
        assert (await store.verify()).ok


async def test_append_when_events_cross_many_partitions_then_chain_audit_and_ids_hold(
    fresh_database_url: Callable[..., Awaitable[str]],
) -> None:
    ledger_url = await _partitioned_ledger(fresh_database_url, 40)
    async with await EventStore.connect(ledger_url) as store:
        first = await store.append("market-BTC_USDT", [tick(n, label="a") for n in range(30)])
        big = await store.append("market-ETH_USDT", [tick(n, label="b") for n in range(450)])
        again = await store.append("market-BTC_USDT", [tick(n, label="a") for n in range(30)])
        small = await asyncio.gather(
            *(store.append(f"s-{n % 5}", [tick(n, label="c")]) for n in range(100))
        )
        assert again == first  # a re-sent id is stored once, whichever partition holds it
        positions = [p for batch in (first, big, *small) for p in batch]
        assert sorted(positions) == list(range(1, 581))
        with pytest.raises(ConcurrencyConflict):
            await store.append("market-ETH_USDT", [tick(999, label="d")], expected_version=3)
        result = await store.verify()
        assert result.ok and result.events_checked == 580, result.problem
        assert [e.position async for e in store.read_all()] == list(range(1, 581))
    assert await audit(ledger_url) is None
    partitions = await _partitions(ledger_url)
    assert len(partitions) >= 580 // 40  # created by the ledger itself, ahead of the head
    conn = await asyncpg.connect(ledger_url)
    try:
        upper = await conn.fetchval("SELECT upper FROM ledger.partitioning")
        assert upper > 580 + 40
    finally:
        await conn.close()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger.events SET stream_version = stream_version WHERE position = 100",
        "DELETE FROM ledger.events WHERE position = 100",
        "UPDATE {partition} SET stream_version = stream_version",
        "DELETE FROM {partition}",
        "TRUNCATE {partition}",
        "TRUNCATE ledger.events",
    ],
)
async def test_change_when_rows_live_in_a_later_partition_then_refused(
    fresh_database_url: Callable[..., Awaitable[str]], statement: str
) -> None:
    ledger_url = await _partitioned_ledger(fresh_database_url, 40)
    async with await EventStore.connect(ledger_url) as store:
        await store.append("s", [tick(n) for n in range(120)])
    partition = [p for p in await _partitions(ledger_url) if p != "ledger.events_p0"][1]
    conn = await asyncpg.connect(ledger_url)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute(statement.format(partition=partition))
    finally:
        await conn.close()
    async with await EventStore.connect(ledger_url) as store:
        assert (await store.verify()).ok


async def test_roles_when_ledger_partitioned_then_app_appends_auditor_reads_neither_bypasses(
    fresh_database_url: Callable[..., Awaitable[str]],
) -> None:
    ledger_url = await _partitioned_ledger(fresh_database_url, 40)
    async with await EventStore.connect(ledger_url) as store:
        await store.append("s", [tick(n) for n in range(100)])
    partition = (await _partitions(ledger_url))[-1]
    conn = await asyncpg.connect(ledger_url)
    try:
        await conn.execute("SET ROLE claire_auditor")
        assert await conn.fetchval("SELECT count(*) FROM ledger.events") == 100
        assert await conn.fetchrow(sql.AUDIT_QUERY) is None
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("INSERT INTO ledger.event_ids VALUES (gen_random_uuid(), 1)")
        await conn.execute("RESET ROLE")
        await conn.execute("SET ROLE claire_app")
        assert await conn.fetchval("SELECT ledger.ensure_partitions(0)") > 100
        for forbidden in (
            f"SELECT count(*) FROM {partition}",
            "DELETE FROM ledger.stream_versions",
            "ALTER TABLE ledger.events DETACH PARTITION ledger.events_p0",
            "DROP TABLE ledger.events_p0",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(forbidden)
    finally:
        await conn.close()


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    size=st.integers(min_value=3, max_value=60),
    batches=st.lists(st.integers(min_value=1, max_value=230), min_size=1, max_size=4),
)
async def test_appends_of_any_size_over_any_partition_size_keep_the_chain_gapless(
    fresh_database_url: Callable[..., Awaitable[str]], size: int, batches: list[int]
) -> None:
    url = await _partitioned_ledger(fresh_database_url, size)
    async with await EventStore.connect(url) as store:
        done = 0
        for n, count in enumerate(batches):
            positions = await store.append(
                f"s-{n % 2}", [tick(i, label=f"{n}/{i}") for i in range(count)]
            )
            assert positions == list(range(done + 1, done + count + 1))
            done += count
        assert (await store.verify()).ok
    assert await audit(url) is None
