"""Pipeline throughput and tick-to-verdict latency, through every service, on real servers.

A local MEXC WebSocket server plays a generated market (several symbols oscillating, so the
momentum rule keeps changing its mind and the risk manager keeps deciding) at a chosen tick rate
into ``run_pipeline`` with all services and paper execution. It reports the ingest rate, whether a
backlog grows, resident memory over time, and latencies: tick committed -> verdict committed (for
verdicts whose chain starts at a tick) and tick committed -> risk manager has processed it.

Run by hand (never in tests):

    .venv/bin/python benchmarks/bench_pipeline.py --rate 2000 --seconds 60
    .venv/bin/python benchmarks/bench_pipeline.py --rate 1000 --seconds 60

Uses a throwaway database on ``--database-url`` (default: the machine's PostgreSQL) and Redis.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import json
import math
import os
import statistics
import time
import uuid
from collections.abc import Sequence

import psutil

from adapters.mexc.feed import FeedConfig
from adapters.mexc.local_server import LocalMexcServer
from adapters.mexc.tape import TapeEntry
from adapters.secrets import Secret
from adapters.settings import RuntimeSettings
from aggregates import events as ev
from aggregates.config import parse_config
from eventstore import EventStore
from eventstore.admin import create_database, drop_database
from eventstore.errors import EventStoreError
from eventstore.migrations import upgrade_async
from pipeline.app import Pipeline, RunOptions, run_pipeline
from pipeline.demo import TapeClock, demo_config

SYMBOLS = ("BTC_USDT", "ETH_USDT", "SOL_USDT", "DOGE_USDT", "XRP_USDT")
BASE = {"BTC_USDT": 100_000.0, "ETH_USDT": 2500.0, "SOL_USDT": 150.0, "DOGE_USDT": 0.2,
        "XRP_USDT": 2.2}  # fmt: skip
START_MS = 1_767_225_600_000
MARKET_TICKS_PER_SECOND = 50  # across all symbols, in market time


def generate(seconds_market: int) -> list[TapeEntry]:
    """Sine-wave markets (period 4 market minutes, phase-shifted per symbol), one trade a frame."""
    entries = []
    step_ms = 1000 // (MARKET_TICKS_PER_SECOND // len(SYMBOLS))
    for t_ms in range(0, seconds_market * 1000, step_ms):
        for index, symbol in enumerate(SYMBOLS):
            phase = 2 * math.pi * (t_ms / 240_000 + index / len(SYMBOLS))
            price = BASE[symbol] * (1 + 0.01 * math.sin(phase))
            at = START_MS + t_ms + index
            deal = {"p": round(price, 5), "v": 10 + index, "T": 1 + (t_ms // step_ms) % 2,
                    "O": 3, "M": 2, "t": at}  # fmt: skip
            msg = {"channel": "push.deal", "symbol": symbol, "data": [deal], "ts": at}
            entries.append(TapeEntry(at_ms=at, msg=json.dumps(msg).encode()))  # type: ignore[arg-type]
    return entries


def config():  # type: ignore[no-untyped-def]
    values = demo_config().parameters()
    values.update(
        {"LOOKBACK_MINUTES": "1", "SIGNAL_THRESHOLD_PCT": "0.2", "SIGNAL_MIN_TRADES": "5",
         "SIGNAL_MIN_CONTRACTS": "10", "EXIT_COOLDOWN_SECONDS": "1", "MAX_ORDERS_PER_MINUTE": "600",
         "MAX_DAILY_DRAWDOWN_PCT": "50", "STOP_LOSS_PCT": "50", "ABNORMAL_MOVE_PCT": "50",
         "MAX_POSITION_PCT": "10", "MAX_EXPOSURE_PCT": "60", "DATA_SILENCE_SECONDS": "30",
         "CONTRACT_SPECS": ",".join(f"{s}:0.01:1:10000000:1:0.00001" for s in SYMBOLS)}
    )  # fmt: skip
    return parse_config(values)


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def run(args: argparse.Namespace) -> None:
    speed = args.rate / MARKET_TICKS_PER_SECOND
    tape = generate(int(args.seconds * speed) + 5)
    name = f"claire_bench_{uuid.uuid4().hex[:8]}"
    database_url = await create_database(args.database_url, name)
    await upgrade_async(database_url)
    process = psutil.Process(os.getpid())
    samples: list[tuple[float, float, int, int, float]] = []
    to_risk = array.array("d")  # seconds, every 7th tick: 8 bytes each, not a dict entry
    try:
        async with LocalMexcServer(tape=tape, speed=speed) as server:
            settings = RuntimeSettings(
                database_url=Secret(database_url),
                redis_url=Secret(args.redis_url) if args.redis_url else None,
                mexc_ws_url=server.url,
                mexc_rest_url="http://127.0.0.1:9",
                metrics_port=0,
                clock_interval_seconds=0.5,
                symbols=SYMBOLS,
                bus_namespace=f"bench-{uuid.uuid4().hex[:8]}",
            )
            started = time.monotonic()

            def on_started(pipeline: Pipeline) -> None:
                asyncio.get_running_loop().create_task(sample(pipeline))

            async def sample(pipeline: Pipeline) -> None:
                risk = pipeline.deciders["risk"]
                original = risk._on_input

                def observe(recorded) -> None:  # type: ignore[no-untyped-def]
                    original(recorded)
                    if isinstance(recorded.event, ev.TradeTicked) and recorded.position % 7 == 0:
                        to_risk.append(time.time() - recorded.recorded_at.timestamp())

                risk._on_input = observe
                while True:
                    await asyncio.sleep(5)
                    try:
                        head = (await pipeline.store.head())[0]
                    except EventStoreError:
                        return  # the run is over: the pipeline closed its store
                    lag = head - min(d.progress.last_position for d in pipeline.deciders.values())
                    appended = pipeline.ingest.appended if pipeline.ingest else 0
                    samples.append(
                        (time.monotonic() - started, process.memory_info().rss / 2**20, lag,
                         appended, process.cpu_percent())
                    )  # fmt: skip
                    if args.verbose:
                        behind = {n: head - d.progress.last_position
                                  for n, d in pipeline.deciders.items()}  # fmt: skip
                        print(f"  head {head}: behind {behind}", flush=True)

            pipeline = await run_pipeline(
                settings,
                config(),
                RunOptions(
                    duration=args.seconds,
                    now_ms=TapeClock(server, START_MS, speed),
                    feed_config=FeedConfig(url=server.url, tickers=False),
                    on_started=on_started,
                    drain_timeout=60,
                ),
            )
        ticks = pipeline.ingest.appended if pipeline.ingest else 0
        verdicts = list(pipeline.instruments.tick_to_verdict)
        print(f"target rate            {args.rate} ticks/s for {args.seconds} s (speed {speed:g}x)")
        print(f"ticks appended         {ticks} ({ticks / args.seconds:,.0f}/s average)")
        print("t(s)   rss(MB)  decider lag(events)  ticks appended  cpu(% of a core)")
        for at, rss, lag, appended, cpu in samples:
            print(f"{at:5.0f}  {rss:7.1f}  {lag:19d}  {appended:14d}  {cpu:16.0f}")
        if to_risk:
            print(
                f"tick->risk processed   p50 {1000 * statistics.median(to_risk):.2f} ms  "
                f"p99 {1000 * _pct(to_risk, 0.99):.2f} ms  (n={len(to_risk)})"
            )
        if verdicts:
            print(
                f"tick->verdict commit   p50 {1000 * statistics.median(verdicts):.2f} ms  "
                f"p99 {1000 * _pct(verdicts, 0.99):.2f} ms  (n={len(verdicts)})"
            )
        await _print_stages(database_url)
    finally:
        await drop_database(args.database_url, name)


async def _print_stages(database_url: str) -> None:
    """Where a tick->verdict chain spends its time, from the ledger: each hop's recorded_at is
    taken just before its append, so a hop is delivery + decision + the previous commit."""
    by_id: dict[uuid.UUID, object] = {}
    hops: dict[str, list[float]] = {"tick -> signal": [], "signal -> verdict": []}
    store = await EventStore.connect(database_url)
    try:
        async for recorded in store.read_all():
            by_id[recorded.event_id] = recorded
            if not isinstance(recorded.event, ev.SignalGenerated | ev.RiskVerdictIssued):
                continue
            cause = by_id.get(recorded.causation_id)  # type: ignore[arg-type]
            if cause is None:
                continue
            hop = "tick -> signal" if isinstance(recorded.event, ev.SignalGenerated) else (
                "signal -> verdict")  # fmt: skip
            if hop == "signal -> verdict" and not isinstance(cause.event, ev.SignalGenerated):  # type: ignore[attr-defined]
                continue
            seconds = (recorded.recorded_at - cause.recorded_at).total_seconds()  # type: ignore[attr-defined]
            hops[hop].append(seconds)
    finally:
        await store.close()
    for hop, values in hops.items():
        if values:
            print(
                f"  {hop:18s} p50 {1000 * statistics.median(values):.2f} ms  "
                f"p99 {1000 * _pct(values, 0.99):.2f} ms  (n={len(values)})"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=2000, help="ticks per second (wall clock)")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--verbose", action="store_true", help="per-service lag every 5 s")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
