"""The ledger: an append-only, gapless, hash-chained event store.

``from eventstore import EventStore`` (PostgreSQL) or ``MemoryEventLog`` (in process), both
:class:`EventLog` s (:mod:`eventstore.port`). docs/LEDGER.md gives the guarantees and the API.

The modules that import asyncpg: ``postgres`` (the store) and the parts it delegates to
(``driver``, ``reader``, ``follow``, ``verify``, ``big``), the operators' ``migrations``,
``logins`` and ``admin``, and the archive's ``archive_export``, ``archive_columns`` and
``archive_verify``. No I/O and no asyncpg: ``port``, ``memory``, ``canonical``, ``codec``,
``plan``, ``chain``, ``errors`` and ``sql`` (statements as text). Importing this package imports
asyncpg (for :class:`EventStore`); ``MemoryEventLog`` itself uses none of it.
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
from eventstore.memory import MemoryEventLog
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
    "MemoryEventLog",
    "StoreUnavailable",
    "VerifyResult",
    "connection_lost",
    "follow",
]
