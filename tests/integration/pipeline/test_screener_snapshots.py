"""Snapshots of the screener's fold (docs/SNAPSHOTS.md), on real ledgers: an ingest restarted from
a snapshot reads only the ``screener`` stream's tail and appends byte-identically what an ingest
that never restarted appends; a snapshot failing its checks is skipped with a WARNING."""

from __future__ import annotations

import logging
import random
from decimal import Decimal

import pytest

from aggregates import events as ev
from aggregates.screener import ScreenerConfig
from aggregates.snapshot import CODECS
from eventstore import EventStore
from eventstore.snapshots import Snapshots, snapshot_of
from pipeline.ingest import MarketIngest

pytestmark = pytest.mark.db

CONFIG = ScreenerConfig(top_n=2, min_volume_24h=Decimal(1000))
SYMBOLS = ("A_USDT", "B_USDT", "C_USDT", "D_USDT")
DAY_MS = 86_400_000
START_MS = 1_748_822_400_000 - 20 * 60_000  # 20 minutes before a UTC midnight


def _batches(seed: int, count: int = 16) -> list[list[ev.Event]]:
    """Market batches, one a minute: trades and a ``push.tickers`` snapshot whose movers change."""
    rng = random.Random(seed)
    batches = []
    for minute in range(count):
        at_ms = START_MS + 60_000 * minute
        trades = [
            ev.TradeTicked(
                at_ms=at_ms + i,
                symbol=rng.choice(SYMBOLS),
                price=Decimal(rng.randint(90, 110)),
                contracts=Decimal(rng.randint(1, 9)),
                taker_side=rng.choice(["buy", "sell"]),
                position_effect="open",
            )
            for i in range(rng.randint(1, 4))
        ]
        quotes = tuple(
            ev.TickerQuote(
                symbol=symbol,
                last_price=Decimal(100),
                rise_fall_rate=Decimal(rng.randint(-90, 90)) / 1000,
                volume_24h=Decimal(5000),
            )
            for symbol in SYMBOLS
        )
        batches.append([*trades, ev.TickersSnapshotted(at_ms=at_ms + 500, quotes=quotes)])
    return batches


def _ingest(store: EventStore, *, snapshots: bool, every: int = 5) -> MarketIngest:
    return MarketIngest(
        store,
        screener=CONFIG,
        snapshot_every_ms=60_000,
        snapshots=Snapshots(store) if snapshots else None,
        state_snapshot_every=every if snapshots else 0,
    )


async def _screener_stream(store: EventStore) -> list[tuple[object, ...]]:
    return [
        (r.stream_version, r.event_id, r.event_type, ev.encode(r.event))
        async for r in store.read_stream("screener")
    ]


async def _feed(ingest: MarketIngest, batches: list[list[ev.Event]]) -> None:
    for batch in batches:
        await ingest(batch)


@pytest.mark.parametrize(("seed", "cut"), [(1, 4), (2, 9), (3, 12)])
async def test_ingest_when_restarted_from_a_screener_snapshot_then_appends_as_without_restart(
    fresh_database_url, seed: int, cut: int
) -> None:
    batches = _batches(seed)
    reference = await EventStore.connect(await fresh_database_url())
    store = await EventStore.connect(await fresh_database_url())
    try:
        await _feed(_ingest(reference, snapshots=False), batches)
        await _feed(_ingest(store, snapshots=True), batches[:cut])
        snapshot = await Snapshots(store).latest_usable("screener")
        assert snapshot is not None
        between = _ingest(store, snapshots=False)  # a tail after the snapshot
        await between.restore()
        await _feed(between, batches[cut : cut + 3])
        from_start = _ingest(store, snapshots=False)
        restarted = _ingest(store, snapshots=True, every=10**9)
        assert await restarted.restore() == await from_start.restore()
        assert restarted.restored_from_snapshot == snapshot.snapshot.position
        assert restarted._log.version > snapshot.state.version  # it folded the stream's tail
        assert CODECS["screener"].encode(restarted._log) == CODECS["screener"].encode(
            from_start._log
        )
        await _feed(restarted, batches[cut + 3 :])
        assert await _screener_stream(store) == await _screener_stream(reference)
        assert any(r[2] == "market.movers_selected" for r in await _screener_stream(store))
    finally:
        await reference.close()
        await store.close()


async def test_ingest_when_a_utc_day_begins_then_takes_a_screener_snapshot(
    fresh_database_url,
) -> None:
    store = await EventStore.connect(await fresh_database_url())
    try:
        ingest = _ingest(store, snapshots=True, every=10**9)  # only the day boundary triggers
        await _feed(ingest, _batches(4, count=22))
        [snapshot] = await Snapshots(store).candidates("screener")
        midnight = START_MS + 20 * 60_000
        first_of_day = min(
            [r.position async for r in store.read_all() if r.event.at_ms >= midnight]
        )
        assert first_of_day <= snapshot.position
    finally:
        await store.close()


async def test_restore_when_newest_screener_snapshot_fails_a_check_then_older_used_with_warning(
    fresh_database_url, caplog
) -> None:
    store = await EventStore.connect(await fresh_database_url())
    try:
        batches = _batches(5)
        await _feed(_ingest(store, snapshots=True), batches[:12])
        snaps = Snapshots(store)
        good = await snaps.latest_usable("screener")
        assert good is not None
        await _feed(_ingest(store, snapshots=False), batches[12:])  # newer ones: only bad
        head, head_hash = await store.head()
        data = CODECS["screener"].encode(good.state)
        config = await snaps.config_hash_at(head)
        await snaps.save(snapshot_of("screener", data, head, head_hash, "f" * 64))  # config
        other = CODECS["paper"].encode(CODECS["paper"].state_type())  # another machine's bytes
        await snaps.save(
            snapshot_of("screener", other, head - 1, await snaps.chain_hash_at(head - 1), config)
        )
        from_start = _ingest(store, snapshots=False)
        restarted = _ingest(store, snapshots=True)
        with caplog.at_level(logging.WARNING):
            assert await restarted.restore() == await from_start.restore()
        assert restarted.restored_from_snapshot == good.snapshot.position
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any(f"position {head} skipped: configuration" in w for w in warnings), warnings
        assert any(f"position {head - 1} skipped" in w for w in warnings), warnings
        assert CODECS["screener"].encode(restarted._log) == CODECS["screener"].encode(
            from_start._log
        )
    finally:
        await store.close()
