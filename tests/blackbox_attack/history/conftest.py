"""Ledgers built the documented way: small partitions (ALTER DATABASE ... claire.partition_size
before the upgrade), events through ``EventStore.append``, snapshots through ``Snapshots.save``."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from aggregates.envelope import NewEvent
from aggregates.events import TickerQuote, TickersSnapshotted, TradeTicked
from aggregates.snapshot import CODECS
from aggregates.streams import stream_for
from eventstore import EventStore
from eventstore.migrations import upgrade
from eventstore.snapshots import Snapshots, snapshot_of
from tests.support.cli_run import CliRun, assert_no_traceback, environment, run_tool_async

ROOT = Path(__file__).resolve().parents[3]
PARTITION = 10
FAR_FUTURE = "2100-01-01"
BIN = Path(sys.executable).parent


def trade(i: int) -> NewEvent:
    event = TradeTicked(
        at_ms=1_750_000_000_000 + i * 1000,
        symbol="BTC_USDT",
        price=Decimal("100.5") + i,
        contracts=Decimal("2"),
        taker_side="buy",
        position_effect="open",
        trade_id=f"t{i}",
    )
    return NewEvent(
        event=event,
        event_id=uuid.uuid4(),
        occurred_at=datetime(2025, 6, 2, tzinfo=UTC) + timedelta(seconds=i),
    )


def tickers(i: int) -> NewEvent:
    quote = TickerQuote(
        symbol="BTC_USDT",
        last_price=Decimal("100.5") + i,
        rise_fall_rate=Decimal("0.01"),
        volume_24h=Decimal("1000"),
    )
    return NewEvent(
        event=TickersSnapshotted(at_ms=1_750_000_000_000 + i * 1000, quotes=(quote,)),
        event_id=uuid.uuid4(),
        occurred_at=datetime(2025, 6, 2, tzinfo=UTC) + timedelta(seconds=i),
    )


async def append_trades(store: EventStore, first: int, count: int, kind: str = "trade") -> None:
    for i in range(first, first + count):
        new = trade(i) if kind == "trade" else tickers(i)
        await store.append(stream_for(new.event), [new])


async def snapshot_all(store: EventStore, position: int) -> None:
    snaps = Snapshots(store)
    chain = await snaps.chain_hash_at(position)
    assert chain is not None
    config = await snaps.config_hash_at(position)
    for machine, codec in CODECS.items():
        data = codec.encode(codec.state_type())
        await snaps.save(snapshot_of(machine, data, position, chain, config))


@dataclass
class Ledger:
    url: str
    events: int

    async def rows(self) -> list[tuple]:
        conn = await asyncpg.connect(self.url)
        try:
            rows = await conn.fetch("SELECT position, hash FROM ledger.events ORDER BY position")
            return [tuple(r) for r in rows]
        finally:
            await conn.close()

    async def fetchval(self, sql: str) -> object:
        conn = await asyncpg.connect(self.url)
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    async def execute(self, sql: str) -> None:
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()


@pytest.fixture
async def make_ledger(
    fresh_database_url: Callable[..., Awaitable[str]],
) -> Callable[..., Awaitable[Ledger]]:
    async def make(
        events: int = 45, snapshot_at: int | None = 35, first: int = 1, kind: str = "trade"
    ) -> Ledger:
        url = await fresh_database_url(migrate=False)
        name = urlsplit(url).path.lstrip("/")
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f'ALTER DATABASE "{name}" SET claire.partition_size = {PARTITION}')
        finally:
            await conn.close()
        await asyncio.to_thread(upgrade, url)
        store = await EventStore.connect(url)
        try:
            await append_trades(store, first, events, kind)
            if snapshot_at is not None:
                await snapshot_all(store, snapshot_at)
        finally:
            await store.close()
        return Ledger(url, events)

    return make


#: what a run of ``claire`` or ``replay`` left (``tests/support/cli_run.py``)
Run = CliRun


async def run(url: str, *args: str, tool: str = "claire") -> Run:
    """``tool args`` as a real process against the ledger at ``url``, from the repository root."""
    env = environment(drop=("DATABASE_URL", "REDIS_URL"), DATABASE_URL=url)
    return await run_tool_async(tool, *args, env=env, cwd=ROOT, limit_s=600)


no_traceback = assert_no_traceback


async def archivable_ledger(make_ledger: Callable[..., Awaitable[Ledger]], **kw: object) -> Ledger:
    """A ledger whose projections have read to the head, so only snapshots hold the floor."""
    ledger = await make_ledger(**kw)
    result = await run(ledger.url, "projections", "rebuild")
    assert result.code == 0, result.text
    return ledger


async def archived(
    make_ledger: Callable[..., Awaitable[Ledger]], directory: Path, **kw: object
) -> Ledger:
    ledger = await archivable_ledger(make_ledger, **kw)
    directory.mkdir(exist_ok=True)  # noqa: ASYNC240
    result = await run(ledger.url, "archive", "--before", FAR_FUTURE, "--to", str(directory))
    assert result.code == 0, result.text
    return ledger
