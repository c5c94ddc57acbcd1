"""Event-store benchmark: prints a table of append, read and memory figures (run by hand).

    .venv/bin/python benchmarks/bench_eventstore.py \
        --database-url postgresql://postgres@127.0.0.1:5432/postgres

Works in a throwaway database it creates and drops. With ``eventsourcing`` installed
(``pip install -r requirements-bench.lock``) the same runs go through its PostgreSQL recorder on
the same server, side by side. Never part of the test suite: timings vary by machine.

``--embedded`` starts a PostgreSQL of its own in a temporary directory instead (no server needed).

In the same run, raw asyncpg does the same work without the ledger's guarantees (no chain, no
ordering, no validation) into a copy of ``ledger.events`` (same columns, constraints and
indexes, no triggers): plain single-row INSERTs from 8 connections, one unnest INSERT per 100
events, one binary COPY per 1,000 events, and COPY + msgspec for the read. That is this
machine's limit: the "% of raw" column divides each figure by it (see docs/LEDGER_WRITER.md).
Last, the wait of 1-event appends of another store while one call appends 100,000 events.
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
from urllib.parse import parse_qs, urlsplit

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


# ----------------------------------------------------------------------------- raw asyncpg

#: Which raw figure each of ours is compared with (the issue's goals, as ratios).
RAW_FOR = {
    "append, 1 event/txn, 1 writer": ("raw INSERT, 1 row/txn, 1 conn", None),
    "append, 1 event/txn, 8 writers": ("raw INSERT, 1 row/txn, 8 conns", 2.0),
    "append, 100 events/call": ("raw unnest INSERT, 100 rows/stmt", 0.85),
    "append, 1,000 events/call": ("raw COPY, 1,000 rows/COPY", 0.85),
    "read + decode whole log": ("raw COPY + msgspec decode", 0.85),
}

_RAW_TABLE = """
CREATE SEQUENCE public.raw_seq;
CREATE TABLE public.raw_events (LIKE ledger.events INCLUDING ALL);
ALTER TABLE public.raw_events ALTER position SET DEFAULT nextval('public.raw_seq'),
                              ALTER stream_version SET DEFAULT nextval('public.raw_seq')
"""
_RAW_COLUMNS = (
    "stream", "event_id", "event_type", "schema_version", "occurred_at", "recorded_at",
    "payload", "hash",
)  # fmt: skip
_RAW_INSERT = (
    "INSERT INTO public.raw_events (stream, event_id, event_type, schema_version, occurred_at,"
    " recorded_at, payload, hash) VALUES ($1, $2, 'market.trade', 1, $3, $3, $4::jsonb, $5)"
)
_RAW_UNNEST = (
    "INSERT INTO public.raw_events (stream, event_id, event_type, schema_version, occurred_at,"
    " recorded_at, payload, hash) SELECT $1, r.id, 'market.trade', 1, r.at, r.at, r.p::jsonb,"
    " r.h FROM unnest($2::uuid[], $3::timestamptz[], $4::text[], $5::bytea[]) AS r(id, at, p, h)"
)
_HASH = bytes(32)


def _payload(n: int) -> str:
    return msgspec.json.encode(_tick(n)).decode()


async def _raw(url: str, args: argparse.Namespace) -> dict[str, float]:
    """The same appends and read as :func:`_ours`, by hand: this machine's limit."""
    out: dict[str, float] = {}
    conns = [await asyncpg.connect(url) for _ in range(8)]
    counter = iter(range(10**9))
    try:
        await conns[0].execute(_RAW_TABLE)
        conn = conns[0]
        started = time.perf_counter()
        for _ in range(args.single):
            n = next(counter)
            await conn.execute(
                _RAW_INSERT, "raw", uuid.uuid4(), datetime.now(UTC), _payload(n), _HASH
            )
        if args.single:
            out["raw INSERT, 1 row/txn, 1 conn"] = args.single / (time.perf_counter() - started)

        async def writer(conn: asyncpg.Connection) -> None:
            for _ in range(args.concurrent):
                n = next(counter)
                await conn.execute(
                    _RAW_INSERT, "raw", uuid.uuid4(), datetime.now(UTC), _payload(n), _HASH
                )

        started = time.perf_counter()
        await asyncio.gather(*(writer(c) for c in conns))
        if args.concurrent:
            out["raw INSERT, 1 row/txn, 8 conns"] = (
                8 * args.concurrent / (time.perf_counter() - started)
            )

        started = time.perf_counter()
        for _ in range(args.calls100):
            rows = [next(counter) for _ in range(100)]
            now = datetime.now(UTC)
            await conn.execute(
                _RAW_UNNEST,
                "raw",
                [uuid.uuid4() for _ in rows],
                [now] * 100,
                [_payload(n) for n in rows],
                [_HASH] * 100,
            )
        if args.calls100:
            out["raw unnest INSERT, 100 rows/stmt"] = (
                100 * args.calls100 / (time.perf_counter() - started)
            )

        started = time.perf_counter()
        for _ in range(args.calls1000):
            now = datetime.now(UTC)
            records = [
                ("raw", uuid.uuid4(), "market.trade", 1, now, now, _payload(next(counter)), _HASH)
                for _ in range(1000)
            ]
            await conn.copy_records_to_table(
                "raw_events", schema_name="public", columns=_RAW_COLUMNS, records=records
            )
        if args.calls1000:
            out["raw COPY, 1,000 rows/COPY"] = (
                1000 * args.calls1000 / (time.perf_counter() - started)
            )

        if not args.skip_read:
            decoder = msgspec.json.Decoder(ev.AnyEvent)  # type: ignore[arg-type]
            total = 0
            pending = b""

            def sink(data: bytes) -> None:
                nonlocal total, pending
                lines = (pending + data).split(b"\n")
                pending = lines.pop()
                for line in lines:
                    decoder.decode(line)
                total += len(lines)

            async def write(data: bytes) -> None:
                sink(data)

            started = time.perf_counter()
            await conn.copy_from_query(
                "SELECT payload FROM ledger.events ORDER BY position", output=write
            )
            out["raw COPY + msgspec decode"] = total / (time.perf_counter() - started)
    finally:
        for conn in conns:
            await conn.close()
    return out


async def _wait_during_big(url: str, size: int) -> dict[str, float]:
    """Latency of another store's 1-event appends while one call appends ``size`` events."""
    waits: list[float] = []
    async with await EventStore.connect(url) as big, await EventStore.connect(url) as small:
        events = [_new(n) for n in range(size)]
        await small.append("wait-probe", [_new(-1)])
        done = asyncio.Event()

        async def probe() -> None:
            while not done.is_set():
                started = time.perf_counter()
                await small.append("wait-probe", [_new(-1)])
                waits.append(time.perf_counter() - started)

        prober = asyncio.create_task(probe())
        await asyncio.sleep(0.2)
        started = time.perf_counter()
        await big.append(f"big-{uuid.uuid4().hex[:8]}", events)
        elapsed = time.perf_counter() - started
        done.set()
        await prober
    waits.sort()
    label = f"{size:,}-event append"
    return {
        f"{label}: its duration (ms)": elapsed * 1000,
        f"{label}: 1-event append wait p50 (ms)": waits[len(waits) // 2] * 1000,
        f"{label}: 1-event append wait p99 (ms)": waits[int(len(waits) * 0.99)] * 1000,
        f"{label}: 1-event append wait max (ms)": waits[-1] * 1000,
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
        # An embedded server (--embedded) listens on a unix socket: ?host=/its/directory.
        host=parse_qs(parts.query).get("host", [parts.hostname or "127.0.0.1"])[0],
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


def _table(
    ours: dict[str, float], theirs: dict[str, float] | None, raw: dict[str, float] | None = None
) -> str:
    lines = []
    header = f"{'measure':<52} {'claire':>12} {'goal':>10}"
    if raw is not None:
        header += f" {'raw':>12} {'% of raw':>9} {'goal':>6}"
    if theirs is not None:
        header += f" {'eventsourcing':>14} {'ratio':>7}"
    lines += [header, "-" * len(header)]
    for key, value in ours.items():
        goal = GOALS.get(key)
        row = f"{key:<52} {value:>12,.1f} {'' if goal is None else f'{goal:,}':>10}"
        if raw is not None:
            name, wanted = RAW_FOR.get(key, ("", None))
            if raw.get(name):
                row += f" {raw[name]:>12,.0f} {100 * value / raw[name]:>8.0f}%"
                row += f" {'' if wanted is None else f'{100 * wanted:.0f}%':>6}"
            else:
                row += " " * 30
        if theirs is not None and key in theirs:
            other = theirs[key]
            row += f" {other:>14,.0f} {value / other if other else 0:>6.1f}x"
        lines.append(row)
    if raw is not None:
        lines += ["", "raw asyncpg, same run:"]
        lines += [f"  {key:<50} {value:>12,.0f}" for key, value in raw.items()]
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
        raw = await _raw(url, args)
        for size in args.wait_sizes:
            ours.update(await _wait_during_big(url, size))
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
    print(_table(ours, theirs, raw))


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
    parser.add_argument(
        "--wait-sizes",
        type=int,
        nargs="*",
        default=[100_000],
        help="big append sizes to measure a concurrent 1-event append's wait during",
    )
    parser.add_argument(
        "--embedded", action="store_true", help="start a throwaway PostgreSQL of its own"
    )
    parser.add_argument("--skip-read", action="store_true", help="append phases only (0 skips one)")
    args = parser.parse_args()
    if not args.embedded:
        asyncio.run(_main(args))
        return
    import tempfile

    from adapters.embedded import start_postgres

    base = Path(tempfile.mkdtemp(prefix="claire-bench-pg-"))
    server = start_postgres(base / "pgdata", delete_on_stop=True)
    try:
        args.database_url = server.url("postgres")
        asyncio.run(_main(args))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
