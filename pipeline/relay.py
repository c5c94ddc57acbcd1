"""The relay: follows the committed log and fans each event out on its Redis topic.

One publisher, reading in global order, means every topic carries its events in position order
and nothing is ever published before it is committed (DESIGN.md: "A message on a topic is a
committed event with its global position"). While Redis is down, publishing is simply skipped:
consumers notice the hole in positions and read it from the log, so nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from adapters.bus import BusUnavailable, RedisBus
from aggregates.envelope import RecordedEvent
from eventstore import EventStore
from pipeline.queues import Pipe, pump, stop
from pipeline.source import BusFactory

_log = logging.getLogger(__name__)

MAX_BATCH = 500


class Relay:
    """Publishes every committed event after ``after`` (default: the head at start)."""

    def __init__(
        self,
        store: EventStore,
        connect_bus: BusFactory,
        *,
        on_published: Callable[[list[RecordedEvent]], None] | None = None,
        on_bus: Callable[[bool, str], None] | None = None,
    ) -> None:
        self._store = store
        self._connect_bus = connect_bus
        self._on_published = on_published or (lambda batch: None)
        self._on_bus = on_bus or (lambda up, detail: None)
        self.published = 0
        self.skipped = 0
        self.skipped_since_up = 0
        self.last = 0

    async def run(self, after: int | None = None) -> None:
        """Run until cancelled."""
        self.last = (await self._store.head())[0] if after is None else after
        queue: Pipe[RecordedEvent] = Pipe(50_000)
        reader = pump(self._store.subscribe(after=self.last), queue, "relay-reader")
        bus: RedisBus | None = None
        said_up = False  # /health counts Redis as down until someone says it is up
        task = asyncio.current_task()
        assert task is not None
        try:
            while True:
                if task.cancelling():  # redis-py can swallow a cancellation mid-publish,
                    raise asyncio.CancelledError  # or turn it into an error
                batch = [await queue.get()]  # or what stopped the reader (PostgreSQL lost)
                while len(batch) < MAX_BATCH and not queue.empty():
                    batch.append(queue.get_nowait())
                self.last = batch[-1].position
                try:
                    bus = bus or await self._connect_bus()
                    await bus.publish(batch)
                    if self.skipped_since_up or not said_up:
                        self._on_bus(True, "publishing")
                        self.skipped_since_up = 0
                        said_up = True
                    self.published += len(batch)
                    self._on_published(batch)
                except BusUnavailable as error:  # (a cancellation turned error: next turn)
                    bus = None
                    if not self.skipped_since_up:
                        self._on_bus(False, f"cannot publish: {error}")
                    self.skipped += len(batch)
                    self.skipped_since_up += len(batch)
                    _log.warning(
                        "relay: redis unavailable, %d events left to the log (%s)",
                        len(batch),
                        error,
                    )
        finally:
            await stop(reader)
