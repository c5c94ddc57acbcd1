"""The event store as the rest of the system sees it: a small typed port without SQL.

Two implementations: :class:`eventstore.postgres.EventStore` (the ledger) and
:class:`eventstore.memory.MemoryEventLog` (in process, for tests and in-memory runs). The contract
tests in ``tests/integration/eventstore`` run against both (the ``store`` fixture), so they pin the
behaviour every implementation must have. Neither this module nor its types import asyncpg.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Protocol

import msgspec

from aggregates.envelope import NewEvent, RecordedEvent


class VerifyResult(msgspec.Struct, frozen=True, kw_only=True):
    """What ``verify`` found: ``ok``, or the first bad position and the reason."""

    ok: bool
    events_checked: int
    head_position: int
    head_hash: bytes
    first_bad_position: int | None = None
    problem: str | None = None

    @property
    def anchor(self) -> str:
        """``POSITION:HASHHEX`` of the chain head, for ``claire verify --expect``."""
        return f"{self.head_position}:{self.head_hash.hex()}"


class EventLog(Protocol):
    """Append-only, totally ordered, tamper-evident log of typed events."""

    async def append(
        self, stream: str, events: Sequence[NewEvent], expected_version: int | None = None
    ) -> list[int]:
        """Append atomically; positions of the events (original ones for already-stored ids)."""
        ...

    def read_stream(
        self, stream: str, from_version: int = 0, *, batch_size: int = 2000
    ) -> AsyncIterator[RecordedEvent]:
        """A stream's events from ``from_version`` (inclusive), in stream order."""
        ...

    def read_all(self, after: int = 0, *, batch_size: int = 2000) -> AsyncIterator[RecordedEvent]:
        """Every event after position ``after``, in global order, in bounded memory
        (``batch_size``: events per round trip at most, for a store that has round trips)."""
        ...

    async def position_at(self, moment: datetime) -> int | None:
        """The first position whose occurred_at is >= ``moment``."""
        ...

    def subscribe(self, after: int = 0, *, batch_size: int = 2000) -> AsyncIterator[RecordedEvent]:
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
