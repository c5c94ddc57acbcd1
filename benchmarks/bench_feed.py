"""How many ticks per second the MEXC feed client parses from a local MEXC-protocol server.

The server runs in its own process (``python -m adapters.mexc.local_server``) and plays a
synthetic tape as fast as it can, so the figure is the client's: socket read, gzip (optional),
JSON -> Decimal -> validated ``TradeTicked``, batching into a sink that only counts.

    .venv/bin/python benchmarks/bench_feed.py [--ticks 200000] [--per-frame 1] [--gzip]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.mexc.feed import FeedConfig, MexcFeed  # noqa: E402
from aggregates.events import Event  # noqa: E402

SYMBOLS = ("BTC_USDT", "ETH_USDT", "SOL_USDT", "DOGE_USDT")
PRICES = (104250.0, 2520.0, 152.3, 0.1885)
START_MS = 1748854800000


def write_tape(path: Path, ticks: int, per_frame: int, seed: int = 1) -> int:
    """A tape of ``push.deal`` frames; list form when ``per_frame`` > 1 (as MEXC sends)."""
    rng = random.Random(seed)
    encoder = msgspec.json.Encoder()
    frames = 0
    with path.open("wb") as out:
        for n in range(ticks // per_frame):
            index = n % len(SYMBOLS)
            t = START_MS + n
            deals = [
                {
                    "p": round(PRICES[index] * (1 + rng.uniform(-0.01, 0.01)), 4),
                    "v": rng.randint(1, 500),
                    "T": rng.choice((1, 2)),
                    "O": rng.choice((1, 2, 3)),
                    "M": 2,
                    "t": t,
                }
                for _ in range(per_frame)
            ]
            msg = {
                "channel": "push.deal",
                "data": deals if per_frame > 1 else deals[0],
                "symbol": SYMBOLS[index],
                "ts": t,
            }
            out.write(encoder.encode({"at_ms": t, "msg": msg}) + b"\n")
            frames += 1
    return frames


async def measure(url: str, expected: int) -> tuple[float, int, int]:
    received = 0
    first = last = 0.0
    done = asyncio.Event()

    async def sink(batch: Sequence[Event]) -> None:
        nonlocal received, first, last
        if not received:
            first = time.perf_counter()
        received += len(batch)
        last = time.perf_counter()
        if received >= expected:
            done.set()

    config = FeedConfig(url=url, tickers=False, ping_interval=5.0, pong_timeout=30.0)
    feed = MexcFeed(sink, symbols=SYMBOLS, config=config, rng=random.Random(1))
    async with feed:
        try:
            await asyncio.wait_for(done.wait(), timeout=600)
        except TimeoutError:
            print(f"timed out with {received}/{expected} ticks", file=sys.stderr)
    return last - first, received, feed.stats.batches


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=200_000)
    parser.add_argument("--per-frame", type=int, default=1, help="trades per push.deal frame")
    parser.add_argument("--gzip", action="store_true", help="server sends gzip binary frames")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="claire-bench-feed-") as tmp:
        tape = Path(tmp) / "tape.jsonl"
        frames = write_tape(tape, args.ticks, args.per_frame)
        ticks = frames * args.per_frame
        command = [
            sys.executable, "-m", "adapters.mexc.local_server", "--tape", str(tape),
            "--speed", "0", "--autoplay-after", str(len(SYMBOLS)),
            "--compression", "gzip" if args.gzip else "text",
        ]  # fmt: skip
        server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None
            url = server.stdout.readline().strip()
            seconds, received, batches = asyncio.run(measure(url, ticks))
        finally:
            server.terminate()
            server.wait(timeout=10)
    rate = received / seconds if seconds > 0 else float("nan")
    print(
        f"feed: {received} ticks in {frames} frames ({args.per_frame}/frame, "
        f"{'gzip' if args.gzip else 'text'}) parsed in {seconds:.2f} s = {rate:,.0f} ticks/s, "
        f"{batches} batches (mean {received / max(batches, 1):.0f})"
    )
    return 0 if received == ticks else 1


if __name__ == "__main__":
    raise SystemExit(main())
