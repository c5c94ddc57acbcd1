"""Follow the log from inside the process that writes most of it.

Following by NOTIFY alone means reading every event back from PostgreSQL after each commit. A
process that runs several services (``claire run``) appended most of those events itself a
moment earlier, so :func:`follow` (what :meth:`EventStore.subscribe` runs) takes them straight
from the store's commit listeners and reads the log only for what someone else appended: a
NOTIFY naming a head beyond what it has, or a hole in positions between two of its own commits.
Exactly once and in order because positions are gapless and commit-ordered: when an event at
``p`` is committed, everything below ``p`` is already readable.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

import asyncpg

from aggregates.envelope import RecordedEvent
from eventstore import sql
from eventstore.codec import check_read_argument
from eventstore.driver import CLOSED
from eventstore.errors import EventStoreError, StoreUnavailable

if TYPE_CHECKING:
    from eventstore.postgres import EventStore

#: Own commits held for a slow reader; beyond this they are dropped and read from the log.
LOCAL_LIMIT = 50_000


async def follow(
    store: EventStore, after: int = 0, *, batch_size: int = 2000, poll_interval: float = 1.0
) -> AsyncGenerator[RecordedEvent]:
    """Catch up from ``after``, then follow live; every event exactly once, in order."""
    local: deque[RecordedEvent] = deque()
    wake = asyncio.Event()
    notified = 0

    def committed(events: list[RecordedEvent]) -> None:
        if len(local) + len(events) <= LOCAL_LIMIT:  # else: the hole is read from the log
            local.extend(events)
        wake.set()

    def notify(_connection: object, _pid: int, _channel: str, payload: str) -> None:
        nonlocal notified
        with contextlib.suppress(ValueError):
            notified = max(notified, int(payload))
        wake.set()

    if store.closed:
        raise EventStoreError(CLOSED)
    check_read_argument("after", after, -(2**63))  # InvalidEvent, as read_all's
    try:
        listener = await asyncpg.connect(store.url)
        await listener.add_listener(sql.CHANNEL, notify)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        raise StoreUnavailable(f"cannot listen to the ledger: {error}") from error
    unregister = store.on_commit(committed)
    last = max(after, 0)  # positions start at 1: a negative ``after`` is "from the start"
    try:
        # Listening first, then caught up: nothing committed in between can be missed.
        async for recorded in _read(store, last, None, batch_size):
            last = recorded.position
            yield recorded
        while not store.closed:  # close() ends a subscriber (as the in-memory log's does)
            wake.clear()
            while local:
                recorded = local.popleft()
                if recorded.position <= last:
                    continue
                async for missing in _read(store, last, recorded.position, batch_size):
                    last = missing.position  # someone else's commits, between two of ours
                    yield missing
                if recorded.position != last + 1:  # cannot happen (commit order); never skip
                    local.appendleft(recorded)
                    notified = max(notified, recorded.position)
                    break
                last = recorded.position
                yield recorded
            if notified > last:
                await asyncio.sleep(0)  # our own appender may be announcing this very commit
                if local:
                    continue
                async for recorded in _read(store, last, None, batch_size):
                    last = recorded.position
                    yield recorded
                continue
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # arrives as the wait completes, and this generator would never end.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(poll_interval):
                    await wake.wait()
            if store.closed:
                return
            if not wake.is_set() and (await store.head())[0] > last:  # a missed wake-up
                notified = max(notified, last + 1)
    finally:
        unregister()
        with contextlib.suppress(Exception):
            await listener.close()


async def _read(
    store: EventStore, after: int, until: int | None, batch_size: int
) -> AsyncGenerator[RecordedEvent]:
    """The log after ``after`` and before ``until`` (or up to its head)."""
    if until is not None and until <= after + 1:
        return
    async with contextlib.aclosing(store.read_all(after=after, batch_size=batch_size)) as rows:
        async for recorded in rows:
            if until is not None and recorded.position >= until:
                return
            yield recorded
