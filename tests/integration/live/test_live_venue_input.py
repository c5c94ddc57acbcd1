"""Bad input from the venue is recorded as an event and alerted: never a crash, never dropped.

The local MEXC REST server is made to misbehave the ways a real exchange can: an order answer that
is not JSON, an order state MEXC does not document, numbers that cannot be a fill, orders and a
position the bot never sent, a fee in another currency. Each time the live service records an
``ExecutionVenueInputRejected`` (which the alerts service reports) and keeps running.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from aggregates import events as ev
from aggregates.envelope import RecordedEvent
from eventstore import EventStore
from pipeline.alerts import AlertsService
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


@pytest.fixture
async def server() -> AsyncIterator[LocalMexcRest]:
    async with LocalMexcRest(accounts={KEY: SECRET}) as local:
        local.mark_prices["BTC_USDT"] = Decimal("65010.0")
        yield local


@pytest.fixture
async def store(fresh_database_url: Any) -> AsyncIterator[EventStore]:
    async with await EventStore.connect(await fresh_database_url()) as opened:
        yield opened


def rejected(recorded: list[RecordedEvent], kind: str) -> list[ev.ExecutionVenueInputRejected]:
    return [
        r.event
        for r in recorded
        if isinstance(r.event, ev.ExecutionVenueInputRejected) and r.event.kind == kind
    ]


async def test_order_answer_when_not_json_then_recorded_and_order_recovered_not_resent(
    server: LocalMexcRest, store: EventStore
) -> None:
    live = venue(server)
    async with live, running(service(store, live)) as task:
        await until(store, lambda r: "execution.reconciled" in types(r))
        server.garble_once("order/create")
        await append_request(store, request("bad1"))
        recorded = await until(store, lambda r: "order.filled" in types(r))
        assert not task.done()
    (event,) = rejected(recorded, "unparseable_answer")
    assert event.client_order_id == "bad1" and "malformed" in event.detail
    assert server.count("order/create") == 1  # found by its client id, not sent again
    assert types(recorded).count("order.accepted") == 1


async def test_order_state_when_undocumented_then_recorded_once_and_service_goes_on(
    server: LocalMexcRest, store: EventStore
) -> None:
    live = venue(server)
    async with live, running(service(store, live)) as task:
        await until(store, lambda r: "execution.reconciled" in types(r))
        await append_request(store, request("odd1", limit="64990.0"))
        await until(store, lambda r: "order.accepted" in types(r))
        server.order_overrides["odd1"] = {"state": 9}
        await until(store, lambda r: bool(rejected(r, "unknown_order_state")))
        await asyncio.sleep(0.3)  # more poll rounds see the same state: recorded once
        del server.order_overrides["odd1"]
        server.fill("odd1")
        recorded = await until(store, lambda r: "order.filled" in types(r))
        assert not task.done()
    assert len(rejected(recorded, "unknown_order_state")) == 1


async def test_order_report_when_filled_more_than_ordered_then_recorded_not_booked(
    server: LocalMexcRest, store: EventStore
) -> None:
    live = venue(server)
    async with live, running(service(store, live)) as task:
        await until(store, lambda r: "execution.reconciled" in types(r))
        await append_request(store, request("big1", limit="64990.0"))
        await until(store, lambda r: "order.accepted" in types(r))
        server.order_overrides["big1"] = {"dealVol": 7, "dealAvgPrice": 64990.0}
        recorded = await until(store, lambda r: bool(rejected(r, "implausible_order")))
        assert not task.done()
    (event,) = rejected(recorded, "implausible_order")
    assert event.severity == "CRITICAL" and event.client_order_id == "big1"
    assert "order.filled" not in types(recorded)
    assert "order.partially_filled" not in types(recorded)


async def test_order_report_when_traded_at_no_price_then_recorded_not_booked(
    server: LocalMexcRest, store: EventStore
) -> None:
    """``dealVol`` 2 (of 3) at ``dealAvgPrice`` 0: contracts traded for nothing are no fill."""
    live = venue(server)
    async with live, running(service(store, live)) as task:
        await until(store, lambda r: "execution.reconciled" in types(r))
        await append_request(store, request("free1", limit="64990.0"))
        await until(store, lambda r: "order.accepted" in types(r))
        server.order_overrides["free1"] = {"dealVol": 2, "dealAvgPrice": 0}
        recorded = await until(store, lambda r: bool(rejected(r, "implausible_order")))
        assert not task.done()
    (event,) = rejected(recorded, "implausible_order")
    assert event.severity == "CRITICAL" and event.client_order_id == "free1"
    assert "at 0" in event.detail
    assert "order.partially_filled" not in types(recorded)
    assert "order.filled" not in types(recorded)


async def test_orders_and_position_when_not_sent_by_bot_then_recorded_critical(
    server: LocalMexcRest, store: EventStore
) -> None:
    stranger = venue(server)  # someone else trading on the same account
    async with stranger:
        await stranger.start()
        await stranger.submit(request("theirs1", limit="60000.0"))
        await stranger.submit(request("theirs2"))
    live = venue(server)
    async with live, running(service(store, live)) as task:
        recorded = await until(
            store, lambda r: bool(rejected(r, "unknown_order") and rejected(r, "position_mismatch"))
        )
        assert not task.done()
    (unknown,) = rejected(recorded, "unknown_order")
    (mismatch,) = rejected(recorded, "position_mismatch")
    assert unknown.severity == mismatch.severity == "CRITICAL"
    assert mismatch.symbol == "BTC_USDT" and "3" in mismatch.detail
    assert server.orders["theirs1"].state == 2  # left untouched


async def test_fee_when_in_another_currency_then_fill_recorded_as_reported_and_flagged(
    server: LocalMexcRest, store: EventStore
) -> None:
    server.fee_currency = "MX"
    live = venue(server)
    async with live, running(service(store, live)):
        await until(store, lambda r: "execution.reconciled" in types(r))
        await append_request(store, request("mx1"))
        recorded = await until(store, lambda r: "order.filled" in types(r))
    (fill,) = [r.event for r in recorded if isinstance(r.event, ev.OrderFilled)]
    assert fill.fee_currency == "MX"
    (flag,) = rejected(recorded, "fee_currency")
    assert flag.client_order_id == "mx1"


def test_alerts_when_venue_input_rejected_then_reported_at_its_severity(
    make_recorded: Any,
) -> None:
    alerts = AlertsService(lambda after: None, after=0)  # type: ignore[arg-type,return-value]
    event = ev.ExecutionVenueInputRejected(
        at_ms=1, venue="mexc", kind="position_mismatch", severity="CRITICAL", detail="x"
    )
    alerts.handle(make_recorded(event, 1))
    assert alerts.counts["CRITICAL"] == 1 and len(alerts.recent) == 1
