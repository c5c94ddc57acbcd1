"""A stop that outlives the bot: every live position has a reduce-only stop at the exchange.

Against the local MEXC REST server (plan orders that the server itself triggers when the market
crosses them): an entry's fill gets a stop at ``STOP_LOSS_PCT`` from the entry, recorded before it
is sent; a larger position moves it; a flat position cancels it. Then the bot is killed with a
position open, the market falls through the stop, and the exchange closes the position while the
bot is away; the restarted bot finds the stop gone and records it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from aggregates import events as ev
from aggregates.envelope import NewEvent
from aggregates.streams import stream_for
from eventstore import EventStore
from pipeline.live_execution import LiveExecution
from pipeline.source import LedgerFeed
from tests.integration.live.live_helpers import (
    AT_MS,
    KEY,
    SECRET,
    append_request,
    request,
    running,
    types,
    until,
    venue,
)
from tests.support.mexc_rest import LocalMexcRest

pytestmark = [pytest.mark.db, pytest.mark.timeout(120)]

ENTRY = Decimal("65010.0")


@pytest.fixture
async def server() -> AsyncIterator[LocalMexcRest]:
    async with LocalMexcRest(accounts={KEY: SECRET}) as local:
        local.mark_prices["BTC_USDT"] = ENTRY
        yield local


@pytest.fixture
async def store(fresh_database_url: Any) -> AsyncIterator[EventStore]:
    async with await EventStore.connect(await fresh_database_url()) as opened:
        yield opened


def _bot(store: EventStore, server: LocalMexcRest, **extra: Any) -> LiveExecution:
    return LiveExecution(
        venue(server),
        store,
        lambda after: LedgerFeed(store, None, after=after),
        now_ms=lambda: AT_MS,
        poll_seconds=0.05,
        stop_loss_pct=Decimal(6),
        **extra,
    )


def _active(server: LocalMexcRest) -> list[dict[str, Any]]:
    return [plan for plan in server.plans.values() if plan["state"] == 1]


def _of(recorded: list[Any], kind: type) -> list[Any]:
    return [r.event for r in recorded if isinstance(r.event, kind)]


async def test_entry_when_filled_then_stop_at_exchange_recorded_before_sent_moved_and_cancelled(
    server: LocalMexcRest, store: EventStore
) -> None:
    async with running(_bot(store, server)):
        await until(store, lambda r: "execution.reconciled" in types(r))
        await append_request(store, request("in1"))
        recorded = await until(store, lambda r: "execution.stop_placed" in types(r))
        (plan,) = _active(server)
        assert plan["vol"] == Decimal(3) and plan["side"] == 4  # closes the long, reduce-only
        assert plan["trigger_type"] == 2  # when the price falls to it
        assert plan["trigger_price"] == Decimal("61109.4")  # 65010 x 0.94, on the 0.1 grid
        (requested,) = _of(recorded, ev.ExecutionStopRequested)
        placed = next(r for r in recorded if r.event_type == "execution.stop_placed")
        asked = next(r for r in recorded if r.event_type == "execution.stop_requested")
        assert asked.position < placed.position  # recorded before it was sent
        assert requested.trigger_price == plan["trigger_price"]

        await append_request(store, request("in2", contracts=2))  # the position grows: moved
        recorded = await until(store, lambda r: types(r).count("execution.stop_placed") == 2)
        (plan,) = _active(server)
        assert plan["vol"] == Decimal(5)

        await append_request(store, request("out1", contracts=5, side="sell", reduce_only=True))
        recorded = await until(store, lambda r: types(r).count("execution.stop_ended") == 2)
    assert _active(server) == []  # flat: no stop left behind
    reasons = [e.reason for e in _of(recorded, ev.ExecutionStopEnded)]
    assert reasons == ["position_changed", "position_flat"]


async def test_bot_when_killed_with_position_open_then_exchange_stop_closes_it_and_restart_records(
    server: LocalMexcRest, store: EventStore
) -> None:
    async with running(_bot(store, server)):  # leaving the block kills the bot: no clean-up
        await until(store, lambda r: "execution.reconciled" in types(r))
        await append_request(store, request("in1"))
        await until(store, lambda r: "execution.stop_placed" in types(r))
    assert server.positions[("BTC_USDT", 1)][0] == Decimal(3)

    server.set_mark("BTC_USDT", Decimal("61000.0"))  # the crash comes while the bot is down
    assert server.positions[("BTC_USDT", 1)][0] == Decimal(0)  # the exchange closed it
    assert _active(server) == []

    async with running(_bot(store, server)):
        recorded = await until(store, lambda r: types(r).count("execution.reconciled") == 2)
    (ended,) = _of(recorded, ev.ExecutionStopEnded)
    assert ended.reason == "gone_from_exchange"
    assert server.count("planorder/place") == 1  # nothing placed for a position that is gone


async def test_stop_when_gone_from_exchange_while_position_open_then_placed_again(
    server: LocalMexcRest, store: EventStore
) -> None:
    bot = _bot(store, server, capital=Decimal(10000), equity_every_seconds=0.2)
    async with running(bot):
        await until(store, lambda r: "execution.reconciled" in types(r))
        await append_request(store, request("in1"))
        await until(store, lambda r: "execution.stop_placed" in types(r))
        (plan,) = _active(server)
        plan["state"] = 2  # expired or cancelled at the exchange (MEXC keeps one 7 days at most)
        recorded = await until(store, lambda r: types(r).count("execution.stop_placed") == 2)
    (again,) = _active(server)
    assert again["vol"] == Decimal(3) and again["id"] != plan["id"]
    assert [e.reason for e in _of(recorded, ev.ExecutionStopEnded)] == ["gone_from_exchange"]


async def test_stop_when_requested_but_never_confirmed_and_exchange_holds_it_then_adopted(
    server: LocalMexcRest, store: EventStore
) -> None:
    """A crash between sending a stop and recording that the exchange holds it: the restarted
    bot finds the exchange's plan order with the recorded size and trigger and adopts it (records
    it placed), instead of placing a second one or ending it."""
    async with running(_bot(store, server)):
        await until(store, lambda r: "execution.reconciled" in types(r))
        await append_request(store, request("in1"))
        recorded = await until(store, lambda r: "execution.stop_placed" in types(r))
    (requested,) = _of(recorded, ev.ExecutionStopRequested)
    (plan,) = _active(server)
    again = ev.ExecutionStopRequested(  # what the bot records before it sends: never confirmed
        at_ms=AT_MS,
        stop_id="resent-1",
        symbol="BTC_USDT",
        direction=requested.direction,
        contracts=requested.contracts,
        trigger_price=requested.trigger_price,
    )
    await store.append(
        stream_for(again),
        [NewEvent(event=again, event_id=uuid.uuid4(), occurred_at=datetime.now(UTC))],
    )
    async with running(_bot(store, server)):
        recorded = await until(store, lambda r: types(r).count("execution.reconciled") == 2)
    adopted = [e for e in _of(recorded, ev.ExecutionStopPlaced) if e.stop_id == "resent-1"]
    assert [e.exchange_stop_id for e in adopted] == [str(plan["id"])]
    assert server.count("planorder/place") == 1  # nothing placed twice
    assert [p["id"] for p in _active(server)] == [plan["id"]]
