"""Big appends: one request of :data:`eventstore.sql.COPY_MIN_EVENTS` or more events.

Validating and encoding such a request costs more than the server's ingest, so the two overlap:
the request is validated and chained chunk by chunk while PostgreSQL ingests the previous chunk
by binary COPY. Two shapes, both taking the head lock *before* writing a row of
``ledger.events``, as every other append does (so no two writers can wait on each other: an
earlier version inserted first and locked the head last, and deadlocked with a writer that held
the head and waited on one of its uncommitted rows):

* up to :data:`eventstore.sql.STAGE_MIN_EVENTS`: lock the head, then stream the chunks straight
  into ``ledger.events`` and move the head. Concurrent writers wait for the whole append.
* from :data:`eventstore.sql.STAGE_MIN_EVENTS` on: stream the chunks into a temporary table
  *without* the lock (positions and hashes are not known yet), then take the lock, chain the
  hashes, and move the rows in with one ``INSERT .. SELECT``. Concurrent writers wait for that
  statement and the COMMIT only.

Either way it is one transaction: killed at any point, nothing of it is visible, and the temporary
tables die with it. Anything unusual (a stored id, a stream not at the expected version, an id
twice in the request) returns None, and the appender's general locked path decides, exactly as
for small appends.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any

import asyncpg

from aggregates.envelope import NewEvent
from eventstore import sql
from eventstore.codec import Prepared
from eventstore.driver import CONNECTION_ERRORS
from eventstore.errors import EventIdConflict
from eventstore.plan import Plan, Request, fresh_events, id_conflict, id_keys, validate

#: Sends one chunk of rows to the server (a COPY); awaited before the next one is sent.
Send = Callable[[int, list[Prepared]], Coroutine[Any, Any, None]]


class _Refused(Exception):
    """The request fails alone with this outcome (nothing written)."""

    def __init__(self, outcome: EventIdConflict) -> None:
        self.outcome = outcome


def _chunks(stream: str, raw: Sequence[NewEvent]) -> Iterator[list[Prepared]]:
    for start in range(0, len(raw), sql.STREAM_CHUNK_EVENTS):
        yield validate(stream, raw[start : start + sql.STREAM_CHUNK_EVENTS])


async def _pipelined(chunks: Iterator[list[Prepared]], send: Send) -> list[Prepared]:
    """Validate chunk k+1 while chunk k is sent; every chunk sent (or the first error raised).

    ``send`` gets the chunk's index of its first event among all and the chunk. Its task is
    always finished before this returns or raises: the connection is free afterwards.
    """
    validated: list[Prepared] = []
    sending: asyncio.Task[None] | None = None
    try:
        for chunk in chunks:
            first = len(validated)
            validated += chunk
            if sending is not None:
                await sending
            sending = asyncio.create_task(send(first, chunk))
            await asyncio.sleep(0)  # let it put its rows on the wire before validating more
        if sending is not None:
            await sending
    except BaseException as error:
        if sending is not None and not sending.done():
            if isinstance(error, asyncio.CancelledError):
                sending.cancel()
            with contextlib.suppress(BaseException):  # its own error is not the news
                await sending
        raise
    return validated


async def _rollback(conn: asyncpg.Connection) -> None:
    if not conn.is_closed():
        with contextlib.suppress(*CONNECTION_ERRORS):
            await conn.execute("ROLLBACK")


def _unique_ids(raw: Sequence[NewEvent]) -> bool:
    try:
        ids = {getattr(new, "event_id", None) for new in raw}
    except TypeError:  # an unhashable "id": validation will name it
        return False
    return len(ids) == len(raw) and all(type(i) is uuid.UUID for i in ids)


async def append_big(conn: asyncpg.Connection, request: Request) -> Plan | None:
    """Commit ``request`` (a big one, ``request.raw``) on ``conn``, or return None for the
    general path to decide. Raises :class:`InvalidEvent` (nothing written) for a bad event."""
    assert request.raw is not None
    try:
        if request.count >= sql.STAGE_MIN_EVENTS and _unique_ids(request.raw):
            plan = await _staged(conn, request)
        else:
            plan = await _streamed(conn, request)
    except asyncpg.UniqueViolationError:
        return None  # an id already stored: the locked path reads them and decides
    return plan


async def _streamed(conn: asyncpg.Connection, request: Request) -> Plan | None:
    """Lock the head, then COPY each chunk into ``ledger.events`` while validating the next."""
    assert request.raw is not None
    stream = request.stream
    await conn.execute(sql.BEGIN_AND_LOCK_HEAD)
    try:
        head, head_hash, version = await conn.fetchrow(sql.READ_STREAM_STATE, stream)
        if request.expected is not None and request.expected != version:
            await conn.execute("ROLLBACK")
            return None
        plan = Plan(head, head_hash)
        assigned: dict[int, int] = {}

        async def send(first: int, chunk: list[Prepared]) -> None:
            del first
            fresh = fresh_events(chunk, {}, assigned)
            conflict = id_conflict(stream, chunk, fresh, {}, {}, plan, assigned)
            if conflict is not None:
                # Every id placed so far is this request's own, which is refused whole: the
                # earlier copy was never written, so the conflict names no position.
                raise _Refused(EventIdConflict(conflict.event_id, None))
            start = len(plan.events)
            plan.place(stream, fresh, plan.versions.get(stream, version), assigned)
            if len(plan.events) > start:
                await _copy(conn, plan, start)

        validated = await _pipelined(_chunks(stream, request.raw), send)
        if await conn.fetchrow(sql.MOVE_HEAD, plan.head, plan.hash, head) is None:
            raise AssertionError("the ledger head moved while this append held its lock")
        await conn.execute("COMMIT")
    except _Refused as refused:
        await _rollback(conn)
        unchanged = Plan(head, head_hash)
        unchanged.outcomes.append(refused.outcome)
        return unchanged
    except BaseException:
        await _rollback(conn)
        raise
    request.validated = validated
    plan.outcomes.append([assigned[key] for key in id_keys(validated)])
    return plan


async def _copy(conn: asyncpg.Connection, plan: Plan, start: int) -> None:
    await conn.copy_records_to_table(
        "events", schema_name="ledger", columns=sql.COPY_COLUMNS, records=plan.rows(start)
    )


def _stage_rows(first: int, chunk: list[Prepared]) -> list[tuple[Any, ...]]:
    return [
        (
            i,
            e.event_id,
            e.event_type,
            e.schema_version,
            e.occurred_at,
            e.causation_id,
            e.causation_position,
            e.correlation_id,
            e.payload_text,
        )
        for i, e in enumerate(chunk, first + 1)
    ]


async def _staged(conn: asyncpg.Connection, request: Request) -> Plan | None:
    """COPY the chunks into a temporary table without the lock; under it, one INSERT .. SELECT.

    The caller has checked that the request's ids are distinct UUIDs, so row i of the stage is
    the i-th event and lands at head + i.
    """
    assert request.raw is not None
    stream = request.stream
    await conn.execute(sql.BEGIN)
    try:
        await conn.execute(sql.CREATE_STAGE)

        async def send(first: int, chunk: list[Prepared]) -> None:
            await conn.copy_records_to_table(
                sql.STAGE_TABLE, columns=sql.STAGE_COLUMNS, records=_stage_rows(first, chunk)
            )

        validated = await _pipelined(_chunks(stream, request.raw), send)
        await conn.execute(sql.LOCK_HEAD)
        head, head_hash, version = await conn.fetchrow(sql.READ_STREAM_STATE, stream)
        if request.expected is not None and request.expected != version:
            await conn.execute("ROLLBACK")
            request.validated = validated
            return None
        plan = Plan(head, head_hash)
        assigned: dict[int, int] = {}
        plan.place(stream, validated, version, assigned)
        await conn.copy_records_to_table(
            sql.STAGE_HASH_TABLE,
            columns=("i", "hash"),
            records=zip(range(1, len(validated) + 1), plan.columns[11], strict=True),
        )
        await conn.execute(sql.INSERT_STAGED, head, stream, version, plan.recorded_at)
        if await conn.fetchrow(sql.MOVE_HEAD, plan.head, plan.hash, head) is None:
            raise AssertionError("the ledger head moved while this append held its lock")
        await conn.execute("COMMIT")
    except BaseException:
        await _rollback(conn)
        raise
    request.validated = validated
    plan.outcomes.append([assigned[key] for key in id_keys(validated)])
    return plan
