"""The event store's errors: the only exceptions callers need to know (STYLE.md principle 7)."""

from __future__ import annotations


class EventStoreError(Exception):
    """Base of every event-store error."""


class ConcurrencyConflict(EventStoreError):
    """An append demanded a stream version the stream is not at; nothing was written."""

    def __init__(self, stream: str, expected: int, actual: int) -> None:
        super().__init__(
            f"stream {stream!r} is at version {actual}, the append expected version {expected}"
        )
        self.stream = stream
        self.expected = expected
        self.actual = actual


class InvalidEvent(EventStoreError):
    """An event that cannot enter the ledger (unknown type, invalid payload, bad envelope)."""


class EventIdConflict(EventStoreError):
    """An append reused a stored event id for a different event; nothing of it was written.

    Re-appending an *identical* event stays a no-op (its stored position is returned): that is
    how a retry after a lost connection is made safe. A different stream, type, envelope or
    payload under the same id is a caller's bug (or an attack), never silently absorbed.
    ``position`` is where the id is stored, or None when the append itself carries the id twice.
    """

    def __init__(self, event_id: object, position: int | None) -> None:
        where = (
            f"already stored at position {position}"
            if position is not None
            else "given twice in one append"
        )
        super().__init__(f"event id {event_id} is {where} with different content")
        self.event_id = event_id
        self.position = position


class CorruptEvent(EventStoreError):
    """A stored row that cannot be decoded into a typed event."""

    def __init__(self, position: int, reason: str) -> None:
        super().__init__(f"event at position {position} cannot be decoded: {reason}")
        self.position = position


class StoreUnavailable(EventStoreError):
    """The database could not be reached or the connection broke."""


class ArchiveError(EventStoreError):
    """An archive that cannot be written or trusted; names the file (and position) at fault."""

    def __init__(self, problem: str, *, file: str | None = None, position: int | None = None):
        super().__init__(problem)
        self.file = file
        self.position = position


class MigrationRefused(EventStoreError):
    """The database refused the schema migration (e.g. the role may not create the group roles);
    nothing of it was applied (one transaction)."""
