"""The projector: catch up from the checkpoints, then follow the log live, exactly once.

On start every projection's state is re-folded from the log (the fold is in memory and fast);
facts up to a projection's checkpoint only rebuild state, later ones also produce rows. Each
flush writes the rows of many facts and moves the checkpoints in one transaction, after checking
under a row lock that nobody else (another projector, a rebuild) moved them meanwhile. A crash
anywhere loses at most an uncommitted batch, which the restart folds again: the tables end up as
an uninterrupted run leaves them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import itertools
import logging
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aggregates.envelope import RecordedEvent
from eventstore import EventLog, EventStore
from projections.core import Fanout, Halt, Projection, Runner
from projections.portfolio import PortfolioProjection
from projections.postgres import PostgresSink
from projections.readmodels import (
    AlertsProjection,
    OrdersProjection,
    RiskProjection,
    TradesProjection,
)

_log = logging.getLogger(__name__)

ALL_PROJECTIONS: tuple[Projection, ...] = (
    PortfolioProjection(),
    OrdersProjection(),
    TradesProjection(),
    RiskProjection(),
    AlertsProjection(),
)


class UnknownProjection(ValueError):
    """A projection name nobody defined (the CLI maps it to exit 2)."""


class RebuildRefused(RuntimeError):
    """A rebuild that would not show the whole log (the CLI maps it to exit 1, models kept):
    a projection's fold refused a fact (:class:`~projections.core.Halt`), or the table starts
    after archived positions and no archive was given."""


class CheckpointMoved(RuntimeError):
    """Someone else moved a checkpoint since we loaded it: reload instead of writing twice."""


def select(name: str | None = None) -> tuple[Projection, ...]:
    """All projections, or the one called ``name``."""
    if name is None:
        return ALL_PROJECTIONS
    for projection in ALL_PROJECTIONS:
        if projection.name == name:
            return (projection,)
    known = ", ".join(p.name for p in ALL_PROJECTIONS)
    raise UnknownProjection(f"no projection called {name!r} (known: {known})")


@dataclass(frozen=True)
class Lag:
    """How far a projection's committed rows trail the newest event the projector has seen."""

    events: int
    seconds: float


class Projector:
    """Maintains read models in PostgreSQL from the log; one instance per process."""

    def __init__(
        self,
        store: EventLog,
        sink: PostgresSink,
        projections: Sequence[Projection] = ALL_PROJECTIONS,
        *,
        batch_events: int = 20_000,
        on_commit: Callable[[int], None] | None = None,
        owns_store: bool = False,
    ) -> None:
        self.store = store
        self.sink = sink
        self.projections = tuple(projections)
        self.batch_events = batch_events
        self.on_commit = on_commit
        self._owns_store = owns_store  # close() closes the store too
        self.runners: list[Runner] = []
        self.position = 0
        self._seen = 0
        self._unflushed = 0
        self._oldest_unprojected: datetime | None = None
        self._fanout = Fanout(())
        self._lowest_checkpoint = 0
        self._last_recorded_at: datetime | None = None
        self._reported: set[Halt] = set()

    @classmethod
    async def open(
        cls,
        database_url: str,
        projections: Sequence[Projection] | None = None,
        *,
        store: EventLog | None = None,
        **options: object,
    ) -> Projector:
        """A projector with its own sink connection and, unless ``store`` is given, its own
        event store (``close()`` closes what it opened). Sharing the appending services' store
        hands it their commits first hand, without reading them back."""
        own = store is None
        log: EventLog = await EventStore.connect(database_url) if store is None else store
        try:
            sink = await PostgresSink.connect(database_url)
        except BaseException:
            if own:
                await log.close()
            raise
        return cls(log, sink, projections or ALL_PROJECTIONS, owns_store=own, **options)  # type: ignore[arg-type]

    async def close(self) -> None:
        await self.sink.close()
        if self._owns_store:
            await self.store.close()

    # ------------------------------------------------------------------ state

    async def load(self) -> None:
        """Start over from the stored checkpoints: fresh state, refolded by the next catch-up."""
        names = [p.name for p in self.projections]
        checkpoints = await self.sink.checkpoints(names)
        self.runners = [Runner(p, checkpoints[p.name].position) for p in self.projections]
        self._fanout = Fanout(self.runners)
        self._lowest_checkpoint = min(r.checkpoint for r in self.runners)
        self.position = 0
        self._unflushed = 0
        self._oldest_unprojected = None

    def halts(self) -> list[Halt]:
        """The projections that stopped at a fact their fold refused (the others go on)."""
        return self._fanout.halts()

    def _report_halts(self) -> None:
        for halt in self._fanout.halts():
            if halt not in self._reported:
                self._reported.add(halt)
                _log.warning(
                    "%s; its read models stay at position %d, the other projections go on "
                    "(see docs/AUDIT.md: a fact a projection cannot apply)",
                    halt,
                    halt.position - 1,
                )

    def states(self) -> dict[str, object]:
        """Each projection's in-memory state: the same fold services and replay use."""
        return {runner.projection.name: runner.state for runner in self.runners}

    def lag(self) -> dict[str, Lag]:
        """Per projection: events seen but not committed, and the age of the oldest of them."""
        seen = max(self._seen, self.position)
        oldest = self._oldest_unprojected
        seconds = (datetime.now(UTC) - oldest).total_seconds() if oldest is not None else 0.0
        return {
            runner.projection.name: Lag(
                events=max(0, seen - runner.checkpoint),
                seconds=max(0.0, seconds) if seen > runner.checkpoint else 0.0,
            )
            for runner in self.runners
        }

    def _apply(self, fact: RecordedEvent) -> None:
        self._fanout.apply(fact)
        self.position = fact.position
        self._seen = max(self._seen, fact.position)
        self._last_recorded_at = fact.recorded_at
        if self._oldest_unprojected is None and fact.position > self._lowest_checkpoint:
            self._oldest_unprojected = fact.recorded_at
        self._unflushed += 1

    def _apply_all(self, facts: Sequence[RecordedEvent]) -> None:
        """:meth:`_apply` for a batch (the catch-up's path): the bookkeeping once per batch."""
        if not facts:
            return
        self._fanout.apply_all(facts)
        last = facts[-1]
        self.position = last.position
        self._seen = max(self._seen, last.position)
        self._last_recorded_at = last.recorded_at
        if self._oldest_unprojected is None and last.position > self._lowest_checkpoint:
            lowest = self._lowest_checkpoint
            self._oldest_unprojected = next(f.recorded_at for f in facts if f.position > lowest)
        self._unflushed += len(facts)

    async def flush(self) -> None:
        """Commit pending rows and checkpoints of every projection behind ``position``."""
        self._fanout.sync()
        self._report_halts()
        due = [r for r in self.runners if r.position > r.checkpoint]
        if not due:
            self._unflushed = 0
            return
        names = [r.projection.name for r in due]
        async with self.sink.transaction():
            stored = await self.sink.checkpoints(names, lock=True)
            for runner in due:
                found = stored[runner.projection.name].position
                if found != runner.checkpoint:
                    raise CheckpointMoved(
                        f"projection {runner.projection.name}: checkpoint is {found}, "
                        f"this projector expected {runner.checkpoint}"
                    )
            for runner in due:
                generation = stored[runner.projection.name].generation
                for table, rows in runner.pending.batches():
                    await self.sink.write(table, generation, rows)
                await self.sink.save_checkpoint(
                    runner.projection.name, runner.position, generation, self._last_recorded_at
                )
        for runner in due:
            runner.flushed()
        self._lowest_checkpoint = min(r.checkpoint for r in self.runners)
        self._unflushed = 0
        self._oldest_unprojected = None
        if self.on_commit is not None:
            self.on_commit(self.position)

    async def project(self, facts: Iterable[RecordedEvent]) -> None:
        """Fold ``facts`` (the next ones after ``position``, in order) and commit them."""
        if not self.runners:
            await self.load()
        for fact in facts:
            self._apply(fact)
        await self.flush()

    # ------------------------------------------------------------------ running

    async def catch_up(self) -> int:
        """Fold (and write) everything up to the current head; returns the position reached."""
        if not self.runners:
            await self.load()
        reading = read_ahead(self.store, self.position, _READ_BATCH)
        async with contextlib.aclosing(reading):  # a failure stops the reader at once
            async for facts in reading:
                start = 0
                while start < len(facts):  # a flush every batch_events facts, as one by one
                    end = start + self.batch_events - self._unflushed
                    self._apply_all(facts if start == 0 and end >= len(facts) else facts[start:end])
                    start = end
                    if self._unflushed >= self.batch_events:
                        await self.flush()
        await self.flush()
        return self.position

    async def follow(self) -> None:
        """Follow the live log forever, committing whatever has arrived after each wake-up."""
        buffer: collections.deque[RecordedEvent] = collections.deque()
        arrived = asyncio.Event()
        room = asyncio.Event()
        room.set()
        limit = self.batch_events * 4

        async def pump() -> None:
            async for fact in self.store.subscribe(after=self.position):
                if self._oldest_unprojected is None:
                    self._oldest_unprojected = fact.recorded_at
                self._seen = fact.position
                buffer.append(fact)
                arrived.set()
                if len(buffer) >= limit:
                    room.clear()
                    await room.wait()

        pumping = asyncio.create_task(pump(), name="claire-projector-subscribe")
        waiting: asyncio.Task[bool] | None = None
        try:
            while True:
                waiting = asyncio.create_task(arrived.wait())
                await asyncio.wait({waiting, pumping}, return_when=asyncio.FIRST_COMPLETED)
                if pumping.done():
                    pumping.result()  # raises what stopped the subscription
                    raise RuntimeError("the subscription ended")
                arrived.clear()
                while buffer:
                    taken = 0
                    while buffer and taken < self.batch_events:
                        self._apply(buffer.popleft())
                        taken += 1
                    room.set()
                    await self.flush()
                    if buffer:
                        self._oldest_unprojected = buffer[0].recorded_at
        finally:
            if waiting is not None:
                waiting.cancel()  # a cancelled follow must not leave its wait pending
            pumping.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pumping

    async def run(self) -> None:
        """Catch up, then follow; if a rebuild or another projector moves a checkpoint, reload."""
        while True:
            try:
                await self.load()
                await self.catch_up()
                await self.follow()
            except CheckpointMoved as moved:
                _log.info("reloading projections: %s", moved)


# --------------------------------------------------------------------------- rebuild


@dataclass(frozen=True)
class Rebuilt:
    projection: str
    position: int
    generation: int
    events: int
    seconds: float


async def rebuild(
    database_url: str,
    name: str | None = None,
    *,
    batch_events: int = 50_000,
    read_batch: int = 10_000,
    archive: Path | None = None,
) -> list[Rebuilt]:
    """Rebuild ``name`` (or every projection) into fresh tables and swap them in atomically.

    ``archive``: the folder of ``claire archive``; positions moved out of the table are read
    from its files (checked against their manifests), the rest from the table.

    The new generation is filled out of sight, then caught up to the ledger head. One short
    transaction locks the checkpoints (a live projector's flushes wait), checks that the head
    has not moved (else it catches up again), takes the views without waiting behind readers
    (NOWAIT, retried; then waiting at most a fraction of ``deadlock_timeout`` per try, so the
    swap always gives up before a reader it blocks could be chosen as a deadlock's victim),
    repoints them, moves the checkpoints and drops the old tables (already locked with the views).
    A live projector notices the moved checkpoint and reloads.

    Speed: the log is read ahead (the next batch is in flight while one is folded), batches
    fan out in one call, and the rows of every ``batch_events`` facts are COPYed while the next
    are folded. The new generation's tables are ordinary (logged) tables, so what the swap
    exposes is as durable as any committed write.
    """
    projections = select(name)
    names = [p.name for p in projections]
    tables = [t for p in projections for t in p.tables]
    started = time.perf_counter()
    store: Any = await EventStore.connect(database_url)
    if archive is not None:
        from eventstore.archive import ArchivedLog

        store = ArchivedLog(store, archive)
    sink = await PostgresSink.connect(database_url)
    # The cyclic collector pauses for the rebuild: it allocates millions of acyclic objects that
    # reference counting frees at once, but the batches in flight survive long enough to be
    # promoted, so full collections kept walking them (a quarter of the rebuild's CPU).
    collecting = gc.isenabled()
    gc.disable()
    try:
        await sink.lock_rebuild(names)
        if archive is None:
            archived = await sink.archived_up_to()
            if archived:
                raise RebuildRefused(
                    f"the log starts at position {archived + 1} because positions "
                    f"1..{archived} are archived: pass --archive DIR (the folder of "
                    "`claire archive`) to rebuild from the whole log (read models unchanged)"
                )
        before = await sink.checkpoints(names)
        new = {n: before[n].generation + 1 for n in names}
        async with sink.transaction():
            for p in projections:
                await sink.prepare_generation(p.tables, before[p.name].generation, new[p.name])
        runners = [Runner(p, 0) for p in projections]
        fanout = Fanout(runners)
        position, recorded_at, events = 0, None, 0

        async def fold_new(*, in_transaction: bool) -> None:
            # Out of a transaction, a batch's COPY runs while the next batch is read and folded:
            # PostgreSQL works on the other core meanwhile. One write at a time (one connection).
            nonlocal position, recorded_at, events
            unflushed = 0
            writing: asyncio.Task[None] | None = None
            try:
                reading = read_ahead(store, position, read_batch)
                async with contextlib.aclosing(reading):  # a failure stops the reader at once
                    async for facts in reading:
                        fanout.apply_all(facts)
                        position, recorded_at = facts[-1].position, facts[-1].recorded_at
                        events += len(facts)
                        unflushed += len(facts)
                        if unflushed >= batch_events and not in_transaction:
                            if writing is not None:
                                await writing
                            writing = asyncio.create_task(_write_detached(sink, runners, new))
                            unflushed = 0
                if writing is not None:
                    await writing
            finally:
                if writing is not None and not writing.done():
                    writing.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await writing
            if in_transaction:
                await _write(sink, runners, new)
            else:
                async with sink.transaction():
                    await _write(sink, runners, new)

        def refuse_if_halted() -> None:
            halts = fanout.halts()
            if halts:
                raise RebuildRefused(
                    "; ".join(str(h) for h in halts) + " (read models unchanged; see "
                    "docs/AUDIT.md: a fact a projection cannot apply)"
                )

        try:
            for attempt in itertools.count():
                await fold_new(in_transaction=False)
                refuse_if_halted()
                last_try = attempt >= _SWAP_ATTEMPTS
                if attempt >= _SWAP_ATTEMPTS + _SWAP_WAITS:
                    raise RebuildRefused(
                        f"readers kept the read-model views busy through {attempt} attempts "
                        "to swap: try again (read models unchanged)"
                    )
                async with sink.transaction():
                    locked = await sink.checkpoints(names, lock=True)
                    for n in names:
                        if locked[n].generation != before[n].generation:
                            raise CheckpointMoved(f"projection {n} was rebuilt meanwhile")
                    if await sink.ledger_head() != position:
                        if not last_try:
                            continue  # appended meanwhile: catch up out of the transaction, again
                        # Appends outpace us: fold the rest in here (rows roll back with a
                        # failure, so a failure now aborts the rebuild, not a retry with moved
                        # state).
                        await fold_new(in_transaction=True)
                        refuse_if_halted()
                    if await sink.lock_views(tables, wait=last_try):
                        for p in projections:
                            await sink.repoint(p.tables, new[p.name])
                            await sink.save_checkpoint(p.name, position, new[p.name], recorded_at)
                        # The old tables go in the same transaction: locking the views locked
                        # them too (recursively), so dropping them waits for nobody. Dropped
                        # later, one by one, each DROP queued behind readers whose cached plans
                        # still lock the old tables, while holding others: a deadlock.
                        for p in projections:
                            await sink.drop_generation(p.tables, before[p.name].generation)
                        break
                await asyncio.sleep(min(0.2, 0.005 * (attempt + 1)))
        except RebuildRefused:  # the new generation goes; the models in service stay
            async with sink.transaction():
                for p in projections:
                    await sink.drop_generation(p.tables, new[p.name])
            raise
        seconds = time.perf_counter() - started
        return [Rebuilt(n, position, new[n], events, seconds) for n in names]
    finally:
        if collecting:
            gc.enable()
        await sink.close()
        await store.close()


#: NOWAIT swap attempts before the swap waits for readers (and folds late events inside).
_SWAP_ATTEMPTS = 200
#: Then attempts that wait for the views, each a short while (see ``PostgresSink.lock_views``),
#: before the rebuild gives up (exit 1, models kept).
_SWAP_WAITS = 200
#: Events per read of a catch-up or rebuild: big enough that per-query costs vanish, small
#: enough that the next read is always in flight while one is folded.
_READ_BATCH = 5_000


async def read_ahead(
    store: EventLog, after: int, size: int, *, depth: int = 2
) -> AsyncGenerator[list[RecordedEvent]]:
    """``store.read_all(after)`` in lists of ``size`` facts, read ahead by up to ``depth`` lists.

    A task reads while the caller folds: PostgreSQL serves the next rows (on the other core)
    instead of idling until the fold asks. Facts come in log order, each exactly once; the
    reader stops with the caller (its failure is raised to the caller).
    """
    queue: asyncio.Queue[list[RecordedEvent] | None] = asyncio.Queue(maxsize=depth)

    async def read() -> None:
        facts: list[RecordedEvent] = []
        async for fact in store.read_all(after=after, batch_size=size):
            facts.append(fact)
            if len(facts) >= size:
                await queue.put(facts)
                facts = []
        if facts:
            await queue.put(facts)
        await queue.put(None)

    reader = asyncio.create_task(read(), name="claire-projections-read-ahead")
    try:
        while True:
            getting = asyncio.ensure_future(queue.get())
            await asyncio.wait({getting, reader}, return_when=asyncio.FIRST_COMPLETED)
            if not getting.done():  # the reader stopped without handing over its end: it failed
                getting.cancel()
                reader.result()
                raise RuntimeError("the log reader stopped early")
            facts = getting.result()
            if facts is None:
                return
            yield facts
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def _write_detached(
    sink: PostgresSink, runners: Iterable[Runner], generations: dict[str, int]
) -> None:
    """Take the runners' pending rows now (folding goes on into fresh buffers); write them."""
    taken = [(runner.projection.name, runner.detach()) for runner in runners]
    async with sink.transaction():
        for name, pending in taken:
            for table, rows in pending.batches():
                await sink.write(table, generations[name], rows)


async def _write(
    sink: PostgresSink, runners: Iterable[Runner], generations: dict[str, int]
) -> None:
    for runner in runners:
        for table, rows in runner.pending.batches():
            await sink.write(table, generations[runner.projection.name], rows)
        runner.pending.clear()
