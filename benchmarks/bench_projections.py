"""Projection benchmark: rebuild rate into PostgreSQL, and live lag under a steady append load.

    .venv/bin/python benchmarks/bench_projections.py --events 300000 --rate 2000 --seconds 20

Uses ``--server`` (``CLAIRE_TEST_DATABASE_URL``, else the PostgreSQL at 127.0.0.1:5432) to
create a throwaway database, migrates it, appends a generated trading log through the EventStore,
then measures:

* rebuild: ``projections.rebuild`` of every projection from position 0 (events/s), plus what
  reading+decoding the log alone and folding it (with the rows) in memory take, for context;
* lag: a live ``Projector`` while ``--rate`` events/s are appended; per event, the time from
  its append returning to the commit of the flush that projected it (p50/p99/max).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import secrets
import statistics
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal

from aggregates import events as ev
from aggregates.config import parse_config
from aggregates.envelope import NewEvent
from aggregates.streams import stream_for
from eventstore import EventStore
from eventstore.admin import create_database, drop_database
from eventstore.migrations import upgrade_async
from projections import Projector, rebuild, select
from projections.core import Fanout, Runner, at

D = Decimal
START_MS = 1_767_225_600_000
SYMBOLS = ("BTC_USDT", "ETH_USDT", "SOL_USDT")
NS = uuid.UUID("7b1c0000-0000-4000-8000-00000000be00")
CONFIG = {
    "INITIAL_EQUITY_USDT": "10000",
    "MAX_POSITION_PCT": "20",
    "MAX_EXPOSURE_PCT": "30",
    "MAX_DAILY_DRAWDOWN_PCT": "3",
    "STOP_LOSS_PCT": "2",
    "LOOKBACK_MINUTES": "1",
    "SIGNAL_THRESHOLD_PCT": "0.5",
    "SIGNAL_MIN_TRADES": "3",
    "SIGNAL_MIN_CONTRACTS": "5",
    "ABNORMAL_MOVE_PCT": "6",
    "ABNORMAL_WINDOW_SECONDS": "30",
    "ABNORMAL_PAUSE_SECONDS": "60",
    "DATA_SILENCE_SECONDS": "20",
    "EXIT_COOLDOWN_SECONDS": "10",
    "LOSS_STREAK_COUNT": "2",
    "LOSS_STREAK_WINDOW_MINUTES": "10",
    "LOSS_STREAK_PAUSE_MINUTES": "5",
    "MAX_ORDERS_PER_MINUTE": "6",
    "MAX_ORDER_NOTIONAL_USDT": "2500",
    "TAKER_FEE_RATE": "0.0006",
    "MAKER_FEE_RATE": "0.0002",
    "PAPER_SLIPPAGE_BPS": "2",
    "CONTRACT_SPECS": "BTC_USDT:0.0001:1:100000:1:0.1,ETH_USDT:0.01:1:100000:1:0.01,"
    "SOL_USDT:0.1:1:100000:1:0.001",
}


def trading_log(count: int, start: int = 0) -> Iterator[ev.Event]:
    """A deterministic mix like a live session: mostly ticks, a clock, and now and then a
    signal, a verdict, an order with its acceptance and fills, an alert."""
    if start == 0:
        yield parse_config(CONFIG).activated(START_MS)
    prices = {"BTC_USDT": D(50000), "ETH_USDT": D(3000), "SOL_USDT": D(150)}
    side_of = {}
    i = start
    while i < start + count:
        ms = START_MS + i * 50
        symbol = SYMBOLS[i % 3]
        step = D((i * 7919) % 21 - 10) / 10_000
        prices[symbol] = (prices[symbol] * (1 + step)).quantize(D("0.1"))
        price = prices[symbol]
        yield ev.TradeTicked(
            at_ms=ms,
            symbol=symbol,
            price=price,
            contracts=D(1 + i % 9),
            taker_side="buy" if i % 2 else "sell",
            position_effect="open",
        )
        i += 1
        if i % 20 == 0:
            yield ev.ClockTicked(at_ms=ms)
            i += 1
        if i % 50 == 0:
            oid = f"o{i}"
            side = "buy" if (i // 50) % 2 else "sell"
            side_of[oid] = side
            yield ev.SignalGenerated(
                at_ms=ms,
                symbol=symbol,
                direction="long" if side == "buy" else "short",
                strength=D("0.7"),
                momentum=D("0.01"),
                reference_price=price,
                window_start_ms=ms - 60_000,
                trades_in_window=20,
                contracts_in_window=D(100),
            )
            yield ev.RiskVerdictIssued(
                at_ms=ms,
                symbol=symbol,
                decision="approved" if i % 150 else "trimmed",
                layer="none" if i % 150 else "position_size",
                reason="ok" if i % 150 else "max_position_pct",
                intent="entry",
                side=side,
                requested_contracts=D(12),
                approved_contracts=D(10),
            )
            common = {"at_ms": ms, "client_order_id": oid, "symbol": symbol}
            yield ev.OrderRequested(
                **common,
                side=side,
                contracts=D(10),
                order_type="market",
                intent="entry",
                reduce_only=False,
                reference_price=price,
            )
            yield ev.OrderAccepted(**common, exchange_order_id=f"x{i}")
            fill = {
                **common,
                "side": side,
                "price": price,
                "fee": D("0.05"),
                "fee_currency": "USDT",
                "liquidity": "taker",
            }
            yield ev.OrderPartiallyFilled(
                **fill, contracts=D(4), fill_id=f"{oid}a", remaining_contracts=D(6)
            )
            yield ev.OrderFilled(**fill, contracts=D(6), fill_id=f"{oid}b")
            i += 6
        if i % 1000 == 0:
            yield ev.AlertRaised(at_ms=ms, severity="INFO", code="heartbeat", message="still here")
            i += 1


def envelope(event: ev.Event, n: int) -> tuple[str, NewEvent]:
    return stream_for(event), NewEvent(
        event=event, event_id=uuid.uuid5(NS, str(n)), occurred_at=at(event.at_ms)
    )


async def append_all(store: EventStore, events: list[ev.Event], first_id: int) -> None:
    group = 5_000
    for start in range(0, len(events), group):
        chunk = [
            envelope(e, first_id + start + k) for k, e in enumerate(events[start : start + group])
        ]
        await asyncio.gather(*(store.append(stream, [new]) for stream, new in chunk))


async def bench_rebuild(url: str, events: int) -> None:
    store = await EventStore.connect(url)
    log = list(trading_log(events))
    t = time.perf_counter()
    await append_all(store, log, 0)
    print(f"appended {len(log):,} events in {time.perf_counter() - t:.1f} s")
    gc.disable()  # as rebuild() does: these figures are its parts
    try:
        t = time.perf_counter()
        read_count = 0
        async for _ in store.read_all(batch_size=10_000):
            read_count += 1
        read = time.perf_counter() - t
        facts = [f async for f in store.read_all(batch_size=10_000)]
        runners = [Runner(projection, 0) for projection in select()]
        fanout = Fanout(runners)
        t = time.perf_counter()
        for start in range(0, len(facts), 10_000):
            fanout.apply_all(facts[start : start + 10_000])
        for runner in runners:
            for _ in runner.pending.batches():
                pass
        folded = time.perf_counter() - t
    finally:
        gc.enable()
    await store.close()
    del facts, runners, fanout
    print(f"  read+decode through EventStore.read_all: {read_count / read:,.0f} events/s")
    print(f"  in-memory fold + rows of all projections: {read_count / folded:,.0f} events/s")
    runs = []
    for _ in range(2):
        t = time.perf_counter()
        result = await rebuild(url)
        runs.append(time.perf_counter() - t)
    count = result[0].events
    best = min(runs)
    print(
        f"rebuild (all projections, into PostgreSQL): {count:,} events, best {best:.2f} s "
        f"= {count / best:,.0f} events/s (runs: {', '.join(f'{r:.2f}' for r in runs)} s)"
    )
    print(
        f"  of the best run, reading+decoding alone would take {read / best:.0%}, "
        f"folding+rows {folded / best:.0%} (the rest: writing, waiting, overlapped in part)"
    )


async def bench_lag(url: str, rate: int, seconds: float) -> None:
    store = await EventStore.connect(url)
    head, _ = await store.head()
    appended: dict[int, float] = {}
    committed: list[tuple[int, float]] = []
    done = asyncio.Event()
    target = [0]

    def on_commit(position: int) -> None:
        committed.append((position, time.perf_counter()))
        if target[0] and position >= target[0]:
            done.set()

    projector = await Projector.open(url, on_commit=on_commit)
    await projector.catch_up()
    running = asyncio.create_task(projector.follow())
    tick = 0.05
    per_tick = max(1, int(rate * tick))
    source = trading_log(int(rate * seconds) + 1000, start=10_000_000)
    sent = 0
    n = 50_000_000
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        due = began + (sent // per_tick) * tick
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        chunk = [envelope(next(source), n + k) for k in range(per_tick)]
        n += per_tick
        results = await asyncio.gather(*(store.append(s, [new]) for s, new in chunk))
        now = time.perf_counter()
        for positions in results:
            appended[positions[0]] = now
        sent += per_tick
    elapsed = time.perf_counter() - began
    target[0] = max(appended)
    if committed and committed[-1][0] >= target[0]:
        done.set()
    waiting = asyncio.create_task(done.wait())
    await asyncio.wait({waiting, running}, return_when=asyncio.FIRST_COMPLETED)
    if running.done():
        running.result()  # the projector stopped: show why
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    await projector.close()
    await store.close()
    lags = []
    index = 0
    for position in sorted(appended):
        while committed[index][0] < position:
            index += 1
        lags.append(max(0.0, committed[index][1] - appended[position]) * 1000)
    lags.sort()
    p50 = statistics.median(lags)
    p99 = lags[int(len(lags) * 0.99) - 1]
    print(
        f"lag while appending {sent / elapsed:,.0f} events/s for {elapsed:.0f} s "
        f"({len(lags):,} events, {len(committed)} flushes after a {head:,}-event log): "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {lags[-1]:.1f} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--rate", type=int, default=2_000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument(
        "--server",
        default=os.environ.get(
            "CLAIRE_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args()
    name = f"claire_bench_projections_{secrets.token_hex(4)}"
    url = await create_database(args.server, name)
    try:
        await upgrade_async(url)
        await bench_rebuild(url, args.events)
        await bench_lag(url, args.rate, args.seconds)
    finally:
        await drop_database(args.server, name)


if __name__ == "__main__":
    asyncio.run(main())
