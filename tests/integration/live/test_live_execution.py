"""Live execution against a local server speaking MEXC's REST protocol, with a real ledger.

Persist before acting: the order is in the ledger before it is sent; the answer after. After a
restart the service reconciles with the exchange before it sends anything, and an order that
already reached the exchange is never sent twice.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from adapters.mexc.live import LiveModeEnabled, LiveVenue
from adapters.secrets import Secret
from aggregates import events as ev
from aggregates.envelope import NewEvent, RecordedEvent
from eventstore import EventStore
from pipeline.live_execution import LiveExecution
from pipeline.source import LedgerFeed
from tests.integration.live.live_helpers import running, until
from tests.support.mexc_rest import LocalMexcRest

pytestmark = pytest.mark.db

KEY, SECRET = "mx0vglLIVEEXECKEY01", "LIVEEXECSECRET0123456789"
AT_MS = 1_760_000_000_000


def _request(client_order_id: str) -> ev.OrderRequested:
    return ev.OrderRequested(
        at_ms=AT_MS,
        client_order_id=client_order_id,
        symbol="BTC_USDT",
        side="buy",
        contracts=Decimal(3),
        order_type="market",
        intent="entry",
        reduce_only=False,
        reference_price=Decimal("65000.0"),
    )


def _venue(server: LocalMexcRest) -> LiveVenue:
    enabled = LiveModeEnabled.from_settings(
        trading_mode="live",
        live_trading_confirmed="yes",
        api_key=Secret(KEY),
        api_secret=Secret(SECRET),
    )
    return LiveVenue(enabled, ("BTC_USDT",), base_url=server.url)


@pytest.fixture
async def server() -> AsyncIterator[LocalMexcRest]:
    async with LocalMexcRest(accounts={KEY: SECRET}) as local:
        local.mark_prices["BTC_USDT"] = Decimal("65010.0")
        yield local


@pytest.fixture
async def store(fresh_database_url) -> AsyncIterator[EventStore]:  # type: ignore[no-untyped-def]
    url = await fresh_database_url()
    async with await EventStore.connect(url) as opened:
        yield opened


async def _append_request(store: EventStore, client_order_id: str) -> None:
    new = NewEvent(
        event=_request(client_order_id),
        event_id=uuid.uuid4(),
        occurred_at=datetime.fromtimestamp(AT_MS / 1000, tz=UTC),
    )
    await store.append(f"order-{client_order_id}", [new])


def _service(server: LocalMexcRest, store: EventStore, venue: LiveVenue) -> LiveExecution:
    return LiveExecution(
        venue,
        store,
        lambda after: LedgerFeed(store, None, after=after),
        now_ms=lambda: AT_MS + 1000,
        poll_seconds=0.1,
    )


def _types(recorded: list[RecordedEvent]) -> list[str]:
    return [r.event_type for r in recorded]


async def test_requested_order_when_live_then_sent_once_and_answer_and_fill_recorded(
    server: LocalMexcRest, store: EventStore
) -> None:
    venue = _venue(server)
    async with venue, running(_service(server, store, venue)):
        await until(store, lambda r: "execution.reconciled" in _types(r))
        await _append_request(store, "live1")
        recorded = await until(store, lambda r: "order.filled" in _types(r))
    assert server.count("order/create") == 1
    request = next(r for r in recorded if r.event_type == "order.requested")
    accepted = next(r for r in recorded if r.event_type == "order.accepted")
    filled = next(r for r in recorded if r.event_type == "order.filled")
    assert request.position < accepted.position < filled.position
    assert accepted.causation_id == filled.causation_id == request.event_id
    assert isinstance(filled.event, ev.OrderFilled)
    assert filled.event.contracts == Decimal(3)
    assert filled.event.price == Decimal("65010.0")
    # fee from the contract's taker rate recorded at start-up: 3 x 0.0001 x 65010 x 0.0002
    assert filled.event.fee == Decimal("3") * Decimal("0.0001") * Decimal("65010.0") * Decimal(
        "0.0002"
    )
    specs = [r for r in recorded if r.event_type == "market.contract_spec"]
    assert specs and specs[0].event.source == "exchange"  # type: ignore[attr-defined]


async def test_restart_when_order_reached_exchange_but_answer_was_lost_then_reconciled_not_resent(
    server: LocalMexcRest, store: EventStore
) -> None:
    await _append_request(store, "live2")
    crashed = _venue(server)  # the previous process sent the order, then died before recording
    async with crashed:
        await crashed.start()
        await crashed.submit(_request("live2"))
    assert server.count("order/create") == 1

    venue = _venue(server)
    async with venue, running(_service(server, store, venue)):
        # the fill is recorded first, the reconciliation's summary after its other checks
        recorded = await until(
            store, lambda r: {"order.filled", "execution.reconciled"} <= set(_types(r))
        )
    assert server.count("order/create") == 1  # never sent twice
    types = _types(recorded)
    assert types.index("execution.reconciled") > types.index("order.filled")
    reconciled = next(r.event for r in recorded if r.event_type == "execution.reconciled")
    assert any("answer had been lost" in c for c in reconciled.corrections)  # type: ignore[attr-defined]


async def test_restart_when_order_never_reached_exchange_then_sent_exactly_once(
    server: LocalMexcRest, store: EventStore
) -> None:
    await _append_request(store, "live3")
    venue = _venue(server)
    async with venue, running(_service(server, store, venue)):
        recorded = await until(store, lambda r: "order.filled" in _types(r))
        await asyncio.sleep(0.3)  # a few poll rounds: nothing may be resent
    assert server.count("order/create") == 1
    assert _types(recorded).count("order.accepted") == 1
