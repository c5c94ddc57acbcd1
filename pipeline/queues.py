"""A bounded FIFO that also carries its producer's end, and a task that fills one.

Latency lives in event-loop hops: each ``await`` that parks a task costs one turn of a busy loop.
A consumer of a :class:`Pipe` parks on one future and wakes once per batch of items; when the
producer fails, the failure wakes it the same way (no second task to wait on).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

T = TypeVar("T")

_log = logging.getLogger(__name__)


class PipeClosed(Exception):
    """The producer ended without an error (e.g. a subscription that was closed)."""


class Pipe(Generic[T]):
    """Items in order; ``get`` raises the producer's failure once every item before it is read."""

    def __init__(self, maxsize: int) -> None:
        self._items: deque[T] = deque()
        self._maxsize = maxsize
        self._end: BaseException | None = None
        self._readable: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, item: T) -> bool:
        """Add ``item`` unless the pipe is full or closed; False if it was not added."""
        if self._end is not None or len(self._items) >= self._maxsize:
            return False
        self._items.append(item)
        _wake(self._readable)
        return True

    async def put(self, item: T) -> None:
        """Add ``item``, waiting while the pipe is full (back-pressure)."""
        while len(self._items) >= self._maxsize and self._end is None:
            self._writable = asyncio.get_running_loop().create_future()
            await self._writable
        self.put_nowait(item)

    def close(self, error: BaseException | None = None) -> None:
        """The producer is done: readers get the items left, then ``error`` (or PipeClosed)."""
        if self._end is None:
            self._end = error or PipeClosed("the producer stopped")
            _wake(self._readable)

    def get_nowait(self) -> T:
        """The next item; raises the producer's end if none is left, IndexError if merely empty."""
        if self._items:
            item = self._items.popleft()
            _wake(self._writable)
            return item
        if self._end is not None:
            raise self._end
        raise IndexError("the pipe is empty")

    async def get(self) -> T:
        while not self._items and self._end is None:
            self._readable = asyncio.get_running_loop().create_future()
            await self._readable
        return self.get_nowait()


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


def pump(source: AsyncIterator[T], pipe: Pipe[T], name: str) -> asyncio.Task[None]:
    """Copy ``source`` into ``pipe`` in a task of its own; its end or failure closes the pipe."""

    async def copy() -> None:
        try:
            # aclosing: a generator's own clean-up (e.g. closing a LISTEN connection) runs on cancel
            async with contextlib.aclosing(source) as items:  # type: ignore[type-var]
                async for item in items:
                    await pipe.put(item)
        except asyncio.CancelledError:
            pipe.close(PipeClosed(f"{name} was cancelled"))
            raise
        except Exception as error:
            pipe.close(error)
        else:
            pipe.close(PipeClosed(f"{name} reached its end"))

    return asyncio.create_task(copy(), name=name)


async def stop(task: asyncio.Task[None], patience: float = 5.0) -> None:
    """Cancel a pump and wait (a while) for it to finish its clean-up.

    Bounded: a library that swallows the cancellation (seen on Python 3.11) must not hang the
    shutdown; the task is left behind, logged, and cancelled again.
    """
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=patience)
    if not done:
        _log.warning("%s did not stop within %.0fs of being cancelled", task.get_name(), patience)
        task.cancel()
        return
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()
