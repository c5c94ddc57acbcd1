"""The MEXC frame parser on the documented shapes and on each way a frame can be bad."""

from __future__ import annotations

import gzip
import json
from decimal import Decimal

import pytest

from adapters.mexc import protocol
from adapters.mexc.protocol import Acked, MexcParser, Pong, ProtocolLimits, Pushed, Rejected
from aggregates.events import CandleClosed, TickersSnapshotted, TradeTicked

TS = 1755487578276

# Verbatim from MEXC's docs (../shared/MEXC.md): the 2025 list form and the older object form.
DEAL_LIST = (
    '{"symbol":"BTC_USDT","data":[{"p":115309.8,"v":55,"T":2,"O":3,"M":1,"t":1755487578276},'
    '{"p":115309.8,"v":11,"T":1,"O":3,"M":1,"t":1755487578275}],"channel":"push.deal",'
    '"ts":1755487578276}'
)
DEAL_OBJECT = (
    '{"channel":"push.deal","data":{"M":1,"O":1,"T":1,"p":6866.5,"t":1587442049632,"v":2096},'
    '"symbol":"BTC_USDT","ts":1587442022003}'
)
TICKERS = (
    '{"channel":"push.tickers","data":[{"fairPrice":183.01,"lastPrice":183,"riseFallRate":-0.0708,'
    '"symbol":"BSV_USDT","volume24":200}],"ts":1587442022003}'
)


def deal_frame(**overrides: object) -> str:
    deal = {"p": 100.5, "v": 3, "T": 1, "O": 1, "M": 2, "t": TS} | overrides
    return json.dumps({"channel": "push.deal", "symbol": "BTC_USDT", "data": deal, "ts": TS})


def kline_frame(t: int, o: float, h: float, low: float, c: float, ts: int | None = None) -> str:
    data = {"a": 10.5, "c": c, "h": h, "interval": "Min1", "l": low, "o": o, "q": 7}
    data |= {"symbol": "BTC_USDT", "t": t}
    return json.dumps({"channel": "push.kline", "data": data, "symbol": "BTC_USDT", "ts": ts or TS})


def test_parse_when_deal_data_is_a_list_then_one_tick_per_trade_in_time_order() -> None:
    parsed = MexcParser().parse(DEAL_LIST)
    assert isinstance(parsed, Pushed)
    assert [e.at_ms for e in parsed.events] == [1755487578275, 1755487578276]
    first, second = parsed.events
    assert isinstance(first, TradeTicked)
    assert first.contracts == Decimal(11) and first.taker_side == "buy"
    assert second.taker_side == "sell" and second.position_effect == "unchanged"
    assert second.self_trade is True and second.price == Decimal("115309.8")


def test_parse_when_deal_data_is_an_object_then_one_tick() -> None:
    parsed = MexcParser().parse(DEAL_OBJECT)
    assert isinstance(parsed, Pushed)
    (tick,) = parsed.events
    assert tick == TradeTicked(
        at_ms=1587442049632,
        symbol="BTC_USDT",
        price=Decimal("6866.5"),
        contracts=Decimal(2096),
        taker_side="buy",
        position_effect="open",
        self_trade=True,
    )


def test_parse_when_price_has_many_digits_then_decimal_equals_the_json_text() -> None:
    parsed = MexcParser().parse(deal_frame(p=0.1 + 0.2 - 0.2, i=77))
    assert isinstance(parsed, Pushed)
    assert parsed.events[0].price == Decimal(repr(0.1 + 0.2 - 0.2))
    assert parsed.events[0].trade_id == "77"


def test_parse_when_frame_is_gzip_binary_then_same_result_as_text() -> None:
    assert MexcParser().parse(gzip.compress(DEAL_LIST.encode())) == MexcParser().parse(DEAL_LIST)


def test_parse_when_tickers_then_snapshot_with_exact_rates() -> None:
    parsed = MexcParser().parse(TICKERS)
    assert isinstance(parsed, Pushed)
    (snapshot,) = parsed.events
    assert isinstance(snapshot, TickersSnapshotted)
    (quote,) = snapshot.quotes
    assert quote.rise_fall_rate == Decimal("-0.0708") and quote.fair_price == Decimal("183.01")


def test_parse_when_one_ticker_line_is_bad_then_it_is_skipped_and_the_rest_kept() -> None:
    frame = json.loads(TICKERS)
    frame["data"].append(frame["data"][0] | {"symbol": "ETH_USDT", "lastPrice": -1})
    parsed = MexcParser().parse(json.dumps(frame))
    assert isinstance(parsed, Pushed)
    assert [q.symbol for q in parsed.events[0].quotes] == ["BSV_USDT"]
    assert parsed.skipped == (Rejected("non_positive", "$.data[1].lastPrice is -1"),)


def test_parse_when_kline_window_advances_then_previous_bar_closes() -> None:
    parser = MexcParser()
    assert parser.parse(kline_frame(1755487500, 10, 12, 9, 11)) == Pushed(
        "push.kline", (), symbol="BTC_USDT"
    )
    assert parser.parse(kline_frame(1755487500, 10, 13, 9, 12)).events == ()
    parsed = parser.parse(kline_frame(1755487560, 12, 12, 12, 12))
    (candle,) = parsed.events
    assert candle == CandleClosed(
        at_ms=1755487500000,
        symbol="BTC_USDT",
        interval="Min1",
        open=Decimal(10),
        high=Decimal(13),
        low=Decimal(9),
        close=Decimal(12),
        contracts=Decimal(7),
        quote_amount=Decimal("10.5"),
    )


def test_parse_when_kline_is_older_than_pending_then_nothing_closes() -> None:
    parser = MexcParser()
    parser.parse(kline_frame(1755487560, 10, 12, 9, 11))
    assert parser.parse(kline_frame(1755487500, 10, 12, 9, 11)).events == ()


def test_parse_when_pong_and_acks_then_typed_answers() -> None:
    parser = MexcParser()
    assert parser.parse('{"channel":"pong","data":1587453241453}') == Pong(1587453241453)
    ok = '{"channel":"rs.sub.deal","data":"success","ts":"1587442022003"}'
    assert parser.parse(ok) == Acked("sub.deal", ok=True, message="success")
    error = '{"channel":"rs.error","data":"Contract doesn\'t exist!","ts":"1587442022003"}'
    assert parser.parse(error) == Acked("", ok=False, message="Contract doesn't exist!")


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (deal_frame(p=-1), protocol.NON_POSITIVE),
        (deal_frame(p=0), protocol.NON_POSITIVE),
        (deal_frame(v=0), protocol.NON_POSITIVE),
        (deal_frame(p="NaN"), protocol.NON_FINITE),
        (deal_frame(p="-Infinity"), protocol.NON_FINITE),
        (deal_frame(p=1e300), protocol.OUT_OF_RANGE),
        (deal_frame(v=10**40), protocol.OUT_OF_RANGE),
        (deal_frame(p="1e-40"), protocol.OUT_OF_RANGE),
        (deal_frame(p=True), protocol.BAD_SHAPE),
        (deal_frame(T=3), protocol.BAD_SHAPE),
        (deal_frame(t="soon"), protocol.BAD_SHAPE),
        (deal_frame(t=TS - 86_400_000), protocol.TIMESTAMP_PAST),
        (deal_frame(t=TS + 86_400_000), protocol.TIMESTAMP_FUTURE),
        (deal_frame(t=-5), protocol.BAD_TIMESTAMP),
        (deal_frame().replace('"BTC_USDT"', '"btc-usdt"'), protocol.BAD_SYMBOL),
        ('{"channel":"push.depth","data":{},"ts":1}', protocol.UNKNOWN_CHANNEL),
        ('{"channel":"push.deal","symbol":"BTC_USDT","data":[]}', protocol.BAD_SHAPE),
        ('{"channel":"push.deal","symbol":"BTC_USDT","data":{"p":1', protocol.BAD_JSON),
        ('{"channel":', protocol.BAD_JSON),
        ("[1, 2]", protocol.BAD_SHAPE),
        (b"\xff\xfe\x00", protocol.BAD_JSON),
        (b"\x1f\x8b\x08\x00garbage", protocol.BAD_GZIP),
        (kline_frame(1755487500, 10, 9, 8, 11), protocol.INCONSISTENT_CANDLE),
        ('{"channel":"push.tickers","data":[{"symbol":"A_USDT"}],"ts":1}', protocol.BAD_SHAPE),
    ],
)
def test_parse_when_frame_is_malformed_then_rejected_with_stable_reason(
    frame: str | bytes, reason: str
) -> None:
    parsed = MexcParser().parse(frame)
    assert isinstance(parsed, Rejected), parsed
    assert parsed.reason == reason
    assert parsed.reason in protocol.REASONS


def test_parse_when_frame_exceeds_the_limit_then_rejected_as_oversized() -> None:
    parser = MexcParser(ProtocolLimits(max_frame_bytes=200))
    assert parser.parse(DEAL_LIST + " " * 200).reason == protocol.OVERSIZED
    bomb = gzip.compress(b'{"channel":"push.deal","pad":"' + b"0" * 100_000 + b'"}')
    assert len(bomb) < 200
    assert parser.parse(bomb).reason == protocol.OVERSIZED


def test_rejection_detail_when_nested_field_is_wrong_then_names_the_path() -> None:
    frame = DEAL_LIST.replace('"v":11', '"v":"eleven"')
    parsed = MexcParser().parse(frame)
    assert isinstance(parsed, Rejected)
    assert "$.data[1]" in parsed.detail


def test_requests_when_built_then_match_the_documented_shapes() -> None:
    assert json.loads(protocol.encode_request(protocol.ping())) == {"method": "ping"}
    assert protocol.subscribe_deal("BTC_USDT") == {
        "method": "sub.deal",
        "param": {"symbol": "BTC_USDT", "compress": False},
        "gzip": False,
    }
    assert protocol.subscribe_tickers()["method"] == "sub.tickers"
    assert protocol.subscribe_kline("ETH_USDT", "Min5")["param"] == {
        "symbol": "ETH_USDT",
        "interval": "Min5",
    }
