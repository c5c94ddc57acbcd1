"""A producer task feeding a queue, a consumer that notices when the producer died, and a merge."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TypeVar

T = TypeVar("T")


def pump(source: AsyncIterator[T], queue: asyncio.Queue[T], name: str) -> asyncio.Task[None]:
    """Copy ``source`` into ``queue`` in a task of its own (back-pressure: the queue's size)."""

    async def copy() -> None:
        # aclosing: a generator's own clean-up (e.g. closing a LISTEN connection) runs on cancel
        async with contextlib.aclosing(source) as items:  # type: ignore[type-var]
            async for item in items:
                await queue.put(item)

    return asyncio.create_task(copy(), name=name)


async def next_item(queue: asyncio.Queue[T], producer: asyncio.Task[None]) -> T:
    """The next item, or the producer's failure (e.g. PostgreSQL lost) if it stopped."""
    if not queue.empty():
        return queue.get_nowait()
    getter = asyncio.ensure_future(queue.get())
    try:
        done, _ = await asyncio.wait({getter, producer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not getter.done():
            getter.cancel()
    if getter in done:
        return getter.result()
    producer.result()  # raises the producer's error
    raise RuntimeError(f"{producer.get_name()} stopped without an error")


async def merged(*sources: AsyncIterator[T]) -> AsyncIterator[T]:
    """Items of every source as they arrive; ends when any source ends, raises what one raises."""
    pending = {asyncio.ensure_future(anext(source)): source for source in sources}
    try:
        while True:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for future in [f for f in pending if f in done]:  # in the sources' order
                source = pending.pop(future)
                try:
                    item = future.result()
                except StopAsyncIteration:
                    return
                yield item
                pending[asyncio.ensure_future(anext(source))] = source
    finally:
        for future in pending:
            future.cancel()
