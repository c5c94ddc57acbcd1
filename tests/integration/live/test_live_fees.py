"""Each live fill records the fee and liquidity the exchange reports, not an estimate.

The local MEXC REST server charges a market order at the contract's taker rate and a resting
limit order, when the market trades against it, at the maker rate, and reports both per order
(``takerFee``/``makerFee``, cumulative) as MEXC does. The rates here differ from any configured
estimate, so only the exchange's figures can produce the recorded fees.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from aggregates import events as ev
from eventstore import EventStore
from tests.integration.live.live_helpers import (
    KEY,
    SECRET,
    append_request,
    request,
    running,
    service,
    types,
    until,
    venue,
)
from tests.support.mexc_rest import LocalMexcRest

pytestmark = pytest.mark.db

SIZE = Decimal("0.0001")


@pytest.fixture
async def server() -> AsyncIterator[LocalMexcRest]:
    async with LocalMexcRest(accounts={KEY: SECRET}) as local:
        local.mark_prices["BTC_USDT"] = Decimal("65010.0")
        local.contracts["BTC_USDT"].taker_fee_rate = Decimal("0.00037")
        local.contracts["BTC_USDT"].maker_fee_rate = Decimal("0.00011")
        yield local


@pytest.fixture
async def store(fresh_database_url: Any) -> AsyncIterator[EventStore]:
    async with await EventStore.connect(await fresh_database_url()) as opened:
        yield opened


def _fills(recorded: list[Any]) -> list[ev.OrderFilled | ev.OrderPartiallyFilled]:
    return [
        r.event for r in recorded if isinstance(r.event, ev.OrderFilled | ev.OrderPartiallyFilled)
    ]


async def test_market_fill_when_exchange_reports_taker_fee_then_that_fee_and_taker_recorded(
    server: LocalMexcRest, store: EventStore
) -> None:
    live = venue(server)
    async with live, running(service(store, live)):
        await until(store, lambda r: "execution.reconciled" in types(r))
        await append_request(store, request("fee1"))
        recorded = await until(store, lambda r: "order.filled" in types(r))
    (fill,) = _fills(recorded)
    assert fill.liquidity == "taker"
    assert fill.fee == Decimal(3) * SIZE * Decimal("65010.0") * Decimal("0.00037")
    assert fill.fee == server.orders["fee1"].taker_fee
    assert fill.fee_currency == "USDT"


async def test_resting_limit_fills_when_exchange_reports_maker_fees_then_each_fill_its_share(
    server: LocalMexcRest, store: EventStore
) -> None:
    live = venue(server)
    async with live, running(service(store, live)):
        await until(store, lambda r: "execution.reconciled" in types(r))
        await append_request(store, request("fee2", contracts=5, limit="64990.0"))
        await until(store, lambda r: "order.accepted" in types(r))
        server.fill("fee2", Decimal(2), Decimal("64990.0"))
        await until(store, lambda r: "order.partially_filled" in types(r))
        server.fill("fee2", Decimal(3), Decimal("64980.0"))
        recorded = await until(store, lambda r: "order.filled" in types(r))
    fills = _fills(recorded)
    assert [f.liquidity for f in fills] == ["maker", "maker"]
    assert fills[0].fee == Decimal(2) * SIZE * Decimal("64990.0") * Decimal("0.00011")
    assert fills[1].fee == Decimal(3) * SIZE * Decimal("64980.0") * Decimal("0.00011")
    assert sum(f.fee for f in fills) == server.orders["fee2"].maker_fee
    assert [f.contracts for f in fills] == [Decimal(2), Decimal(3)]
    assert fills[1].price == Decimal("64980.0")
