"""The codec's fast jsonb rendering equals the general one, character for character."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregates import events as ev
from aggregates.envelope import NewEvent
from eventstore.canonical import _string, render_jsonb
from eventstore.codec import prepare
from eventstore.errors import InvalidEvent


def test_msgspec_string_escaping_when_any_code_point_then_equals_escape_json() -> None:
    # _string is pinned to PostgreSQL's escape_json by tests/integration/eventstore.
    for code in range(1, 0x110000):
        if 0xD800 <= code < 0xE000:
            continue
        char = chr(code)
        assert msgspec.json.encode(char).decode() == _string(char), hex(code)


def _tick(trade_id: str | None, price: Decimal, side: str) -> NewEvent:
    event = ev.TradeTicked(
        at_ms=1_735_689_600_000,
        symbol="BTC_USDT",
        price=price,
        contracts=Decimal("1.5"),
        taker_side=side,  # type: ignore[arg-type]
        position_effect="open",
        trade_id=trade_id,
    )
    return NewEvent(event=event, event_id=uuid.uuid4(), occurred_at=datetime.now(UTC))


@given(
    trade_id=st.none() | st.text(st.characters(blacklist_categories=("Cs",)), max_size=30),
    price=st.decimals(min_value=Decimal("1e-8"), max_value=Decimal("1e12"), places=8),
    side=st.sampled_from(["buy", "sell"]),
)
def test_prepare_when_flat_event_then_payload_is_render_jsonb_of_its_json(
    trade_id: str | None, price: Decimal, side: str
) -> None:
    new = _tick(trade_id, price, side)
    if trade_id is not None and "\x00" in trade_id:
        with pytest.raises(InvalidEvent, match="NUL"):
            prepare("market-BTC_USDT", new)
        return
    prepared = prepare("market-BTC_USDT", new)
    assert prepared.payload_text == render_jsonb(msgspec.json.decode(ev.encode(new.event)))


def test_prepare_when_text_spells_an_escaped_nul_then_kept_verbatim() -> None:
    prepared = prepare("market-BTC_USDT", _tick("a\\u0000b", Decimal(1), "buy"))
    assert '"trade_id": "a\\\\u0000b"' in prepared.payload_text
