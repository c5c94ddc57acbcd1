"""Identical real trades through the real feed, ingest and ledger: never merged, never doubled.

The local MEXC server pushes the same deal (same symbol, millisecond, price, size, side) again
and again: once, then after the first batch is in the ledger (a batch boundary), then after the
server cut the connection (a reconnect). Each is a trade of its own. A restarted feed that
receives the same stream again from its start stores nothing twice.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from adapters.mexc.feed import FeedConfig, MexcFeed
from adapters.mexc.local_server import LocalMexcServer
from eventstore import EventStore
from pipeline.ingest import MarketIngest

pytestmark = [pytest.mark.db]

TS = 1_767_225_600_000
DEAL = {
    "channel": "push.deal",
    "symbol": "BTC_USDT",
    "data": {"p": 100.5, "v": 3, "T": 1, "O": 1, "M": 2, "t": TS},
    "ts": TS,
}


async def eventually(predicate, within: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    """Wait for a condition (a generous bound, never a timing assertion)."""
    async with asyncio.timeout(within):
        while not await predicate():  # noqa: ASYNC110 - polling the ledger is the point
            await asyncio.sleep(0.02)


@pytest.fixture
async def store(fresh_database_url) -> AsyncIterator[EventStore]:  # type: ignore[no-untyped-def]
    async with await EventStore.connect(await fresh_database_url()) as opened:
        yield opened


def _feed(server: LocalMexcServer, ingest: MarketIngest) -> MexcFeed:
    config = FeedConfig(
        url=server.url, ping_interval=0.2, pong_timeout=1.0, backoff_initial=0.01, backoff_max=0.1
    )
    return MexcFeed(ingest, symbols=("BTC_USDT",), config=config, rng=random.Random(7))


async def _trades(store: EventStore) -> int:
    return len([r async for r in store.read_all() if r.event_type == "market.trade"])


async def _send_and_wait(server: LocalMexcServer, store: EventStore, expected: int) -> None:
    async def subscribed() -> bool:
        return server.subscribers("deal", "BTC_USDT") == 1

    await eventually(subscribed)
    assert await server.push(DEAL) == 1

    async def stored() -> bool:
        return await _trades(store) >= expected

    await eventually(stored)


async def test_identical_trades_when_split_by_a_batch_and_a_reconnect_then_each_stored_once(
    store: EventStore,
) -> None:
    async with LocalMexcServer(symbols={"BTC_USDT"}, ping_timeout=60) as server:
        ingest = MarketIngest(store, screener=None, snapshot_every_ms=60_000)
        async with _feed(server, ingest) as feed:
            await _send_and_wait(server, store, 1)
            await _send_and_wait(server, store, 2)  # a batch of its own
            await server.drop_all()
            await _send_and_wait(server, store, 3)  # after the reconnect
            assert feed.stats.reconnects >= 1
        assert await _trades(store) == 3
        # A restart (new ingest, new feed) receiving the same stream again from its start.
        ingest = MarketIngest(store, screener=None, snapshot_every_ms=60_000)
        async with _feed(server, ingest):
            for _ in range(3):
                await _send_and_wait(server, store, 3)

            async def all_appended() -> bool:
                return ingest.appended == 3

            await eventually(all_appended)
    assert await _trades(store) == 3  # recognised: nothing doubled
