"""The real MEXC feed client against the local server speaking MEXC's protocol over real sockets."""

from __future__ import annotations

import asyncio
import gzip
import json
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import pytest
from websockets.asyncio.client import connect

from adapters.mexc.feed import FeedConfig, FeedState, MexcFeed
from adapters.mexc.local_server import Faults, LocalMexcServer
from adapters.mexc.protocol import ProtocolLimits
from adapters.mexc.tape import DEMO_TAPE, read_tape
from aggregates.events import CandleClosed, Event, TickersSnapshotted, TradeTicked

TS = 1755487578276
SYMBOLS = {"BTC_USDT", "ETH_USDT", "SOL_USDT"}


async def eventually(predicate: Callable[[], bool], within: float = 15.0) -> None:
    """Wait for a condition (a generous bound, never a timing assertion)."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - polling a plain condition is the point
            await asyncio.sleep(0.01)


def deal(symbol: str = "BTC_USDT", *, many: int = 0, t: int = TS) -> dict:
    one = {"p": 100.5, "v": 3, "T": 1, "O": 1, "M": 2, "t": t}
    data = [dict(one, t=t + i) for i in range(many)] if many else one
    return {"channel": "push.deal", "symbol": symbol, "data": data, "ts": t + max(many - 1, 0)}


@dataclass
class Harness:
    server: LocalMexcServer
    events: list[Event] = field(default_factory=list)
    batches: list[int] = field(default_factory=list)
    malformed: Counter[str] = field(default_factory=Counter)
    sub_errors: list[tuple[str | None, str]] = field(default_factory=list)
    states: list[FeedState] = field(default_factory=list)

    async def sink(self, batch: Sequence[Event]) -> None:
        self.batches.append(len(batch))
        self.events.extend(batch)

    def feed(
        self, symbols: set[str] = SYMBOLS, sink: Callable | None = None, **config: object
    ) -> MexcFeed:
        settings = {
            "url": self.server.url,
            "ping_interval": 0.2,
            "pong_timeout": 1.0,
            "backoff_initial": 0.01,
            "backoff_max": 0.1,
        } | config
        return MexcFeed(
            sink or self.sink,
            symbols=symbols,
            config=FeedConfig(**settings),  # type: ignore[arg-type]
            rng=random.Random(7),
            on_malformed=lambda reason: self.malformed.update([reason]),
            on_subscription_error=lambda symbol, message: self.sub_errors.append((symbol, message)),
            on_state=self.states.append,
        )

    def trades(self) -> list[TradeTicked]:
        return [e for e in self.events if isinstance(e, TradeTicked)]


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    async with LocalMexcServer(symbols=SYMBOLS | {"DOGE_USDT"}, ping_timeout=60) as server:
        yield Harness(server)


async def live(feed: MexcFeed, server: LocalMexcServer, deals: int = 3) -> None:
    await eventually(lambda: feed.subscriptions and set(feed.subscriptions.values()) == {"active"})
    await eventually(lambda: server.subscribers("deal", "BTC_USDT") == 1)
    assert len([s for s in feed.subscriptions if server.subscribers("deal", s)]) == deals


async def test_feed_when_connected_then_subscribes_and_server_acks_each_topic(
    harness: Harness,
) -> None:
    async with harness.feed(kline_interval="Min1") as feed:
        await live(feed, harness.server)
        assert feed.state is FeedState.LIVE
        assert harness.server.subscribers("tickers") == 1
        assert harness.server.subscriptions() == [
            {("tickers", None)} | {("deal", s) for s in SYMBOLS} | {("kline", s) for s in SYMBOLS}
        ]
    assert feed.state is FeedState.STOPPED
    assert harness.states[:2] == [FeedState.CONNECTING, FeedState.LIVE]


async def test_deal_push_when_object_or_list_then_one_tick_per_trade(harness: Harness) -> None:
    async with harness.feed() as feed:
        await live(feed, harness.server)
        await harness.server.push(deal())
        await harness.server.push(deal("ETH_USDT", many=4))
        await eventually(lambda: len(harness.trades()) == 5)
    assert Counter(t.symbol for t in harness.trades()) == {"BTC_USDT": 1, "ETH_USDT": 4}


async def test_push_when_server_sends_gzip_binary_frames_then_parsed_like_text(
    harness: Harness,
) -> None:
    harness.server.compression = "gzip"
    async with harness.feed() as feed:
        await live(feed, harness.server)
        await harness.server.push(deal(many=2))
        await harness.server.push(json.dumps(deal("SOL_USDT")), binary=False)
        await eventually(lambda: len(harness.trades()) == 3)
    assert not harness.malformed


async def test_feed_when_tape_has_tickers_and_klines_then_snapshots_and_closed_bars_arrive() -> (
    None
):
    entries = read_tape(DEMO_TAPE)[:800]
    async with LocalMexcServer(tape=entries, speed=None) as server:
        harness = Harness(server)
        async with harness.feed(symbols={"BTC_USDT"}, kline_interval="Min1"):
            await eventually(server.played.is_set)
            await eventually(lambda: any(isinstance(e, CandleClosed) for e in harness.events))
            await asyncio.sleep(0)
    kinds = Counter(type(e).__name__ for e in harness.events)
    assert kinds["TickersSnapshotted"] > 50 and kinds["TradeTicked"] > 100
    assert {e.symbol for e in harness.trades()} == {"BTC_USDT"}
    assert all(isinstance(e, TickersSnapshotted) or e.symbol == "BTC_USDT" for e in harness.events)


async def test_keepalive_when_connected_then_pings_are_answered_with_pongs(
    harness: Harness,
) -> None:
    async with harness.feed() as feed:
        await eventually(lambda: feed.stats.pongs >= 3)
        assert harness.server.stats.pings >= 3
        assert feed.stats.reconnects == 0


async def test_server_when_client_never_pings_then_drops_it() -> None:
    async with LocalMexcServer(symbols=SYMBOLS, ping_timeout=0.3) as server:  # noqa: SIM117
        async with connect(server.url) as ws:
            await ws.send(json.dumps({"method": "sub.tickers", "param": {}}))
            assert json.loads(await ws.recv())["channel"] == "rs.sub.tickers"
            await eventually(lambda: server.stats.dropped_for_silence == 1)
            await ws.wait_closed()
            assert ws.close_code == 1000


async def test_server_when_pinged_then_answers_pong_with_milliseconds(harness: Harness) -> None:
    async with connect(harness.server.url) as ws:
        await ws.send('{"method":"ping"}')
        pong = json.loads(await ws.recv())
    assert pong["channel"] == "pong" and isinstance(pong["data"], int)


async def test_feed_when_disconnect_storm_then_reconnects_and_resubscribes(
    harness: Harness,
) -> None:
    harness.server.faults = Faults(disconnect_after=2, disconnects=5)
    async with harness.feed() as feed:
        for n in range(60):
            await eventually(lambda: harness.server.subscribers("deal", "BTC_USDT") == 1)
            await harness.server.push(deal(t=TS + n))
            if harness.server.stats.disconnects_injected == 5 and len(harness.trades()) >= 12:
                break
        await live(feed, harness.server)
        assert feed.stats.reconnects >= 5 and feed.stats.connects >= 6
        assert harness.server.stats.connections == feed.stats.connects
        # each connection subscribed once to everything: resubscription is idempotent
        assert harness.server.stats.subscribe_requests == 4 * feed.stats.connects
    assert FeedState.BACKOFF in harness.states


async def test_feed_when_server_stalls_without_closing_then_pong_timeout_reconnects(
    harness: Harness,
) -> None:
    async with harness.feed(pong_timeout=0.3) as feed:
        await live(feed, harness.server)
        harness.server.faults.stall = True
        await eventually(lambda: feed.stats.reconnects >= 1)
        assert "no pong" in feed.stats.last_disconnect_reason
        harness.server.faults.stall = False
        await live(feed, harness.server)
        await harness.server.push(deal())
        await eventually(lambda: len(harness.trades()) == 1)


async def test_feed_when_pings_go_unanswered_then_connection_is_declared_dead(
    harness: Harness,
) -> None:
    harness.server.faults.answer_pings = False
    async with harness.feed(pong_timeout=0.3) as feed:
        await eventually(lambda: feed.stats.reconnects >= 2)
        assert feed.stats.pongs == 0
        harness.server.faults.answer_pings = True
        await eventually(lambda: feed.stats.pongs >= 1)


async def test_subscribe_when_symbol_unknown_then_rs_error_reported_and_others_flow(
    harness: Harness,
) -> None:
    harness.server.faults.refuse_symbols = {"ETH_USDT"}
    async with harness.feed(symbols={"BTC_USDT", "ETH_USDT", "NOPE_USDT"}) as feed:
        await eventually(lambda: len(harness.sub_errors) == 2)
        await eventually(lambda: "pending" not in feed.subscriptions.values())
        assert feed.subscriptions == {
            "BTC_USDT": "active",
            "ETH_USDT": "failed",
            "NOPE_USDT": "failed",
        }
        assert {symbol for symbol, _ in harness.sub_errors} == {"ETH_USDT", "NOPE_USDT"}
        assert feed.state is FeedState.LIVE
        await harness.server.push(deal())
        await eventually(lambda: len(harness.trades()) == 1)


async def test_feed_when_malformed_frames_arrive_then_counted_skipped_and_feed_goes_on(
    harness: Harness,
) -> None:
    bad_frames: list[str | bytes] = [
        "not json",
        '{"channel":"push.deal","symbol":"BTC_USDT","data":{"p":"NaN","v":1,"T":1,"O":1,"t":1},"ts":1}',
        json.dumps(deal() | {"data": {"p": -5, "v": 1, "T": 1, "O": 1, "t": TS}}),
        json.dumps({"channel": "push.unheard", "data": 1, "ts": TS}),
        gzip.compress(b"{broken"),
        b"\x1f\x8b\x08garbage",
        json.dumps(deal(t=TS) | {"ts": TS + 86_400_000}),
        "x" * 3000,
    ]
    async with harness.feed(limits=ProtocolLimits(max_frame_bytes=2048)) as feed:
        await live(feed, harness.server)
        for frame in bad_frames:
            await harness.server.push(frame)
        await harness.server.push(deal())
        await eventually(lambda: len(harness.trades()) == 1)
        assert feed.stats.reconnects == 0
    assert harness.malformed == {
        "bad_json": 2,
        "non_finite": 1,
        "non_positive": 1,
        "unknown_channel": 1,
        "bad_gzip": 1,
        "timestamp_past": 1,
        "oversized": 1,
    }


async def test_feed_when_server_injects_malformed_every_nth_push_then_only_good_ticks_pass(
    harness: Harness,
) -> None:
    harness.server.faults.malformed_every = 3
    async with harness.feed() as feed:
        await live(feed, harness.server)
        for n in range(9):
            await harness.server.push(deal(t=TS + n))
        await eventually(lambda: len(harness.trades()) == 9)
        await eventually(lambda: sum(harness.malformed.values()) == 3)
    assert set(harness.malformed) == {"bad_shape"}


async def test_set_symbols_when_changed_then_unsubscribes_gone_and_subscribes_new(
    harness: Harness,
) -> None:
    async with harness.feed(symbols={"BTC_USDT", "ETH_USDT"}) as feed:
        await live(feed, harness.server, deals=2)
        feed.set_symbols({"ETH_USDT", "DOGE_USDT"})
        await eventually(lambda: harness.server.subscribers("deal", "DOGE_USDT") == 1)
        await eventually(lambda: harness.server.subscribers("deal", "BTC_USDT") == 0)
        assert set(feed.subscriptions) == {"ETH_USDT", "DOGE_USDT"}
        await harness.server.push(deal("DOGE_USDT"))
        await eventually(lambda: len(harness.trades()) == 1)
        feed.set_symbols({"ETH_USDT", "DOGE_USDT"})  # no change: nothing is sent again
        await harness.server.push(deal("ETH_USDT"))
        await eventually(lambda: len(harness.trades()) == 2)
        assert harness.server.stats.subscribe_requests == 4
        assert feed.symbols == {"ETH_USDT", "DOGE_USDT"}


async def test_feed_when_deal_for_a_symbol_never_requested_then_counted_not_delivered(
    harness: Harness,
) -> None:
    async with harness.feed(symbols={"BTC_USDT"}) as feed:
        await live(feed, harness.server, deals=1)
        await harness.server.push(deal("SOL_USDT"), everyone=True)  # pushed unasked
        await harness.server.push(deal())
        await eventually(lambda: len(harness.trades()) == 1)
    assert harness.malformed == {"unexpected_symbol": 1}
    assert {t.symbol for t in harness.trades()} == {"BTC_USDT"}


async def test_feed_when_sink_raises_then_feed_keeps_running(harness: Harness) -> None:
    calls: list[int] = []

    async def flaky(batch: Sequence[Event]) -> None:
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("ledger hiccup")
        await harness.sink(batch)

    async with harness.feed(sink=flaky) as feed:
        await live(feed, harness.server)
        await harness.server.push(deal())
        await eventually(lambda: len(calls) == 1)
        await harness.server.push(deal())
        await eventually(lambda: len(harness.trades()) == 1)
    assert feed.stats.sink_errors == 1


async def test_feed_when_sink_is_a_queue_then_batches_are_put_on_it(harness: Harness) -> None:
    queue: asyncio.Queue[list[Event]] = asyncio.Queue()
    feed = MexcFeed(queue, symbols={"BTC_USDT"}, config=FeedConfig(url=harness.server.url))
    async with feed:
        await live(feed, harness.server, deals=1)
        await harness.server.push(deal(many=3))
        batch = await asyncio.wait_for(queue.get(), 15)
    assert len(batch) == 3


async def test_feed_when_server_unreachable_then_backs_off_and_connects_once_it_is_up() -> None:
    server = LocalMexcServer(symbols=SYMBOLS)
    await server.start()
    url = server.url
    await server.stop()
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    harness = Harness(LocalMexcServer(symbols=SYMBOLS, port=port))
    feed = MexcFeed(
        harness.sink,
        symbols={"BTC_USDT"},
        config=FeedConfig(url=url, backoff_initial=0.01, backoff_max=0.05, ping_interval=0.2),
        rng=random.Random(3),
    )
    async with feed:
        await eventually(lambda: feed.stats.reconnects >= 3)
        assert feed.state in (FeedState.BACKOFF, FeedState.CONNECTING)
        async with harness.server:
            await eventually(lambda: feed.connected)
            await live(feed, harness.server, deals=1)


async def test_server_when_autoplay_after_two_subscriptions_then_one_does_not_start_it() -> None:
    entries = read_tape(DEMO_TAPE)[:50]
    async with LocalMexcServer(tape=entries, speed=None, autoplay_after=2) as server:  # noqa: SIM117
        async with connect(server.url, max_queue=None) as ws:  # we read only one push
            await ws.send(json.dumps({"method": "sub.tickers", "param": {}, "gzip": False}))
            assert json.loads(await ws.recv())["channel"] == "rs.sub.tickers"
            assert server.stats.tape_position == 0
            await ws.send(json.dumps({"method": "sub.deal", "param": {"symbol": "BTC_USDT"}}))
            assert json.loads(await ws.recv())["channel"] == "rs.sub.deal"
            await eventually(server.played.is_set)
            first_push = await ws.recv()
    assert isinstance(first_push, bytes | str)
    assert server.stats.tape_position == 50


async def test_feed_when_url_has_credentials_then_logs_never_show_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    feed = MexcFeed(
        lambda batch: asyncio.sleep(0),
        config=FeedConfig(url="ws://user:s3cret@127.0.0.1:9/edge?key=t0ken", backoff_initial=0.01),
    )
    async with feed:
        await eventually(lambda: feed.stats.reconnects >= 1)
    assert "127.0.0.1:9/edge" in caplog.text
    assert "s3cret" not in caplog.text and "t0ken" not in caplog.text


async def test_feed_when_sink_is_slow_then_batches_grow_bounded_and_nothing_is_lost(
    harness: Harness,
) -> None:
    gate = asyncio.Event()

    async def slow(batch: Sequence[Event]) -> None:
        await gate.wait()
        await harness.sink(batch)

    async with harness.feed(sink=slow, max_batch=7, max_pending=20) as feed:
        await live(feed, harness.server)
        for n in range(60):
            await harness.server.push(deal(t=TS + n))
            if n == 40:
                gate.set()
        await eventually(lambda: len(harness.trades()) == 60)
    assert max(harness.batches) <= 7
    assert [t.at_ms for t in harness.trades()] == [TS + n for n in range(60)]


async def test_feed_when_stopped_with_events_buffered_then_sink_gets_them_all(
    harness: Harness,
) -> None:
    gate = asyncio.Event()

    async def held(batch: Sequence[Event]) -> None:
        await gate.wait()
        await harness.sink(batch)

    feed = harness.feed(sink=held)
    await feed.__aenter__()
    await live(feed, harness.server)
    for n in range(5):
        await harness.server.push(deal(t=TS + n))
    await eventually(lambda: feed.stats.events == 5)
    stopping = asyncio.create_task(feed.stop())
    await eventually(lambda: feed.state is FeedState.STOPPED)
    assert harness.trades() == []  # the sink is still busy with the first batch
    gate.set()
    await stopping
    assert len(harness.trades()) == 5
