"""Fuzzing the MEXC parser: arbitrary bytes and JSON never raise; nothing malformed is an event."""

from __future__ import annotations

import gzip
import json
from decimal import Decimal

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.mexc import protocol
from adapters.mexc.protocol import Acked, MexcParser, Pong, Pushed, Rejected
from aggregates import events as ev

TS = 1755487578276
NUMBERS = msgspec.json.Encoder(decimal_format="number")  # decimals as bare JSON numbers
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["NaN", "Infinity", "-inf", "1e999", "0", "-0", "BTC_USDT", "1e-50"])
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)
channels = st.sampled_from(
    ["push.deal", "push.tickers", "push.kline", "pong", "rs.error", "rs.sub.deal", "push.x"]
)


def assert_sound(parsed: object) -> None:
    """A result is one of our types, and every event it carries is a valid ledger event."""
    assert isinstance(parsed, Pushed | Acked | Pong | Rejected)
    if isinstance(parsed, Rejected):
        assert parsed.reason in protocol.REASONS
        return
    if isinstance(parsed, Pushed):
        for event in parsed.events:
            assert ev.decode(ev.encode(event)) == event  # symbol pattern, positivity, finiteness
            if isinstance(event, ev.TradeTicked):
                assert event.price > 0 and event.contracts > 0
                assert abs(event.at_ms - TS) <= 10 * 60_000 or event.at_ms > 0
        for skipped in parsed.skipped:
            assert skipped.reason in protocol.REASONS


@FUZZ
@given(st.binary(max_size=512))
def test_parse_when_arbitrary_bytes_then_only_typed_results(data: bytes) -> None:
    assert_sound(MexcParser().parse(data))
    assert_sound(MexcParser().parse(gzip.compress(data)))


@FUZZ
@given(st.text(max_size=300))
def test_parse_when_arbitrary_text_then_only_typed_results(text: str) -> None:
    assert_sound(MexcParser().parse(text))


@FUZZ
@given(channels, json_values, st.one_of(st.none(), json_values), json_values)
def test_parse_when_arbitrary_json_in_a_frame_then_only_typed_results(
    channel: str, data: object, symbol: object, ts: object
) -> None:
    frame = {"channel": channel, "data": data, "symbol": symbol, "ts": ts}
    assert_sound(MexcParser().parse(json.dumps(frame)))
    assert_sound(MexcParser().parse(json.dumps(data)))


@FUZZ
@given(st.sampled_from(["p", "v", "T", "O", "M", "t", "i"]), json_values)
def test_parse_when_one_deal_field_is_replaced_then_rejected_or_still_a_sound_trade(
    key: str, value: object
) -> None:
    deal = {"p": 100.5, "v": 3, "T": 1, "O": 1, "M": 2, "t": TS, key: value}
    frame = json.dumps({"channel": "push.deal", "symbol": "BTC_USDT", "data": [deal], "ts": TS})
    parsed = MexcParser().parse(frame)
    assert_sound(parsed)
    if isinstance(parsed, Pushed):
        (tick,) = parsed.events
        assert tick.at_ms - TS <= 60_000 and TS - tick.at_ms <= 10 * 60_000


prices = st.decimals(min_value=Decimal("0.00001"), max_value=Decimal(10**6), places=5)


@FUZZ
@given(
    st.lists(
        st.tuples(
            prices,
            st.integers(1, 10**7),
            st.sampled_from([1, 2]),
            st.sampled_from([1, 2, 3]),
            st.integers(-60_000, 60_000),
        ),
        min_size=1,
        max_size=20,
    ),
    st.booleans(),
)
def test_parse_when_valid_deals_then_every_trade_arrives_exactly(
    deals: list[tuple[Decimal, int, int, int, int]], compressed: bool
) -> None:
    data = [
        {"p": price, "v": volume, "T": taker, "O": effect, "M": 2, "t": TS + offset}
        for price, volume, taker, effect, offset in deals
    ]
    body = {"channel": "push.deal", "symbol": "ETH_USDT", "data": data, "ts": TS}
    text = NUMBERS.encode(body).decode()
    frame: str | bytes = gzip.compress(text.encode()) if compressed else text
    parsed = MexcParser().parse(frame)
    assert isinstance(parsed, Pushed), parsed
    assert sorted((e.price, e.contracts) for e in parsed.events) == sorted(
        (price, Decimal(volume)) for price, volume, *_ in deals
    )
    assert [e.at_ms for e in parsed.events] == sorted(e.at_ms for e in parsed.events)
