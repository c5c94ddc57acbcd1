"""Event-store benchmark: prints a table of append, read and memory figures (run by hand).

    .venv/bin/python benchmarks/bench_eventstore.py \
        --database-url postgresql://postgres@127.0.0.1:5432/postgres

Works in a throwaway database it creates and drops. With ``eventsourcing`` installed
(``pip install -r requirements-bench.lock``) the same runs go through its PostgreSQL recorder on
the same server, side by side. Never part of the test suite: timings vary by machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import msgspec
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aggregates import events as ev
from aggregates.envelope import NewEvent
from eventstore import EventStore
from eventstore.admin import create_database, drop_database
from eventstore.migrations import upgrade_async

GOALS = {
    "append, 1 event/txn, 1 writer": 2_500,
    "append, 1 event/txn, 8 writers": 15_000,
    "append, 100 events/call": 50_000,
    "append, 1,000 events/call": 70_000,
    "read + decode whole log": 350_000,
}


def _tick(n: int) -> ev.TradeTicked:
    return ev.TradeTicked(
        at_ms=1_735_689_600_000 + n,
        symbol="BTC_USDT",
        price=Decimal("65000.5") + n % 1000,
        contracts=Decimal(1 + n % 7),
        taker_side="buy" if n % 2 else "sell",
        position_effect="open",
        trade_id=str(n),
    )


def _new(n: int) -> NewEvent:
    return NewEvent(event=_tick(n), event_id=uuid.uuid4(), occurred_at=datetime.now(UTC))


# ----------------------------------------------------------------------------- ours


async def _ours(url: str, args: argparse.Namespace) -> dict[str, float]:
    out: dict[str, float] = {}
    store = await EventStore.connect(url)
    counter = iter(range(10**9))
    try:
        n = args.single
        started = time.perf_counter()
        for _ in range(n):
            await store.append("market-BTC_USDT", [_new(next(counter))])
        if n:
            out["append, 1 event/txn, 1 writer"] = n / (time.perf_counter() - started)

        per_writer = args.concurrent

        async def writer(index: int) -> None:
            for _ in range(per_writer):
                await store.append(f"order-w{index}", [_new(next(counter))])

        started = time.perf_counter()
        await asyncio.gather(*(writer(i) for i in range(8)))
        if per_writer:
            out["append, 1 event/txn, 8 writers"] = 8 * per_writer / (time.perf_counter() - started)

        for size, calls, label in ((100, args.calls100, "100"), (1000, args.calls1000, "1,000")):
            batches = [[_new(next(counter)) for _ in range(size)] for _ in range(calls)]
            started = time.perf_counter()
            for batch in batches:
                await store.append("market-ETH_USDT", batch)
            if calls:
                out[f"append, {label} events/call"] = size * calls / (time.perf_counter() - started)

        if args.skip_read:
            return out
        total = 0
        started = time.perf_counter()
        async for _record in store.read_all(batch_size=5000):
            total += 1
        out["read + decode whole log"] = total / (time.perf_counter() - started)
        out["(log size for the read)"] = total

        if args.stream_events:
            out.update(await _memory(store, args.stream_events, counter))
    finally:
        await store.close()
    return out


async def _memory(store: EventStore, wanted: int, counter) -> dict[str, float]:
    head, _ = await store.head()
    print(f"  generating {wanted - head:,} more events for the memory run...", file=sys.stderr)
    while head < wanted:
        size = min(5000, wanted - head)
        head = (await store.append("market-SOL_USDT", [_new(next(counter)) for _ in range(size)]))[
            -1
        ]
    process = psutil.Process(os.getpid())
    before = process.memory_info().rss
    peak = before
    total = 0
    started = time.perf_counter()
    async for _record in store.read_all(batch_size=5000):
        total += 1
        if total % 20_000 == 0:
            peak = max(peak, process.memory_info().rss)
    elapsed = time.perf_counter() - started
    peak = max(peak, process.memory_info().rss)
    return {
        "stream whole log: events": total,
        "stream whole log: events/s": total / elapsed,
        "stream whole log: RSS before (MB)": before / 2**20,
        "stream whole log: peak RSS (MB)": peak / 2**20,
    }


# ----------------------------------------------------------------------------- eventsourcing


def _eventsourcing(url: str, args: argparse.Namespace) -> dict[str, float] | None:
    try:
        from eventsourcing.persistence import StoredEvent
        from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
    except ImportError:
        return None
    parts = urlsplit(url)
    datastore = PostgresDatastore(
        dbname=parts.path.lstrip("/"),
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=parts.username or "postgres",
        password=parts.password or "",
        pool_size=10,
        max_overflow=0,
    )
    recorder = PostgresApplicationRecorder(datastore)
    recorder.create_table()
    encoder = msgspec.json.Encoder(decimal_format="string")
    decoder = msgspec.json.Decoder(ev.AnyEvent)  # type: ignore[arg-type]
    counter = iter(range(10**9))
    lock = threading.Lock()

    def stored(originator: uuid.UUID, version: int) -> StoredEvent:
        with lock:
            n = next(counter)
        return StoredEvent(
            originator_id=originator,
            originator_version=version,
            topic="market.trade",
            state=encoder.encode(_tick(n)),
        )

    out: dict[str, float] = {}
    n = args.single
    started = time.perf_counter()
    for _ in range(n):
        recorder.insert_events([stored(uuid.uuid4(), 1)])
    out["append, 1 event/txn, 1 writer"] = n / (time.perf_counter() - started)

    def writer(_: int) -> None:
        originator = uuid.uuid4()
        for version in range(1, args.concurrent + 1):
            recorder.insert_events([stored(originator, version)])

    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(writer, range(8)))
    out["append, 1 event/txn, 8 writers"] = 8 * args.concurrent / (time.perf_counter() - started)

    for size, calls, label in ((100, args.calls100, "100"), (1000, args.calls1000, "1,000")):
        batches = []
        for _ in range(calls):
            originator = uuid.uuid4()
            batches.append([stored(originator, v) for v in range(1, size + 1)])
        started = time.perf_counter()
        for batch in batches:
            recorder.insert_events(batch)
        out[f"append, {label} events/call"] = size * calls / (time.perf_counter() - started)

    total, start = 0, 1
    started = time.perf_counter()
    while True:
        page = recorder.select_notifications(start, 5000)
        for notification in page:
            decoder.decode(notification.state)
        total += len(page)
        if len(page) < 5000:
            break
        start = page[-1].id + 1
    out["read + decode whole log"] = total / (time.perf_counter() - started)
    out["(log size for the read)"] = total
    datastore.close()
    return out


# ----------------------------------------------------------------------------- main


def _table(ours: dict[str, float], theirs: dict[str, float] | None) -> str:
    lines = []
    header = f"{'measure':<40} {'claire':>14} {'goal':>10}"
    if theirs is not None:
        header += f" {'eventsourcing':>14} {'ratio':>7}"
    lines += [header, "-" * len(header)]
    for key, value in ours.items():
        goal = GOALS.get(key)
        row = f"{key:<40} {value:>14,.0f} {'' if goal is None else f'{goal:,}':>10}"
        if theirs is not None and key in theirs:
            other = theirs[key]
            row += f" {other:>14,.0f} {value / other if other else 0:>6.1f}x"
        lines.append(row)
    return "\n".join(lines)


async def _main(args: argparse.Namespace) -> None:
    admin = args.database_url
    name = f"claire_bench_{secrets.token_hex(4)}"
    other = f"claire_bench_es_{secrets.token_hex(4)}"
    url = await create_database(admin, name)
    try:
        conn = await asyncpg.connect(url)
        settings = {
            key: await conn.fetchval(f"SHOW {key}") for key in ("fsync", "synchronous_commit")
        }
        version = await conn.fetchval("SHOW server_version")
        await conn.close()
        await upgrade_async(url)
        print(f"PostgreSQL {version}, {settings}, {os.cpu_count()} CPUs", file=sys.stderr)
        ours = await _ours(url, args)
    finally:
        await drop_database(admin, name)
    theirs = None
    if not args.skip_eventsourcing:
        es_url = await create_database(admin, other)
        try:
            run: Callable[[str, argparse.Namespace], dict[str, float] | None] = _eventsourcing
            theirs = await asyncio.to_thread(run, es_url, args)
        finally:
            await drop_database(admin, other)
    print(_table(ours, theirs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="server admin URL; a throwaway database is created and dropped",
    )
    parser.add_argument("--single", type=int, default=3000, help="single-event appends")
    parser.add_argument("--concurrent", type=int, default=3000, help="appends per writer (x8)")
    parser.add_argument("--calls100", type=int, default=500, help="calls of 100 events")
    parser.add_argument("--calls1000", type=int, default=150, help="calls of 1,000 events")
    parser.add_argument(
        "--stream-events", type=int, default=5_000_000, help="log size for the memory run (0: skip)"
    )
    parser.add_argument("--skip-eventsourcing", action="store_true")
    parser.add_argument("--skip-read", action="store_true", help="append phases only (0 skips one)")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
