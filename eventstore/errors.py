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


class CorruptEvent(EventStoreError):
    """A stored row that cannot be decoded into a typed event."""

    def __init__(self, position: int, reason: str) -> None:
        super().__init__(f"event at position {position} cannot be decoded: {reason}")
        self.position = position


class StoreUnavailable(EventStoreError):
    """The database could not be reached or the connection broke."""
