"""``TradeTicked.symbol`` is checked in ``__post_init__`` (remembered per symbol), not by msgspec's
pattern: it must accept and refuse exactly what :data:`aggregates.events.Symbol` does."""

from __future__ import annotations

import msgspec
import pytest

from aggregates import events as ev

CANDIDATES = [
    "BTC_USDT",
    "ETH_USDT",
    "1000PEPE_USDT",
    "A_B",
    "X" * 20 + "_" + "Y" * 10,
    "X" * 21 + "_USDT",
    "BTC_" + "U" * 11,
    "btc_usdt",
    "BTCUSDT",
    "BTC-USDT",
    "BTC_USDT ",
    "BTC_USDT\n",
    "_USDT",
    "BTC_",
    "",
    "BTC_USDT_X",
    "BTC_USDṪ",
]


class _Symbol(msgspec.Struct):
    symbol: ev.Symbol


def _trade(symbol: str) -> bytes:
    return msgspec.json.encode(
        {
            "type": "market.trade",
            "at_ms": 1,
            "symbol": symbol,
            "price": "1",
            "contracts": "1",
            "taker_side": "buy",
            "position_effect": "open",
        }
    )


def _accepted_by_symbol_type(symbol: str) -> bool:
    try:
        msgspec.json.decode(msgspec.json.encode({"symbol": symbol}), type=_Symbol)
    except msgspec.ValidationError:
        return False
    return True


@pytest.mark.parametrize("symbol", CANDIDATES)
def test_trade_decode_when_symbol_given_then_accepted_exactly_as_the_symbol_type(
    symbol: str,
) -> None:
    for _ in range(2):  # the second time from the memory of valid symbols
        try:
            event = msgspec.json.decode(_trade(symbol), type=ev.AnyEvent)
        except msgspec.ValidationError:
            accepted = False
        else:
            accepted = event.symbol == symbol
        assert accepted == _accepted_by_symbol_type(symbol)


def test_trade_when_built_in_code_with_a_bad_symbol_then_refused() -> None:
    with pytest.raises(ValueError, match="does not match"):
        ev.TradeTicked(
            at_ms=1,
            symbol="btc_usdt",
            price=ev.Decimal(1),
            contracts=ev.Decimal(1),
            taker_side="buy",
            position_effect="open",
        )
