"""The PostgreSQL event store (:class:`eventstore.port.EventLog`); with the modules it delegates to
(``driver``, ``reader``, ``follow``, ``verify``, ``big``), the only code of the store that talks to
asyncpg (see :mod:`eventstore`).

Why positions are gapless and commit-ordered
--------------------------------------------
Every append moves the single row of ``ledger.head`` (position, hash) forward and inserts its
events at ``head+1 .. head+n`` in the same transaction; taking that row's lock is the last thing
an append does before COMMIT, and the lock is held until COMMIT finishes. So appenders are
serialised on the head row: the next one reads the head only after the previous transaction
ended. PostgreSQL makes a committed transaction visible (``ProcArrayEndTransaction``) *before*
it releases its locks, so by the time writer B can take the head lock, writer A's events are
already visible to every new snapshot. Hence, for any reader:

* positions are dense: a rolled-back append never moved the head, so it leaves no hole;
* positions appear in commit order: if a snapshot shows position ``p``, it shows every ``q < p``,
  so "everything after N" never misses an event that commits later with a lower number.

The well-known alternative (a sequence per row, plus "skip gaps after a timeout") loses events
when a commit is slow; an ``xid8`` snapshot horizon works but gives sparse positions.

Throughput: group commit and a one-round-trip fast path
-------------------------------------------------------
One appender task per store drains every caller's pending request into one transaction; each
request is still atomic and checked on its own (a conflicting request fails alone). The appender
remembers the head and the versions of the streams it wrote. While nobody else writes, the whole
append is one statement (:data:`eventstore.sql.APPLY_APPEND`, autocommit): it moves the head
only ``WHERE position = <remembered>``, so if another writer got in first it changes nothing and
the appender falls back to the locked path (``BEGIN; SELECT .. FOR UPDATE``, read the real
versions and known ids under the lock, then the same statement, COMMIT). Streams the appender
has not seen are assumed new; if they are not, the insert hits UNIQUE(stream, stream_version)
(and a re-sent id hits UNIQUE(event_id)), nothing is written, and the locked path decides.
Batches of :data:`eventstore.sql.COPY_MIN_EVENTS` or more events take the same two paths inside
a transaction, with binary COPY for the rows (PostgreSQL ingests it faster than unnest). One big
request streams: it is validated and chained chunk by chunk while the server ingests the previous
chunk, always with the head locked before any row is written (:mod:`eventstore.big`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from aggregates.envelope import NewEvent, RecordedEvent
from aggregates.upcasting import UPCASTERS, Upcasters
from eventstore import driver, sql
from eventstore.big import append_big
from eventstore.driver import CONNECTION_ERRORS as _CONNECTION_ERRORS
from eventstore.driver import connection_lost as connection_lost
from eventstore.errors import (
    ConcurrencyConflict,
    EventStoreError,
    InvalidEvent,
    StoreUnavailable,
)
from eventstore.follow import follow
from eventstore.plan import Plan, Request, check_append, plan_batch
from eventstore.port import VerifyResult
from eventstore.reader import SERVER_SETTINGS, ChunkSink, Reader
from eventstore.verify import verify as _verify

_VERSION_CACHE_LIMIT = 100_000

_log = logging.getLogger(__name__)

#: Receives the events one append committed (see :meth:`EventStore.on_commit`).
CommitListener = Callable[[list[RecordedEvent]], None]


class EventStore:
    """The ledger. Create with ``await EventStore.connect(url)``; close with ``await close()``."""

    def __init__(
        self, url: str, pool: asyncpg.Pool, upcasters: Upcasters, max_batch_events: int
    ) -> None:
        self._url = url
        self._pool = pool
        self._upcasters = upcasters
        self._reader = Reader(pool, upcasters)
        self._max_batch_events = max_batch_events
        self._queue: asyncio.Queue[Request] = asyncio.Queue()
        self._appender: asyncio.Task[None] | None = None
        self._carried: Request | None = None
        self._writer: asyncpg.Connection | None = None
        self._head: tuple[int, bytes] | None = None
        self._versions: dict[str, int] = {}
        # Partitions exist below this position (None: ask); see _ensure_partitions.
        self._ceiling: int | None = None
        self._partition_size = 0
        self._listeners: list[CommitListener] = []
        self._closed = False

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        max_connections: int = 4,
        upcasters: Upcasters = UPCASTERS,
        max_batch_events: int = 10_000,
    ) -> EventStore:
        """Open a store on a migrated database (``claire db upgrade``)."""
        try:
            pool = await asyncpg.create_pool(
                url, min_size=1, max_size=max_connections, server_settings=SERVER_SETTINGS
            )
        except (*_CONNECTION_ERRORS, asyncpg.PostgresError) as error:
            raise StoreUnavailable(f"cannot connect to the ledger database: {error}") from error
        except ValueError as error:  # a URL the driver cannot parse: its message holds no secret
            raise StoreUnavailable(f"invalid ledger database URL: {error}") from None
        return cls(url, pool, upcasters, max_batch_events)

    @property
    def url(self) -> str:
        """The database URL this store was opened with (it may hold a password: never log it)."""
        return self._url

    async def __aenter__(self) -> EventStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        """``close()`` was called: every later call raises "the event store is closed"."""
        return self._closed

    async def close(self) -> None:
        """Finish pending appends, then close every connection."""
        if self._closed:
            return
        self._closed = True
        if self._appender is not None:
            if not self._appender.done():
                await self._queue.join()
            self._appender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._appender
        if self._writer is not None:
            await self._writer.close()
        await self._pool.close()

    # ------------------------------------------------------------------ append

    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        expected_version: int | None = None,
    ) -> list[int]:
        """Append ``events`` to ``stream`` atomically; returns their global positions.

        ``expected_version`` is the stream's version before the append (0: a new stream);
        a mismatch raises :class:`ConcurrencyConflict` and writes nothing. An event whose id is
        already stored is not written again: its original position is returned. Raises
        :class:`InvalidEvent` for an unknown type or invalid payload, writing nothing.
        """
        if self._closed:
            raise EventStoreError(driver.CLOSED)
        check_append(stream, events, expected_version)
        if not events:
            return []
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(Request(stream, events, expected_version, future))
        if self._appender is None or self._appender.done():
            self._appender = asyncio.create_task(self._append_loop(), name="claire-appender")
        return await future

    def on_commit(self, listener: CommitListener) -> Callable[[], None]:
        """Call ``listener`` with the events each append of *this* store commits, in commit order.

        The in-process fast path for services sharing a process: they see a commit the moment
        it is durable, without the NOTIFY -> relay -> Redis round trip. Events appended by other
        processes are not delivered here (a consumer finds them by their positions' gap). The
        listener must not block; returns a function that unregisters it.
        """
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _announce(self, plan: Plan) -> None:
        if not self._listeners or not plan.events:
            return
        committed = plan.recorded()
        for listener in list(self._listeners):
            try:
                listener(committed)
            except Exception:  # a listener's bug must never fail an append that committed
                _log.exception("commit listener %r failed", listener)

    async def _append_loop(self) -> None:
        while True:
            first, self._carried = self._carried or await self._queue.get(), None
            batch, size = [first], first.count
            # A big request (validated while it streams) goes alone; small ones are grouped.
            while first.raw is None and size < self._max_batch_events and not self._queue.empty():
                request = self._queue.get_nowait()
                if request.raw is not None:
                    self._carried = request  # the next transaction's
                    break
                batch.append(request)
                size += request.count
            try:
                plan = await self._commit(batch)
            except Exception as error:
                self._forget()
                if not isinstance(error, ConcurrencyConflict | InvalidEvent):
                    self._drop_writer()  # its protocol state is unknown now: never reuse it
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(error)
                    self._queue.task_done()
                continue
            self._announce(plan)
            for request, outcome in zip(batch, plan.outcomes, strict=True):
                if request.future.done():
                    pass
                elif isinstance(outcome, Exception):
                    request.future.set_exception(outcome)
                else:
                    request.future.set_result(outcome)
            for _ in batch:
                self._queue.task_done()

    def _forget(self) -> None:
        self._head = None
        self._ceiling = None
        self._versions.clear()

    def _drop_writer(self) -> None:
        if self._writer is not None:
            self._writer.terminate()
            self._writer = None

    async def _connection(self) -> asyncpg.Connection:
        if self._writer is None or self._writer.is_closed():
            try:
                self._writer = await asyncpg.connect(self._url)
            except (*_CONNECTION_ERRORS, asyncpg.PostgresError) as error:
                raise StoreUnavailable(f"cannot connect to the ledger database: {error}") from error
        return self._writer

    async def _ensure_partitions(self, conn: asyncpg.Connection, batch: list[Request]) -> None:
        """Have partitions created ahead of the head before an append could reach their end.

        Once per partition's worth of appends (one round trip): ``ledger.ensure_partitions``
        leaves two spare partitions above the head plus this batch, so a concurrent writer's
        appends (which also call it) cannot outrun them. A failed append forgets the ceiling.
        """
        count = sum(request.count for request in batch)
        head = self._head[0] if self._head is not None else 0
        if self._ceiling is None or head + count + self._partition_size >= self._ceiling:
            row = await conn.fetchrow(sql.ENSURE_PARTITIONS, count)
            self._ceiling, self._partition_size = row[0], row[1]

    async def _commit(self, batch: list[Request]) -> Plan:
        conn = await self._connection()
        try:
            await self._ensure_partitions(conn, batch)
            if batch[0].raw is not None:
                plan = await append_big(conn, batch[0])
                if plan is not None:
                    self._remember(plan)
                    return plan
            elif self._head is not None:
                plan = await self._try_fast(conn, batch)
                if plan is not None:
                    return plan
            # The head is re-read under the lock. The version cache stays: forgetting it made
            # every later append to another stream guess "new stream", miss, and fall back too
            # (half of all appends in a busy pipeline). A stale version only costs a fallback
            # (UNIQUE(stream, stream_version) refuses the guess); the locked path re-reads the
            # versions of this batch's streams.
            self._head = None
            for attempt in range(3):
                try:
                    return await self._locked(conn, batch)
                except asyncpg.UniqueViolationError:
                    # Only a writer bypassing the head lock can cause this; re-read and retry.
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")
        except _CONNECTION_ERRORS as error:
            raise StoreUnavailable(f"lost the ledger connection during an append: {error}") from (
                error
            )
        except asyncpg.PostgresError as error:
            raise EventStoreError(f"append failed: {error}") from error

    async def _try_fast(self, conn: asyncpg.Connection, batch: list[Request]) -> Plan | None:
        assert self._head is not None
        head, head_hash = self._head
        guessed = {r.stream for r in batch if r.stream not in self._versions}
        versions = {r.stream: self._versions.get(r.stream, 0) for r in batch}
        plan = plan_batch(batch, head, head_hash, versions, guessed, {})
        # Cached versions are hints: a conflict is only ever reported once the locked path has
        # read the stream's real version (another process, or a fast path that fell back, may
        # have moved it since it was cached).
        if plan.head == head or any(isinstance(o, ConcurrencyConflict) for o in plan.outcomes):
            return None
        big = len(plan.events) >= sql.COPY_MIN_EVENTS
        if big:
            await conn.execute(sql.BEGIN)
        try:
            moved = await self._write(conn, plan, head)
            if big:
                await conn.execute("COMMIT" if moved else "ROLLBACK")
        except asyncpg.UniqueViolationError:
            if big:
                await conn.execute("ROLLBACK")
            return None
        except BaseException:
            if big and not conn.is_closed():
                with contextlib.suppress(*_CONNECTION_ERRORS):
                    await conn.execute("ROLLBACK")
            raise
        if not moved:
            return None
        self._remember(plan)
        return plan

    async def _locked(self, conn: asyncpg.Connection, batch: list[Request]) -> Plan:
        streams = list(dict.fromkeys(r.stream for r in batch))
        ids = list({e.event_id for r in batch for e in r.events})
        await conn.execute(sql.BEGIN_AND_LOCK_HEAD)
        try:
            state = await conn.fetchrow(sql.READ_APPEND_STATE, streams, ids)
            head, head_hash = state["position"], state["hash"]
            versions = dict(zip(streams, state["versions"], strict=True))
            known_ids = (stored.int for stored in state["known_ids"] or ())
            known = dict(zip(known_ids, state["known_positions"] or (), strict=True))
            contents = dict(zip(known, state["known_contents"] or (), strict=True))
            plan = plan_batch(batch, head, head_hash, versions, set(), known, contents)
            if plan.head != head and not await self._write(conn, plan, head):
                raise EventStoreError("the ledger head moved while this append held its lock")
            await conn.execute("COMMIT")
        except BaseException:
            if not conn.is_closed():
                with contextlib.suppress(*_CONNECTION_ERRORS):
                    await conn.execute("ROLLBACK")
            raise
        self._versions.update(versions)
        self._remember(plan)
        return plan

    async def _write(self, conn: asyncpg.Connection, plan: Plan, head: int) -> bool:
        """Move the head from ``head`` and insert the plan's rows; False if the head was not there.

        Small plans: one APPLY_APPEND (the whole append in autocommit). Big ones (the caller has
        opened a transaction): MOVE_HEAD, then binary COPY of the same rows.
        """
        if len(plan.events) < sql.COPY_MIN_EVENTS:
            return await conn.fetchrow(sql.APPLY_APPEND, *self._apply_args(plan, head)) is not None
        if await conn.fetchrow(sql.MOVE_HEAD, plan.head, plan.hash, head) is None:
            return False
        await self._copy(conn, plan)
        return True

    @staticmethod
    async def _copy(conn: asyncpg.Connection, plan: Plan, start: int = 0) -> None:
        await conn.copy_records_to_table(
            "events", schema_name="ledger", columns=sql.COPY_COLUMNS, records=plan.rows(start)
        )

    @staticmethod
    def _apply_args(plan: Plan, head: int) -> list[Any]:
        # $1..$4: new head, its hash, the head computed from, recorded_at (one per transaction);
        # then the row columns in the order of sql.APPLY_APPEND's unnest.
        return [plan.head, plan.hash, head, plan.recorded_at, *plan.columns]

    def _remember(self, plan: Plan) -> None:
        self._head = (plan.head, plan.hash)
        if len(self._versions) > _VERSION_CACHE_LIMIT:
            self._versions.clear()
        self._versions.update(plan.versions)

    # ------------------------------------------------------------------ reads: eventstore/reader.py

    async def _fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        return await driver.fetch(self._pool, query, *args)

    def read_all(
        self, after: int = 0, *, batch_size: int = 2000, chunks: ChunkSink | None = None
    ) -> AsyncGenerator[RecordedEvent]:
        """Every event with position > ``after``, in order, at most ``batch_size`` per round trip.

        Also at most :data:`eventstore.reader.CHUNK` per round trip; the next one is fetched
        while the caller works through the current one. ``chunks`` sees each chunk's raw rows.
        """
        return self._reader.read_all(after, batch_size, chunks)

    def read_all_batches(
        self, after: int = 0, *, batch_size: int = 2000, chunks: ChunkSink | None = None
    ) -> AsyncGenerator[list[RecordedEvent], None]:
        """:meth:`read_all` a round trip's events at a time (lists of at most ``batch_size``):
        for folds over the whole log, which then pay no await per event."""
        return self._reader.read_all_batches(after, batch_size, chunks)

    def read_stream(
        self, stream: str, from_version: int = 0, *, batch_size: int = 2000
    ) -> AsyncIterator[RecordedEvent]:
        """Events of ``stream`` with stream_version >= ``from_version`` (versions start at 1)."""
        return self._reader.read_stream(stream, from_version, batch_size)

    async def position_at(self, moment: datetime) -> int | None:
        """The smallest position whose occurred_at (source time) is >= ``moment``; None if none.

        occurred_at is not monotonic in position, so a replay from this position sees every
        event that happened at or after ``moment`` (and possibly some earlier ones after it).
        """
        return await self._reader.position_at(moment)

    async def head(self) -> tuple[int, bytes]:
        """The last position and its chain hash (0 and 32 zero bytes for an empty ledger)."""
        return await self._reader.head()

    def subscribe(
        self, after: int = 0, *, batch_size: int = 2000, poll_interval: float = 1.0
    ) -> AsyncGenerator[RecordedEvent]:
        """Catch up from ``after``, then follow live; every event exactly once, in order.

        LISTEN starts before the catch-up read, so no commit falls between the two. Every append
        NOTIFYs at commit; ``poll_interval`` is only a safety re-poll. This store's own commits
        come first hand, others' are read after their NOTIFY (:func:`eventstore.follow.follow`).
        """
        return follow(self, after, batch_size=batch_size, poll_interval=poll_interval)

    # ------------------------------------------------------------------ verify

    async def verify(
        self, expect: tuple[int, bytes] | None = None, *, resume: tuple[int, bytes] | None = None
    ) -> VerifyResult:
        """Recompute the whole chain from the stored rows; see the README, "The ledger".

        Also checks the head row against the last event, that the refusal triggers are in
        place and enabled, and, with ``expect=(position, hash)``, that the anchor still holds
        (which detects a truncated tail or a rewritten chain).

        ``resume=(position, hash)``: positions 1..position were already checked by the caller
        (:class:`eventstore.chain.ChainCheck`) and ``hash`` is the stored hash at ``position``;
        the rest of the chain is checked from there, and counted as if checked here.

        Everything is read in one REPEATABLE READ snapshot (appends may commit meanwhile), and
        a row that cannot be read is reported by its position (:mod:`eventstore.verify`).
        """
        return await _verify(self._pool, expect, resume)
