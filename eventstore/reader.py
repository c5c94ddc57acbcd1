"""The ledger's read side: the server renders each chunk of rows as JSON, msgspec decodes it.

Why: reading was bound by per-row Python work in the client: asyncpg building 13 typed columns
(the two timestamps above all), then a RecordedEvent and a separate payload decode per row, and
the garbage collector walking every Record. Now each round trip returns one row
(:data:`eventstore.sql.READ_ALL_JSON`): the event ids and hashes as binary arrays, and all other
fields as one JSON array of rows that a single msgspec call decodes, payloads straight into the
tagged union, as strictly as before (same event types, same checks). That about doubles the
server's CPU per row (rendering JSON), spent on its own core while the client decodes: client
instructions per row fell by a third (callgrind), and the two sides now overlap.

A chunk the server does not vouch for (a row of another schema version than its class's, or a
payload tag other than its row's type), or whose strict decode fails, is decoded row by row with
:func:`eventstore.codec.decode_payload` instead: upcasting, or :class:`CorruptEvent` naming the
position once the rows before it have been yielded.

While the caller consumes a chunk, the next one is already being fetched on another pooled
connection: never more than one chunk ahead, so memory stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Literal

import asyncpg
import msgspec

from aggregates import events as ev
from aggregates.envelope import RecordedEvent
from aggregates.upcasting import Upcasters
from eventstore import driver, sql
from eventstore.codec import check_read_argument, check_stream_name, decode_payload
from eventstore.errors import CorruptEvent, EventStoreError, InvalidEvent

#: Rows per round trip at most (fewer if the caller's batch_size is smaller): one JSON value,
#: far below PostgreSQL's 1 GB limit even for large events. Measured: 500 no faster, 2,000
#: slower on both sides; fetching two chunks ahead instead of one was slower too (2 cores).
CHUNK = 1000

#: The store's pool pins its sessions' TimeZone to this, so the JSON timestamps are in UTC.
SERVER_SETTINGS = {"TimeZone": "UTC"}

_DECODE_ERRORS = (msgspec.ValidationError, msgspec.DecodeError)

#: Given to :meth:`Reader.read_all`, it sees each chunk as fetched, before its rows are decoded:
#: (JSON rows, each ending with its event id as text; hashes), e.g. to check the hash chain over
#: the same bytes (:mod:`eventstore.chain`).
ChunkSink = Callable[[bytes, list[bytes]], None]


class _Envelope(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A row's JSON fields before its payload, in the order of ``sql.ROW_COLUMNS``.

    ``gc=False``: these short-lived, acyclic objects need not burden the cycle collector.
    """

    position: int
    stream: str
    stream_version: int
    event_type: str
    schema_version: int
    occurred_at: datetime
    recorded_at: datetime
    causation_id: uuid.UUID | None
    causation_position: int | None
    correlation_id: uuid.UUID | None


class _Row(_Envelope, frozen=True, gc=False):
    current: Literal[True]  # a row the server did not vouch for fails the fast decode
    event: ev.AnyEvent


class _RawRow(_Envelope, frozen=True, gc=False):
    current: bool
    event: msgspec.Raw


_rows = msgspec.json.Decoder(list[_Row])
_items = msgspec.json.Decoder(list[msgspec.Raw])
_raw_row = msgspec.json.Decoder(_RawRow)


def _versions() -> str:
    """``{type: schema_version}`` of the code's classes, read at each call (tests patch them)."""
    versions = {tag: kind.schema_version for tag, kind in ev.EVENT_TYPES.items()}
    return msgspec.json.encode(versions).decode()


def _row_by_row(body: bytes, upcasters: Upcasters) -> Iterator[_Row]:
    """The slow path: each row on its own, upcast if old, a bad one named by its position."""
    for item in _items.decode(body):
        try:
            row = _raw_row.decode(item)
        except _DECODE_ERRORS as error:
            position = msgspec.json.decode(item)[0]
            raise CorruptEvent(position, f"bad envelope: {error}") from None
        if row.occurred_at.tzinfo is not UTC or row.recorded_at.tzinfo is not UTC:
            raise EventStoreError("the read session's TimeZone is not UTC")
        event = decode_payload(
            row.position, row.event_type, row.schema_version, bytes(row.event), upcasters
        )
        yield _Row(**{**msgspec.structs.asdict(row), "current": True, "event": event})


def _rows_of(body: bytes, upcasters: Upcasters) -> Iterable[_Row]:
    """A chunk's rows: by the fast path (one decode), or row by row (see the module)."""
    try:
        rows = _rows.decode(body)
    except _DECODE_ERRORS:
        return _row_by_row(body, upcasters)
    if rows[0].occurred_at.tzinfo is not UTC:
        raise EventStoreError("the read session's TimeZone is not UTC")
    return rows


def _recorded(
    rows: Iterable[_Row], ids: list[uuid.UUID], hashes: list[bytes]
) -> Iterator[RecordedEvent]:
    """Rows as events, with their ids and hashes from the chunk's arrays."""
    for r, event_id, digest in zip(rows, ids, hashes):  # noqa: B905 - same length
        yield RecordedEvent(
            position=r.position,
            stream=r.stream,
            stream_version=r.stream_version,
            event_id=event_id,
            event_type=r.event_type,
            schema_version=r.schema_version,
            occurred_at=r.occurred_at,
            recorded_at=r.recorded_at,
            causation_id=r.causation_id,
            causation_position=r.causation_position,
            correlation_id=r.correlation_id,
            event=r.event,
            hash=digest,
        )


#: What :meth:`Reader._chunks` yields per round trip: the JSON rows, the ids, the hashes.
_Chunk = tuple[bytes, list[uuid.UUID], list[bytes]]


async def _batches(
    chunks: AsyncGenerator[_Chunk, None], previous: int, upcasters: Upcasters
) -> AsyncGenerator[list[RecordedEvent], None]:
    """A chunk's events at a time, each checked to follow ``previous`` (the server's aggregate
    order is an assumption the reader checks, not one it relies on). A corrupt row still lets
    the rows before it through, then raises."""
    async with contextlib.aclosing(chunks):
        async for body, ids, hashes in chunks:
            facts: list[RecordedEvent] = []
            corrupt = None
            try:
                facts.extend(_recorded(_rows_of(body, upcasters), ids, hashes))
            except CorruptEvent as error:
                corrupt = error
            for fact in facts:
                if fact.position <= previous:
                    raise EventStoreError(f"rows out of order at {fact.position}")
                previous = fact.position
            if facts:
                yield facts
            if corrupt is not None:
                raise corrupt


async def _each(
    batches: AsyncGenerator[list[RecordedEvent], None],
) -> AsyncGenerator[RecordedEvent]:
    """A batch read's events one by one."""
    async with contextlib.aclosing(batches):
        async for batch in batches:
            for fact in batch:
                yield fact


def _retrieve(task: asyncio.Task[list[asyncpg.Record]]) -> None:
    # A prefetch nobody awaits (the reader stopped early) must not log "never retrieved".
    if not task.cancelled():
        task.exception()


class Reader:
    """Reads of one store's pool; :class:`eventstore.EventStore` delegates to it."""

    def __init__(self, pool: asyncpg.Pool, upcasters: Upcasters) -> None:
        self._pool = pool
        self._upcasters = upcasters

    def read_all(
        self, after: int, batch_size: int, chunks: ChunkSink | None = None
    ) -> AsyncGenerator[RecordedEvent]:
        """Every event with position > ``after``, in order, ``batch_size`` per round trip."""
        return _each(self.read_all_batches(after, batch_size, chunks))

    def read_all_batches(
        self, after: int, batch_size: int, chunks: ChunkSink | None = None
    ) -> AsyncGenerator[list[RecordedEvent], None]:
        """:meth:`read_all` one round trip's events at a time: for a caller that folds the
        whole log, a list per chunk spares it an await per event."""
        query = sql.READ_ALL_JSON if chunks is None else sql.READ_ALL_JSON_WITH_IDS
        read = self._chunks(query, None, after, 0, batch_size, chunks)
        return _batches(read, after, self._upcasters)

    def read_stream(
        self, stream: str, from_version: int, batch_size: int
    ) -> AsyncIterator[RecordedEvent]:
        """Events of ``stream`` with stream_version >= ``from_version``."""
        # Positions rise with stream versions too, so the same check of the order serves.
        read = self._chunks(sql.READ_STREAM_JSON, stream, from_version, 1, batch_size)
        return _each(_batches(read, 0, self._upcasters))

    async def _chunks(
        self,
        query: str,
        stream: str | None,
        cursor: int,
        step: int,
        batch_size: int,
        chunks: ChunkSink | None = None,
    ) -> AsyncGenerator[_Chunk, None]:
        # ``cursor``: the position after which (``step`` 0) or the stream version from which
        # (``step`` 1) the next chunk starts.
        head: tuple[str, ...] = ()
        if stream is not None:
            check_stream_name(stream)  # InvalidEvent: every public error is an EventStoreError
            head = (stream,)
        check_read_argument("from_version" if step else "after", cursor, -(2**63))
        check_read_argument("batch_size", batch_size, 1)
        size = min(batch_size, CHUNK)
        versions, pool = _versions(), self._pool

        def fetch(at: int) -> asyncio.Task[list[asyncpg.Record]]:
            task = asyncio.ensure_future(driver.fetch(pool, query, *head, at, size, versions))
            task.add_done_callback(_retrieve)
            return task

        task: asyncio.Task[list[asyncpg.Record]] | None = fetch(cursor)
        try:
            while task is not None:
                [(count, last, ids, hashes, body)] = await task
                task = None
                if count == size and size > 0:
                    # A full chunk: fetch on while this one is used. Using it never returns to
                    # the event loop, so let the task send its query now.
                    task = fetch(last + step)
                    await asyncio.sleep(0)
                if not count:
                    return
                if chunks is not None:
                    chunks(body, hashes)
                yield body, ids, hashes
        finally:
            if task is not None:
                task.cancel()

    async def position_at(self, moment: datetime) -> int | None:
        """The smallest position whose occurred_at is >= ``moment``; None if none."""
        if not isinstance(moment, datetime) or moment.tzinfo is None:
            raise InvalidEvent(f"position_at needs a timezone-aware datetime, got {moment!r}")
        rows = await driver.fetch(self._pool, sql.POSITION_AT, moment)
        position: int | None = rows[0][0]
        return position

    async def head(self) -> tuple[int, bytes]:
        """The last position and its chain hash (0 and 32 zero bytes for an empty ledger)."""
        rows = await driver.fetch(self._pool, sql.READ_HEAD)
        return rows[0][0], rows[0][1]
