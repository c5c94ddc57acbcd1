"""Black-box attack on the live start gates (docs/LIVE.md "Before the first order", README).

Oracle: the local MEXC server's own request log. A refused start must be exit 2, one line
starting with ``claire:``, no traceback, no unclosed-session warning, and nothing sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path

import pytest

from pipeline.preflight import code_version
from tests.blackbox_attack.live.cli_helpers import (
    KEY,
    SECRET,
    Outcome,
    append_preflight,
    claire,
    exchange,
    live_env,
    preflight,
    private_requests,
)


@pytest.fixture
async def server() -> AsyncIterator:
    async with exchange() as running:
        yield running


def assert_one_line_refusal(outcome: Outcome, *needles: str) -> None:
    """Exit 2, no traceback, no unclosed-session warning, one ``claire:`` line naming the
    reason. (Whether *only* that line is printed is the separate one-line test below.)"""
    lines = [line for line in outcome.text.splitlines() if line.startswith("claire:")]
    assert outcome.code == 2, outcome.text
    assert "Traceback" not in outcome.text, outcome.text
    assert "Unclosed" not in outcome.text, outcome.text
    assert "ERROR" not in outcome.text, outcome.text
    assert len(lines) == 1, outcome.text
    for needle in needles:
        assert needle in lines[0], outcome.text
    assert SECRET not in outcome.text


async def test_live_run_when_ledger_has_no_preflight_then_exit_2_and_exchange_untouched(
    fresh_database_url: Callable[..., Awaitable[str]], redis_url: str, server, tmp_path: Path
) -> None:
    url = await fresh_database_url()
    outcome = await claire(
        ["run", "--duration", "3"], live_env(url, redis_url, server.url), tmp_path
    )
    assert_one_line_refusal(outcome, "claire preflight")
    assert server.requests == []


async def test_live_run_when_refused_for_missing_preflight_then_output_is_exactly_one_line(
    fresh_database_url: Callable[..., Awaitable[str]], redis_url: str, server, tmp_path: Path
) -> None:
    url = await fresh_database_url()
    outcome = await claire(
        ["run", "--duration", "3"], live_env(url, redis_url, server.url), tmp_path
    )
    lines = [line for line in outcome.text.splitlines() if line.strip()]
    assert outcome.code == 2
    assert len(lines) == 1 and lines[0].startswith("claire:"), outcome.text


async def test_live_run_when_preflight_is_for_another_version_then_exit_2_and_exchange_untouched(
    fresh_database_url: Callable[..., Awaitable[str]], redis_url: str, server, tmp_path: Path
) -> None:
    url = await fresh_database_url()
    other = "f" * 64 if code_version() != "f" * 64 else "e" * 64
    await append_preflight(url, preflight(other))
    outcome = await claire(
        ["run", "--duration", "3"], live_env(url, redis_url, server.url), tmp_path
    )
    assert_one_line_refusal(outcome, "claire preflight")
    assert server.requests == []


async def test_live_run_when_preflight_is_forged_with_no_checks_then_exchange_untouched(
    fresh_database_url: Callable[..., Awaitable[str]], redis_url: str, server, tmp_path: Path
) -> None:
    url = await fresh_database_url()
    await append_preflight(url, preflight(code_version(), events=0, checks=()))
    outcome = await claire(
        ["run", "--duration", "3"], live_env(url, redis_url, server.url), tmp_path
    )
    assert private_requests(server) == [], outcome.text
    assert outcome.code == 2, outcome.text


async def test_live_run_when_database_unmigrated_then_exit_2_names_db_upgrade_and_nothing_sent(
    fresh_database_url: Callable[..., Awaitable[str]], redis_url: str, server, tmp_path: Path
) -> None:
    url = await fresh_database_url(migrate=False)
    outcome = await claire(
        ["run", "--duration", "3"], live_env(url, redis_url, server.url), tmp_path
    )
    assert_one_line_refusal(outcome, "claire db upgrade")
    assert server.requests == []


async def test_live_run_when_exchange_unreachable_then_exit_2_server_unreachable(
    fresh_database_url: Callable[..., Awaitable[str]], redis_url: str, tmp_path: Path
) -> None:
    url = await fresh_database_url()
    await append_preflight(url, preflight(code_version()))
    env = live_env(url, redis_url, "http://127.0.0.1:9")
    outcome = await claire(["run", "--duration", "3"], env, tmp_path)
    assert_one_line_refusal(outcome, "server_unreachable")


async def test_live_run_when_key_has_withdraw_rights_then_exit_2_and_no_order(
    fresh_database_url: Callable[..., Awaitable[str]], redis_url: str, server, tmp_path: Path
) -> None:
    url = await fresh_database_url()
    await append_preflight(url, preflight(code_version()))
    server.withdraw_permission = True
    outcome = await claire(
        ["run", "--duration", "3"], live_env(url, redis_url, server.url), tmp_path
    )
    assert_one_line_refusal(outcome, "key_has_withdraw_rights")
    assert server.count("order/create") == 0 and server.count("planorder/place") == 0


async def test_live_run_when_key_rejected_then_exit_2_and_no_secret_in_output(
    fresh_database_url: Callable[..., Awaitable[str]], redis_url: str, server, tmp_path: Path
) -> None:
    url = await fresh_database_url()
    await append_preflight(url, preflight(code_version()))
    server.accounts = {KEY: "a-different-secret-0000"}
    outcome = await claire(
        ["run", "--duration", "3"], live_env(url, redis_url, server.url), tmp_path
    )
    assert_one_line_refusal(outcome, "key_rejected")


@pytest.mark.parametrize(
    ("balance", "starts"),
    [
        (Decimal("9000"), True),
        (Decimal("8999.9"), False),
        (Decimal("11000"), True),
        (Decimal("11000.1"), False),
    ],
)
async def test_live_run_when_capital_at_or_past_tolerance_with_refuse_then_boundary_holds(
    fresh_database_url: Callable[..., Awaitable[str]],
    redis_url: str,
    server,
    tmp_path: Path,
    balance: Decimal,
    starts: bool,
) -> None:
    """10 % of 10000: exactly 9000 / 11000 is within; one step past is refused (exit 2)."""
    url = await fresh_database_url()
    await append_preflight(url, preflight(code_version()))
    server.balance = balance
    env = live_env(url, redis_url, server.url, LIVE_CAPITAL_MISMATCH="refuse")
    outcome = await claire(["run", "--duration", "4"], env, tmp_path)
    assert "Traceback" not in outcome.text, outcome.text
    assert SECRET not in outcome.text
    if starts:
        assert outcome.code == 0, outcome.text
    else:
        assert_one_line_refusal(outcome, "capital_mismatch")
    assert server.count("order/create") == 0


async def test_paper_run_when_live_keys_are_set_then_no_private_request_reaches_exchange(
    fresh_database_url: Callable[..., Awaitable[str]], redis_url: str, server, tmp_path: Path
) -> None:
    url = await fresh_database_url()
    await append_preflight(url, preflight(code_version()))
    env = live_env(url, redis_url, server.url)
    del env["TRADING_MODE"]  # paper is the default
    outcome = await claire(["run", "--duration", "3"], env, tmp_path)
    assert "Traceback" not in outcome.text, outcome.text
    assert private_requests(server) == [], outcome.text


@pytest.mark.parametrize(
    "confirmed",
    [
        "no",
        "",
        "true",
        "1",
        "on",
    ],
)
async def test_live_run_when_not_confirmed_exactly_yes_then_exit_2_and_exchange_untouched(
    fresh_database_url: Callable[..., Awaitable[str]],
    redis_url: str,
    server,
    tmp_path: Path,
    confirmed: str,
) -> None:
    url = await fresh_database_url()
    await append_preflight(url, preflight(code_version()))
    env = live_env(url, redis_url, server.url, LIVE_TRADING_CONFIRMED=confirmed)
    outcome = await claire(["run", "--duration", "3"], env, tmp_path)
    assert private_requests(server) == [], outcome.text
    assert outcome.code == 2, outcome.text
    assert "Traceback" not in outcome.text, outcome.text


async def test_live_run_when_key_secret_and_symbols_missing_then_exit_2_names_each(
    fresh_database_url: Callable[..., Awaitable[str]], redis_url: str, server, tmp_path: Path
) -> None:
    url = await fresh_database_url()
    await append_preflight(url, preflight(code_version()))
    env = live_env(url, redis_url, server.url, MEXC_API_KEY="", MEXC_API_SECRET="", SYMBOLS="")
    outcome = await claire(["run", "--duration", "3"], env, tmp_path)
    assert outcome.code == 2, outcome.text
    assert "Traceback" not in outcome.text
    for name in ("MEXC_API_KEY", "MEXC_API_SECRET", "SYMBOLS"):
        assert name in outcome.text, outcome.text
    assert server.requests == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LIVE_CAPITAL_MISMATCH", "refuze"),
        ("LIVE_CAPITAL_TOLERANCE_PCT", "-1"),
        ("LIVE_CAPITAL_TOLERANCE_PCT", "ten"),
    ],
)
async def test_live_run_when_capital_setting_is_bad_then_exit_2_names_it_and_nothing_sent(
    fresh_database_url: Callable[..., Awaitable[str]],
    redis_url: str,
    server,
    tmp_path: Path,
    name: str,
    value: str,
) -> None:
    url = await fresh_database_url()
    await append_preflight(url, preflight(code_version()))
    env = live_env(url, redis_url, server.url, **{name: value})
    outcome = await claire(["run", "--duration", "3"], env, tmp_path)
    assert outcome.code == 2, outcome.text
    assert "Traceback" not in outcome.text, outcome.text
    assert name in outcome.text, outcome.text
    assert private_requests(server) == []
