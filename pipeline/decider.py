"""Run one decision machine against the live ledger: decode, fold, decide, append.

The service is a thin shell (STYLE.md principle 8): all judgement is in the machine. It restores
its state by folding the whole log through the machine, exactly as replay does. Outputs the
machine decided before a crash but never got into the ledger are found during that fold (decided
ids with no recorded event) and appended then; because output ids derive from their cause, an
output that *was* recorded is never written twice (the store's idempotency is the backstop).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aggregates.envelope import NewEvent, RecordedEvent, derived
from aggregates.events import ConfigActivated
from aggregates.machine import Machine
from aggregates.portfolio import DAY_MS
from aggregates.snapshot import CODECS
from aggregates.streams import stream_for
from eventstore import EventStore
from eventstore.snapshots import Snapshots
from pipeline.queues import Pipe, pump, stop
from pipeline.snapshotting import SnapshotWriter, latest_usable, restore_tail
from pipeline.source import LedgerFeed

_log = logging.getLogger(__name__)

MAX_QUEUE = 20_000
MAX_BATCH = 2_000

#: Called after a step's outputs are committed: (cause, outputs, their positions).
OnDecided = Callable[[RecordedEvent, Sequence[NewEvent], Sequence[int]], None]


@dataclass
class Progress:
    """What the service has done, for health and metrics."""

    last_position: int = 0
    steps: int = 0
    decisions: int = 0
    restored_from: int = 0
    recovered: int = 0
    #: The position of the snapshot the last restore started from (0: folded from position 1).
    snapshot_position: int = 0
    snapshots_taken: int = 0


async def append_grouped(store: EventStore, events: Sequence[NewEvent]) -> list[int]:
    """Append events to their streams, concurrently (one group commit), in per-stream order."""
    by_stream: dict[str, list[NewEvent]] = {}
    for new in events:
        by_stream.setdefault(stream_for(new.event), []).append(new)
    if len(by_stream) == 1:  # the common case: no tasks to gather (each costs loop turns)
        ((stream, batch),) = by_stream.items()
        return await store.append(stream, batch)
    results = await asyncio.gather(
        *(store.append(stream, batch) for stream, batch in by_stream.items())
    )
    positions = {
        new.event_id: position
        for batch, got in zip(by_stream.values(), results, strict=True)
        for new, position in zip(batch, got, strict=True)
    }
    return [positions[new.event_id] for new in events]


class DecisionService:
    """One machine, fed every committed event in global order."""

    def __init__(
        self,
        machine: Machine[Any],
        store: EventStore,
        feed: Callable[[int], LedgerFeed],
        *,
        on_decided: OnDecided | None = None,
        on_input: Callable[[RecordedEvent], None] | None = None,
        snapshots: Snapshots | None = None,
        snapshot_every: int = 0,
    ) -> None:
        self.machine = machine
        self._store = store
        self._feed = feed
        self._on_decided = on_decided or (lambda cause, outputs, positions: None)
        self._on_input = on_input or (lambda recorded: None)
        self.state: Any = None
        self.progress = Progress()
        self.ready = asyncio.Event()
        #: Snapshots are read and taken only for machines with a state codec, and only when given
        #: a store; ``snapshot_every`` > 0 takes one every that many events (and at each UTC day).
        self._snapshots = snapshots if machine.name in CODECS else None
        self._writer = (
            SnapshotWriter(snapshots, machine.name, self._written)
            if snapshots is not None and machine.name in CODECS
            else None
        )
        self._snapshot_every = snapshot_every
        self._config_hash = ""
        self._snapshot_at = 0
        self._snapshot_day = -1

    @property
    def name(self) -> str:
        return self.machine.name

    async def restore(self) -> None:
        """Fold the log from the latest usable snapshot (else position 1); append anything
        decided but never recorded.

        A snapshot at p is only ever taken once every output decided up to p is committed, so
        the tail after p holds everything that could still be undelivered.
        """
        machine, state = self.machine, self.machine.initial()
        after = 0
        found = await latest_usable(self._snapshots, machine.name)
        if found is not None:
            state, after = found.state, found.snapshot.position
            self._config_hash = found.snapshot.config_hash
            self._snapshot_at = after
        undelivered: dict[uuid.UUID, NewEvent] = {}
        last = after
        last_day = -1
        async for recorded in restore_tail(self._store, machine.name, after):
            last = recorded.position
            last_day = max(last_day, recorded.event.at_ms // DAY_MS)
            if machine.owns(recorded.event):
                undelivered.pop(recorded.event_id, None)
                continue
            if type(recorded.event) is ConfigActivated:
                self._config_hash = recorded.event.config_hash
            state, outputs = machine.step(state, recorded)
            for new in derived(machine.name, recorded, outputs):
                undelivered[new.event_id] = new
        if undelivered:
            _log.warning(
                "%s: %d decided events were not in the ledger (crash before append); appending",
                machine.name,
                len(undelivered),
            )
            await append_grouped(self._store, list(undelivered.values()))
        self.state = state
        self.progress.last_position = last
        self.progress.restored_from = last
        self.progress.recovered = len(undelivered)
        self.progress.snapshot_position = after
        self._snapshot_day = last_day
        if self._snapshot_every and last - self._snapshot_at >= self._snapshot_every:
            await self.snapshot_now()

    async def snapshot_now(self) -> None:
        """Snapshot the state at the last position read; only call with every output committed.

        The state is encoded here, on the decision path (its bytes must be those of this
        moment); the database write runs beside it.
        """
        if self._writer is None or self.progress.last_position <= self._snapshot_at:
            return
        if self._writer.busy:
            return  # the previous one is still being written: the next trigger takes one
        position = self.progress.last_position
        data = CODECS[self.machine.name].encode(self.state)
        self._snapshot_at = position
        self._writer.write(position, data, self._config_hash)
        await asyncio.sleep(0)

    def _written(self, position: int) -> None:
        self.progress.snapshots_taken += 1

    async def wait_snapshots(self) -> None:
        """Wait for a snapshot being written (tests, shutdown)."""
        if self._writer is not None:
            await self._writer.wait()

    async def run(self) -> None:
        """Restore, then decide on every new event until cancelled.

        Decisions are taken as fast as events arrive; their outputs are appended in one group
        commit whenever the input queue runs dry (or a batch fills up). That is safe because the
        machine's state already accounts for its outputs, and anything decided but not yet
        appended when the process dies is re-derived and appended by :meth:`restore`.
        """
        await self.restore()
        self.ready.set()
        queue: Pipe[RecordedEvent] = Pipe(MAX_QUEUE)
        reader = pump(
            self._feed(self.progress.last_position).events(), queue, f"{self.name}-reader"
        )
        machine = self.machine
        pending: list[tuple[RecordedEvent, list[NewEvent]]] = []
        waiting = 0
        try:
            while True:
                if pending and (queue.empty() or waiting >= MAX_BATCH):
                    await self._flush(pending)
                    pending, waiting = [], 0
                if (
                    not pending
                    and self._snapshot_every
                    and self.progress.last_position - self._snapshot_at >= self._snapshot_every
                ):
                    await self.snapshot_now()
                recorded = await queue.get()  # or what stopped the reader (PostgreSQL lost)
                day = recorded.event.at_ms // DAY_MS
                if day > self._snapshot_day:  # UTC midnight: a snapshot of the day before's end
                    if self._snapshot_every and self._snapshot_day >= 0:
                        if pending:
                            await self._flush(pending)
                            pending, waiting = [], 0
                        await self.snapshot_now()
                    self._snapshot_day = day
                self.progress.last_position = recorded.position
                if machine.owns(recorded.event):
                    continue
                if type(recorded.event) is ConfigActivated:
                    self._config_hash = recorded.event.config_hash
                self._on_input(recorded)
                self.state, outputs = machine.step(self.state, recorded)
                self.progress.steps += 1
                if outputs:
                    news = derived(machine.name, recorded, outputs)
                    pending.append((recorded, news))
                    waiting += len(news)
        finally:
            await stop(reader)

    async def _flush(self, pending: list[tuple[RecordedEvent, list[NewEvent]]]) -> None:
        news = [new for _, batch in pending for new in batch]
        positions = await append_grouped(self._store, news)
        self.progress.decisions += len(news)
        offset = 0
        for cause, batch in pending:
            self._on_decided(cause, batch, positions[offset : offset + len(batch)])
            offset += len(batch)
