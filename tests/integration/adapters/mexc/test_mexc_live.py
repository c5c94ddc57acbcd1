"""The live venue against a local server speaking MEXC's futures REST protocol.

Never the real exchange: ``LocalMexcRest`` verifies signatures and time windows as MEXC documents
them and keeps its own order book, so these tests exercise the real wire format end to end.
"""

from __future__ import annotations

import itertools
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal

import msgspec
import pytest

from adapters.mexc.errors import MexcOutcomeUnknown, MexcTimeWindowError
from adapters.mexc.live import LiveModeEnabled, LiveTradingRefused, LiveVenue
from adapters.mexc.rest import MexcRestClient
from adapters.secrets import Secret
from aggregates.events import OrderAccepted, OrderCancelled, OrderRejected, OrderRequested, encode
from tests.support.mexc_rest import LocalMexcRest

API_KEY = "mx0vglTESTKEYa1b2c3d4"
API_SECRET = "TESTSECRET9f8e7d6c5b4a3210"

VenueFactory = Callable[..., Awaitable[LiveVenue]]


def token(key: str = API_KEY, secret: str = API_SECRET) -> LiveModeEnabled:
    return LiveModeEnabled.from_settings(
        trading_mode="live",
        live_trading_confirmed="yes",
        api_key=Secret(key),
        api_secret=Secret(secret),
    )


def order(
    client_order_id: str = "ord-1",
    *,
    side: str = "buy",
    contracts: str = "5",
    limit_price: str | None = None,
    reduce_only: bool = False,
    symbol: str = "BTC_USDT",
) -> OrderRequested:
    return OrderRequested(
        at_ms=1_700_000_000_000,
        client_order_id=client_order_id,
        symbol=symbol,
        side=side,  # type: ignore[arg-type]
        contracts=Decimal(contracts),
        order_type="limit" if limit_price else "market",
        intent="exit" if reduce_only else "entry",
        reduce_only=reduce_only,
        reference_price=Decimal("65000.5"),
        limit_price=Decimal(limit_price) if limit_price else None,
    )


@pytest.fixture
async def server() -> AsyncIterator[LocalMexcRest]:
    async with LocalMexcRest(accounts={API_KEY: API_SECRET}) as local:
        yield local


@pytest.fixture
async def make_venue(server: LocalMexcRest) -> AsyncIterator[VenueFactory]:
    venues: list[LiveVenue] = []

    async def make(
        symbols: tuple[str, ...] = ("BTC_USDT",),
        *,
        secret: str = API_SECRET,
        timeout_s: float = 5.0,
        base_url: str | None = None,
    ) -> LiveVenue:
        client = MexcRestClient(
            base_url or server.url,
            Secret(API_KEY),
            Secret(secret),
            timeout_s=timeout_s,
            retry_backoff_s=0.01,
        )
        venue = LiveVenue(token(secret=secret), symbols, client=client)
        venues.append(venue)
        return venue

    yield make
    for venue in venues:
        await venue.close()


@pytest.fixture
async def venue(make_venue: VenueFactory) -> LiveVenue:
    started = await make_venue()
    await started.start()
    return started


# --------------------------------------------------------------------------- the gate


@pytest.mark.parametrize(
    ("mode", "confirmed", "key", "secret", "missing"),
    [
        ("paper", "yes", "k", "s", "TRADING_MODE"),
        ("live", "no", "k", "s", "LIVE_TRADING_CONFIRMED"),
        ("live", "", "k", "s", "LIVE_TRADING_CONFIRMED"),
        ("live", "yes", None, "s", "MEXC_API_KEY"),
        ("live", "yes", "k", "", "MEXC_API_SECRET"),
    ],
)
def test_from_settings_when_a_condition_is_missing_then_refused(
    mode, confirmed, key, secret, missing
) -> None:
    with pytest.raises(LiveTradingRefused, match=missing) as refused:
        LiveModeEnabled.from_settings(
            trading_mode=mode,
            live_trading_confirmed=confirmed,
            api_key=Secret(key) if key is not None else None,
            api_secret=Secret(secret),
        )
    assert refused.value.reason == "live_mode_not_enabled"


def test_live_mode_enabled_when_constructed_directly_then_type_error() -> None:
    with pytest.raises(TypeError, match="from_settings"):
        LiveModeEnabled()


def test_live_venue_when_no_token_then_refused() -> None:
    with pytest.raises(LiveTradingRefused):
        LiveVenue(object(), ["BTC_USDT"])  # type: ignore[arg-type]


async def test_submit_when_not_started_then_refused_and_nothing_sent(
    server: LocalMexcRest, make_venue: VenueFactory
) -> None:
    venue = await make_venue()
    with pytest.raises(LiveTradingRefused, match="not_started"):
        await venue.submit(order())
    assert server.count("order/create") == 0


# --------------------------------------------------------------------------- start-up probe


async def test_start_when_all_checks_pass_then_contract_specs_and_probe_code(
    server: LocalMexcRest, make_venue: VenueFactory
) -> None:
    venue = await make_venue(("BTC_USDT", "ETH_USDT"))
    startup = await venue.start()
    assert [c.symbol for c in startup.contracts] == ["BTC_USDT", "ETH_USDT"]
    btc = startup.contracts[0]
    assert btc.contract_size == Decimal("0.0001") and btc.api_allowed and btc.source == "exchange"
    assert startup.withdraw_probe_code == 700007


async def test_start_when_server_unreachable_then_refused(make_venue: VenueFactory) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    venue = await make_venue(base_url=f"http://127.0.0.1:{port}")
    with pytest.raises(LiveTradingRefused) as refused:
        await venue.start()
    assert refused.value.reason == "server_unreachable"


async def test_start_when_contract_api_not_allowed_then_refused(
    server: LocalMexcRest, make_venue: VenueFactory
) -> None:
    server.contracts["ETH_USDT"].api_allowed = False
    venue = await make_venue(("BTC_USDT", "ETH_USDT"))
    with pytest.raises(LiveTradingRefused, match="ETH_USDT") as refused:
        await venue.start()
    assert refused.value.reason == "contract_api_not_allowed"


async def test_start_when_symbol_not_listed_then_refused(make_venue: VenueFactory) -> None:
    venue = await make_venue(("DOGE_USDT",))
    with pytest.raises(LiveTradingRefused) as refused:
        await venue.start()
    assert refused.value.reason == "contract_unknown"


async def test_start_when_signature_rejected_then_refused_as_bad_key(
    make_venue: VenueFactory,
) -> None:
    venue = await make_venue(secret="not-the-right-secret")
    with pytest.raises(LiveTradingRefused, match="602") as refused:
        await venue.start()
    assert refused.value.reason == "key_rejected"


async def test_start_when_key_lacks_trade_read_then_refused(
    server: LocalMexcRest, make_venue: VenueFactory
) -> None:
    server.forced_errors["position/open_positions"] = (703, "No trade read permission")
    venue = await make_venue()
    with pytest.raises(LiveTradingRefused, match="703") as refused:
        await venue.start()
    assert refused.value.reason == "key_cannot_read_trades"


async def test_start_when_key_has_withdraw_rights_then_refused(
    server: LocalMexcRest, make_venue: VenueFactory
) -> None:
    server.withdraw_permission = True
    venue = await make_venue()
    with pytest.raises(LiveTradingRefused) as refused:
        await venue.start()
    assert refused.value.reason == "key_has_withdraw_rights"
    with pytest.raises(LiveTradingRefused, match="not_started"):
        await venue.submit(order())


async def test_start_when_withdraw_probe_fails_otherwise_then_refused_as_inconclusive(
    server: LocalMexcRest, make_venue: VenueFactory
) -> None:
    server.forced_errors["capital/config/getall"] = (700003, "Timestamp outside recvWindow")
    venue = await make_venue()
    with pytest.raises(LiveTradingRefused, match="700003") as refused:
        await venue.start()
    assert refused.value.reason == "withdraw_probe_inconclusive"


async def test_request_when_local_clock_is_off_then_resynced_and_answered(
    server: LocalMexcRest,
) -> None:
    server.clock_skew_ms = 45_000  # outside the 10 s window
    async with MexcRestClient(server.url, Secret(API_KEY), Secret(API_SECRET)) as client:
        assets = await client.assets()
    assert assets[0].currency == "USDT"
    assert client.clock_offset_ms > 30_000


async def test_request_when_clock_keeps_drifting_then_time_window_error(
    server: LocalMexcRest,
) -> None:
    drifting = itertools.count(0, 100_000)  # every reading 100 s later: no resync can help
    async with MexcRestClient(
        server.url, Secret(API_KEY), Secret(API_SECRET), now_ms=lambda: next(drifting)
    ) as client:
        with pytest.raises(MexcTimeWindowError):
            await client.assets()


# --------------------------------------------------------------------------- submit


@pytest.mark.parametrize("reply_shape", ["number", "object"])
async def test_submit_when_market_order_accepted_then_order_accepted_event(
    server: LocalMexcRest, venue: LiveVenue, reply_shape: str
) -> None:
    server.create_reply = reply_shape
    events = await venue.submit(order("mkt-1"))
    assert len(events) == 1 and isinstance(events[0], OrderAccepted)
    accepted = events[0]
    assert accepted.client_order_id == "mkt-1"
    assert accepted.exchange_order_id == str(server.orders["mkt-1"].order_id)
    create = next(seen for seen in server.requests if seen.path.endswith("order/create"))
    sent = msgspec.json.decode(create.body)
    assert sent == {
        "symbol": "BTC_USDT",
        "price": 65000.5,
        "vol": 5,
        "side": 1,
        "type": 5,
        "openType": 2,
        "externalOid": "mkt-1",
    }


@pytest.mark.parametrize(
    ("side", "reduce_only", "code"),
    [("buy", False, 1), ("sell", True, 4), ("sell", False, 3), ("buy", True, 2)],
)
def test_order_body_when_side_and_reduce_only_then_mexc_side_code(
    venue: LiveVenue, side: str, reduce_only: bool, code: int
) -> None:
    body = venue.order_body(order(side=side, reduce_only=reduce_only, limit_price="64000"))
    assert body.side == code and body.type == 1 and body.price == Decimal("64000")
    assert body.reduce_only is reduce_only


async def test_submit_when_order_api_disabled_then_rejected_with_1002(
    server: LocalMexcRest, venue: LiveVenue
) -> None:
    server.forced_errors["order/create"] = (1002, "Contract not allow place order!")
    [event] = await venue.submit(order())
    assert isinstance(event, OrderRejected)
    assert event.code == "mexc_1002"
    assert "Contract not allow place order!" in event.message
    assert server.orders == {}


async def test_submit_when_contract_stops_allowing_api_then_rejected(
    server: LocalMexcRest, venue: LiveVenue
) -> None:
    server.contracts["BTC_USDT"].api_allowed = False
    [event] = await venue.submit(order())
    assert isinstance(event, OrderRejected) and event.code == "mexc_1002"


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"contracts": "500000000"}, "mexc_2011"),  # above maxVol
        ({"contracts": "4000000"}, "mexc_2005"),  # margin beyond the balance
        ({"side": "sell", "reduce_only": True}, "mexc_2009"),  # closing a position we lack
        ({"limit_price": "65000.55"}, "mexc_2015"),  # off the price grid
    ],
)
async def test_submit_when_exchange_refuses_then_rejected_with_code(
    venue: LiveVenue, kwargs: dict, code: str
) -> None:
    [event] = await venue.submit(order(**kwargs))
    assert isinstance(event, OrderRejected)
    assert event.code == code


async def test_submit_when_rate_limited_throughout_then_rejected_with_510(
    server: LocalMexcRest, venue: LiveVenue
) -> None:
    server.rate_limited = True
    [event] = await venue.submit(order())
    assert isinstance(event, OrderRejected) and event.code == "mexc_510"
    assert server.count("order/create") == 3


async def test_submit_when_symbol_not_probed_then_rejected_without_sending(
    server: LocalMexcRest, venue: LiveVenue
) -> None:
    [event] = await venue.submit(order(symbol="ETH_USDT"))
    assert isinstance(event, OrderRejected) and event.code == "live_symbol_not_verified"
    assert server.count("order/create") == 0


async def test_submit_when_answer_times_out_then_found_by_client_id_not_sent_twice(
    server: LocalMexcRest, make_venue: VenueFactory
) -> None:
    venue = await make_venue(timeout_s=0.5)
    await venue.start()
    server.slow_once("order/create", 1.5)  # the order is booked, the answer comes too late
    [event] = await venue.submit(order("slow-1"))
    assert isinstance(event, OrderAccepted)
    assert event.exchange_order_id == str(server.orders["slow-1"].order_id)
    assert server.count("order/create") == 1
    assert server.count("order/external/BTC_USDT/slow-1") >= 1
    assert server.positions[("BTC_USDT", 1)][0] == Decimal(5)


async def test_submit_when_same_client_id_resent_then_same_exchange_order(
    server: LocalMexcRest, venue: LiveVenue
) -> None:
    [first] = await venue.submit(order("dup-1"))
    [second] = await venue.submit(order("dup-1"))
    assert isinstance(first, OrderAccepted) and isinstance(second, OrderAccepted)
    assert first.exchange_order_id == second.exchange_order_id
    assert len(server.orders) == 1
    assert server.positions[("BTC_USDT", 1)][0] == Decimal(5)


async def test_submit_when_no_answer_can_be_had_then_outcome_unknown(
    server: LocalMexcRest, make_venue: VenueFactory
) -> None:
    venue = await make_venue(timeout_s=0.2)
    await venue.start()
    server.slow["order/create"] = 0.6
    server.slow["order/external"] = 0.6
    with pytest.raises(MexcOutcomeUnknown):
        await venue.submit(order("lost-1"))
    assert list(server.orders) == ["lost-1"]  # it exists: the caller must reconcile


# --------------------------------------------------------------------------- reconciliation


async def test_reconcile_when_orders_and_positions_exist_then_reported(
    server: LocalMexcRest, venue: LiveVenue
) -> None:
    await venue.submit(order("pos-1", contracts="7"))
    await venue.submit(order("lim-1", side="sell", limit_price="70000", contracts="3"))
    [open_order] = await venue.open_orders()
    assert open_order.client_order_id == "lim-1"
    assert (open_order.side, open_order.reduce_only, open_order.state) == ("sell", False, "open")
    assert open_order.contracts == Decimal(3) and open_order.price == Decimal(70000)
    [position] = await venue.positions()
    assert (position.symbol, position.direction, position.contracts) == ("BTC_USDT", "long", 7)
    assert position.entry_price == Decimal("65000.5")


async def test_cancel_when_order_open_then_cancelled_and_gone(
    server: LocalMexcRest, venue: LiveVenue
) -> None:
    await venue.submit(order("lim-2", limit_price="60000", contracts="2"))
    [event] = await venue.cancel("lim-2")
    assert isinstance(event, OrderCancelled)
    assert event.remaining_contracts == Decimal(2)
    assert await venue.open_orders() == []
    assert await venue.cancel("lim-2") == []


async def test_cancel_when_order_unknown_then_nothing(venue: LiveVenue) -> None:
    assert await venue.cancel("never-sent") == []


# --------------------------------------------------------------------------- secrets


async def test_run_when_everything_is_logged_then_no_secret_anywhere(
    server: LocalMexcRest, make_venue: VenueFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    produced: list[str] = []
    venue = await make_venue()
    produced.append(msgspec.json.encode(await venue.start()).decode())
    produced += [encode(e).decode() for e in await venue.submit(order("s-1"))]
    # A server that echoes the key back in its error text must not leak it into our events.
    server.forced_errors["order/create"] = (2005, f"no balance for {API_KEY} / {API_SECRET}")
    produced += [encode(e).decode() for e in await venue.submit(order("s-2"))]
    server.forced_errors.clear()
    server.rate_limited = True
    produced += [encode(e).decode() for e in await venue.submit(order("s-3"))]
    server.rate_limited = False
    produced.append(repr(venue._secrets) + repr(token()))
    for refusal in (
        lambda: make_venue(secret="wrong-" + API_SECRET),
        lambda: make_venue(("DOGE_USDT",)),
    ):
        failing = await refusal()
        with pytest.raises(LiveTradingRefused) as refused:
            await failing.start()
        produced += [str(refused.value), repr(refused.value)]
    server.withdraw_permission = True
    with pytest.raises(LiveTradingRefused) as refused:
        await (await make_venue()).start()
    produced.append(str(refused.value))
    produced += [record.getMessage() for record in caplog.records]
    produced += [str(record.args) for record in caplog.records]
    text = "\n".join(produced)
    assert "no balance for ***" in text  # the echoed error did arrive, scrubbed
    assert API_KEY not in text
    assert API_SECRET not in text
    # The secret only ever signs: it never travels, in any header, query or body.
    assert all(API_SECRET not in repr(seen) for seen in server.requests)
