"""Attack on trade identity (docs/OPERATIONS.md "Trade identity").

A real ``claire run --service feed`` reads the local MEXC WebSocket server (the test exchange)
and appends to a real ledger. The oracle counts ``market.trade`` events in the ledger against
what the exchange really sent: identical deals in different batches or across a reconnect are
distinct trades (each stored); the same stream played again after a restart, however batched,
adds nothing; a further identical deal after that replay is new.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from adapters.mexc.local_server import LocalMexcServer
from tests.blackbox_attack.ops.ops_helpers import Service, example_env, free_port, wait_for

SYMBOL = "BTC_USDT"


def deal(t: int, *, price: float = 65000.5, v: int = 7, side: int = 1) -> dict[str, Any]:
    return {"p": price, "v": v, "T": side, "O": 1, "M": 2, "t": t}


def push(*deals: dict[str, Any]) -> dict[str, Any]:
    return {
        "channel": "push.deal",
        "symbol": SYMBOL,
        "data": list(deals),
        "ts": max(d["t"] for d in deals),
    }


class Feed:
    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env, self.workdir, self.runs = env, workdir, 0
        self.service: Service | None = None

    def start(self) -> None:
        self.runs += 1
        self.service = Service(
            ["run", "--service", "feed"], self.env, self.workdir, f"feed{self.runs}"
        )

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()


@pytest.fixture
async def rig(
    fresh_database_url: Callable[..., Awaitable[str]], redis_url: str
) -> AsyncIterator[tuple[LocalMexcServer, Feed, str]]:
    database = await fresh_database_url(migrate=True)
    workdir = Path(tempfile.mkdtemp(prefix="a20feed-"))
    async with LocalMexcServer(symbols={SYMBOL}, autoplay=False, compression="text") as server:
        env = {
            **example_env(),
            "DATABASE_URL": database,
            "REDIS_URL": redis_url,
            "CLAIRE_BUS_NAMESPACE": f"a20f{secrets.token_hex(4)}",
            "METRICS_PORT": str(free_port()),
            "MEXC_WS_URL": server.url,
            "MEXC_REST_URL": "http://127.0.0.1:9",
            "SYMBOLS": SYMBOL,
        }
        feed = Feed(env, workdir)
        try:
            yield server, feed, database
        finally:
            feed.stop()
            shutil.rmtree(workdir, ignore_errors=True)


async def trades(database: str) -> int:
    connection = await asyncpg.connect(database)
    try:
        return int(
            await connection.fetchval(
                "SELECT count(*) FROM ledger.events WHERE event_type = 'market.trade'"
            )
        )
    finally:
        await connection.close()


async def subscribed(server: LocalMexcServer, feed: Feed) -> None:
    async def probe() -> bool:
        assert feed.service is not None and feed.service.alive(), (
            feed.service and feed.service.output[-2000:]
        )
        return server.subscribers("deal", SYMBOL) > 0

    await wait_for(probe, "the feed to subscribe to deals", patience=40)


async def unsubscribed(server: LocalMexcServer) -> None:
    async def probe() -> bool:
        return server.subscribers("deal", SYMBOL) == 0

    await wait_for(probe, "the old connection to be gone", patience=20)


async def stored(database: str, count: int, feed: Feed) -> None:
    async def probe() -> bool:
        return await trades(database) >= count

    try:
        await wait_for(probe, f"{count} trades in the ledger", patience=20)
    except AssertionError as error:
        have = await trades(database)
        output = feed.service.output[-1500:] if feed.service else ""
        raise AssertionError(f"{error} (have {have})\n{output}") from None


async def test_feed_when_identical_deals_cross_batches_reconnects_and_a_restart_then_each_once(
    rig: tuple[LocalMexcServer, Feed, str],
) -> None:
    server, feed, database = rig
    t = int(time.time() * 1000)
    same = deal(t)
    feed.start()
    await subscribed(server, feed)
    # Four real trades with one content: two in one batch, one in the next, one after a reconnect.
    await server.push(push(same, same))
    await stored(database, 2, feed)
    await server.push(push(same))
    await stored(database, 3, feed)
    await server.drop_all()
    await unsubscribed(server)
    await subscribed(server, feed)
    await server.push(push(same))
    await stored(database, 4, feed)
    # A different side is a different trade.
    await server.push(push(deal(t, side=2)))
    await stored(database, 5, feed)
    assert await trades(database) == 5

    # Restart; the exchange plays the same stream again, batched differently: nothing new.
    feed.stop()
    await unsubscribed(server)
    feed.start()
    await subscribed(server, feed)
    await server.push(push(deal(t - 1, price=64999.0)))  # a new trade: the feed is listening
    await stored(database, 6, feed)
    await server.push(push(same))
    await server.push(push(same, same, same, deal(t, side=2)))
    # Then a genuinely new identical deal (the fifth of its kind): stored.
    await server.push(push(same))
    await server.push(push(deal(t + 1, price=65001.0)))  # a marker after everything
    await stored(database, 8, feed)
    assert await trades(database) == 8
