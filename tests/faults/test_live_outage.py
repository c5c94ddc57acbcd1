"""Live execution survives a PostgreSQL outage with an order open at the exchange.

The live venue runs against the local server speaking MEXC's REST protocol, under the same
supervisor as ``claire run``, with a PostgreSQL of the test's own that is stopped and started
while a limit order rests at the exchange and trades there during the outage. When the ledger
returns the service resumes (it does not end), nothing is sent twice, the open order is
reconciled and each fill is recorded exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from test_outages import _own_postgres, _start_postgres, _stop_postgres

from adapters.http import HealthState
from adapters.metrics import Metrics
from adapters.mexc.live import LiveModeEnabled, LiveVenue
from adapters.secrets import Secret
from aggregates import events as ev
from aggregates.envelope import NewEvent
from eventstore import EventStore
from pipeline.app import _supervised
from pipeline.live_execution import LiveExecution
from pipeline.source import LedgerFeed
from tests.faults.fault_helpers import wait_for
from tests.support.mexc_rest import LocalMexcRest

pytestmark = [pytest.mark.db, pytest.mark.timeout(180)]

KEY, SECRET = "mx0vglOUTAGEKEY0001", "OUTAGESECRET0123456789"
AT_MS = 1_760_000_000_000


def _limit_order(client_order_id: str) -> NewEvent:
    order = ev.OrderRequested(
        at_ms=AT_MS,
        client_order_id=client_order_id,
        symbol="BTC_USDT",
        side="buy",
        contracts=Decimal(3),
        order_type="limit",
        intent="entry",
        reduce_only=False,
        reference_price=Decimal("65000.0"),
        limit_price=Decimal("64990.0"),
    )
    return NewEvent(
        event=order, event_id=uuid.uuid4(), occurred_at=datetime.fromtimestamp(AT_MS / 1000, UTC)
    )


async def _types(url: str) -> list[str]:
    return [recorded.event_type async for recorded in _read(url)]


async def test_postgres_when_stopped_with_live_order_open_then_resumes_reconciles_fills_once() -> (
    None
):
    enabled = LiveModeEnabled.from_settings(
        trading_mode="live",
        live_trading_confirmed="yes",
        api_key=Secret(KEY),
        api_secret=Secret(SECRET),
    )
    health = HealthState("execution", Metrics(), dependencies=("postgres",))
    async with (
        _own_postgres() as (postgres, url),
        LocalMexcRest(accounts={KEY: SECRET}) as server,
        await EventStore.connect(url) as store,
    ):
        socket_dir = postgres._server.get_postmaster_info().socket_dir  # type: ignore[attr-defined]
        venue = LiveVenue(enabled, ("BTC_USDT",), base_url=server.url)
        service = LiveExecution(
            venue,
            store,
            lambda after: LedgerFeed(store, None, after=after),
            now_ms=lambda: AT_MS + 1000,
            poll_seconds=0.1,
        )
        task = asyncio.create_task(_supervised("execution", service.run, health))
        try:
            await wait_for(
                lambda: _has(url, "execution.reconciled"), 30, "the first reconciliation"
            )
            await store.append("order-out1", [_limit_order("out1")])
            await wait_for(lambda: _has(url, "order.accepted"), 30, "the order accepted")
            assert server.orders["out1"].state == 2  # resting at the exchange

            await asyncio.to_thread(_stop_postgres, postgres)
            server.fill("out1", Decimal(1))  # trades while the ledger is away
            await asyncio.sleep(1.5)  # the poller sees it, cannot record it: the service pauses
            assert not task.done(), "live execution ended instead of pausing"
            await asyncio.to_thread(_start_postgres, postgres, str(socket_dir))

            await wait_for(
                lambda: _has(url, "order.partially_filled"), 60, "the fill made during the outage"
            )
            server.fill("out1")
            await wait_for(lambda: _has(url, "order.filled"), 30, "the final fill")
            await asyncio.sleep(0.5)  # a few more poll rounds: nothing may be recorded twice
            assert not task.done(), "live execution ended after the ledger came back"
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await venue.close()
        recorded = [r async for r in _read(url)]
    types = [r.event_type for r in recorded]
    assert server.count("order/create") == 1  # nothing sent twice
    assert types.count("order.requested") == 1
    assert types.count("order.accepted") == 1
    assert types.count("order.partially_filled") == 1
    assert types.count("order.filled") == 1
    assert types.count("execution.reconciled") >= 2  # at start, and again after the outage
    fills = [
        r.event for r in recorded if isinstance(r.event, ev.OrderPartiallyFilled | ev.OrderFilled)
    ]
    assert sum(fill.contracts for fill in fills) == Decimal(3)


async def _has(url: str, event_type: str) -> bool:
    try:
        return event_type in await _types(url)
    except Exception:  # the ledger is down or coming back
        return False


async def _read(url: str):  # type: ignore[no-untyped-def]
    async with await EventStore.connect(url, max_connections=1) as store:
        async for recorded in store.read_all():
            yield recorded
