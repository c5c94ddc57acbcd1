"""``claire preflight``: the bundled tape through every service, checked, and a pass recorded.

Run as the operator runs it (a child process) against a real PostgreSQL ledger of the test's own;
the tape run itself uses throwaway embedded servers, so the operator's ledger receives one event
and nothing else. A live start then gets past the gate (and stops at the next one: here, an
unreachable exchange).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_live_refusals import assert_one_clear_refusal, claire, live_env

from aggregates import events as ev
from eventstore import EventStore
from pipeline.preflight import check_ledger, code_version

pytestmark = [pytest.mark.db, pytest.mark.e2e, pytest.mark.timeout(400)]


async def test_preflight_when_tape_outcome_holds_then_pass_recorded_and_live_gate_opens(
    fresh_database_url: Any, tmp_path: Path
) -> None:
    url = await fresh_database_url()
    code, out, err = await claire(["preflight"], {"DATABASE_URL": url}, tmp_path)
    assert code == 0, out + err
    assert "Traceback" not in err
    async with await EventStore.connect(url, max_connections=1) as store:
        recorded = [r async for r in store.read_all()]
    assert [r.event_type for r in recorded] == ["preflight.passed"]  # nothing else touched
    passed = recorded[0].event
    assert isinstance(passed, ev.PreflightPassed)
    assert passed.code_version == code_version()
    assert passed.events > 0 and passed.checks

    code, _, err = await claire(
        ["run", "--service", "execution", "--duration", "30"],
        live_env(url, "http://127.0.0.1:9"),
        tmp_path,
    )
    assert_one_clear_refusal(code, err, "server_unreachable")  # past the preflight gate


async def test_preflight_checks_when_ledger_holds_no_trading_then_it_does_not_pass(
    fresh_database_url: Any,
) -> None:
    outcome = await check_ledger(await fresh_database_url())
    assert not outcome.passed
    assert any("signals" in problem for problem in outcome.problems)


async def test_preflight_when_database_never_migrated_then_exit_2_saying_run_db_upgrade(
    fresh_database_url: Any, tmp_path: Path
) -> None:
    url = await fresh_database_url(migrate=False)
    code, _, err = await claire(["preflight"], {"DATABASE_URL": url}, tmp_path)
    assert_one_clear_refusal(code, err, "claire db upgrade")
