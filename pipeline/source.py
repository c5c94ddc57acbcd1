"""Every committed event after a position, exactly once, in global order.

Redis is for speed, PostgreSQL is for truth (DESIGN.md, "Topics"). A service reads the topics
through :class:`LedgerFeed`: messages arrive from Redis; a jump in positions means something was
missed, so the hole is read from the log before going on; a duplicate is skipped. When Redis is
unreachable the feed follows the log itself (LISTEN/NOTIFY) and tries Redis again every few
seconds. Because every published message is a committed event and positions are gapless and
commit-ordered, "read the hole from the log" always finds exactly the missing events. Services
that share a process read :class:`LogFollower` instead: the process's own commits first hand
(:meth:`EventStore.subscribe`), no NOTIFY -> relay -> Redis hop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from adapters.bus import EVENT_TOPICS, BusUnavailable, RedisBus
from aggregates.envelope import RecordedEvent
from eventstore import EventStore
from pipeline.queues import Pipe, PipeClosed, pump, stop

_log = logging.getLogger(__name__)

BusFactory = Callable[[], Awaitable[RedisBus]]

#: Tells the feed that Redis went quiet while the log moved on (see ``LedgerFeed._watch``).
STALLED = object()
INBOX_SIZE = 20_000


class LedgerFeed:
    """Ordered, gap-free delivery of the log to one consumer: Redis first, the log as backstop."""

    def __init__(
        self,
        store: EventStore,
        connect_bus: BusFactory | None,
        *,
        after: int = 0,
        retry_bus_seconds: float = 2.0,
        stall_seconds: float = 3.0,
        on_source_change: Callable[[str], None] | None = None,
    ) -> None:
        self._store = store
        self._connect_bus = connect_bus
        self._retry_bus_seconds = retry_bus_seconds
        self._stall_seconds = stall_seconds
        self._on_source_change = on_source_change or (lambda source: None)
        self.last = after
        self.source = "none"
        self.gap_reads = 0

    def _switch(self, source: str) -> None:
        if source != self.source:
            _log.info("ledger feed now reading from %s after position %d", source, self.last)
            self.source = source
            self._on_source_change(source)

    async def events(self) -> AsyncIterator[RecordedEvent]:
        """Yield events forever; raises only what the store raises (PostgreSQL is required)."""
        while True:
            subscription = await self._subscribe()
            if subscription is None:
                self._switch("log")
                async for recorded in self._follow_log(self._retry_bus_seconds):
                    yield recorded
                continue
            self._switch("redis")
            # One inbox, two writers: Redis and the watchdog.
            inbox: Pipe[RecordedEvent | object] = Pipe(INBOX_SIZE)
            redis = pump(subscription, inbox, "ledger-feed-redis")
            watchdog = asyncio.create_task(self._watch(inbox), name="ledger-feed-watchdog")
            try:
                # Subscribed first, then caught up: nothing can fall between the two.
                async for recorded in self._read_log(until=None):
                    yield recorded
                while True:
                    message = await inbox.get()  # raises what ended the Redis subscription
                    if message is STALLED:  # nothing came while the log moved on
                        async for recorded in self._read_log(until=None):
                            yield recorded
                        continue
                    assert isinstance(message, RecordedEvent)
                    if message.position <= self.last:
                        continue
                    if message.position > self.last + 1:
                        self.gap_reads += 1
                        async for recorded in self._read_log(until=message.position):
                            yield recorded
                    if message.position == self.last + 1:
                        self.last = message.position
                        yield message
            except (BusUnavailable, PipeClosed) as error:
                _log.warning("redis lost (%r); following the log until it returns", error)
            finally:
                watchdog.cancel()
                with contextlib.suppress(Exception):  # first: it breaks a read redis-py is in
                    await subscription.close()
                await stop(redis)

    async def _watch(self, inbox: Pipe[RecordedEvent | object]) -> None:
        """Flag a stall: no progress for a while although the log has newer events.

        Redis only carries what the relay publishes; if the relay is down, or a message was lost
        on a healthy connection, the log still has it. Reading it then is always safe.
        """
        seen = self.last
        while True:
            await asyncio.sleep(self._stall_seconds)
            if self.last == seen:
                with contextlib.suppress(Exception):
                    if (await self._store.head())[0] > self.last:
                        inbox.put_nowait(STALLED)
            seen = self.last

    async def _subscribe(self):
        if self._connect_bus is None:
            return None
        try:
            bus = await self._connect_bus()
            return await bus.subscribe(list(EVENT_TOPICS))
        except BusUnavailable as error:
            _log.warning("redis unavailable (%s); reading the log", error)
            return None

    async def _read_log(self, until: int | None) -> AsyncIterator[RecordedEvent]:
        """Events after ``self.last`` and before ``until`` (or up to the head), from the log."""
        async with contextlib.aclosing(self._store.read_all(after=self.last)) as rows:
            async for recorded in rows:
                if until is not None and recorded.position >= until:
                    return
                self.last = recorded.position
                yield recorded

    async def _follow_log(self, seconds: float) -> AsyncIterator[RecordedEvent]:
        """Follow the log live for ``seconds`` (then the caller tries Redis again)."""
        if self._connect_bus is None:
            seconds = float("inf")
        queue: Pipe[RecordedEvent] = Pipe(10_000)
        task = pump(self._store.subscribe(after=self.last), queue, "ledger-feed-log")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return
                try:  # get() raises what stopped the log reader (e.g. PostgreSQL lost)
                    async with asyncio.timeout(min(remaining, 3600.0)):  # not wait_for: 3.11
                        item = await queue.get()  # can lose a cancellation there
                except TimeoutError:
                    continue
                if item.position == self.last + 1:
                    self.last = item.position
                    yield item
        finally:
            await stop(task)


class LogFollower:
    """The log for the services of the process that writes it (``EventStore.subscribe``).

    Own commits come straight from the event store, other processes' from the log after their
    NOTIFY: no Redis round trip in between (the relay still publishes everything for services
    running elsewhere). Resumable: ``events()`` continues after the last event it gave.
    """

    def __init__(self, store: EventStore, after: int) -> None:
        self._store = store
        self.last = after

    async def events(self) -> AsyncIterator[RecordedEvent]:
        async with contextlib.aclosing(self._store.subscribe(after=self.last)) as events:
            async for recorded in events:
                self.last = recorded.position
                yield recorded


class SharedFeed:
    """One source fanned out to every consumer in this process.

    When all services run in one process (``claire run``), the source is a :class:`LogFollower`
    (this process wrote most of the log; nothing to decode); per-consumer queues share it. A
    consumer registers its queue first, then catches up from the log; everything the hub delivers
    after registration is at or below the head that catch-up reached, or contiguous after it, so
    the handover neither skips nor repeats (positions are gapless and commit-ordered).
    """

    def __init__(
        self, store: EventStore, source: LedgerFeed | LogFollower, *, queue_size: int = 50_000
    ) -> None:
        self._store = store
        self._source = source
        self._queues: list[asyncio.Queue[RecordedEvent]] = []
        self._queue_size = queue_size

    async def run(self) -> None:
        """Deliver the source to every registered consumer (back-pressure: the slowest one)."""
        async for recorded in self._source.events():
            for queue in self._queues:
                await queue.put(recorded)

    def feed(self, after: int) -> _HubFeed:
        return _HubFeed(self, after)

    def _register(self) -> asyncio.Queue[RecordedEvent]:
        queue: asyncio.Queue[RecordedEvent] = asyncio.Queue(maxsize=self._queue_size)
        self._queues.append(queue)
        return queue


class _HubFeed:
    """A consumer's view of a :class:`SharedFeed`, with the same ``events()`` as LedgerFeed."""

    def __init__(self, hub: SharedFeed, after: int) -> None:
        self._hub = hub
        self.last = after

    async def events(self) -> AsyncIterator[RecordedEvent]:
        queue = self._hub._register()
        try:
            async with contextlib.aclosing(self._hub._store.read_all(after=self.last)) as rows:
                async for recorded in rows:
                    self.last = recorded.position
                    yield recorded
            while True:
                recorded = await queue.get()
                if recorded.position <= self.last:
                    continue
                if recorded.position > self.last + 1:  # never expected; the log decides
                    async with contextlib.aclosing(
                        self._hub._store.read_all(after=self.last)
                    ) as rows:
                        async for missing in rows:
                            if missing.position >= recorded.position:
                                break
                            self.last = missing.position
                            yield missing
                self.last = recorded.position
                yield recorded
        finally:
            self._hub._queues.remove(queue)
