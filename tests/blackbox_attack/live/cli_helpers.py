"""Pieces of the live black-box attack: `claire run` as a real process against the local MEXC."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

from aggregates import events as ev
from aggregates.envelope import NewEvent
from eventstore import EventStore
from tests.support.cli_run import CliRun, run_tool_async, tool_path
from tests.support.mexc_rest import LocalMexcRest
from tests.support.preflight import CHECKS, passed_preflight
from tests.support.trading_env import ATTACK_LIMITS

KEY, SECRET = "mx0vglATTACK19KEY0001", "ATTACK19SECRETvalue0123456789"
ROOT = Path(__file__).resolve().parents[3]
CLAIRE = tool_path("claire")

TRADING = {
    **ATTACK_LIMITS,
    "TAKER_FEE_RATE": "0.0006",
    "MAKER_FEE_RATE": "0.0002",
    "PAPER_SLIPPAGE_BPS": "2",
    "CONTRACT_SPECS": "BTC_USDT:0.0001:1:1000000:1:0.1",
}


#: what a run of ``claire`` left (``tests/support/cli_run.py``)
Outcome = CliRun


def live_env(database_url: str, redis_url: str, rest_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAIRE_TEST", "MEXC"))}
    env.update(TRADING)
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        CLAIRE_BUS_NAMESPACE=f"a19{uuid.uuid4().hex[:8]}",
        MEXC_REST_URL=rest_url,
        MEXC_WS_URL="ws://127.0.0.1:9/edge",
        MEXC_API_KEY=KEY,
        MEXC_API_SECRET=SECRET,
        TRADING_MODE="live",
        LIVE_TRADING_CONFIRMED="yes",
        SYMBOLS="BTC_USDT",
        METRICS_PORT="0",
        PYTHONWARNINGS="default",
    )
    env.update(extra)
    return env


async def claire(args: list[str], env: dict[str, str], cwd: Path, limit_s: float = 30.0) -> Outcome:
    """``claire args`` as a real process with exactly ``env``, the event loop free meanwhile."""
    return await run_tool_async("claire", *args, env=env, cwd=cwd, limit_s=limit_s)


def exchange() -> LocalMexcRest:
    server = LocalMexcRest(accounts={KEY: SECRET})
    return server


def private_requests(server: LocalMexcRest) -> list[str]:
    return [s.path for s in server.requests if "/private/" in s.path or "/api/v3/" in s.path]


async def append_preflight(database_url: str, passed: ev.PreflightPassed) -> None:
    async with await EventStore.connect(database_url, max_connections=1) as store:
        new = NewEvent(event=passed, event_id=uuid.uuid4(), occurred_at=datetime.now(UTC))
        await store.append("preflight", [new])


def preflight(
    code_version: str, *, events: int = 1234, checks: tuple[str, ...] = CHECKS
) -> ev.PreflightPassed:
    """A pass shaped like a real one unless ``events``/``checks`` say otherwise (a forgery)."""
    return passed_preflight(code_version, events=events, checks=checks)
