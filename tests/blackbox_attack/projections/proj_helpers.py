"""A ledger built through ``EventStore.append`` and the read models read through SQL only.

Written from README.md, docs/AUDIT.md, docs/ARCHIVE.md and ``claire --help``; nothing here
imports ``projections`` or ``pipeline``. Commands run as subprocesses of ``.venv/bin/claire``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg

from aggregates.envelope import NewEvent
from aggregates.events import (
    ConfigActivated,
    ContractSpecified,
    Event,
    OrderAccepted,
    OrderFilled,
    OrderPartiallyFilled,
    OrderRequested,
    TradeTicked,
)
from aggregates.streams import stream_for
from eventstore import EventStore

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
T0 = 1_748_822_400_000  # 2025-06-02T00:00:00Z
START = datetime(2025, 6, 2, tzinfo=UTC)

#: The read models of docs/AUDIT.md, with a key that orders their rows.
VIEWS = {
    "fills": "position",
    "orders": "client_order_id",
    "order_events": "position",
    "risk_verdicts": "position",
    "trading_state_history": "position",
    "circuit_breakers": "1",
    "stop_losses": "1",
    "alerts": "1",
    "positions": "symbol",
    "exposure": "account",
    "equity_daily": "day",
}


def demo_parameters() -> dict[str, str]:
    parameters: dict[str, str] = {}
    for line in (ROOT / "pipeline" / "demo.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, value = line.split("=", 1)
            parameters[key] = value
    return parameters


def config_event(equity: str = "10000") -> ConfigActivated:
    parameters = demo_parameters() | {"INITIAL_EQUITY_USDT": equity}
    digest = hashlib.sha256(repr(sorted(parameters.items())).encode()).hexdigest()
    return ConfigActivated(at_ms=T0, parameters=parameters, config_hash=digest)


def spec(symbol: str, size: str = "0.0001") -> ContractSpecified:
    return ContractSpecified(
        at_ms=T0,
        symbol=symbol,
        contract_size=Decimal(size),
        min_contracts=Decimal(1),
        max_contracts=Decimal(10) ** 30,
        contracts_step=Decimal(1),
        price_step=Decimal("0.1"),
        taker_fee_rate=Decimal("0.0006"),
        maker_fee_rate=Decimal("0.0002"),
        api_allowed=True,
        source="config",
    )


def tick(symbol: str, price: Decimal | str, at: int = 0) -> TradeTicked:
    return TradeTicked(
        at_ms=T0 + at,
        symbol=symbol,
        price=Decimal(price),
        contracts=Decimal(1),
        taker_side="buy",
        position_effect="open",
    )


def order_filled(
    oid: str,
    symbol: str,
    side: str,
    contracts: Decimal | str,
    price: Decimal | str,
    fee: Decimal | str = "0.01",
    at: int = 0,
    partial_first: Decimal | None = None,
) -> list[Event]:
    """One order's whole life: requested, accepted, (a partial fill,) filled."""
    qty, px = Decimal(contracts), Decimal(price)
    events: list[Event] = [
        OrderRequested(
            at_ms=T0 + at,
            client_order_id=oid,
            symbol=symbol,
            side=side,  # type: ignore[arg-type]
            contracts=qty,
            order_type="market",
            intent="entry",
            reduce_only=False,
            reference_price=px,
        ),
        OrderAccepted(
            at_ms=T0 + at, client_order_id=oid, exchange_order_id=f"x{oid}", symbol=symbol
        ),
    ]
    rest = qty
    if partial_first is not None:
        events.append(
            OrderPartiallyFilled(
                at_ms=T0 + at,
                client_order_id=oid,
                symbol=symbol,
                side=side,  # type: ignore[arg-type]
                price=px,
                contracts=partial_first,
                fee=Decimal(0),
                fee_currency="USDT",
                liquidity="taker",
                fill_id=f"{oid}-p",
                remaining_contracts=qty - partial_first,
            )
        )
        rest = qty - partial_first
    events.append(
        OrderFilled(
            at_ms=T0 + at,
            client_order_id=oid,
            symbol=symbol,
            side=side,  # type: ignore[arg-type]
            price=px,
            contracts=rest,
            fee=Decimal(fee),
            fee_currency="USDT",
            liquidity="taker",
            fill_id=f"{oid}-f",
        )
    )
    return events


def new(event: Event) -> NewEvent:
    """Occurred-at is the event's own domain time, as the services record it."""
    occurred = START + timedelta(milliseconds=event.at_ms - T0)
    return NewEvent(event=event, event_id=uuid.uuid4(), occurred_at=occurred)


async def append(url: str, events: Iterable[Event], *, batch: bool = False) -> None:
    """Append each event on its own stream, one append per event in order; or, with ``batch``,
    every stream concurrently (group commit), each stream's events in their order."""
    store = await EventStore.connect(url)
    try:
        items = list(events)
        if not batch:
            for event in items:
                await store.append(stream_for(event), [new(event)])
            return
        groups: dict[str, list[NewEvent]] = {}
        for event in items:
            groups.setdefault(stream_for(event), []).append(new(event))

        async def one(stream: str, group: list[NewEvent]) -> None:
            for start in range(0, len(group), 1000):
                await store.append(stream, group[start : start + 1000])

        await asyncio.gather(*(one(stream, group) for stream, group in groups.items()))
    finally:
        await store.close()


async def base_ledger(url: str, symbols: Iterable[str] = ("BTC_USDT",)) -> None:
    await append(url, [config_event()])
    await append(url, [spec(s) for s in symbols], batch=True)


# --------------------------------------------------------------------------- SQL


async def fetch(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def fetchval(url: str, sql: str, *args: object) -> object:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def readmodels(url: str, views: Iterable[str] = VIEWS) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every ``readmodel.*`` view, ordered, as plain tuples."""
    conn = await asyncpg.connect(url)
    try:
        out: dict[str, list[tuple[object, ...]]] = {}
        for view in views:
            rows = await conn.fetch(f"SELECT * FROM readmodel.{view} ORDER BY {VIEWS[view]}")
            out[view] = sorted((tuple(r) for r in rows), key=repr)
        return out
    finally:
        await conn.close()


async def checkpoints(url: str) -> dict[str, int]:
    rows = await fetch(url, "SELECT projection, position FROM readmodel.checkpoints")
    return {r["projection"]: r["position"] for r in rows}


async def head(url: str) -> int:
    value = await fetchval(url, "SELECT position FROM ledger.head")
    assert isinstance(value, int)
    return value


# --------------------------------------------------------------------------- commands


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def env_for(url: str, namespace: str = "") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env |= demo_parameters()
    env["DATABASE_URL"] = url
    env["REDIS_URL"] = os.environ.get("CLAIRE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    env["CLAIRE_BUS_NAMESPACE"] = namespace or f"attackproj-{uuid.uuid4().hex[:8]}"
    env["METRICS_PORT"] = "0"
    return env


async def claire(url: str, *args: str) -> Run:
    def go() -> Run:
        done = subprocess.run(
            [str(BIN / "claire"), *args],
            capture_output=True,
            text=True,
            env=env_for(url),
            cwd=ROOT,
            timeout=300,
        )
        return Run(done.returncode, done.stdout, done.stderr)

    return await asyncio.to_thread(go)


@dataclass
class Projector:
    """``claire run --service projector`` as a child process."""

    url: str
    duration: float = 60
    process: subprocess.Popen[str] = field(init=False)

    def start(self) -> Projector:
        self.process = subprocess.Popen(
            [
                str(BIN / "claire"),
                "run",
                "--service",
                "projector",
                "--duration",
                str(self.duration),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env_for(self.url),
            cwd=ROOT,
        )
        return self

    async def wait(self) -> tuple[int, str]:
        out, _ = await asyncio.to_thread(self.process.communicate, None, 120)
        return self.process.returncode, out

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate(timeout=30)


async def until(predicate: Callable[[], Awaitable[bool]], patience: float = 60.0) -> bool:
    """Poll ``await predicate()`` until true; False if the wait runs out (never a timing claim)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    while loop.time() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.05)
    return False


async def caught_up(url: str) -> bool:
    h = await head(url)
    marks = await checkpoints(url)
    return bool(marks) and all(p >= h for p in marks.values())
