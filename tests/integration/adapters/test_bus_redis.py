"""The Redis bus against a real Redis: ordering, bad payloads, namespaces, lost connections."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis

from adapters.bus import BusUnavailable, RedisBus, Subscription, encode_recorded
from adapters.embedded import start_redis
from aggregates import events as ev

pytestmark = [pytest.mark.redis]

D = Decimal
#: Only a guard against a hung test; no assertion depends on it.
GUARD_S = 60


def trade(at_ms: int) -> ev.TradeTicked:
    return ev.TradeTicked(
        at_ms=at_ms,
        symbol="BTC_USDT",
        price=D("65000") + at_ms,
        contracts=D("1"),
        taker_side="sell",
        position_effect="open",
    )


def alert(at_ms: int) -> ev.AlertRaised:
    return ev.AlertRaised(at_ms=at_ms, severity="WARNING", code="test.alert", message="hello")


async def take(subscription: Subscription, count: int) -> list:
    async def collect() -> list:
        return [await anext(subscription) for _ in range(count)]

    return await asyncio.wait_for(collect(), GUARD_S)


@pytest.fixture
async def bus(redis_url: str, redis_namespace: str) -> AsyncIterator[RedisBus]:
    async with await RedisBus.connect(redis_url, redis_namespace) as connected:
        yield connected


async def test_publish_when_subscribed_then_events_arrive_in_order_on_their_topics(
    make_recorded,
    bus: RedisBus,
) -> None:
    recorded = [
        make_recorded(trade(1), 1),
        make_recorded(alert(2), 2),
        make_recorded(trade(3), 3),
        make_recorded(alert(4), 4),
        make_recorded(trade(5), 5),
    ]
    async with (
        await bus.subscribe(["market_data", "alerts"]) as both,
        await bus.subscribe(["alerts"]) as alerts_only,
    ):
        assert await bus.publish(recorded) == 5
        assert await take(both, 5) == recorded
        assert [r.position for r in await take(alerts_only, 2)] == [2, 4]


async def test_subscribe_when_malformed_payloads_then_counted_skipped_and_stream_goes_on(
    make_recorded, redis_url: str, redis_namespace: str
) -> None:
    seen: list[tuple[str, str]] = []
    good = make_recorded(trade(7), 7)
    wrong_topic = make_recorded(alert(6), 6)
    async with (
        await RedisBus.connect(
            redis_url, redis_namespace, on_malformed=lambda s, r: seen.append((s, r))
        ) as bus,
        await bus.subscribe(["market_data"]) as subscription,
    ):
        raw = aioredis.from_url(redis_url)
        try:
            channel = bus.channel("market_data")
            await raw.publish(channel, b"\xff not json")
            await raw.publish(channel, b'{"position": "one"}')
            # An alert is a valid event, but not on market_data: refused, not smuggled in.
            await raw.publish(channel, encode_recorded(wrong_topic))
        finally:
            await raw.aclose()
        await bus.publish([good])
        assert await take(subscription, 1) == [good]
        assert subscription.malformed == 3
        assert seen == [
            ("market_data", "json"),
            ("market_data", "schema"),
            ("market_data", "wrong_topic"),
        ]


async def test_publish_when_other_namespace_then_its_subscribers_see_nothing(
    make_recorded, redis_url: str, redis_namespace: str
) -> None:
    async with (
        await RedisBus.connect(redis_url, f"{redis_namespace}-a") as bus_a,
        await RedisBus.connect(redis_url, f"{redis_namespace}-b") as bus_b,
        await bus_b.subscribe(["market_data"]) as on_b,
    ):
        await bus_a.publish([make_recorded(trade(1), 1)])
        marker = make_recorded(trade(2), 2)
        await bus_b.publish([marker])
        # Redis delivers in publish order: had A's message leaked, it would come first.
        assert await take(on_b, 1) == [marker]


async def test_heartbeat_when_published_then_health_subscribers_get_it(bus: RedisBus) -> None:
    async with await bus.subscribe_health() as health:
        sent = await bus.publish_heartbeat("risk", {"state": "ACTIVE"})
        [received] = await take(health, 1)
    assert received == sent
    assert received.payload == {"state": "ACTIVE"}


async def test_subscribe_when_health_is_asked_as_event_topic_then_refused(bus: RedisBus) -> None:
    with pytest.raises(ValueError, match="not an event topic"):
        await bus.subscribe(["health"])
    with pytest.raises(ValueError, match="unknown topic"):
        bus.channel("nonsense")  # type: ignore[arg-type]


async def test_subscription_when_connection_killed_then_bus_unavailable(
    bus: RedisBus, redis_url: str
) -> None:
    subscription = await bus.subscribe(["orders"])
    admin = aioredis.from_url(redis_url, decode_responses=True)
    try:
        # Kill only our own connection (by its name): others may share this Redis.
        ours = [c for c in await admin.client_list() if c["name"] == subscription.client_name]
        assert len(ours) == 1
        await admin.client_kill_filter(_id=ours[0]["id"])
    finally:
        await admin.aclose()
    with pytest.raises(BusUnavailable):
        await take(subscription, 1)
    await subscription.close()


async def test_subscription_when_redis_stops_then_bus_unavailable_and_reconnect_refused(
    make_recorded,
    tmp_path: Path,
) -> None:
    server = start_redis(tmp_path / "redis")
    try:
        bus = await RedisBus.connect(server.url, "restart")
        subscription = await bus.subscribe(["signals"])
        await bus.publish([make_recorded(alert(1), 1)])
    finally:
        server.stop()
    with pytest.raises(BusUnavailable):
        await take(subscription, 2)
    await subscription.close()
    with pytest.raises(BusUnavailable):
        await bus.publish([make_recorded(alert(2), 2)])
    await bus.close()
    with pytest.raises(BusUnavailable):
        await RedisBus.connect(server.url, "restart")


async def test_subscription_when_redis_goes_silent_then_bus_unavailable_instead_of_hanging(
    redis_url: str, redis_namespace: str
) -> None:
    """A peer that neither answers nor closes (a frozen proxy) is noticed by the liveness ping."""
    frozen = asyncio.Event()
    writers: list[asyncio.StreamWriter] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if frozen.is_set():
                    continue  # swallow: the connection stays open but nothing gets through
                writer.write(data)
                await writer.drain()

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        target = urlsplit(redis_url)
        if target.scheme == "unix":
            server_r, server_w = await asyncio.open_unix_connection(target.path)
        else:
            server_r, server_w = await asyncio.open_connection(target.hostname, target.port or 6379)
        writers.extend((client_w, server_w))
        await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w))

    proxy = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = proxy.sockets[0].getsockname()[1]
    database = urlsplit(redis_url).path.lstrip("/") if not redis_url.startswith("unix") else "0"
    proxied = f"redis://127.0.0.1:{port}/{database or 0}"
    try:
        async with (
            await RedisBus.connect(proxied, redis_namespace, liveness_interval_s=0.2) as bus,
            await bus.subscribe(["orders"]) as subscription,
        ):
            frozen.set()
            with pytest.raises(BusUnavailable, match="sent nothing"):
                await take(subscription, 1)
    finally:
        proxy.close()
        for writer in writers:
            writer.close()
        await proxy.wait_closed()
