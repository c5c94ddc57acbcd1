"""Market-data ingestion: MEXC feed batches, the screener and the clock, into the ledger.

Ids of market events derive from their content (and their rank among identical trades in one
batch), so a batch re-sent after a failed append is stored once. Time is an event: the clock
appends ``ClockTicked`` on a fixed cadence, from an injected time source (the wall clock live,
the tape's clock in the demo), so silence and day boundaries are decided from the log.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Sequence

from aggregates import events as ev
from aggregates.envelope import CLAIRE_NAMESPACE, NewEvent, committed, derived, utc_from_ms
from aggregates.screener import ScreenerConfig, ScreenerState, decide
from eventstore import EventStore, StoreUnavailable
from pipeline.decider import append_grouped

_log = logging.getLogger(__name__)

#: Milliseconds since the epoch, from whatever clock this deployment trusts.
TimeSource = Callable[[], int]


def market_event_ids(events: Sequence[ev.Event]) -> list[uuid.UUID]:
    """Content-derived ids; identical events in one batch are told apart by their rank."""
    seen: Counter[bytes] = Counter()
    ids = []
    for event in events:
        body = ev.encode(event)
        rank = seen[body]
        seen[body] += 1
        ids.append(uuid.uuid5(CLAIRE_NAMESPACE, f"market/{rank}/{body.decode()}"))
    return ids


def as_new_events(events: Sequence[ev.Event]) -> list[NewEvent]:
    return [
        NewEvent(event=event, event_id=event_id, occurred_at=utc_from_ms(event.at_ms))
        for event, event_id in zip(events, market_event_ids(events), strict=True)
    ]


class MarketIngest:
    """The feed's sink: appends market batches; runs the screener on ticker snapshots."""

    def __init__(
        self,
        store: EventStore,
        *,
        screener: ScreenerConfig | None,
        snapshot_every_ms: int,
        on_symbols: Callable[[tuple[str, ...]], None] | None = None,
        on_appended: Callable[[int], None] | None = None,
    ) -> None:
        self._store = store
        self._screener = screener
        self._snapshot_every_ms = snapshot_every_ms
        self._on_symbols = on_symbols or (lambda symbols: None)
        self._on_appended = on_appended or (lambda count: None)
        self._screener_state = ScreenerState()
        self._last_snapshot_ms = -(10**15)
        self._retrying = True
        self.appended = 0

    def stop_retrying(self) -> None:
        """From now on a lost ledger fails the batch instead of holding it (shutdown)."""
        self._retrying = False

    async def restore(self) -> tuple[str, ...]:
        """The symbols the screener last chose (from the ledger), so a restart resumes them."""
        async for recorded in self._store.read_stream("screener"):
            if isinstance(recorded.event, ev.MoversSelected):
                self._screener_state = ScreenerState(selected=recorded.event.symbols)
            self._last_snapshot_ms = max(self._last_snapshot_ms, recorded.event.at_ms)
        return self._screener_state.selected

    async def __call__(self, batch: Sequence[ev.Event]) -> None:
        """Append one batch of parsed market events (retrying while the ledger is away)."""
        market: list[ev.Event] = []
        snapshots: list[ev.TickersSnapshotted] = []
        for event in batch:
            if isinstance(event, ev.TickersSnapshotted):
                if event.at_ms - self._last_snapshot_ms >= self._snapshot_every_ms:
                    self._last_snapshot_ms = event.at_ms
                    snapshots.append(event)
            else:
                market.append(event)
        news = as_new_events(market + snapshots)
        if news:
            await self._append_patiently(news)
        for snapshot, new in zip(snapshots, news[len(market) :], strict=True):
            await self._screen(snapshot, new)

    async def _screen(self, snapshot: ev.TickersSnapshotted, new: NewEvent) -> None:
        if self._screener is None:
            return
        self._screener_state, chosen = decide(self._screener_state, snapshot, self._screener)
        if not chosen:
            return
        positions = await self._store.append("screener", [new])
        cause = committed(new, positions[0], "screener")
        await self._append_patiently(derived("screener", cause, chosen))
        self._on_symbols(self._screener_state.selected)

    async def _append_patiently(self, news: list[NewEvent]) -> None:
        delay = 0.2
        while True:
            try:
                await append_grouped(self._store, news)
            except StoreUnavailable as error:
                if not self._retrying:
                    raise
                _log.error("ledger unavailable, holding %d market events: %s", len(news), error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self.appended += len(news)
            self._on_appended(len(news))
            return


class Clock:
    """Appends ``ClockTicked`` every ``interval`` seconds of the event loop's time."""

    def __init__(self, store: EventStore, now_ms: TimeSource, interval: float) -> None:
        self._store = store
        self._now_ms = now_ms
        self._interval = interval
        self.ticks = 0

    async def tick(self) -> int:
        at_ms = self._now_ms()
        event = ev.ClockTicked(at_ms=at_ms)
        new = NewEvent(
            event=event,
            event_id=uuid.uuid5(CLAIRE_NAMESPACE, f"clock/{at_ms}"),
            occurred_at=utc_from_ms(at_ms),
        )
        (position,) = await self._store.append("clock", [new])
        self.ticks += 1
        return position

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except StoreUnavailable as error:
                _log.error("clock: ledger unavailable: %s", error)
            await asyncio.sleep(self._interval)
