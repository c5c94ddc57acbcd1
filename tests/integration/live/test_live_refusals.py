"""A refused start is one clear sentence and exit 2: never a traceback, never a stray warning.

``claire run`` is started as the operator starts it (a child process, its own working directory,
configuration in the environment) against real PostgreSQL databases of the test's own and the
local server speaking MEXC's REST protocol.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from aggregates.envelope import NewEvent
from eventstore import EventStore
from pipeline.preflight import code_version, require_preflight
from pipeline.startup import StartRefused
from tests.support.mexc_rest import LocalMexcRest
from tests.support.preflight import CHECKS, passed_preflight

pytestmark = pytest.mark.db

ROOT = Path(__file__).resolve().parents[3]
KEY, SECRET = "mx0vglREFUSALKEY001", "REFUSALSECRET0123456789"
TRADING = {
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
    "CONTRACT_SPECS": "BTC_USDT:0.0001:1:5000000:1:0.1",
}


def live_env(database_url: str, rest_url: str, **extra: str) -> dict[str, str]:
    """The environment of a live ``claire run`` (every gate set) against ``rest_url``."""
    return {
        **TRADING,
        "DATABASE_URL": database_url,
        "TRADING_MODE": "live",
        "LIVE_TRADING_CONFIRMED": "yes",
        "MEXC_API_KEY": KEY,
        "MEXC_API_SECRET": SECRET,
        "MEXC_REST_URL": rest_url,
        "MEXC_WS_URL": "ws://127.0.0.1:9",
        "SYMBOLS": "BTC_USDT",
        "METRICS_PORT": "0",
        **extra,
    }


async def claire(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """Run ``claire ARGV`` as a child process; (exit code, stdout, stderr)."""
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli.main",
        *argv,
        env={**base, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **env},
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def assert_one_clear_refusal(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err, err
    assert "Unclosed" not in err and "unclosed" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("claire: ")]
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], err


async def test_run_when_database_never_migrated_then_exit_2_saying_run_db_upgrade(
    fresh_database_url: Any, tmp_path: Path
) -> None:
    url = await fresh_database_url(migrate=False)
    code, _, err = await claire(
        ["run", "--duration", "5"], {**TRADING, "DATABASE_URL": url, "METRICS_PORT": "0"}, tmp_path
    )
    assert_one_clear_refusal(code, err, "claire db upgrade")


async def record_preflight(url: str, version: str | None = None) -> None:
    """A ``PreflightPassed`` in the ledger (for the running code unless ``version`` says)."""
    event = passed_preflight(version or code_version(), at_ms=1_767_225_600_000)
    new = NewEvent(event=event, event_id=uuid.uuid4(), occurred_at=datetime.now(UTC))
    async with await EventStore.connect(url, max_connections=1) as store:
        await store.append("preflight", [new])


LIVE_RUN = ["run", "--service", "execution", "--duration", "30"]


async def test_live_run_when_no_preflight_passed_then_exit_2_saying_run_preflight(
    fresh_database_url: Any, tmp_path: Path
) -> None:
    url = await fresh_database_url()
    async with LocalMexcRest(accounts={KEY: SECRET}) as server:
        code, _, err = await claire(LIVE_RUN, live_env(url, server.url), tmp_path)
        assert server.requests == []  # refused before the exchange was even asked
    assert_one_clear_refusal(code, err, "claire preflight")


async def test_live_run_when_preflight_passed_for_other_code_then_exit_2(
    fresh_database_url: Any, tmp_path: Path
) -> None:
    url = await fresh_database_url()
    await record_preflight(url, version="f" * 64)
    code, _, err = await claire(LIVE_RUN, live_env(url, "http://127.0.0.1:9"), tmp_path)
    assert_one_clear_refusal(code, err, "claire preflight", code_version()[:12])


async def test_live_run_when_exchange_unreachable_then_exit_2_naming_the_reason(
    fresh_database_url: Any, tmp_path: Path
) -> None:
    url = await fresh_database_url()
    await record_preflight(url)
    env = live_env(url, "http://127.0.0.1:9")
    code, _, err = await claire(
        ["run", "--service", "execution", "--duration", "30"], env, tmp_path
    )
    assert_one_clear_refusal(code, err, "server_unreachable")


async def test_live_run_when_key_rejected_then_exit_2_naming_the_reason(
    fresh_database_url: Any, tmp_path: Path
) -> None:
    url = await fresh_database_url()
    await record_preflight(url)
    async with LocalMexcRest(accounts={KEY: "a-different-secret-entirely"}) as server:
        env = live_env(url, server.url)
        code, _, err = await claire(
            ["run", "--service", "execution", "--duration", "30"], env, tmp_path
        )
    assert_one_clear_refusal(code, err, "key_rejected")


@pytest.mark.parametrize(
    ("forgery", "named"),
    [
        ({"events": 0, "checks": ()}, "no events were played"),
        ({"events": 0}, "no events were played"),
        ({"checks": ()}, "10 of the 10 checks not named"),
        ({"checks": CHECKS[:-1]}, "1 of the 10 checks not named"),
        ({"checks": ("0 fills", *CHECKS[:6], *CHECKS[7:])}, "1 of the 10 checks not named"),
        ({"tape_sha256": "0" * 64}, "not the bundled tape"),
    ],
)
async def test_live_gate_when_preflight_passed_does_not_prove_a_run_then_refused_naming_why(
    fresh_database_url: Any, forgery: dict[str, Any], named: str
) -> None:
    """A hand-appended ``preflight.passed`` with the right code version but no run behind it."""
    url = await fresh_database_url()
    event = passed_preflight(code_version(), **forgery)
    async with await EventStore.connect(url, max_connections=1) as store:
        new = NewEvent(event=event, event_id=uuid.uuid4(), occurred_at=datetime.now(UTC))
        await store.append("preflight", [new])
    with pytest.raises(StartRefused) as refused:
        await require_preflight(url)
    assert "claire preflight" in str(refused.value) and named in str(refused.value)


async def test_live_gate_when_a_proven_pass_follows_a_forged_one_then_it_opens(
    fresh_database_url: Any,
) -> None:
    url = await fresh_database_url()
    async with await EventStore.connect(url, max_connections=1) as store:
        for event in (passed_preflight(code_version(), events=0), passed_preflight(code_version())):
            new = NewEvent(event=event, event_id=uuid.uuid4(), occurred_at=datetime.now(UTC))
            await store.append("preflight", [new])
    assert (await require_preflight(url)).events == 1234
