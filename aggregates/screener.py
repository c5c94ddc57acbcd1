"""Top movers from ``push.tickers``: which contracts the feed should follow. Pure.

Ranks quotes by the size of their 24 h move (``|riseFallRate|``, up or down: momentum works both
ways) among contracts traded enough to be worth following, and emits ``MoversSelected`` only when
the chosen *set* changes, so a reshuffle inside the top N does not churn subscriptions or the log.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from aggregates.envelope import RecordedEvent
from aggregates.events import MoversSelected, TickerQuote, TickersSnapshotted

#: The rate limit's "no ticker snapshot yet": far enough back that the first one is always kept.
NEVER_MS = -(10**15)


@dataclass(frozen=True, slots=True)
class ScreenerConfig:
    """``top_n`` contracts with ``volume_24h`` (contracts) >= ``min_volume_24h``."""

    top_n: int
    min_volume_24h: Decimal
    quote_suffix: str = "_USDT"

    def __post_init__(self) -> None:
        if self.top_n < 1:
            raise ValueError(f"top_n must be >= 1, got {self.top_n}")
        if not self.min_volume_24h.is_finite() or self.min_volume_24h < 0:
            raise ValueError(
                f"min_volume_24h must be a finite decimal >= 0, got {self.min_volume_24h}"
            )


@dataclass(frozen=True, slots=True)
class ScreenerState:
    """The symbols currently followed, best first."""

    selected: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ScreenerLog:
    """What the ingest restores from the ``screener`` stream (docs/SNAPSHOTS.md): the selection
    in force, the newest ticker snapshot's time (the rate limit) and how many of the stream's
    events are folded (``version``: a restore from a snapshot reads the stream after it)."""

    selected: tuple[str, ...] = ()
    last_snapshot_ms: int = NEVER_MS
    version: int = 0


def fold(log: ScreenerLog, recorded: RecordedEvent) -> ScreenerLog:
    """``log`` after one committed event of the ``screener`` stream."""
    event = recorded.event
    selected = event.symbols if isinstance(event, MoversSelected) else log.selected
    return ScreenerLog(
        selected=selected,
        last_snapshot_ms=max(log.last_snapshot_ms, event.at_ms),
        version=max(log.version, recorded.stream_version),
    )


def rank(quotes: tuple[TickerQuote, ...], config: ScreenerConfig) -> list[tuple[str, Decimal]]:
    """Eligible symbols with their score, best first; ties by volume, then by symbol (total order).

    A symbol listed twice in one snapshot counts once, with its first line.
    """
    seen: set[str] = set()
    eligible: list[TickerQuote] = []
    for quote in quotes:
        if quote.symbol in seen:
            continue
        seen.add(quote.symbol)
        if quote.symbol.endswith(config.quote_suffix) and quote.volume_24h >= config.min_volume_24h:
            eligible.append(quote)
    eligible.sort(key=lambda q: (-q.rise_fall_rate.copy_abs(), -q.volume_24h, q.symbol))
    return [(q.symbol, q.rise_fall_rate.copy_abs()) for q in eligible]


def decide(
    state: ScreenerState, snapshot: TickersSnapshotted, config: ScreenerConfig
) -> tuple[ScreenerState, tuple[MoversSelected, ...]]:
    """The new selection and, if the set changed, the event that records it."""
    top = rank(snapshot.quotes, config)[: config.top_n]
    symbols = tuple(symbol for symbol, _ in top)
    if frozenset(symbols) == frozenset(state.selected):
        return state, ()
    event = MoversSelected(
        at_ms=snapshot.at_ms,
        symbols=symbols,
        scores=tuple(score for _, score in top),
        previous=state.selected,
    )
    return ScreenerState(selected=symbols), (event,)
