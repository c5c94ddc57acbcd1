"""Helpers for the black-box attack on the ledger, written from README.md and docs/LEDGER*.md."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import asyncpg

from aggregates.envelope import NewEvent
from aggregates.events import OperatorCommandIssued, TradeTicked
from tests.support.cli_run import CliRun, environment, run_tool

ROOT = Path(__file__).resolve().parents[3]
DOCS_LEDGER = ROOT / "docs" / "LEDGER.md"
T0 = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)


def audit_query() -> str:
    """The plain-SQL chain check, read from docs/LEDGER.md (the first ```sql block)."""
    text = DOCS_LEDGER.read_text()
    match = re.search(r"```sql\n(.*?)```", text, re.S)
    assert match, "docs/LEDGER.md has no sql block"
    return match.group(1)


def trade(
    *,
    symbol: str = "BTC_USDT",
    price: Decimal = Decimal("100.5"),
    contracts: Decimal = Decimal("2"),
    at_ms: int = 1_748_854_800_000,
    trade_id: str | None = None,
) -> TradeTicked:
    return TradeTicked(
        at_ms=at_ms,
        symbol=symbol,
        price=price,
        contracts=contracts,
        taker_side="buy",
        position_effect="open",
        trade_id=trade_id,
    )


def new(event=None, **kw) -> NewEvent:  # type: ignore[no-untyped-def]
    kw.setdefault("event_id", uuid.uuid4())
    kw.setdefault("occurred_at", T0)
    return NewEvent(event=event if event is not None else trade(), **kw)


def note(text: str) -> OperatorCommandIssued:
    return OperatorCommandIssued(at_ms=1_748_854_800_000, command="halt", operator="op", note=text)


async def audit(url: str) -> list[tuple]:
    conn = await asyncpg.connect(url)
    try:
        return [tuple(r) for r in await conn.fetch(audit_query())]
    finally:
        await conn.close()


async def count_events(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM ledger.events"))
    finally:
        await conn.close()


async def positions(url: str) -> list[int]:
    conn = await asyncpg.connect(url)
    try:
        return [r[0] for r in await conn.fetch("SELECT position FROM ledger.events ORDER BY 1")]
    finally:
        await conn.close()


def claire(url: str, *args: str, timeout: float = 300) -> CliRun:
    """``claire args`` as a real process against the ledger at ``url``."""
    env = environment(drop=("DATABASE_URL", "REDIS_URL"), DATABASE_URL=url)
    return run_tool("claire", *args, env=env, cwd=ROOT, timeout=timeout)


async def claire_async(url: str, *args: str) -> CliRun:
    return await asyncio.to_thread(claire, url, *args)


async def all_recorded(store) -> list:  # type: ignore[no-untyped-def]
    return [r async for r in store.read_all(after=0)]


async def assert_intact(store, url: str) -> None:  # type: ignore[no-untyped-def]
    result = await store.verify()
    assert result.ok, result
    assert await audit(url) == []
    done = await claire_async(url, "verify")
    assert done.code == 0, done.text
