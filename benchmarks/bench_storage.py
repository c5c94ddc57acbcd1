"""Storage benchmark: bytes per market trade live and archived, archive and verify rates, soak.

    .venv/bin/python benchmarks/bench_storage.py [--database-url ADMIN_URL] [--events N]

Without ``--database-url`` it starts an embedded PostgreSQL in a temporary directory. Works in a
throwaway database it creates and drops. Never part of the test suite: timings vary by machine,
so each rate is also given as a ratio to a raw limit measured in the same run:

* export: reading the same rows from PostgreSQL and doing nothing with them;
* verify --archive: SHA-256 over the same canonical texts, in the same process (the chain's
  cost with no Parquet and no rebuilding of the rows).

The trades are what ``pipeline.ingest`` appends: content-derived ids, MEXC-like prices and sizes.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import secrets
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aggregates import events as ev
from eventstore import EventStore
from eventstore.admin import create_database, drop_database
from eventstore.archive import archive, read_archived, verify_archive
from eventstore.migrations import upgrade_async
from pipeline.ingest import as_new_events

GOALS = {"archive bytes/trade": 30, "export events/s": 200_000, "verify events/s": 500_000}
FUTURE = datetime(2100, 1, 1, tzinfo=UTC)
START_MS = 1_767_225_600_000
_LIVE = (
    "SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree('ledger.events')"
)
_SIDE = (
    "SELECT pg_total_relation_size('ledger.event_ids')"
    " + pg_total_relation_size('ledger.stream_versions')"
)


def _trades(count: int, seed: int, start: int) -> list[ev.TradeTicked]:
    rng = random.Random(seed)
    price, at = 65000.0, START_MS + start * 5
    out = []
    for _ in range(count):
        price = max(1.0, price + rng.gauss(0, 3))
        at += rng.randint(0, 10)
        out.append(
            ev.TradeTicked(
                at_ms=at,
                symbol="BTC_USDT",
                price=Decimal(f"{price:.1f}"),
                contracts=Decimal(rng.choice((1, 1, 2, 3, 5, 10, 25, 120))),
                taker_side="buy" if rng.random() < 0.5 else "sell",
                position_effect=rng.choice(("open", "close", "unchanged")),
            )
        )
    return out


async def _append(store: EventStore, count: int, offset: int) -> None:
    for start in range(0, count, 5000):
        trades = _trades(min(5000, count - start), offset + start, offset + start)
        await store.append("market-BTC_USDT", as_new_events(trades))


async def _release(url: str) -> None:
    """Let the retention floor reach the head (checkpoints and usable snapshots there)."""
    from tests.integration.eventstore.test_eventstore_archive import _release as release

    await release(url)


async def _read_rate(conn: asyncpg.Connection) -> float:
    """Raw limit for the export: read the same rows (a copy of them, which stays when the
    archive takes them out of the ledger) with an asyncpg cursor and do nothing with them."""
    began = time.perf_counter()
    count = 0
    async with conn.transaction():
        async for _ in conn.cursor(
            "SELECT position, stream, stream_version, event_id, event_type, schema_version,"
            " occurred_at, recorded_at, causation_id, causation_position, correlation_id,"
            " payload::text, hash FROM bench_rows ORDER BY position",
            prefetch=20_000,
        ):
            count += 1
    return count / (time.perf_counter() - began)


def _hash_rate(texts: list[bytes]) -> float:
    """Raw limit for verify: the bare SHA-256 chain over the same canonical texts."""
    began = time.perf_counter()
    link = bytes(32)
    for text in texts:
        link = hashlib.sha256(link + text).digest()
    return len(texts) / (time.perf_counter() - began)


def _dir_bytes(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.glob("*.parquet"))


async def _run(url: str, args: argparse.Namespace, work: Path) -> None:
    conn = await asyncpg.connect(url)
    name = await conn.fetchval("SELECT current_database()")
    await conn.execute(f'ALTER DATABASE "{name}" SET claire.partition_size = {args.partition}')
    await conn.close()
    await upgrade_async(url)
    conn = await asyncpg.connect(url)
    store = await EventStore.connect(url)
    rows: list[tuple[str, str, str]] = []
    try:
        began = time.perf_counter()
        await _append(store, args.events, 0)
        append_s = time.perf_counter() - began
        await conn.execute("VACUUM ANALYZE ledger.events")
        live = await conn.fetchval(_LIVE)
        side = await conn.fetchval(_SIDE)
        rows.append(("append events/s (5,000 per append)", f"{args.events / append_s:,.0f}", ""))
        rows.append(("live table bytes/trade (with indexes)", f"{live / args.events:.1f}", ""))
        rows.append(("uniqueness side tables bytes/trade", f"{side / args.events:.1f}", ""))

        # Each raw limit is measured just before and just after what it bounds, and the ratio
        # taken to their mean: on a machine shared with other work the load changes by the
        # minute, and a limit measured a minute apart says little.
        await conn.execute("CREATE TABLE bench_rows AS SELECT * FROM ledger.events")
        await conn.execute("ALTER TABLE bench_rows ADD PRIMARY KEY (position)")
        read_before = await _read_rate(conn)
        await _release(url)
        target = work / "archive"
        target.mkdir()
        began = time.perf_counter()
        report = await archive(url, FUTURE, target)
        export_s = time.perf_counter() - began
        read_rate = (read_before + await _read_rate(conn)) / 2
        archived = sum(m.row_count for m in report.archived)
        export_rate = archived / export_s
        per_trade = _dir_bytes(target) / archived
        goal = GOALS["archive bytes/trade"]
        rows.append(("archive bytes/trade (Parquet, zstd)", f"{per_trade:.1f}", f"<= {goal}"))
        goal = GOALS["export events/s"]
        rows.append(("archive export events/s", f"{export_rate:,.0f}", f">= {goal:,}"))
        ratio = f"ratio {export_rate / read_rate:.2f}"
        rows.append(("  raw limit: reading the rows (events/s)", f"{read_rate:,.0f}", ratio))

        texts = [row.canonical().encode() for row, _ in read_archived(target)]
        hash_before = _hash_rate(texts)
        began = time.perf_counter()
        result = await verify_archive(url, target)
        verify_s = time.perf_counter() - began
        hash_rate = (hash_before + _hash_rate(texts)) / 2
        assert result.ok, result.problem
        total = result.archived_events + result.live_events
        verify_rate = total / verify_s
        goal = GOALS["verify events/s"]
        rows.append(("verify --archive events/s", f"{verify_rate:,.0f}", f">= {goal:,}"))
        ratio = f"ratio {verify_rate / hash_rate:.2f}"
        rows.append(("  raw limit: SHA-256 chain alone (events/s)", f"{hash_rate:,.0f}", ratio))

        # Soak: append a partition's worth, archive, repeat; the live table must stay flat.
        sizes = []
        for round_ in range(args.soak_rounds):
            await _append(store, args.partition, args.events + round_ * args.partition)
            await _release(url)
            await archive(url, FUTURE, target)
            await conn.execute("VACUUM ledger.event_ids, ledger.stream_versions")
            sizes.append(int(await conn.fetchval(_LIVE) + await conn.fetchval(_SIDE)) / 1e6)
        soak = " ".join(f"{size:.1f}" for size in sizes)
        rows.append(("soak: live MB after each append+archive round", soak, "flat"))
    finally:
        await store.close()
        await conn.close()
    width = max(len(row[0]) for row in rows)
    print(f"{args.events:,} market trades, partitions of {args.partition:,}")
    for label, value, goal in rows:
        print(f"{label:<{width}}  {value:>22}  {goal}")


async def _main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="claire-bench-") as scratch:
        work = Path(scratch)
        server = None
        admin = args.database_url
        if admin is None:
            from adapters.embedded import start_postgres

            server = start_postgres(work / "pg", delete_on_stop=True)
            admin = server.url("postgres")
        name = f"claire_bench_storage_{secrets.token_hex(4)}"
        url = await create_database(admin, name)
        try:
            await _run(url, args, work)
        finally:
            await drop_database(admin, name)
            if server is not None:
                server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="an admin URL (default: embedded PostgreSQL)")
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--partition", type=int, default=100_000)
    parser.add_argument("--soak-rounds", type=int, default=4)
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
