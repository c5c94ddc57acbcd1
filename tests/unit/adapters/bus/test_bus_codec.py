"""The bus wire format and the consumer's gap bookkeeping: pure, no Redis needed."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.bus import (
    MalformedMessage,
    decode_heartbeat,
    decode_recorded,
    encode_recorded,
)
from aggregates import events as ev

D = Decimal


def trade(at_ms: int = 1_000, price: str = "65000.5") -> ev.TradeTicked:
    return ev.TradeTicked(
        at_ms=at_ms,
        symbol="BTC_USDT",
        price=D(price),
        contracts=D("12"),
        taker_side="buy",
        position_effect="open",
    )


def order() -> ev.OrderRequested:
    return ev.OrderRequested(
        at_ms=2_000,
        client_order_id="c-1",
        symbol="BTC_USDT",
        side="buy",
        contracts=D("3"),
        order_type="market",
        intent="entry",
        reduce_only=False,
        reference_price=D("65000"),
    )


# --------------------------------------------------------------------------- codec


def test_decode_when_encoded_committed_event_then_identical_typed_event_comes_back(
    make_recorded,
) -> None:
    for position, event in enumerate((trade(), order()), start=1):
        recorded = make_recorded(event, position)
        back = decode_recorded(encode_recorded(recorded))
        assert back == recorded
        assert type(back.event) is type(event)


@given(
    price=st.decimals(min_value=D("0.00000001"), max_value=D("1e12"), places=8),
    at_ms=st.integers(min_value=0, max_value=32503680000000),
    position=st.integers(min_value=1, max_value=2**62),
)
def test_decode_when_any_trade_round_trips_then_decimals_are_exact(
    make_recorded, price: Decimal, at_ms: int, position: int
) -> None:
    recorded = make_recorded(trade(at_ms, str(price)), position)
    back = decode_recorded(encode_recorded(recorded))
    assert back == recorded
    assert back.event.price == price  # type: ignore[attr-defined]
    assert isinstance(back.event.price, Decimal)  # type: ignore[attr-defined]


def test_decode_when_not_json_then_malformed_json() -> None:
    with pytest.raises(MalformedMessage) as caught:
        decode_recorded(b"{not json")
    assert caught.value.reason == "json"


def test_decode_when_field_has_wrong_type_then_malformed_schema(make_recorded) -> None:
    raw = msgspec.json.decode(encode_recorded(make_recorded(trade(), 1)))
    raw["position"] = "1"  # strict: no string-to-int coercion
    with pytest.raises(MalformedMessage) as caught:
        decode_recorded(msgspec.json.encode(raw))
    assert caught.value.reason == "schema"


def test_decode_when_price_breaks_event_invariant_then_malformed_schema(make_recorded) -> None:
    raw = msgspec.json.decode(encode_recorded(make_recorded(trade(), 1)))
    raw["event"]["price"] = -1
    with pytest.raises(MalformedMessage) as caught:
        decode_recorded(msgspec.json.encode(raw))
    assert caught.value.reason == "schema"


def test_decode_when_event_type_disagrees_with_tag_then_malformed_type_mismatch(
    make_recorded,
) -> None:
    raw = msgspec.json.decode(encode_recorded(make_recorded(trade(), 1)))
    raw["event_type"] = "order.requested"
    with pytest.raises(MalformedMessage) as caught:
        decode_recorded(msgspec.json.encode(raw))
    assert caught.value.reason == "type_mismatch"


def test_decode_when_event_arrives_on_another_topic_then_malformed_wrong_topic(
    make_recorded,
) -> None:
    data = encode_recorded(make_recorded(trade(), 1))
    assert decode_recorded(data, topic="market_data").position == 1
    with pytest.raises(MalformedMessage) as caught:
        decode_recorded(data, topic="orders")
    assert caught.value.reason == "wrong_topic"


def test_decode_heartbeat_when_unknown_field_then_malformed_schema() -> None:
    with pytest.raises(MalformedMessage) as caught:
        decode_heartbeat(b'{"service":"risk","at":"2026-01-01T00:00:00Z","extra":1}')
    assert caught.value.reason == "schema"


@pytest.mark.parametrize(
    ("service", "instance"),
    [("Ghost", "h:1"), ("ghost service", "h:1"), ("", "h:1"), ("g" * 65, "h:1"), ("g", "i" * 201)],
    ids=["upper_case", "space", "empty", "65_chars", "instance_201_chars"],
)
def test_decode_heartbeat_when_it_could_not_become_a_service_alert_then_malformed_schema(
    service: str, instance: str
) -> None:
    data = msgspec.json.encode(
        {"service": service, "at": "2026-01-01T00:00:00Z", "payload": {"instance": instance}}
    )
    with pytest.raises(MalformedMessage) as caught:
        decode_heartbeat(data)
    assert caught.value.reason == "schema"


def test_decode_heartbeat_when_service_and_instance_fit_a_service_alert_then_decoded() -> None:
    data = msgspec.json.encode(
        {"service": "g" * 64, "at": "2026-01-01T00:00:00Z", "payload": {"instance": "i" * 200}}
    )
    assert decode_heartbeat(data).service == "g" * 64
