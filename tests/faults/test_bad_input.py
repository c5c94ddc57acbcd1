"""Fuzzed frames on a live WebSocket: counted and skipped, never fatal, never in the ledger.

Hypothesis builds arbitrary bytes, text and MEXC-shaped JSON (wrong types, NaN and infinity,
negative, zero and huge numbers, unknown symbols and channels, timestamps far off); the local
server pushes each one to a running feed whose sink is the real ingest into a real ledger. After
each frame a valid sentinel trade proves the feed is alive and has handled what came before.
At the end every stored row is decoded again with the strict event types.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from adapters.metrics import Metrics
from adapters.mexc.feed import FeedConfig, MexcFeed
from adapters.mexc.local_server import LocalMexcServer
from aggregates import events as ev
from eventstore import EventStore
from eventstore.codec import decode_payload
from pipeline.ingest import MarketIngest
from tests.faults.fault_helpers import connection, wait_for

pytestmark = [pytest.mark.db, pytest.mark.timeout(240)]

BASE_MS = 1_767_225_600_000
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.text(max_size=8),
    st.none(),
    st.booleans(),
)
times = st.one_of(st.integers(min_value=-(2**70), max_value=2**70), st.just(BASE_MS), st.text())
deal = st.fixed_dictionaries(
    {"p": numbers, "v": numbers, "T": st.integers(-1, 3), "O": st.integers(0, 4), "t": times},
    optional={"M": st.integers(0, 3)},
)
pushes = st.builds(
    lambda channel, symbol, data, ts: json.dumps(
        {"channel": channel, "symbol": symbol, "data": data, "ts": ts}
    ),
    st.sampled_from(["push.deal", "push.kline", "push.tickers", "push.what", "rs.error", "pong"]),
    st.sampled_from(["BTC_USDT", "ETH_USDT", "NOPE_USDT", "btc", "", None, 7]),
    st.one_of(deal, st.lists(deal, max_size=3), numbers, st.lists(numbers, max_size=2)),
    times,
)
frames = st.one_of(st.binary(max_size=200), st.text(max_size=200), pushes)


class Harness:
    """A local server pushing into a running feed -> ingest -> ledger."""

    def __init__(self, server: LocalMexcServer, feed: MexcFeed, ingest: MarketIngest) -> None:
        self.server, self.feed, self.ingest = server, feed, ingest
        self.sentinels = 0

    async def push_then_prove_alive(self, frame: str | bytes) -> None:
        await self.server.push(frame, everyone=True)
        self.sentinels += 1
        at = BASE_MS + self.sentinels
        sentinel = {"p": 100000.5, "v": 1, "T": 1, "O": 3, "M": 2, "t": at}
        msg = {"channel": "push.deal", "symbol": "BTC_USDT", "data": [sentinel], "ts": at}
        await self.server.push(msg)
        wanted = self.sentinels

        async def arrived() -> bool:
            return self._sentinels_stored() >= wanted

        await wait_for(arrived, 20, "the sentinel trade in the ledger", interval=0.005)

    def _sentinels_stored(self) -> int:
        return self.ingest.appended - self.extra

    extra = 0
    last_position = 0


@pytest.fixture
async def harness(fresh_database_url):  # type: ignore[no-untyped-def]
    url = await fresh_database_url()
    metrics = Metrics()
    async with (
        await EventStore.connect(url) as store,
        LocalMexcServer(autoplay=False, symbols={"BTC_USDT", "ETH_USDT"}) as server,
    ):
        ingest = MarketIngest(store, screener=None, snapshot_every_ms=60_000)
        feed = MexcFeed(
            ingest,
            symbols=("BTC_USDT",),
            config=FeedConfig(url=server.url, tickers=False, ping_interval=5.0),
            on_malformed=lambda reason: metrics.count_malformed("mexc_ws", reason),
        )
        task = asyncio.create_task(feed.run())

        async def subscribed() -> bool:
            return server.subscribers("deal", "BTC_USDT") == 1

        await wait_for(subscribed, 20, "the feed's subscription")
        yield Harness(server, feed, ingest), url, metrics, task
        assert not task.done(), "the feed died"
        await feed.stop()
        await task


_SIDE = {1: "buy", 2: "sell"}
_EFFECT = {1: "open", 2: "close", 3: "unchanged"}


def _trade_fields(event: ev.TradeTicked) -> tuple[object, ...]:
    return (
        event.symbol,
        event.at_ms,
        event.price,
        event.contracts,
        event.taker_side,
        event.position_effect,
        event.self_trade,
    )


def _encoded_trades(frame: str | bytes) -> list[tuple[object, ...]] | None:
    """The trades a frame encodes, read from MEXC's documented ``push.deal`` (docs/MEXC.md):
    ``p`` price, ``v`` contracts, ``T`` 1 buy / 2 sell, ``O`` 1 open / 2 close / 3 unchanged,
    ``M`` 1 self-trade, ``t`` milliseconds. None: it encodes no valid trade of the feed's."""
    try:
        message = json.loads(frame)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(message, dict) or message.get("channel") != "push.deal":
        return None
    if message.get("symbol") != "BTC_USDT":
        return None
    data = message.get("data")
    deals = data if isinstance(data, list) else [data]
    trades = []
    for deal in deals:
        try:
            assert isinstance(deal, dict)
            price, contracts = Decimal(str(deal["p"])), Decimal(str(deal["v"]))
            assert not isinstance(deal["p"], bool) and not isinstance(deal["v"], bool)
            assert isinstance(deal["t"], int) and not isinstance(deal["t"], bool)
            trades.append(
                (
                    "BTC_USDT",
                    deal["t"],
                    price,
                    contracts,
                    _SIDE[deal["T"]],
                    _EFFECT[deal["O"]],
                    deal.get("M") == 1,
                )
            )
        except (AssertionError, KeyError, ArithmeticError, ValueError, TypeError):
            return None
    return trades or None


async def _rows_after(url: str, position: int) -> list[tuple[int, ev.Event]]:
    async with connection(url) as conn:
        rows = await conn.fetch(
            "SELECT position, event_type, schema_version, payload::text FROM ledger.events"
            " WHERE position > $1 ORDER BY position",
            position,
        )
    return [(row[0], decode_payload(row[0], row[1], row[2], row[3])) for row in rows]


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@example(  # a valid frame, so the "stored exactly as it encodes" branch always runs
    frame=json.dumps(
        {
            "channel": "push.deal",
            "symbol": "BTC_USDT",
            "data": [
                {"p": 99.5, "v": 7, "T": 2, "O": 1, "M": 1, "t": BASE_MS - 5},
                {"p": 99.25, "v": 2, "T": 1, "O": 2, "M": 2, "t": BASE_MS - 6},
            ],
            "ts": BASE_MS - 5,
        }
    )
)
@given(frame=frames)
async def test_fuzzed_frames_when_pushed_into_a_live_feed_then_nothing_malformed_is_stored(
    harness, frame: str | bytes
) -> None:
    bench, url, _, task = harness
    before = bench.ingest.appended
    last = bench.last_position
    await bench.push_then_prove_alive(frame)
    # a frame that happened to be valid is stored like any trade: account for it
    bench.extra += bench.ingest.appended - before - 1
    assert not task.done()
    # What the ledger holds now: the sentinel, plus nothing (the frame refused) or exactly the
    # trades the frame validly encodes, as MEXC's documentation reads them.
    new = await _rows_after(url, last)
    bench.last_position = new[-1][0] if new else last
    stored = [_trade_fields(event) for _, event in new if isinstance(event, ev.TradeTicked)]
    assert len(stored) == len(new), "only trades may come from the market feed"
    at = BASE_MS + bench.sentinels
    sentinel = ("BTC_USDT", at, Decimal("100000.5"), Decimal(1), "buy", "unchanged", False)
    assert sentinel in stored, "the sentinel is missing"
    stored.remove(sentinel)
    if stored:
        expected = _encoded_trades(frame)
        assert expected is not None, f"stored {stored} from a frame encoding no valid trade"
        assert Counter(stored) == Counter(expected)


async def test_malformed_frames_when_counted_then_metrics_agree_and_every_row_decodes_strictly(
    harness,
) -> None:
    bench, url, metrics, task = harness
    bad = [
        b"\x1f\x8b not gzip at all",
        "x" * (2 << 20),  # beyond the protocol's frame limit
        '{"channel":"push.deal","symbol":"BTC_USDT","data":[{"p":NaN,"v":1,"T":1,"O":3,"t":1}]}',
        '{"channel":"push.deal","symbol":"BTC_USDT","data":[{"p":-5,"v":1,"T":1,"O":3,"t":1}],'
        '"ts":1}',
        '{"channel":"push.deal","symbol":"BTC_USDT","data":[{"p":1e400,"v":1,"T":1,"O":3,'
        '"t":1}],"ts":1}',
        '{"channel":"push.deal","symbol":"BTC_USDT","data":[{"p":5,"v":1,"T":1,"O":3,'
        '"t":99999999999999}],"ts":1767225600000}',
        '{"channel":"push.deal","symbol":"DOGE_USDT","data":[{"p":5,"v":1,"T":1,"O":3,"t":1}],'
        '"ts":1}',
    ]
    malformed = bench.feed.stats.malformed
    for frame in bad:
        await bench.push_then_prove_alive(frame)
    assert bench.feed.stats.malformed - malformed >= len(bad)
    assert not task.done()
    text = metrics.render().decode()
    counted = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("claire_malformed_messages_total{")
    )
    assert counted == bench.feed.stats.malformed
    async with connection(url) as conn:
        rows = await conn.fetch(
            "SELECT position, event_type, schema_version, payload::text FROM ledger.events"
        )
    assert len(rows) == bench.ingest.appended
    for position, event_type, schema, payload in rows:
        event = decode_payload(position, event_type, schema, payload)
        assert isinstance(event, ev.TradeTicked) and event.symbol == "BTC_USDT"
        assert event.price.is_finite() and event.price > Decimal(0) and event.contracts > 0
