"""The event store as the rest of the system sees it: a small typed port without SQL.

Projections, replay and the pipeline depend on this Protocol, not on PostgreSQL; the contract
tests in ``tests/integration/eventstore`` pin the behaviour every implementation must have.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from aggregates.envelope import NewEvent, RecordedEvent

if TYPE_CHECKING:
    from eventstore.verify import VerifyResult


class EventLog(Protocol):
    """Append-only, totally ordered, tamper-evident log of typed events."""

    async def append(
        self, stream: str, events: Sequence[NewEvent], expected_version: int | None = None
    ) -> list[int]:
        """Append atomically; positions of the events (original ones for already-stored ids)."""
        ...

    def read_stream(self, stream: str, from_version: int = 0) -> AsyncIterator[RecordedEvent]:
        """A stream's events from ``from_version`` (inclusive), in stream order."""
        ...

    def read_all(self, after: int = 0) -> AsyncIterator[RecordedEvent]:
        """Every event after position ``after``, in global order, in bounded memory."""
        ...

    async def position_at(self, moment: datetime) -> int | None:
        """The first position whose occurred_at is >= ``moment``."""
        ...

    def subscribe(self, after: int = 0) -> AsyncIterator[RecordedEvent]:
        """Catch up after ``after``, then follow live; each event once, in order."""
        ...

    async def head(self) -> tuple[int, bytes]:
        """The last position and its hash."""
        ...

    async def verify(self, expect: tuple[int, bytes] | None = None) -> VerifyResult:
        """Recompute the hash chain; name the first bad position."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
