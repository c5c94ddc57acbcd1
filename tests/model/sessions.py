"""Generated sessions for the model property: the unit strategies' markets, plus what issue 16
found the defects with — contracts with small maximum order sizes, funding at the 00:00, 08:00
and 16:00 UTC settlements (often large enough to breach the drawdown), bursts of signals and
whole UTC days of silence."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import strategies as st

from aggregates.events import ContractSpecified, FundingSettled, SignalGenerated
from tests.unit.strategies import SYMBOLS, Item, Settle, market_sequences

D = Decimal
FUNDING_EVERY_MS = 8 * 3_600_000


def _small_spec(at_ms: int, symbol: str, low: int, high: int) -> ContractSpecified:
    size = D("0.0001") if symbol == "BTC_USDT" else D("0.01")
    return ContractSpecified(
        at_ms=at_ms,
        symbol=symbol,
        contract_size=size,
        min_contracts=D(low),
        max_contracts=D(high),
        contracts_step=D(1),
        price_step=D("0.1"),
        taker_fee_rate=D(0),
        maker_fee_rate=D(0),
        api_allowed=True,
        source="exchange",
    )


@st.composite
def sessions(draw: st.DrawFn) -> list[Item]:
    base = draw(market_sequences(min_size=10, max_size=80))
    config, rest = base[0], base[1:]
    items: list[Item] = [config]
    for symbol in SYMBOLS:
        if draw(st.booleans()):
            low = draw(st.sampled_from([1, 1, 2, 5]))
            high = draw(st.sampled_from([3, 10, 50, 1000]))
            items.append(_small_spec(config.at_ms, symbol, low, max(low, high)))
    funding = draw(st.sampled_from([D(0), D(-5), D(-60), D(-400)]))
    last = config.at_ms
    for item in rest:
        if isinstance(item, Settle):
            items.append(item)
            continue
        boundary = (last // FUNDING_EVERY_MS + 1) * FUNDING_EVERY_MS
        if funding and item.at_ms >= boundary:
            symbol = draw(st.sampled_from(SYMBOLS))
            items.append(
                FundingSettled(at_ms=boundary, symbol=symbol, rate=D("0.01"), amount=funding)
            )
        last = max(last, item.at_ms)
        items.append(item)
        if isinstance(item, SignalGenerated) and draw(st.integers(0, 5)) == 0:
            items.extend([item] * draw(st.integers(1, 4)))  # a burst of the same signal
    return items
