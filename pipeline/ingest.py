"""Market-data ingestion: MEXC feed batches, the screener and the clock, into the ledger.

Ids of market events derive from their content and their rank among identical events seen by
the feed (:class:`MarketIds`), so a batch re-sent after a failed append is stored once and two
identical real trades stay two, whatever batches or reconnects fall between them. Time is an
event: the clock appends ``ClockTicked`` on a fixed cadence, from an injected time source (the
wall clock live, the tape's clock in the demo), so silence and day boundaries are decided from
the log.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence

from adapters.backoff import Backoff
from aggregates import events as ev
from aggregates.envelope import CLAIRE_NAMESPACE, NewEvent, committed, derived, utc_from_ms
from aggregates.portfolio import DAY_MS
from aggregates.screener import ScreenerConfig, ScreenerLog, ScreenerState, decide, fold
from aggregates.snapshot import CODECS
from eventstore import EventStore, StoreUnavailable
from eventstore.snapshots import Snapshots, snapshot_of
from pipeline.decider import append_grouped
from pipeline.snapshotting import latest_usable

_log = logging.getLogger(__name__)
#: While the ledger is down the feed holds market events and tries again: 0.2 s doubling to 5 s.
_HOLD_BACKOFF = Backoff(0.2, 5.0)

#: Milliseconds since the epoch, from whatever clock this deployment trusts.
TimeSource = Callable[[], int]


class MarketIds:
    """Ids of market events, stable across batches, reconnects and restarts replaying a stream.

    An id derives from the event's content and its *rank* among the identical events this feed
    has seen so far (same symbol, millisecond, price, size, side...): two real trades with the
    same content are two events wherever a batch or a reconnect falls between them, and a batch
    re-sent after a failed append, or a stream played again from its start after a restart,
    derives the same ids, so the ledger stores it once. Ranks are remembered for ``horizon_ms``
    behind the newest event seen; identical trades further apart than that are not expected.
    """

    def __init__(self, horizon_ms: int = 60_000, prune_at: int = 50_000) -> None:
        self._horizon_ms = horizon_ms
        self._prune_at = prune_at
        self._seen: dict[bytes, tuple[int, int]] = {}  # content -> (how many so far, at_ms)
        self._newest_ms = -(10**15)

    def __call__(self, events: Sequence[ev.Event]) -> list[uuid.UUID]:
        ids = []
        for event in events:
            body = ev.encode(event)
            rank = self._seen.get(body, (0, 0))[0]
            self._seen[body] = (rank + 1, event.at_ms)
            self._newest_ms = max(self._newest_ms, event.at_ms)
            ids.append(uuid.uuid5(CLAIRE_NAMESPACE, f"market/{rank}/{body.decode()}"))
        if len(self._seen) > self._prune_at:
            oldest = self._newest_ms - self._horizon_ms
            self._seen = {body: seen for body, seen in self._seen.items() if seen[1] >= oldest}
            self._prune_at = max(self._prune_at, 2 * len(self._seen))
        return ids


def market_event_ids(events: Sequence[ev.Event]) -> list[uuid.UUID]:
    """The ids of one stream of market events, as a feed that saw just these would give them."""
    return MarketIds()(events)


def as_new_events(
    events: Sequence[ev.Event], ids: Sequence[uuid.UUID] | None = None
) -> list[NewEvent]:
    chosen = market_event_ids(events) if ids is None else ids
    return [
        NewEvent(event=event, event_id=event_id, occurred_at=utc_from_ms(event.at_ms))
        for event, event_id in zip(events, chosen, strict=True)
    ]


class MarketIngest:
    """The feed's sink: appends market batches; runs the screener on ticker snapshots.

    ``snapshot_every_ms`` is how often a ``push.tickers`` snapshot is kept (the screener's rate);
    ``snapshots`` with ``state_snapshot_every`` > 0 stores the screener stream's fold
    (:class:`ScreenerLog`) in ``ledger.snapshots`` every that many appended events and after the
    first batch of each UTC day, so a restart reads only the stream's tail (docs/SNAPSHOTS.md).
    The ingest is the ``screener`` stream's only writer: at any position it has appended, its
    fold holds every screener event up to there.
    """

    def __init__(
        self,
        store: EventStore,
        *,
        screener: ScreenerConfig | None,
        snapshot_every_ms: int,
        on_symbols: Callable[[tuple[str, ...]], None] | None = None,
        on_appended: Callable[[int], None] | None = None,
        snapshots: Snapshots | None = None,
        state_snapshot_every: int = 0,
    ) -> None:
        self._store = store
        self._screener = screener
        self._snapshot_every_ms = snapshot_every_ms
        self._on_symbols = on_symbols or (lambda symbols: None)
        self._on_appended = on_appended or (lambda count: None)
        self._screener_state = ScreenerState()
        self._ids = MarketIds()  # one feed, one identity: ranks carry across batches
        self._last_snapshot_ms = -(10**15)
        self._retrying = True
        self.appended = 0
        self._log = ScreenerLog()
        self._snapshots = snapshots
        self._state_snapshot_every = state_snapshot_every
        self._appended_at = 0  # the newest position this ingest appended
        self._snapshot_at = 0
        self._day = -1
        #: The position of the snapshot the last restore started from (0: the whole stream).
        self.restored_from_snapshot = 0

    def stop_retrying(self) -> None:
        """From now on a lost ledger fails the batch instead of holding it (shutdown)."""
        self._retrying = False

    async def restore(self) -> tuple[str, ...]:
        """The symbols the screener last chose (from the ledger), so a restart resumes them.

        Folds the ``screener`` stream from the newest usable snapshot (else from its start).
        """
        log, after = ScreenerLog(), 0
        found = await latest_usable(self._snapshots, "screener")
        if found is not None:
            log, after = found.state, found.snapshot.position
        self._log = await self._catch_up(log)
        self._screener_state = ScreenerState(selected=self._log.selected)
        self._last_snapshot_ms = self._log.last_snapshot_ms
        self.restored_from_snapshot = self._snapshot_at = after
        if self._snapshots is not None and self._state_snapshot_every:
            head, _ = await self._store.head()
            if head - after >= self._state_snapshot_every:
                await self.snapshot_now(head)
        return self._screener_state.selected

    async def _catch_up(self, log: ScreenerLog, upto: int | None = None) -> ScreenerLog:
        """``log`` after the ``screener`` stream's events it has not folded (up to a position)."""
        async for recorded in self._store.read_stream("screener", log.version + 1):
            if upto is not None and recorded.position > upto:
                break
            log = fold(log, recorded)
        return log

    async def snapshot_now(self, position: int | None = None) -> None:
        """Store the screener stream's fold at ``position`` (default: the newest this ingest
        appended); a failure is logged, never raised: a snapshot is a shortcut."""
        at = self._appended_at if position is None else position
        if self._snapshots is None or at <= self._snapshot_at:
            return
        try:
            self._log = await self._catch_up(self._log, at)
            chain = await self._snapshots.chain_hash_at(at)
            if chain is None:
                return
            config = await self._snapshots.config_hash_at(at)
            data = CODECS["screener"].encode(self._log)
            await self._snapshots.save(snapshot_of("screener", data, at, chain, config))
            self._snapshot_at = at
        except Exception:
            _log.warning("screener: snapshot at %d not written", at, exc_info=True)

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
        events = market + snapshots
        news = as_new_events(events, self._ids(events))
        if news:
            await self._append_patiently(news)
        for snapshot, new in zip(snapshots, news[len(market) :], strict=True):
            await self._screen(snapshot, new)
        if self._snapshots is not None and self._state_snapshot_every and batch:
            day = max(event.at_ms for event in batch) // DAY_MS
            new_day, self._day = self._day >= 0 and day > self._day, max(self._day, day)
            if new_day or self._appended_at - self._snapshot_at >= self._state_snapshot_every:
                await self.snapshot_now()

    async def _screen(self, snapshot: ev.TickersSnapshotted, new: NewEvent) -> None:
        if self._screener is None:
            return
        self._screener_state, chosen = decide(self._screener_state, snapshot, self._screener)
        if not chosen:
            return
        positions = await self._store.append("screener", [new])
        self._appended_at = max(self._appended_at, *positions)
        cause = committed(new, positions[0], "screener")
        await self._append_patiently(derived("screener", cause, chosen))
        self._on_symbols(self._screener_state.selected)

    async def _append_patiently(self, news: list[NewEvent]) -> None:
        waits = 0
        while True:
            try:
                positions = await append_grouped(self._store, news)
            except StoreUnavailable as error:
                if not self._retrying:
                    raise
                _log.error("ledger unavailable, holding %d market events: %s", len(news), error)
                await asyncio.sleep(_HOLD_BACKOFF.delay(waits))
                waits += 1
                continue
            self.appended += len(news)
            self._appended_at = max(self._appended_at, *positions)
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
