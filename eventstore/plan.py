"""One append transaction, planned in memory from a known head: no I/O.

The appender (:mod:`eventstore.postgres`) hands its pending requests to :func:`plan_batch`,
which decides, for a head it believes current, each event's position, stream version and chain
hash, and each request's outcome (positions, or the conflict it raises). Whether that belief
holds is the database's to say when the plan is written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from itertools import repeat
from typing import Any

from aggregates.envelope import NewEvent, RecordedEvent
from aggregates.events import Event
from eventstore import sql
from eventstore.canonical import canonical_line, chain_links, epoch_micros
from eventstore.codec import Prepared, check_stream_name, prepare_checked
from eventstore.errors import ConcurrencyConflict, EventIdConflict, EventStoreError, InvalidEvent


def check_append(stream: str, events: Sequence[NewEvent], expected_version: int | None) -> None:
    """An append's arguments as every :class:`eventstore.port.EventLog` checks them, before any
    event is validated: :class:`InvalidEvent` naming the bad one."""
    if expected_version is not None and (
        not isinstance(expected_version, int)
        or isinstance(expected_version, bool)
        or expected_version < 0
    ):
        raise InvalidEvent(f"expected_version must be an int >= 0, got {expected_version!r}")
    check_stream_name(stream)
    if isinstance(events, str | bytes) or not isinstance(events, Sequence):
        raise InvalidEvent(f"events must be a sequence of NewEvent, got {type(events).__name__}")


def validate(stream: str, events: Sequence[NewEvent]) -> list[Prepared]:
    """``events`` validated for ``stream``, whose name :meth:`EventStore.append` has checked."""
    return [prepare_checked(stream, new) for new in events]


class Request:
    """One caller's append. A big one (:data:`eventstore.sql.COPY_MIN_EVENTS` or more events)
    arrives unprepared (``raw``): the appender validates it chunk by chunk while the server
    ingests the previous chunk (:meth:`eventstore.postgres.EventStore._try_streamed`)."""

    __slots__ = ("count", "expected", "future", "raw", "stream", "validated")

    def __init__(
        self,
        stream: str,
        events: Sequence[NewEvent],
        expected: int | None,
        future: asyncio.Future[list[int]],
    ) -> None:
        self.stream = stream
        self.count = len(events)
        big = self.count >= sql.COPY_MIN_EVENTS
        # A copy: the caller's list may change while the append waits in the queue.
        self.raw: Sequence[NewEvent] | None = tuple(events) if big else None
        self.validated: list[Prepared] | None = None if big else validate(stream, events)
        self.expected = expected
        self.future = future

    @property
    def events(self) -> list[Prepared]:
        """Every event validated (raises :class:`InvalidEvent`, naming the first bad one)."""
        if self.validated is None:
            assert self.raw is not None
            self.validated = validate(self.stream, self.raw)
        return self.validated


class Plan:
    """The rows of one transaction and each request's outcome, computed from a known head."""

    def __init__(self, head: int, head_hash: bytes) -> None:
        self.columns: list[list[Any]] = [[] for _ in range(12)]
        self.events: list[Event] = []
        self.outcomes: list[list[int] | EventStoreError] = []
        self.head = head
        self.hash = head_hash
        self.versions: dict[str, int] = {}
        self.guessed_conflict = False
        self.recorded_at = datetime.now(UTC)
        self._recorded = epoch_micros(self.recorded_at)

    def place(
        self, stream: str, fresh: list[Prepared], version: int, assigned: dict[int, int]
    ) -> None:
        """Give ``fresh`` the next positions (and ``stream`` the next versions after
        ``version``), extending the hash chain; records them in ``assigned`` (by ``id.int``)."""
        (positions, streams, stream_versions, ids, types, schemas, occurred, causes,
         cause_positions, correlations, payloads, hashes) = self.columns  # fmt: skip
        position, recorded = self.head, self._recorded
        line = canonical_line
        first = position + 1
        texts: list[bytes] = []
        for event in fresh:
            position += 1
            version += 1
            texts.append(
                line(
                    position,
                    stream,
                    version,
                    event.id_text,
                    event.event_type,
                    event.schema_version,
                    event.occurred_us,
                    recorded,
                    event.causation_text,
                    event.causation_position,
                    event.correlation_text,
                    event.payload_text,
                ).encode()
            )
            positions.append(position)
            streams.append(stream)
            stream_versions.append(version)
            ids.append(event.event_id)
            types.append(event.event_type)
            schemas.append(event.schema_version)
            occurred.append(event.occurred_at)
            causes.append(event.causation_id)
            cause_positions.append(event.causation_position)
            correlations.append(event.correlation_id)
            payloads.append(event.payload_text)
            self.events.append(event.event)
        links = chain_links(self.hash, texts)
        hashes.extend(links)
        previous = links[-1] if links else self.hash
        self.head, self.hash = position, previous
        self.versions[stream] = version
        assigned.update(zip(id_keys(fresh), range(first, position + 1), strict=True))

    def content_at(self, position: int) -> str:
        """:func:`content` of the event this plan placed at ``position``."""
        (positions, streams, _, ids, types, schemas, occurred, causes, cause_positions,
         correlations, payloads, _) = self.columns  # fmt: skip
        i = position - positions[0]
        return canonical_line(
            0, streams[i], 0, ids[i], types[i], schemas[i], epoch_micros(occurred[i]), 0,
            causes[i], cause_positions[i], correlations[i], payloads[i],
        )  # fmt: skip

    def rows(self, start: int = 0) -> Iterator[tuple[Any, ...]]:
        """The rows from the ``start``-th on, in :data:`eventstore.sql.COPY_COLUMNS` order."""
        columns = self.columns if start == 0 else [column[start:] for column in self.columns]
        return zip(*columns, repeat(self.recorded_at))

    def recorded(self) -> list[RecordedEvent]:
        """The placed events as committed (what ``read_all`` returns for them)."""
        recorded_at = self.recorded_at
        (positions, streams, versions, ids, types, schemas, occurred, causes, cause_positions,
         correlations, _, hashes) = self.columns  # fmt: skip
        return [
            RecordedEvent(
                position=positions[i],
                stream=streams[i],
                stream_version=versions[i],
                event_id=ids[i],
                event_type=types[i],
                schema_version=schemas[i],
                occurred_at=occurred[i].astimezone(UTC),
                recorded_at=recorded_at,
                causation_id=causes[i],
                causation_position=cause_positions[i],
                correlation_id=correlations[i],
                event=event,
                hash=hashes[i],
            )
            for i, event in enumerate(self.events)
        ]


def id_keys(events: list[Prepared]) -> Iterator[int]:
    # Ids are looked up by their int: hashing a UUID runs Python code, an int's does not.
    return (event.event_id.int for event in events)


def content(stream: str, event: Prepared) -> str:
    """What makes two events with one id the same event: everything but where it landed, i.e.
    its canonical text with position, stream version and recorded_at as 0 (the same text as
    :data:`eventstore.sql.STORED_CONTENT` builds from a stored row)."""
    return canonical_line(
        0, stream, 0, event.id_text, event.event_type, event.schema_version, event.occurred_us, 0,
        event.causation_text, event.causation_position, event.correlation_text, event.payload_text,
    )  # fmt: skip


def id_conflict(
    stream: str,
    events: list[Prepared],
    fresh: list[Prepared],
    known: dict[int, int],
    contents: dict[int, str],
    plan: Plan,
    assigned: dict[int, int],
) -> EventIdConflict | None:
    """The first event of a request whose id is stored (``known``, with ``contents``), placed
    earlier in ``plan`` or given earlier in the request with *different* content; else None.

    Only the events :func:`fresh_events` dropped can conflict, so a request of fresh events
    (every append but a retry) costs nothing here.
    """
    if len(fresh) == len(events):
        return None
    first: dict[int, str] = {}
    for event in events:
        key = event.event_id.int
        text = content(stream, event)
        if key in known:
            position: int | None = known[key]
            stored = contents.get(key)
        elif key in assigned:
            position = assigned[key]
            stored = plan.content_at(position)
        elif key in first:
            position, stored = None, first[key]
        else:
            first[key] = text
            continue
        if stored is not None and stored != text:
            return EventIdConflict(event.event_id, position)
    return None


def fresh_events(
    events: list[Prepared], known: dict[int, int], assigned: dict[int, int]
) -> list[Prepared]:
    """The events to write: not stored yet, not placed earlier in this plan, first of their id."""
    wanted = set(id_keys(events))
    if len(wanted) == len(events) and wanted.isdisjoint(known) and wanted.isdisjoint(assigned):
        return events
    fresh: list[Prepared] = []
    pending: set[int] = set()
    for event, key in zip(events, id_keys(events), strict=True):
        if key not in known and key not in assigned and key not in pending:
            pending.add(key)
            fresh.append(event)
    return fresh


def plan_batch(
    requests: list[Request],
    head: int,
    head_hash: bytes,
    versions: dict[str, int],
    guessed: set[str],
    known: dict[int, int],
    contents: dict[int, str] | None = None,
) -> Plan:
    """Place ``requests`` after ``head``; ``known``: stored ids' positions, ``contents``: their
    :func:`content` (a request reusing one for a different event fails alone)."""
    plan = Plan(head, head_hash)
    assigned: dict[int, int] = {}
    for request in requests:
        fresh = fresh_events(request.events, known, assigned)
        conflict = id_conflict(
            request.stream, request.events, fresh, known, contents or {}, plan, assigned
        )
        if conflict is not None:
            plan.outcomes.append(conflict)
            continue
        current = versions.get(request.stream, 0)
        if fresh and request.expected is not None and request.expected != current:
            if request.stream in guessed:
                plan.guessed_conflict = True
            plan.outcomes.append(ConcurrencyConflict(request.stream, request.expected, current))
            continue
        plan.place(request.stream, fresh, current, assigned)
        versions[request.stream] = plan.versions[request.stream]
        plan.outcomes.append([known.get(key) or assigned[key] for key in id_keys(request.events)])
    return plan
