"""follow(): the log seen from the process that writes it — own commits first hand, others read."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from aggregates.envelope import RecordedEvent
from eventstore import EventStore, follow
from tests.integration.eventstore.eventstore_helpers import tick

pytestmark = [pytest.mark.db]


async def _until(store: EventStore, after: int, head: asyncio.Future[int]) -> list[RecordedEvent]:
    """Follow from ``after`` until the position ``head`` resolves to has been seen."""
    seen: list[RecordedEvent] = []
    async with contextlib.aclosing(follow(store, after, poll_interval=0.2)) as events:
        async for recorded in events:
            seen.append(recorded)
            if head.done() and recorded.position >= head.result():
                return seen
    raise AssertionError("follow() ended")


async def test_follow_when_this_and_another_process_append_then_every_event_once_in_order(
    store: EventStore, ledger_url: str
) -> None:
    await store.append("market-BTC_USDT", [tick(n, label="before") for n in range(3)])
    head: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    follower = asyncio.create_task(_until(store, 1, head))
    async with await EventStore.connect(ledger_url) as other:

        async def ours() -> None:
            for n in range(40):
                await store.append("market-BTC_USDT", [tick(n, label="ours"), tick(n, label="o2")])

        async def theirs() -> None:
            for n in range(40):
                await other.append("market-ETH_USDT", [tick(n, label="theirs", symbol="ETH_USDT")])
                if n % 10 == 0:
                    await asyncio.sleep(0.01)

        await asyncio.gather(ours(), theirs())
        head.set_result((await store.head())[0])
        await store.append("market-BTC_USDT", [tick(99, label="last")])  # wakes the follower
        seen = await asyncio.wait_for(follower, 10)

    logged = [recorded async for recorded in store.read_all(after=1)]
    assert [r.position for r in seen] == list(range(2, len(seen) + 2))
    assert seen == logged[: len(seen)]  # own commits told first hand equal what the log holds


async def test_follow_when_only_another_process_appends_then_its_notify_brings_the_events(
    store: EventStore, ledger_url: str
) -> None:
    head: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    head.set_result(1)
    follower = asyncio.create_task(_until(store, 0, head))
    async with await EventStore.connect(ledger_url) as other:
        await asyncio.sleep(0.1)
        await other.append("market-ETH_USDT", [tick(1, symbol="ETH_USDT")])
        seen = await asyncio.wait_for(follower, 5)
    assert [r.position for r in seen] == [1]
