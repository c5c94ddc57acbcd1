"""`claire demo`: the whole system on one machine in about a minute, with nothing to install.

An embedded PostgreSQL and Redis live in a local data folder; the bundled MEXC-format tape is
played through a local WebSocket server speaking MEXC's protocol, at accelerated speed, into the
real services with paper execution. The clock follows the tape's market time, so data silence,
the crash and the day are decided exactly as they would be live. The ledger stays in the data
folder afterwards, for ``claire verify`` and ``replay --from``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from adapters.embedded import start_postgres, start_redis
from adapters.mexc.feed import FeedConfig
from adapters.mexc.local_server import LocalMexcServer
from adapters.mexc.tape import DEMO_TAPE, demo_contract_specs, read_tape
from adapters.process import DEMO_DATA_DIR, DEMO_DATABASE, OK
from adapters.secrets import Secret
from adapters.settings import RuntimeSettings
from aggregates import events as ev
from aggregates.config import TradingConfig, parse_config
from aggregates.envelope import utc_from_ms
from aggregates.portfolio import EMPTY, evolve
from eventstore import EventStore
from eventstore.admin import create_database, drop_database
from eventstore.migrations import upgrade_async
from pipeline.app import Pipeline, RunOptions, run_pipeline

_log = logging.getLogger(__name__)

DEMO_ENV = Path(__file__).with_name("demo.env")


def demo_config() -> TradingConfig:
    """The demo's explicit parameters (``pipeline/demo.env``)."""
    values = {}
    for line in DEMO_ENV.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return parse_config(values)


class TapeClock:
    """Market time of the tape being played: the demo's clock source (ms)."""

    def __init__(self, server: LocalMexcServer, first_ms: int, speed: float) -> None:
        self._server = server
        self._first_ms = first_ms
        self._speed = speed
        self._started: float | None = None

    def __call__(self) -> int:
        loop = asyncio.get_running_loop()
        if self._started is None:
            if self._server.stats.tape_position == 0:
                return self._first_ms
            self._started = loop.time()
        return self._first_ms + int((loop.time() - self._started) * self._speed * 1000)


@dataclass
class DemoSummary:
    """What the demo did, read back from the ledger."""

    events_by_type: Counter[str] = field(default_factory=Counter)
    verdicts_by_layer: Counter[str] = field(default_factory=Counter)
    signals: int = 0
    orders: int = 0
    fills: int = 0
    halts: list[str] = field(default_factory=list)
    alerts: Counter[str] = field(default_factory=Counter)
    equity: Decimal = Decimal(0)
    realised_pnl: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)
    max_drawdown_pct: Decimal = Decimal(0)
    first_day: str = ""
    head: str = ""
    malformed: int = 0

    def render(self, database_url: str, data_dir: Path) -> str:
        types = "\n".join(
            f"    {name:<32} {count:>7}" for name, count in sorted(self.events_by_type.items())
        )
        layers = "\n".join(
            f"    {name:<32} {count:>7}" for name, count in sorted(self.verdicts_by_layer.items())
        )
        halts = "\n".join(f"    {line}" for line in self.halts) or "    none"
        return f"""
Claire de Binaire demo: summary
  events in the ledger by type:
{types}
  signals: {self.signals}   orders: {self.orders}   fills: {self.fills}
  verdicts by layer:
{layers}
  halts:
{halts}
  alerts: {dict(self.alerts)}
  malformed market messages counted and skipped: {self.malformed}
  equity: {self.equity:.2f} USDT   realised PnL: {self.realised_pnl:.2f}   fees: {self.fees:.2f}
  max daily drawdown: {self.max_drawdown_pct:.2f} %
  ledger head: {self.head}

Next, against the demo's ledger (with no DATABASE_URL set, every command starts the embedded
PostgreSQL in {data_dir}/ again; the demo database is {database_url}):
  .venv/bin/claire verify
  .venv/bin/replay --from {self.first_day} --verify
  .venv/bin/claire status
"""


async def summarise(store: EventStore, malformed: int) -> DemoSummary:
    summary = DemoSummary(malformed=malformed)
    portfolio = EMPTY
    first_ms: int | None = None
    async for recorded in store.read_all():
        event = recorded.event
        summary.events_by_type[recorded.event_type] += 1
        portfolio = evolve(portfolio, event)
        summary.max_drawdown_pct = max(summary.max_drawdown_pct, portfolio.drawdown_pct)
        if isinstance(event, ev.TradeTicked) and first_ms is None:
            first_ms = event.at_ms
        if isinstance(event, ev.SignalGenerated):
            summary.signals += 1
        elif isinstance(event, ev.RiskVerdictIssued):
            summary.verdicts_by_layer[f"{event.layer}/{event.decision}"] += 1
        elif isinstance(event, ev.OrderRequested):
            summary.orders += 1
        elif isinstance(event, ev.OrderFilled | ev.OrderPartiallyFilled):
            summary.fills += 1
        elif isinstance(event, ev.TradingStateChanged) and event.state == "HALTED":
            when = utc_from_ms(event.at_ms).isoformat()
            summary.halts.append(
                f"{when} by {event.changed_by}: {event.reason} (position {recorded.position})"
            )
        elif isinstance(event, ev.AlertRaised):
            summary.alerts[event.severity] += 1
    summary.equity = portfolio.equity
    summary.realised_pnl = portfolio.realised_pnl
    summary.fees = portfolio.fees
    position, digest = await store.head()
    summary.head = f"{position}:{digest.hex()}"
    if first_ms is not None:
        summary.first_day = utc_from_ms(first_ms).date().isoformat()
    return summary


def run_demo(data_dir: Path = DEMO_DATA_DIR, speed: float = 40.0) -> int:
    """Start the embedded servers, play the tape through the real services, print a summary."""
    data_dir.mkdir(parents=True, exist_ok=True)
    print(f"claire demo: starting embedded PostgreSQL and Redis in {data_dir}/ ...", flush=True)
    postgres = start_postgres(data_dir / "postgres")
    redis = start_redis(data_dir / "redis")
    try:
        summary, database_url = asyncio.run(_play(postgres.url(), redis.url, speed))
        print(summary.render(database_url, data_dir), flush=True)
        return OK
    finally:
        redis.stop()
        postgres.stop()


async def _play(server_url: str, redis_url: str, speed: float) -> tuple[DemoSummary, str]:
    await drop_database(server_url, DEMO_DATABASE)
    database_url = await create_database(server_url, DEMO_DATABASE)
    await upgrade_async(database_url)
    tape = read_tape(DEMO_TAPE)
    config = demo_config()
    async with LocalMexcServer(tape=tape, speed=speed) as server:
        clock = TapeClock(server, tape[0].at_ms, speed)
        settings = RuntimeSettings(
            database_url=Secret(database_url),
            redis_url=Secret(redis_url),
            mexc_ws_url=server.url,
            mexc_rest_url="http://127.0.0.1:9",
            metrics_port=0,
            clock_interval_seconds=0.25,
            screener_top_n=3,
            screener_min_volume_24h=1_000_000,  # the tape's thin PEPE_USDT must not be chosen
            bus_namespace="claire-demo",
        )
        minutes = (tape[-1].at_ms - tape[0].at_ms) / 60_000
        print(
            f"claire demo: playing {len(tape)} MEXC frames ({minutes:.0f} market minutes) "
            f"at {speed:g}x through feed -> signal -> risk -> paper execution ...",
            flush=True,
        )
        progress = asyncio.create_task(_progress(server, len(tape)))
        pipeline: Pipeline = await run_pipeline(
            settings,
            config,
            RunOptions(
                until=server.played,
                duration=(minutes * 60 / speed) + 60,
                now_ms=clock,
                contract_specs=demo_contract_specs(tape[0].at_ms),
                feed_config=FeedConfig(url=server.url, ping_interval=5.0),
                snapshot_every_ms=10_000,
            ),
        )
        progress.cancel()
    malformed = pipeline.feed.stats.malformed if pipeline.feed is not None else 0
    async with await EventStore.connect(database_url) as store:
        return await summarise(store, malformed), database_url


async def _progress(server: LocalMexcServer, total: int) -> None:
    interactive = sys.stdout.isatty()
    while True:
        await asyncio.sleep(1.0 if interactive else 5.0)
        done = server.stats.tape_position
        line = f"  tape {done}/{total} frames ({100 * done // max(total, 1)}%)"
        print(("\r" + line) if interactive else line, end="" if interactive else "\n", flush=True)
