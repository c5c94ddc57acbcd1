"""The top-movers screener: ranking, volume floor, and events only when the chosen set changes."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregates.events import MoversSelected, TickerQuote, TickersSnapshotted
from aggregates.machine import record
from aggregates.screener import ScreenerConfig, ScreenerLog, ScreenerState, decide, fold, rank
from aggregates.snapshot import CODECS

CONFIG = ScreenerConfig(top_n=2, min_volume_24h=Decimal(1000))


def quote(symbol: str, rate: str, volume: int = 5000) -> TickerQuote:
    return TickerQuote(
        symbol=symbol,
        last_price=Decimal(1),
        rise_fall_rate=Decimal(rate),
        volume_24h=Decimal(volume),
    )


def snapshot(*quotes: TickerQuote, at_ms: int = 1000) -> TickersSnapshotted:
    return TickersSnapshotted(at_ms=at_ms, quotes=quotes)


def test_rank_when_moves_differ_then_largest_absolute_move_first() -> None:
    ranked = rank(
        (quote("A_USDT", "0.01"), quote("B_USDT", "-0.09"), quote("C_USDT", "0.05")), CONFIG
    )
    assert ranked == [
        ("B_USDT", Decimal("0.09")),
        ("C_USDT", Decimal("0.05")),
        ("A_USDT", Decimal("0.01")),
    ]


def test_rank_when_volume_below_floor_then_symbol_is_skipped() -> None:
    ranked = rank((quote("THIN_USDT", "0.9", volume=999), quote("A_USDT", "0.01")), CONFIG)
    assert [symbol for symbol, _ in ranked] == ["A_USDT"]


def test_rank_when_moves_tie_then_higher_volume_then_symbol_decides() -> None:
    quotes = (quote("B_USDT", "0.02"), quote("A_USDT", "-0.02"), quote("C_USDT", "0.02", 9000))
    assert [s for s, _ in rank(quotes, CONFIG)] == ["C_USDT", "A_USDT", "B_USDT"]


def test_rank_when_not_usdt_margined_then_skipped() -> None:
    assert rank((quote("BTC_USD", "0.5"), quote("A_USDT", "0.01")), CONFIG) == [
        ("A_USDT", Decimal("0.01"))
    ]


def test_decide_when_first_snapshot_then_movers_selected_with_scores() -> None:
    state, events = decide(
        ScreenerState(),
        snapshot(quote("A_USDT", "0.01"), quote("B_USDT", "-0.09"), quote("C_USDT", "0.05")),
        CONFIG,
    )
    assert events == (
        MoversSelected(
            at_ms=1000, symbols=("B_USDT", "C_USDT"), scores=(Decimal("0.09"), Decimal("0.05"))
        ),
    )
    assert state.selected == ("B_USDT", "C_USDT")


def test_decide_when_same_set_in_another_order_then_nothing_emitted() -> None:
    state = ScreenerState(selected=("B_USDT", "C_USDT"))
    new_state, events = decide(
        state, snapshot(quote("C_USDT", "0.2"), quote("B_USDT", "0.1")), CONFIG
    )
    assert events == () and new_state == state


def test_decide_when_set_changes_then_event_names_the_previous_set() -> None:
    state = ScreenerState(selected=("B_USDT", "C_USDT"))
    _, (event,) = decide(
        state, snapshot(quote("C_USDT", "0.2"), quote("D_USDT", "0.3"), at_ms=7), CONFIG
    )
    assert event.symbols == ("D_USDT", "C_USDT") and event.previous == ("B_USDT", "C_USDT")
    assert event.at_ms == 7


def test_config_when_top_n_is_zero_then_refused() -> None:
    with pytest.raises(ValueError, match="top_n"):
        ScreenerConfig(top_n=0, min_volume_24h=Decimal(0))


symbols = st.sampled_from([f"S{i}_USDT" for i in range(8)] + ["X_USD"])
quotes = st.builds(
    quote,
    symbols,
    st.decimals(min_value=-1, max_value=1, places=4).map(str),
    st.integers(0, 10_000),
)
configs = st.builds(ScreenerConfig, st.integers(1, 5), st.integers(0, 10_000).map(Decimal))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(quotes, max_size=12).map(tuple), min_size=1, max_size=8), configs)
def test_decide_over_snapshots_then_selection_is_top_n_eligible_and_events_mark_changes(
    snapshots: list[tuple[TickerQuote, ...]], config: ScreenerConfig
) -> None:
    state = ScreenerState()
    for index, quotes_ in enumerate(snapshots):
        before = state
        state, events = decide(state, snapshot(*quotes_, at_ms=index), config)
        first_lines = list({q.symbol: q for q in reversed(quotes_)}.values())  # first per symbol
        eligible = {
            q.symbol
            for q in first_lines
            if q.symbol.endswith("_USDT") and q.volume_24h >= config.min_volume_24h
        }
        assert len(state.selected) == min(config.top_n, len(eligible))
        assert set(state.selected) <= eligible
        assert len(set(state.selected)) == len(state.selected)
        assert bool(events) == (set(state.selected) != set(before.selected))
        # nobody left out moved more than someone chosen
        if set(state.selected) != set(before.selected) or not before.selected:
            chosen = [abs(q.rise_fall_rate) for q in first_lines if q.symbol in state.selected]
            for q in first_lines:
                if q.symbol in eligible and q.symbol not in state.selected:
                    assert abs(q.rise_fall_rate) <= min(chosen)
        # deterministic
        assert decide(before, snapshot(*quotes_, at_ms=index), config) == (state, events)


symbols = st.sampled_from(["A_USDT", "B_USDT", "C_USDT", "D_USDT"])
screener_events = st.lists(
    st.one_of(
        st.just("tickers"),
        st.lists(symbols, min_size=1, max_size=3, unique=True).map(tuple),
    ),
    max_size=25,
)


def _stream(items: list) -> list:
    """The ``screener`` stream of ``items`` (ticker snapshots and selections), as committed:
    versions 1..n at increasing positions with other streams' events between them."""
    records, previous = [], ()
    for version, item in enumerate(items, 1):
        at_ms = 60_000 * version
        if item == "tickers":
            event = snapshot(quote("A_USDT", "0.01"), at_ms=at_ms)
        else:
            event = MoversSelected(
                at_ms=at_ms, symbols=item, scores=(Decimal(1),) * len(item), previous=previous
            )
            previous = item
        records.append(record(event, 3 * version, stream_version=version))
    return records


@settings(max_examples=60, deadline=None)
@given(items=screener_events, cut=st.integers(min_value=0, max_value=25))
def test_screener_log_when_restored_from_snapshot_bytes_at_any_cut_then_equals_whole_fold(
    items: list, cut: int
) -> None:
    codec, stream = CODECS["screener"], _stream(items)
    cut = min(cut, len(stream))
    whole = ScreenerLog()
    for recorded in stream:
        whole = fold(whole, recorded)
    head = ScreenerLog()
    for recorded in stream[:cut]:
        head = fold(head, recorded)
    resumed = codec.decode(codec.encode(head))
    assert resumed.version == cut  # the tail a restore reads: versions after it
    for recorded in stream[resumed.version :]:
        resumed = fold(resumed, recorded)
    assert codec.encode(resumed) == codec.encode(whole)
    ticker = snapshot(quote("B_USDT", "0.5"), quote("C_USDT", "0.2"), at_ms=10**9)
    assert decide(ScreenerState(resumed.selected), ticker, CONFIG) == decide(
        ScreenerState(whole.selected), ticker, CONFIG
    )
