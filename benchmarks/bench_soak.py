"""Soak: 2,000 ticks/s for N minutes through `claire run`; is memory flat, is lag not growing?

A LocalMexcServer subprocess streams an endless, wall-clock-anchored market (two contracts, one
trade per contract per millisecond step, so no two trades share their content) at the target
rate into a real `claire run` subprocess (all services, paper execution) on a throwaway
database. Every few seconds it samples the pipeline's RSS, the ingest lag (wall clock minus the
newest trade's time in the ledger) and the projector's lag in events (from /metrics), then
prints the series and a verdict.

    .venv/bin/python benchmarks/bench_soak.py --minutes 10         # the issue's soak
    .venv/bin/python benchmarks/bench_soak.py --minutes 2 --rate 2000

Without DATABASE_URL / REDIS_URL (admin URLs) an embedded PostgreSQL and Redis are started.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.faults.fault_helpers import TRADING_ENV, free_port  # noqa: E402

SYMBOLS = ("BTC_USDT", "ETH_USDT")


def market(rate: int, start_ms: int) -> Iterator[object]:
    """Endless tape entries at ``rate`` trades/s, prices wandering in a narrow band."""
    import msgspec

    from adapters.mexc.tape import TapeEntry

    encoder = msgspec.json.Encoder(decimal_format="number")
    per_ms = max(1, rate // 1000)
    step = 0
    while True:
        at = start_ms + step
        wave = Decimal((step // 1000) % 40 - 20) / 10_000  # +-0.2 %, slow sawtooth
        for n in range(per_ms):
            symbol = SYMBOLS[n % len(SYMBOLS)]
            base = Decimal("100000.0") if symbol == "BTC_USDT" else Decimal("2500.00")
            unit = Decimal("0.1") if symbol == "BTC_USDT" else Decimal("0.01")
            price = (base * (1 + wave)).quantize(unit)
            deal = {"p": price, "v": 1 + (step + n) % 9, "T": 1 + n % 2, "O": 3, "M": 2}
            deal["t"] = at
            msg = {"channel": "push.deal", "symbol": symbol, "data": [deal], "ts": at}
            yield TapeEntry(at_ms=at, msg=msgspec.Raw(encoder.encode(msg)))
        step += 1


async def serve(rate: int, port: int) -> None:
    """The server process: play the endless market in real time."""
    from adapters.mexc.local_server import LocalMexcServer

    start = time.time_ns() // 1_000_000
    server = LocalMexcServer(
        tape=market(rate, start),
        speed=1.0,
        symbols=SYMBOLS,
        port=port,
        autoplay_after=1 + len(SYMBOLS),
        ping_timeout=600,
    )
    async with server:
        print(server.url, flush=True)
        await asyncio.Event().wait()


async def _sample(database_url: str, metrics_port: int) -> tuple[float, float | None, int]:
    import aiohttp
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        newest = await conn.fetchval(
            "SELECT max(position) FROM ledger.events WHERE event_type = 'market.trade'"
        )
        at_ms = None
        if newest is not None:
            at_ms = await conn.fetchval(
                "SELECT (payload->>'at_ms')::bigint FROM ledger.events WHERE position = $1", newest
            )
        head = await conn.fetchval("SELECT position FROM ledger.head")
    finally:
        await conn.close()
    lag_s = (time.time_ns() // 1_000_000 - at_ms) / 1000 if at_ms else float("nan")
    projection = None
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{metrics_port}/metrics") as response,
        ):
            for line in (await response.text()).splitlines():
                if line.startswith("claire_projection_lag_events{"):
                    projection = max(projection or 0.0, float(line.rsplit(" ", 1)[1]))
    except aiohttp.ClientError:
        pass
    return lag_s, projection, int(head)


def _trend(values: list[float]) -> float:
    """Least-squares slope per sample."""
    n = len(values)
    if n < 2:
        return 0.0
    mean_x, mean_y = (n - 1) / 2, statistics.fmean(values)
    num = sum((i - mean_x) * (v - mean_y) for i, v in enumerate(values))
    return num / sum((i - mean_x) ** 2 for i in range(n))


async def soak(args: argparse.Namespace) -> int:
    from adapters.embedded import start_postgres, start_redis
    from eventstore.admin import create_database, drop_database
    from eventstore.migrations import upgrade_async

    scratch = Path(tempfile.mkdtemp(prefix="claire-soak-"))
    postgres = redis = None
    server_url = os.environ.get("DATABASE_URL")
    redis_url = os.environ.get("REDIS_URL")
    if not server_url:
        postgres = start_postgres(scratch / "pg", delete_on_stop=True)
        server_url = postgres.url("postgres")
    if not redis_url:
        redis = start_redis(scratch / "redis")
        redis_url = redis.url
    name = f"claire_soak_{secrets.token_hex(4)}"
    database_url = await create_database(server_url, name)
    await upgrade_async(database_url)
    python = sys.executable
    ws_port, metrics_port = free_port(), free_port()
    feeder = subprocess.Popen(  # noqa: ASYNC220 - started once, before the clock runs
        [python, __file__, "--serve", "--rate", str(args.rate), "--port", str(ws_port)],
        stdout=subprocess.PIPE,
        cwd=scratch,
    )
    assert feeder.stdout is not None
    ws_url = feeder.stdout.readline().decode().strip()
    env = {
        **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")},
        **TRADING_ENV,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CLAIRE_BUS_NAMESPACE": f"soak-{secrets.token_hex(4)}",
        "MEXC_WS_URL": ws_url,
        "SYMBOLS": ",".join(SYMBOLS),
        "METRICS_PORT": str(metrics_port),
        "CLOCK_INTERVAL_SECONDS": "1",
    }
    seconds = args.minutes * 60
    log = (scratch / "claire.log").open("wb")
    claire = subprocess.Popen(  # noqa: ASYNC220
        [python, "-m", "cli.main", "run", "--duration", str(seconds)],
        env=env,
        cwd=scratch,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    process = psutil.Process(claire.pid)
    rss: list[float] = []
    lags: list[float] = []
    heads: list[int] = []
    print(f"soak: {args.rate} ticks/s for {args.minutes} min; sampling every {args.every}s")
    print(f"{'t (s)':>7} {'rss MiB':>9} {'ingest lag s':>13} {'proj lag ev':>12} {'events/s':>9}")
    started = time.monotonic()
    try:
        while claire.poll() is None and time.monotonic() - started < seconds - args.every:
            await asyncio.sleep(args.every)
            try:
                memory = process.memory_info().rss / 2**20
            except psutil.NoSuchProcess:
                break
            lag, projection, head = await _sample(database_url, metrics_port)
            rate = (head - heads[-1]) / args.every if heads else float("nan")
            rss.append(memory)
            lags.append(lag)
            heads.append(head)
            print(
                f"{time.monotonic() - started:7.0f} {memory:9.1f} {lag:13.2f} "
                f"{projection if projection is not None else float('nan'):12.0f} {rate:9.0f}",
                flush=True,
            )
        claire.wait(seconds + 120)
    finally:
        for child in (claire, feeder):
            if child.poll() is None:
                child.kill()
                child.wait()
        log.close()
        await drop_database(server_url, name)
        if redis is not None:
            redis.stop()
        if postgres is not None:
            postgres.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    if len(rss) < 4:
        print("too few samples for a verdict")
        return 1
    # Warm-up: the first quarter, and at least 90 s: the signal window holds a full look-back
    # (1 min of trades) and the latency maps fill to their caps before memory can level off.
    warm = max(1, len(rss) // 4, int(90 / args.every))
    steady_rss, steady_lag = rss[warm:], lags[warm:]
    growth = steady_rss[-1] - steady_rss[0]
    rss_slope = _trend(steady_rss) * (60 / args.every)
    lag_slope = _trend(steady_lag) * (60 / args.every)
    flat = abs(rss_slope) < 5.0  # MiB per minute
    steady = lag_slope < 0.5 and max(steady_lag) < 10  # seconds per minute; bounded
    print(
        f"\nrss after warm-up: {steady_rss[0]:.1f} -> {steady_rss[-1]:.1f} MiB "
        f"({growth:+.1f}; trend {rss_slope:+.2f} MiB/min): memory "
        f"{'FLAT' if flat else 'GROWING'}"
    )
    print(
        f"ingest lag after warm-up: mean {statistics.fmean(steady_lag):.2f}s, "
        f"max {max(steady_lag):.2f}s, trend {lag_slope:+.3f} s/min: lag "
        f"{'NOT GROWING' if steady else 'GROWING'}"
    )
    events = heads[-1] - heads[0]
    span = args.every * (len(heads) - 1)
    print(f"ledger: {heads[-1]} events, {events / span:,.0f} events/s while sampled")
    return 0 if flat and steady else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=2000, help="trades per second")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.rate, args.port))
        return 0
    return asyncio.run(soak(args))


if __name__ == "__main__":
    raise SystemExit(main())
