"""Market trades keep their identity: ids depend on the stream, never on how it was batched.

Two real trades with identical content (same symbol, millisecond, price, size, side) are two
events; the same stream, batched any other way (a restart that batches differently), yields the
same ids, so whatever is re-sent is recognised and stored once.
"""

from __future__ import annotations

import itertools
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from aggregates import events as ev
from pipeline.ingest import MarketIds

BASE_MS = 1_767_225_600_000

trades = st.builds(
    lambda symbol, ms, price, contracts, side: ev.TradeTicked(
        at_ms=BASE_MS + ms,
        symbol=symbol,
        price=Decimal(price),
        contracts=Decimal(contracts),
        taker_side=side,
        position_effect="open",
    ),
    st.sampled_from(["BTC_USDT", "ETH_USDT"]),
    st.integers(0, 2),  # few milliseconds, few prices: plenty of identical trades
    st.sampled_from(["100.5", "100.6"]),
    st.sampled_from(["1", "2"]),
    st.sampled_from(["buy", "sell"]),
)


def _batched(stream: list[ev.TradeTicked], cuts: list[int]) -> list[list[ev.TradeTicked]]:
    edges = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    return [stream[a:b] for a, b in itertools.pairwise(edges)]


@given(st.lists(trades, max_size=40), st.lists(st.integers(0, 40), max_size=8))
def test_ids_when_a_stream_is_batched_any_way_then_the_same_and_all_distinct(
    stream: list[ev.TradeTicked], cuts: list[int]
) -> None:
    whole = MarketIds()(stream)
    ids = MarketIds()
    batched = [event_id for batch in _batched(stream, cuts) for event_id in ids(batch)]
    assert batched == whole
    assert len(set(whole)) == len(stream)  # identical trades are never merged


@given(st.lists(trades, min_size=1, max_size=20), st.lists(st.integers(0, 20), max_size=4))
def test_ids_when_the_stream_is_played_again_after_a_restart_then_recognised(
    stream: list[ev.TradeTicked], cuts: list[int]
) -> None:
    first = MarketIds()(stream)
    restarted = MarketIds()  # a new process: the stream from its start, batched differently
    again = [event_id for batch in _batched(stream, cuts) for event_id in restarted(batch)]
    assert again == first


def test_ids_when_many_old_trades_are_forgotten_then_recent_identical_ones_still_ranked() -> None:
    ids = MarketIds(horizon_ms=1_000, prune_at=10)
    old = [
        ev.TradeTicked(
            at_ms=BASE_MS + i,
            symbol="BTC_USDT",
            price=Decimal(1),
            contracts=Decimal(1),
            taker_side="buy",
            position_effect="open",
        )
        for i in range(30)
    ]
    recent = old[-1]
    first = ids([*old, recent])  # the oldest are pruned; the newest twice: ranks 0 and 1
    (third,) = ids([recent])
    assert third not in (first[-1], first[-2])
