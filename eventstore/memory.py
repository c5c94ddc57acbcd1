"""The event log in memory: the port's second implementation, for tests and in-process runs.

Same contract as :class:`eventstore.postgres.EventStore` (``tests/integration/eventstore`` runs the
contract tests against both): an append is atomic; ``expected_version`` is the stream's version
before it (0: a new stream) and a mismatch raises :class:`ConcurrencyConflict`, writing nothing;
an event whose id is stored is not written again (its position is returned), the same id with
other content raises :class:`EventIdConflict`; positions are dense from 1. It shares the
PostgreSQL store's code wherever no database is involved: arguments are checked and events
validated by the same functions (:func:`eventstore.plan.check_append`, :mod:`eventstore.codec`),
placed by the same :func:`eventstore.plan.plan_batch`, and hashed with the same canonical text and
link (:mod:`eventstore.canonical`), so ``head()`` and ``verify()`` answer what PostgreSQL would for
the same appends (at the same ``recorded_at``, which is the clock at each append here too).

No I/O, no asyncpg; nothing survives the process. Not thread-safe: one event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from datetime import datetime
from functools import partial

from aggregates.envelope import NewEvent, RecordedEvent
from eventstore.canonical import GENESIS, chain, recorded_text
from eventstore.chain import anchor_problem
from eventstore.codec import check_read_argument, check_stream_name
from eventstore.errors import EventStoreError, InvalidEvent
from eventstore.plan import Request, check_append, plan_batch
from eventstore.port import VerifyResult


class MemoryEventLog:
    """An :class:`eventstore.port.EventLog` held in this process. ``close()`` ends subscribers."""

    def __init__(self) -> None:
        self._events: list[RecordedEvent] = []  # position p at index p - 1
        self._payloads: list[str] = []  # each event's jsonb text, as hashed
        self._streams: dict[str, list[int]] = {}  # stream version v's position at index v - 1
        self._versions: dict[str, int] = {}
        self._known: dict[int, int] = {}  # event id (its int) -> position
        self._contents: dict[int, str] = {}  # event id (its int) -> eventstore.plan.content
        self._head: tuple[int, bytes] = (0, GENESIS)
        self._changed = asyncio.Condition()
        self._closed = False

    async def __aenter__(self) -> MemoryEventLog:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise EventStoreError("the event store is closed")

    async def append(
        self, stream: str, events: Sequence[NewEvent], expected_version: int | None = None
    ) -> list[int]:
        """:meth:`eventstore.postgres.EventStore.append` in memory: same checks, same outcomes."""
        self._check_open()
        check_append(stream, events, expected_version)
        if not events:
            return []
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        request = Request(stream, events, expected_version, future)
        head, head_hash = self._head
        # plan_batch moves a stream's version in the dict only when the request is placed.
        plan = plan_batch(
            [request], head, head_hash, self._versions, set(), self._known, self._contents
        )
        [outcome] = plan.outcomes
        if isinstance(outcome, Exception):
            raise outcome
        payloads = plan.columns[10]  # payload_text, in eventstore.sql.COPY_COLUMNS order
        for recorded, payload in zip(plan.recorded(), payloads, strict=True):
            self._events.append(recorded)
            self._payloads.append(payload)
            self._streams.setdefault(stream, []).append(recorded.position)
            key = recorded.event_id.int
            self._known[key] = recorded.position
            self._contents[key] = plan.content_at(recorded.position)
        self._head = (plan.head, plan.hash)
        async with self._changed:
            self._changed.notify_all()
        return outcome

    async def read_all(
        self, after: int = 0, *, batch_size: int = 2000
    ) -> AsyncGenerator[RecordedEvent]:
        """Every event with position > ``after``, in order (``batch_size`` is checked, as the
        PostgreSQL store checks it, and otherwise unused)."""
        self._check_open()
        check_read_argument("after", after, -(2**63))
        check_read_argument("batch_size", batch_size, 1)
        index = max(after, 0)
        while index < len(self._events):
            yield self._events[index]
            index += 1

    async def read_stream(
        self, stream: str, from_version: int = 0, *, batch_size: int = 2000
    ) -> AsyncGenerator[RecordedEvent]:
        """Events of ``stream`` with stream_version >= ``from_version`` (versions start at 1)."""
        self._check_open()
        check_stream_name(stream)
        check_read_argument("from_version", from_version, -(2**63))
        check_read_argument("batch_size", batch_size, 1)
        positions = self._streams.get(stream, [])
        index = max(from_version, 1) - 1
        while index < len(positions):
            yield self._events[positions[index] - 1]
            index += 1

    async def position_at(self, moment: datetime) -> int | None:
        """The smallest position whose occurred_at is >= ``moment``; None if none."""
        self._check_open()
        if not isinstance(moment, datetime) or moment.tzinfo is None:
            raise InvalidEvent(f"position_at needs a timezone-aware datetime, got {moment!r}")
        for recorded in self._events:
            if recorded.occurred_at >= moment:
                return recorded.position
        return None

    async def head(self) -> tuple[int, bytes]:
        """The last position and its chain hash (0 and 32 zero bytes for an empty log)."""
        self._check_open()
        return self._head

    async def subscribe(
        self, after: int = 0, *, batch_size: int = 2000, poll_interval: float = 1.0
    ) -> AsyncGenerator[RecordedEvent]:
        """Catch up from ``after``, then follow new appends; every event once, in order. Ends
        when the log is closed. (``poll_interval`` is the PostgreSQL store's; nothing polls here.)
        """
        self._check_open()
        check_read_argument("after", after, -(2**63))
        check_read_argument("batch_size", batch_size, 1)
        last = max(after, 0)
        while True:
            while last < len(self._events):
                last += 1
                yield self._events[last - 1]
            if self._closed:
                return
            async with self._changed:
                await self._changed.wait_for(partial(self._moved_past, last))

    def _moved_past(self, position: int) -> bool:
        return self._closed or len(self._events) > position

    async def verify(self, expect: tuple[int, bytes] | None = None) -> VerifyResult:
        """Recompute the chain with the canonical functions and compare each stored hash; the
        head and ``expect`` (an anchor, as for :meth:`EventStore.verify`) are checked too."""
        self._check_open()
        head, head_hash = self._head
        previous, expected, anchor_hash = GENESIS, 1, None
        problem: tuple[int | None, str] | None = None
        for recorded, payload in zip(self._events, self._payloads, strict=True):
            if recorded.position != expected:
                problem = expected, f"position {expected} is missing (next is {recorded.position})"
                break
            if chain(previous, recorded_text(recorded, payload)) != recorded.hash:
                problem = expected, f"position {expected}: hash does not match its content"
                break
            previous = recorded.hash
            if expect is not None and expected == expect[0]:
                anchor_hash = previous
            expected += 1
        last = expected - 1
        if problem is None and (head != last or head_hash != previous):
            problem = last + 1, f"the head says {head} but the chain ends at {last}"
        if problem is None and expect is not None:
            problem = anchor_problem(expect, last, anchor_hash)
        if problem is None:
            return VerifyResult(
                ok=True, events_checked=last, head_position=head, head_hash=head_hash
            )
        return VerifyResult(
            ok=False,
            events_checked=expected - 1,
            head_position=head,
            head_hash=head_hash,
            first_bad_position=problem[0],
            problem=problem[1],
        )

    async def close(self) -> None:
        """Refuse further use and end every subscriber (after the events it has not yet seen)."""
        self._closed = True
        async with self._changed:
            self._changed.notify_all()
