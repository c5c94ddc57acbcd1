"""Live execution's fold of the log (``aggregates.live_book``) and its snapshot bytes.

Generated order lifecycles (requested, accepted, rejected, partially filled, filled, cancelled)
interleaved with exchange-stop events: a state restored from the bytes of the fold at any point,
then fed the rest, is the fold of the whole log, byte for byte; the requests it keeps give the
answers the logged requests gave; bytes that are not such a state are refused (another
machine's state: ``test_snapshot_codec.py``, over every codec).
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregates import events as ev
from aggregates.envelope import RecordedEvent, derived
from aggregates.live_book import LiveBookState
from aggregates.machine import record_all
from aggregates.snapshot import CODECS, SnapshotDecodeError

CODEC = CODECS["execution-live"]
SYMBOLS = ("BTC_USDT", "ETH_USDT")
AT_MS = 1_760_000_000_000
_fees = st.decimals(min_value=0, max_value=2, places=4)
_liquidity = st.sampled_from(["maker", "taker"])


@st.composite
def _order(draw: st.DrawFn, index: int) -> list[ev.Event]:
    coid, symbol = f"ord-{index}", draw(st.sampled_from(SYMBOLS))
    side = draw(st.sampled_from(["buy", "sell"]))
    contracts = draw(st.integers(min_value=1, max_value=9))
    limit = draw(st.booleans())
    events: list[ev.Event] = [
        ev.OrderRequested(
            at_ms=AT_MS,
            client_order_id=coid,
            symbol=symbol,
            side=side,
            contracts=Decimal(contracts),
            order_type="limit" if limit else "market",
            intent="entry",
            reduce_only=False,
            reference_price=Decimal("100.0"),
            limit_price=Decimal("99.5") if limit else None,
        )
    ]
    fate = draw(st.sampled_from(["open", "rejected", "accepted"]))
    if fate == "rejected":
        events.append(
            ev.OrderRejected(
                at_ms=AT_MS, client_order_id=coid, symbol=symbol, code="refused", message="no"
            )
        )
    if fate != "accepted":
        return events
    events.append(
        ev.OrderAccepted(
            at_ms=AT_MS, client_order_id=coid, exchange_order_id=f"x{index}", symbol=symbol
        )
    )
    filled = 0
    fill = {"symbol": symbol, "side": side, "fee_currency": "USDT", "client_order_id": coid}
    for part in range(draw(st.integers(min_value=0, max_value=3))):
        if contracts - filled < 2:
            break
        size = draw(st.integers(min_value=1, max_value=contracts - filled - 1))
        filled += size
        events.append(
            ev.OrderPartiallyFilled(
                at_ms=AT_MS,
                price=Decimal(draw(st.integers(min_value=90, max_value=110))),
                contracts=Decimal(size),
                fee=draw(_fees),
                liquidity=draw(_liquidity),
                fill_id=f"{coid}-{part}",
                remaining_contracts=Decimal(contracts - filled),
                **fill,
            )
        )
    end = draw(st.sampled_from(["open", "filled", "cancelled"]))
    if end == "filled":
        events.append(
            ev.OrderFilled(
                at_ms=AT_MS,
                price=Decimal(100),
                contracts=Decimal(contracts - filled),
                fee=draw(_fees),
                liquidity=draw(_liquidity),
                fill_id=f"{coid}-last",
                **fill,
            )
        )
    elif end == "cancelled":
        events.append(
            ev.OrderCancelled(
                at_ms=AT_MS,
                client_order_id=coid,
                symbol=symbol,
                reason="cancelled_at_exchange",
                remaining_contracts=Decimal(contracts - filled) * draw(st.sampled_from([0, 1])),
            )
        )
    return events


@st.composite
def _stops(draw: st.DrawFn, symbol: str) -> list[ev.Event]:
    """Stops on ``symbol``: requested, maybe placed, maybe ended; some events name another stop
    (the state ignores them)."""
    events: list[ev.Event] = []
    for n in range(draw(st.integers(min_value=0, max_value=3))):
        stop_id = draw(st.sampled_from([f"{symbol}-s{n}", "stray"]))
        events.append(
            ev.ExecutionStopRequested(
                at_ms=AT_MS,
                stop_id=f"{symbol}-s{n}",
                symbol=symbol,
                direction=draw(st.sampled_from(["long", "short"])),
                contracts=Decimal(draw(st.integers(min_value=1, max_value=9))),
                trigger_price=Decimal("94.5"),
            )
        )
        if draw(st.booleans()):
            events.append(
                ev.ExecutionStopPlaced(
                    at_ms=AT_MS, stop_id=stop_id, symbol=symbol, exchange_stop_id=f"p{n}"
                )
            )
        if draw(st.booleans()):
            events.append(
                ev.ExecutionStopEnded(at_ms=AT_MS, stop_id=stop_id, symbol=symbol, reason="flat")
            )
    return events


@st.composite
def lifecycles(draw: st.DrawFn) -> list[RecordedEvent]:
    """A legal log: orders and stops interleaved arbitrarily, each in its own order; some
    requests carry a correlation id (a request's answers carry it on)."""
    count = draw(st.integers(min_value=1, max_value=6))
    queues = [draw(_order(i)) for i in range(count)] + [draw(_stops(s)) for s in SYMBOLS]
    events: list[ev.Event] = []
    while any(queues):
        queue = draw(st.sampled_from([q for q in queues if q]))
        events.append(queue.pop(0))
    timed = [msgspec.structs.replace(e, at_ms=AT_MS + i * 1000) for i, e in enumerate(events)]
    recorded = record_all(timed)
    return [
        msgspec.structs.replace(r, correlation_id=uuid.uuid5(uuid.NAMESPACE_URL, str(r.position)))
        if isinstance(r.event, ev.OrderRequested) and draw(st.booleans())
        else r
        for r in recorded
    ]


def _fold(log: list[RecordedEvent], state: LiveBookState | None = None) -> LiveBookState:
    state = state if state is not None else LiveBookState()
    for recorded in log:
        state.fold(recorded)
    return state


@settings(max_examples=200, deadline=None)
@given(lifecycles(), st.data())
def test_fold_when_restored_from_snapshot_bytes_anywhere_then_state_bytes_equal_the_full_fold(
    log, data
) -> None:
    cut = data.draw(st.integers(min_value=0, max_value=len(log)), label="cut")
    full = _fold(log)
    head = CODEC.encode(_fold(log[:cut]))
    restored = CODEC.decode(head)
    assert CODEC.encode(restored) == head  # the bytes are a fixed point
    resumed = _fold(log[cut:], restored)
    assert CODEC.encode(resumed) == CODEC.encode(full)
    assert resumed.book.open_orders() == full.book.open_orders()  # same order, same states
    assert resumed.stops == full.stops
    # it keeps the request of exactly the open orders, and their fees
    open_ids = {order.client_order_id for order in full.book.open_orders()}
    assert set(resumed.requests) == open_ids
    assert set(resumed.fees) <= open_ids


@settings(max_examples=100, deadline=None)
@given(lifecycles(), st.data())
def test_kept_request_when_restored_then_answers_derive_as_from_the_logged_request(
    log, data
) -> None:
    cut = data.draw(st.integers(min_value=0, max_value=len(log)), label="cut")
    restored = _fold(log[cut:], CODEC.decode(CODEC.encode(_fold(log[:cut]))))
    logged = {r.event.client_order_id: r for r in log if isinstance(r.event, ev.OrderRequested)}
    for coid, request in restored.requests.items():
        answer = ev.OrderAccepted(
            at_ms=AT_MS, client_order_id=coid, exchange_order_id="x", symbol=request.order.symbol
        )
        assert derived("execution-live", request.cause(), [answer]) == derived(
            "execution-live", logged[coid], [answer]
        )
        assert request.correlation == (logged[coid].correlation_id or logged[coid].event_id)


@settings(max_examples=50, deadline=None)
@given(lifecycles())
def test_decode_when_snapshot_truncated_anywhere_then_refused(log) -> None:
    data = CODEC.encode(_fold(log))
    for end in range(len(data)):
        with pytest.raises(SnapshotDecodeError):
            CODEC.decode(data[:end])


def test_decode_when_snapshot_edited_then_refused() -> None:
    requested = ev.OrderRequested(
        at_ms=AT_MS,
        client_order_id="ord-1",
        symbol="BTC_USDT",
        side="buy",
        contracts=Decimal(3),
        order_type="market",
        intent="entry",
        reduce_only=False,
        reference_price=Decimal("100.0"),
    )
    data = CODEC.encode(_fold(record_all([requested])))
    for old, new in (
        (b"REQUESTED", b"REQUESTEX"),  # a status no order has
        (b"order.requested", b"order.rejectedX"),  # another event where a request must be
        (b"execution-live", b"execution-lave"),  # another machine's name
    ):
        assert old in data
        with pytest.raises(SnapshotDecodeError):
            CODEC.decode(data.replace(old, new))
