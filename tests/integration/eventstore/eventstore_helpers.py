"""Builders of ledger events for the event-store tests (deterministic ids and times)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg

from aggregates import events as ev
from aggregates.envelope import NewEvent
from eventstore import EventLog, sql

BASE_TIME = datetime(2025, 1, 1, tzinfo=UTC)
_NAMESPACE = uuid.UUID("0b5e7d3c-2a41-4f6e-9c7d-5b1e2f3a4c5d")


def event_id(label: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, label)


def tick(
    n: int, *, label: str = "", symbol: str = "BTC_USDT", seconds: int | None = None
) -> NewEvent:
    """A trade tick numbered ``n``; its id derives from ``label`` and ``n``."""
    at = BASE_TIME + timedelta(seconds=n if seconds is None else seconds)
    return NewEvent(
        event=ev.TradeTicked(
            at_ms=int(at.timestamp() * 1000),
            symbol=symbol,
            price=Decimal("65000.5") + n,
            contracts=Decimal(1 + n % 7),
            taker_side="buy" if n % 2 else "sell",
            position_effect="open",
            trade_id=f"t{n}",
        ),
        event_id=event_id(f"{label}/{n}"),
        occurred_at=at,
    )


def alert(n: int, message: str, *, label: str = "") -> NewEvent:
    """An alert with free text (exercises escaping in the canonical form)."""
    return NewEvent(
        event=ev.AlertRaised(at_ms=n, severity="INFO", code="test.alert", message=message),
        event_id=event_id(f"alert/{label}/{n}"),
        occurred_at=BASE_TIME + timedelta(seconds=n),
        correlation_id=event_id(f"corr/{label}"),
        causation_id=event_id(f"cause/{label}/{n}"),
        causation_position=n,
    )


async def fill_mixed(store: EventLog) -> None:
    """Ten events over two streams, payloads with newlines, quotes, backslashes and non-ASCII."""
    await store.append("market-BTC_USDT", [tick(n) for n in range(6)])
    await store.append("risk", [alert(n, f'line\n{n} "quoted" \\ é ✓') for n in range(4)])


async def as_superuser_without_triggers(url: str, *statements: str) -> None:
    """Run ``statements`` as only a superuser could: with the refusal triggers bypassed."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET session_replication_role = replica")
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def audit(url: str) -> tuple[int, str] | None:
    """Run the plain-SQL auditor query (docs/LEDGER.md); the first bad position and problem, or
    None if intact. The independent cross-check of ``claire verify``'s Python chain."""
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(sql.AUDIT_QUERY)
    finally:
        await conn.close()
    return None if row is None else (row[0], row[1])


async def count_events(store: EventLog) -> int:
    """How many events the log holds, through the port (so any implementation can be asked)."""
    return len([record async for record in store.read_all()])
