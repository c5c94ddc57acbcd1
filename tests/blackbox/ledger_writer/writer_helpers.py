"""Event builders and ledger checks for the ledger-writer black-box tests (public API only)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg

from aggregates import events as ev
from aggregates.envelope import NewEvent
from tests.support.cli_run import CliRun, environment, run_tool

BASE = datetime(2026, 3, 1, tzinfo=UTC)


def trade(n: int, *, label: str, symbol: str = "BTC_USDT") -> NewEvent:
    """A trade tick numbered ``n`` whose id derives from ``label`` and ``n``."""
    at = BASE + timedelta(milliseconds=n)
    return NewEvent(
        event=ev.TradeTicked(
            at_ms=int(at.timestamp() * 1000),
            symbol=symbol,
            price=Decimal("100.25") + n,
            contracts=Decimal(1 + n % 5),
            taker_side="buy" if n % 2 else "sell",
            position_effect="open",
            trade_id=f"{label}-{n}",
        ),
        event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"claire-test/{label}/{n}"),
        occurred_at=at,
    )


async def ledger_rows(url: str) -> list[tuple[int, str, int, uuid.UUID]]:
    """(position, stream, stream_version, event_id) of every row, in position order."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT position, stream, stream_version, event_id FROM ledger.events ORDER BY position"
        )
    finally:
        await conn.close()
    return [tuple(row) for row in rows]


def assert_gapless(rows: list[tuple[int, str, int, uuid.UUID]]) -> None:
    """Positions 1..n; each stream's versions 1..k in position order; ids unique."""
    assert [row[0] for row in rows] == list(range(1, len(rows) + 1))
    versions: dict[str, int] = {}
    for _, stream, version, _ in rows:
        assert version == versions.get(stream, 0) + 1, (stream, version)
        versions[stream] = version
    assert len({row[3] for row in rows}) == len(rows)


def claire_verify(url: str) -> CliRun:
    """``claire verify`` as an operator runs it."""
    return run_tool("claire", "verify", env=environment(DATABASE_URL=url), timeout=300)


async def claire_verify_async(url: str) -> CliRun:
    return await asyncio.to_thread(claire_verify, url)
