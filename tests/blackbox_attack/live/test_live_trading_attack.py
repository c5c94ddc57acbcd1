"""Black-box attack on live execution (docs/LIVE.md "While trading") on the local MEXC server.

Oracles are the exchange's own book (orders, plan orders, positions) and amounts computed here
from the documented rules, never the service's counters.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import ROUND_CEILING, Decimal

import pytest

from aggregates import events as ev
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
    until,
    venue,
)
from tests.support.mexc_rest import LocalMexcRest


@pytest.fixture
async def server() -> AsyncIterator[LocalMexcRest]:
    async with LocalMexcRest(accounts={KEY: SECRET}) as running_server:
        yield running_server


@pytest.fixture
async def store(fresh_database_url: Callable[..., Awaitable[str]]) -> AsyncIterator[EventStore]:
    url = await fresh_database_url()
    async with await EventStore.connect(url) as opened:
        yield opened


def service(store: EventStore, server: LocalMexcRest, stop_pct: str | None = "2") -> LiveExecution:
    return LiveExecution(
        venue(server),
        store,
        lambda after: LedgerFeed(store, None, after=after),
        now_ms=lambda: AT_MS + 1000,
        poll_seconds=0.05,
        equity_every_seconds=3600,
        stop_loss_pct=Decimal(stop_pct) if stop_pct is not None else None,
    )


def of(recorded, kind: type) -> list:  # type: ignore[no-untyped-def]
    return [r.event for r in recorded if isinstance(r.event, kind)]


def live_plans(server: LocalMexcRest) -> list[dict]:  # type: ignore[type-arg]
    return [p for p in server.plans.values() if p["state"] == 1]


async def test_entry_when_filled_then_exchange_holds_one_reduce_only_stop_rounded_toward_entry(
    server: LocalMexcRest, store: EventStore
) -> None:
    """Entry 65432.1, STOP_LOSS_PCT 2: 64123.458 -> grid 0.1 toward the entry = 64123.5."""
    server.set_mark("BTC_USDT", Decimal("65432.1"))
    await append_request(store, request("a19stop1", contracts=3))
    async with running(service(store, server)):
        recorded = await until(store, lambda r: bool(of(r, ev.ExecutionStopPlaced)))
    plans = live_plans(server)
    assert len(plans) == 1, server.plans
    plan = plans[0]
    expected = (Decimal("65432.1") * Decimal("0.98") / Decimal("0.1")).to_integral_value(
        ROUND_CEILING
    ) * Decimal("0.1")
    assert plan["trigger_price"] == expected == Decimal("64123.5")
    assert plan["side"] == 4  # close long: reduce-only
    assert plan["vol"] == 3
    assert plan["trigger_type"] == 2  # last price <= trigger
    kinds = [r.event_type for r in recorded]
    assert kinds.index("execution.stop_requested") < kinds.index("execution.stop_placed")


async def test_bot_killed_with_position_open_then_exchange_stop_closes_it_and_restart_ends_it(
    server: LocalMexcRest, store: EventStore
) -> None:
    server.set_mark("BTC_USDT", Decimal("65000"))
    await append_request(store, request("a19kill1", contracts=5))
    async with running(service(store, server)):
        await until(store, lambda r: bool(of(r, ev.ExecutionStopPlaced)))
    # the bot is gone; the market falls through the stop
    assert len(live_plans(server)) == 1
    server.set_mark("BTC_USDT", Decimal("63000"))
    assert server.positions[("BTC_USDT", 1)][0] == 0  # the exchange closed the position
    orders_before = len(server.orders)
    async with running(service(store, server)):
        recorded = await until(store, lambda r: bool(of(r, ev.ExecutionStopEnded)))
    ended = of(recorded, ev.ExecutionStopEnded)
    assert [e.reason for e in ended] == ["gone_from_exchange"]
    assert live_plans(server) == []  # no stop placed again on a flat exchange position
    assert len(server.orders) == orders_before  # nothing sent on restart


async def test_resting_order_filled_twice_as_maker_then_each_fill_records_reported_fee_once(
    server: LocalMexcRest, store: EventStore
) -> None:
    server.contracts["BTC_USDT"].maker_fee_rate = Decimal("0.0001")
    await append_request(store, request("a19fee1", contracts=10, limit="64000.0"))
    async with running(service(store, server, stop_pct=None)):
        await until(store, lambda r: "order.accepted" in [x.event_type for x in r])
        server.fill("a19fee1", Decimal(4), Decimal("64000.0"))
        await until(store, lambda r: bool(of(r, ev.OrderPartiallyFilled)))
        server.fill("a19fee1", Decimal(6), Decimal("64000.0"))
        recorded = await until(store, lambda r: bool(of(r, ev.OrderFilled)))
    fills = of(recorded, ev.OrderPartiallyFilled) + of(recorded, ev.OrderFilled)
    # oracle: contracts * 0.0001 BTC * price * 0.0001
    assert [(f.contracts, f.fee, f.liquidity, f.fee_currency) for f in fills] == [
        (Decimal(4), Decimal("0.00256"), "maker", "USDT"),
        (Decimal(6), Decimal("0.00384"), "maker", "USDT"),
    ]
    assert len({f.fill_id for f in fills}) == 2


async def test_fee_in_another_currency_then_fill_recorded_as_reported_and_flagged(
    server: LocalMexcRest, store: EventStore
) -> None:
    server.fee_currency = "MX"
    server.set_mark("BTC_USDT", Decimal("65000"))
    await append_request(store, request("a19mx1", contracts=2))
    async with running(service(store, server, stop_pct=None)):
        recorded = await until(
            store,
            lambda r: bool(of(r, ev.OrderFilled)) and bool(of(r, ev.ExecutionVenueInputRejected)),
        )
    fills = of(recorded, ev.OrderFilled)
    assert [(f.contracts, f.fee_currency) for f in fills] == [(Decimal(2), "MX")]
    # 2 * 0.0001 * 65000 * 0.0002 taker
    assert fills[0].fee == Decimal("0.0026") and fills[0].liquidity == "taker"
    assert "fee_currency" in [e.kind for e in of(recorded, ev.ExecutionVenueInputRejected)]


async def test_open_order_never_sent_then_critical_unknown_order_and_left_untouched(
    server: LocalMexcRest, store: EventStore
) -> None:
    server.set_mark("BTC_USDT", Decimal("65000"))
    # someone places a resting order by hand on the same account (not via the bot)
    server._create(
        {
            "symbol": "BTC_USDT",
            "price": "60000",
            "vol": "1",
            "side": 1,
            "type": 1,
            "openType": 2,
            "externalOid": "byhand1",
        }
    )
    async with running(service(store, server, stop_pct=None)):
        recorded = await until(store, lambda r: bool(of(r, ev.ExecutionVenueInputRejected)))
    rejected = of(recorded, ev.ExecutionVenueInputRejected)
    assert any(e.kind == "unknown_order" and e.severity == "CRITICAL" for e in rejected), rejected
    assert server.orders["byhand1"].state == 2  # not cancelled
    assert server.count("order/cancel") == 0


async def test_undocumented_order_state_then_recorded_and_service_keeps_running(
    server: LocalMexcRest, store: EventStore
) -> None:
    await append_request(store, request("a19state1", contracts=1, limit="60000.0"))
    server.order_overrides["a19state1"] = {"state": 9}
    async with running(service(store, server, stop_pct=None)) as task:
        recorded = await until(store, lambda r: bool(of(r, ev.ExecutionVenueInputRejected)))
        assert not task.done()
    assert "unknown_order_state" in [e.kind for e in of(recorded, ev.ExecutionVenueInputRejected)]
    assert len(server.orders) == 1


async def test_create_answer_unparsable_then_order_exists_once_at_exchange(
    server: LocalMexcRest, store: EventStore
) -> None:
    server.set_mark("BTC_USDT", Decimal("65000"))
    server.garble_once("order/create", times=2)
    await append_request(store, request("a19garb1", contracts=2))
    async with running(service(store, server, stop_pct=None)):
        recorded = await until(store, lambda r: bool(of(r, ev.OrderFilled)))
    assert list(server.orders) == ["a19garb1"]  # oracle: the exchange's book
    assert server.positions[("BTC_USDT", 1)][0] == 2
    assert len(of(recorded, ev.OrderFilled)) == 1
    assert "unparseable_answer" in [e.kind for e in of(recorded, ev.ExecutionVenueInputRejected)]


async def test_live_service_when_running_then_no_secret_in_any_recorded_event(
    server: LocalMexcRest, store: EventStore
) -> None:
    server.set_mark("BTC_USDT", Decimal("65000"))
    server.garble_once("order/create")
    await append_request(store, request("a19sec1", contracts=1))
    async with running(service(store, server)):
        recorded = await until(store, lambda r: bool(of(r, ev.ExecutionStopPlaced)))
    for r in recorded:
        text = repr(r.event)
        assert SECRET not in text and KEY not in text, text


async def test_position_grows_then_exchange_holds_exactly_one_stop_for_the_whole_position(
    server: LocalMexcRest, store: EventStore
) -> None:
    server.set_mark("BTC_USDT", Decimal("65000"))
    await append_request(store, request("a19grow1", contracts=3))
    async with running(service(store, server)):
        await until(store, lambda r: len(of(r, ev.ExecutionStopPlaced)) == 1)
        server.set_mark("BTC_USDT", Decimal("66000"))
        await append_request(store, request("a19grow2", contracts=5))
        await until(
            store,
            lambda r: (
                len(of(r, ev.ExecutionStopPlaced)) == 2 and bool(of(r, ev.ExecutionStopEnded))
            ),
        )
    plans = live_plans(server)
    # exchange's average entry: (3*65000 + 5*66000) / 8 = 65625; * 0.98 = 64312.5 (on the grid)
    assert [(p["vol"], p["trigger_price"], p["side"]) for p in plans] == [
        (Decimal(8), Decimal("64312.5"), 4)
    ]


@pytest.mark.parametrize(
    ("balance", "within"),
    [(Decimal("11000"), True), (Decimal("11000.1"), False), (Decimal("8999.9"), False)],
)
async def test_venue_equity_when_recorded_at_start_then_tolerance_boundary_is_inclusive(
    server: LocalMexcRest, store: EventStore, balance: Decimal, within: bool
) -> None:
    server.balance = balance
    live = LiveExecution(
        venue(server),
        store,
        lambda after: LedgerFeed(store, None, after=after),
        now_ms=lambda: AT_MS + 1000,
        poll_seconds=0.05,
        capital=Decimal(10000),
        capital_tolerance_pct=Decimal(10),
        capital_mismatch="warn",
        equity_every_seconds=0.2,
    )
    async with running(live) as task:
        recorded = await until(store, lambda r: len(of(r, ev.ExecutionVenueEquity)) >= 2)
        assert not task.done()
    first = of(recorded, ev.ExecutionVenueEquity)[0]
    assert first.equity == balance and first.configured_capital == Decimal(10000)
    assert first.within_tolerance is within
    assert first.difference_pct == (balance - 10000) / 100


@pytest.mark.parametrize(
    "override",
    [
        {"dealVol": 15, "dealAvgPrice": 64000},  # more traded than ordered
        {"dealVol": 4, "dealAvgPrice": 0},  # traded at no price
        {"dealVol": 4, "dealAvgPrice": -64000},  # traded at a negative price
        {"dealVol": "lots", "dealAvgPrice": 64000},  # not a number
        {"dealVol": 4, "dealAvgPrice": 64000, "feeCurrency": "usdt; drop"},  # no currency
    ],
)
async def test_order_answer_with_impossible_numbers_then_recorded_not_booked_service_lives(
    server: LocalMexcRest, store: EventStore, override: dict
) -> None:  # type: ignore[type-arg]
    await append_request(store, request("a19imp1", contracts=10, limit="64000.0"))
    server.order_overrides["a19imp1"] = override
    async with running(service(store, server, stop_pct=None)) as task:
        recorded = await until(
            store, lambda r: bool(of(r, ev.ExecutionVenueInputRejected)), seconds=15
        )
        assert not task.done()
    booked = of(recorded, ev.OrderPartiallyFilled) + of(recorded, ev.OrderFilled)
    if "feeCurrency" in override:  # a plausible fill with an unusable currency name
        assert all(f.fee_currency != override["feeCurrency"] for f in booked)
    else:
        assert booked == [], booked


async def test_order_partly_filled_then_cancelled_by_hand_while_bot_down_then_restart_books_both(
    server: LocalMexcRest, store: EventStore
) -> None:
    await append_request(store, request("a19hand1", contracts=10, limit="64000.0"))
    async with running(service(store, server, stop_pct=None)):
        await until(store, lambda r: "order.accepted" in [x.event_type for x in r])
    server.fill("a19hand1", Decimal(4))
    server.orders["a19hand1"].state = 4  # cancelled on MEXC's website
    async with running(service(store, server, stop_pct=None)):
        recorded = await until(store, lambda r: bool(of(r, ev.OrderCancelled)))
        await asyncio.sleep(0.5)  # more polls: a duplicate would show now
        recorded = [x async for x in store.read_all()]
    fills = of(recorded, ev.OrderPartiallyFilled) + of(recorded, ev.OrderFilled)
    assert [f.contracts for f in fills] == [Decimal(4)]
    assert [c.remaining_contracts for c in of(recorded, ev.OrderCancelled)] == [Decimal(6)]
    assert list(server.orders) == ["a19hand1"]


async def test_venue_errors_and_garbage_when_logged_then_no_key_or_secret_in_any_log(
    server: LocalMexcRest, store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.set_mark("BTC_USDT", Decimal("65000"))
    server.garble_once("order/create")
    server.garble_once("order/external", times=2)
    await append_request(store, request("a19log1", contracts=1))
    async with running(service(store, server)):
        await until(store, lambda r: bool(of(r, ev.ExecutionStopPlaced)))
        server.forced_errors["*"] = (602, "Signature verification failed!")
        await asyncio.sleep(0.5)  # some failing polls get logged
    assert caplog.records
    for record in caplog.records:
        text = record.getMessage() + str(record.args) + str(record.exc_info)
        assert SECRET not in text and KEY not in text, text
