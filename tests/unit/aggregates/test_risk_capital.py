"""Capital kept apart: sizing never uses more than the configured trading capital.

``INITIAL_EQUITY_USDT`` is the capital the bot may trade with (the hot wallet). Profits above it
are not compounded into larger entries: every approved entry's position and exposure fit the
limits computed on min(equity, configured capital).
"""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from test_risk_properties import (
    PROPERTY,
    TOLERANCE,
    Observer,
    _is_entry_approval,
    _nothing,
    spec_size,
    walk,
)

from aggregates.events import Event
from tests.unit.strategies import drive, market_sequences


@PROPERTY
@given(market_sequences())
def test_entry_when_approved_then_sized_within_configured_capital(items: list) -> None:
    def check(observer: Observer, event: Event) -> None:
        if not _is_entry_approval(event):
            return
        config = observer.config
        assert config is not None and event.symbol is not None
        unit = Decimal(event.numbers["mark_price"]) * spec_size(config, event.symbol)
        capital = min(observer.portfolio.equity, config.initial_equity)
        added = event.approved_contracts * unit
        assert added <= capital * config.max_position_pct / 100 + TOLERANCE
        assert Decimal(event.numbers["equity"]) <= config.initial_equity

    walk(drive(items), _nothing, check)
