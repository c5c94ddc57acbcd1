"""The asyncpg seam shared by the writer and the reader: which driver errors mean "unavailable".

STYLE.md principle 7: driver errors are translated once, here, into our own errors.
"""

from __future__ import annotations

import logging

import asyncpg

from eventstore.errors import EventStoreError, StoreUnavailable

#: The server went away or will not take us now (class 08 connection exceptions, class 57
#: operator intervention such as a shutdown): the ledger is unavailable, not the request wrong.
CONNECTION_ERRORS = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InternalClientError,  # the connection broke mid-protocol
)


class OneLineOutage(logging.Filter):
    """asyncpg's pool logs each failed attempt to restore its connection floor with a full
    traceback, every retry while PostgreSQL is down. An outage is a state, not a bug: the record
    keeps its message and gains the error's one-line summary; the traceback is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is not None:
            record.msg = f"{record.getMessage()} ({type(error).__name__}: {error})"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


POOL_LOGGER = "asyncpg.pool"
if not any(isinstance(f, OneLineOutage) for f in logging.getLogger(POOL_LOGGER).filters):
    logging.getLogger(POOL_LOGGER).addFilter(OneLineOutage())


def connection_lost(error: BaseException) -> bool:
    """Whether ``error`` means PostgreSQL is unreachable (so waiting and retrying is right)."""
    return isinstance(error, (StoreUnavailable, *CONNECTION_ERRORS))


async def connect(url: str) -> asyncpg.Connection:
    """A connection of its own (not from the pool), or :class:`StoreUnavailable`."""
    try:
        return await asyncpg.connect(url)
    except (*CONNECTION_ERRORS, asyncpg.PostgresError) as error:
        raise StoreUnavailable(f"cannot connect to the ledger database: {error}") from error


CLOSED = "the event store is closed"


def check_open(pool: asyncpg.Pool) -> None:
    """A store used after its ``close()``: a caller's mistake (as in :meth:`append` and the
    in-memory log), not the "database unreachable" of a closed pool's InterfaceError."""
    if pool.is_closing():
        raise EventStoreError(CLOSED)


async def fetch(pool: asyncpg.Pool, query: str, *args: object) -> list[asyncpg.Record]:
    """Run a read on a pooled connection; driver errors become ours."""
    check_open(pool)
    try:
        rows: list[asyncpg.Record] = await pool.fetch(query, *args)
        return rows
    except CONNECTION_ERRORS as error:
        raise StoreUnavailable(f"lost the ledger connection during a read: {error}") from error
    except asyncpg.PostgresError as error:
        raise EventStoreError(f"read failed: {error}") from error
