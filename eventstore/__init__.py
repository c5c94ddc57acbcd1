"""The ledger: an append-only, gapless, hash-chained PostgreSQL event store.

``from eventstore import EventStore`` — docs/LEDGER.md gives the guarantees and the API.
"""

from eventstore.errors import (
    ConcurrencyConflict,
    CorruptEvent,
    EventIdConflict,
    EventStoreError,
    InvalidEvent,
    StoreUnavailable,
)
from eventstore.follow import follow
from eventstore.port import EventLog, VerifyResult
from eventstore.postgres import EventStore, connection_lost

__all__ = [
    "ConcurrencyConflict",
    "CorruptEvent",
    "EventIdConflict",
    "EventLog",
    "EventStore",
    "EventStoreError",
    "InvalidEvent",
    "StoreUnavailable",
    "VerifyResult",
    "connection_lost",
    "follow",
]
