"""Shared pieces of the live tests: a live venue and service on the local MEXC REST server."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from decimal import Decimal

from adapters.mexc.live import LiveModeEnabled, LiveVenue
from adapters.secrets import Secret
from aggregates import events as ev
from aggregates.envelope import NewEvent, RecordedEvent
from eventstore import EventStore
from pipeline.live_execution import LiveExecution
from pipeline.source import LedgerFeed
from tests.support.mexc_rest import LocalMexcRest

KEY, SECRET = "mx0vglLIVEHELPKEY01", "LIVEHELPSECRET0123456789"
AT_MS = 1_760_000_000_000


def request(
    client_order_id: str,
    *,
    contracts: int = 3,
    limit: str | None = None,
    side: str = "buy",
    reduce_only: bool = False,
) -> ev.OrderRequested:
    return ev.OrderRequested(
        at_ms=AT_MS,
        client_order_id=client_order_id,
        symbol="BTC_USDT",
        side=side,  # type: ignore[arg-type]
        contracts=Decimal(contracts),
        order_type="limit" if limit else "market",
        intent="exit" if reduce_only else "entry",
        reduce_only=reduce_only,
        reference_price=Decimal("65000.0"),
        limit_price=Decimal(limit) if limit else None,
    )


async def append_request(store: EventStore, order: ev.OrderRequested) -> None:
    new = NewEvent(
        event=order, event_id=uuid.uuid4(), occurred_at=datetime.fromtimestamp(AT_MS / 1000, UTC)
    )
    await store.append(f"order-{order.client_order_id}", [new])


def venue(server: LocalMexcRest) -> LiveVenue:
    enabled = LiveModeEnabled.from_settings(
        trading_mode="live",
        live_trading_confirmed="yes",
        api_key=Secret(KEY),
        api_secret=Secret(SECRET),
    )
    return LiveVenue(enabled, ("BTC_USDT",), base_url=server.url)


def service(store: EventStore, live: LiveVenue) -> LiveExecution:
    return LiveExecution(
        live,
        store,
        lambda after: LedgerFeed(store, None, after=after),
        now_ms=lambda: AT_MS + 1000,
        poll_seconds=0.05,
    )


async def events(store: EventStore) -> list[RecordedEvent]:
    return [recorded async for recorded in store.read_all()]


def types(recorded: list[RecordedEvent]) -> list[str]:
    return [r.event_type for r in recorded]


async def until(
    store: EventStore, predicate: Callable[[list[RecordedEvent]], bool], seconds: float = 60.0
) -> list[RecordedEvent]:
    """Wait (bounded) until the ledger satisfies ``predicate``; never a timing assertion."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    recorded: list[RecordedEvent] = []
    while loop.time() < deadline:
        recorded = await events(store)
        if predicate(recorded):
            return recorded
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met; ledger holds {types(recorded)}")


@contextlib.asynccontextmanager
async def running(live: LiveExecution) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(live.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
