"""Capital kept apart: the venue's futures equity is recorded and compared with the capital.

At live start and periodically the service records the equity the exchange reports
(``execution.venue_equity``) against ``INITIAL_EQUITY_USDT``; a difference beyond the tolerance
is a WARNING (alerted) or, when configured, a refusal to start (exit 2 from ``claire run``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from test_live_refusals import KEY as CLI_KEY
from test_live_refusals import SECRET as CLI_SECRET
from test_live_refusals import assert_one_clear_refusal, claire, live_env, record_preflight

from adapters.mexc.live import LiveTradingRefused
from aggregates import events as ev
from eventstore import EventStore
from pipeline.live_execution import LiveExecution
from pipeline.source import LedgerFeed
from tests.integration.live.live_helpers import AT_MS, KEY, SECRET, running, types, until, venue
from tests.support.mexc_rest import LocalMexcRest

pytestmark = pytest.mark.db


@pytest.fixture
async def server() -> AsyncIterator[LocalMexcRest]:
    async with LocalMexcRest(accounts={KEY: SECRET}) as local:
        yield local


@pytest.fixture
async def store(fresh_database_url: Any) -> AsyncIterator[EventStore]:
    async with await EventStore.connect(await fresh_database_url()) as opened:
        yield opened


def _service(store: EventStore, server: LocalMexcRest, **capital: Any) -> LiveExecution:
    return LiveExecution(
        venue(server),
        store,
        lambda after: LedgerFeed(store, None, after=after),
        now_ms=lambda: AT_MS,
        poll_seconds=0.05,
        **capital,
    )


def _equities(recorded: list[Any]) -> list[ev.ExecutionVenueEquity]:
    return [r.event for r in recorded if isinstance(r.event, ev.ExecutionVenueEquity)]


async def test_live_start_when_account_matches_capital_then_equity_recorded_and_repeated(
    server: LocalMexcRest, store: EventStore
) -> None:
    server.balance = Decimal(10400)
    service = _service(store, server, capital=Decimal(10000), equity_every_seconds=0.1)
    async with running(service):
        recorded = await until(store, lambda r: len(_equities(r)) >= 3)
    first = _equities(recorded)[0]
    assert first.equity == Decimal(10400) and first.configured_capital == Decimal(10000)
    assert first.difference_pct == Decimal(4) and first.within_tolerance
    assert types(recorded).index("execution.venue_equity") < types(recorded).index(
        "execution.reconciled"
    )  # recorded at start, before anything else happens


async def test_live_start_when_account_holds_far_more_and_refuse_then_refused_and_recorded(
    server: LocalMexcRest, store: EventStore
) -> None:
    server.balance = Decimal(100000)  # the whole fortune, not a hot wallet
    service = _service(store, server, capital=Decimal(10000), capital_mismatch="refuse")
    with pytest.raises(LiveTradingRefused) as refused:
        await asyncio.wait_for(service.run(), 30)
    assert refused.value.reason == "capital_mismatch"
    assert "100000" in str(refused.value)
    recorded = [r async for r in store.read_all()]
    (equity,) = _equities(recorded)
    assert not equity.within_tolerance and equity.difference_pct == Decimal(900)
    assert "execution.reconciled" not in types(recorded)  # nothing else was done
    assert server.count("order/create") == 0


async def test_live_start_when_account_holds_less_and_warn_then_runs_with_warning_recorded(
    server: LocalMexcRest, store: EventStore
) -> None:
    server.balance = Decimal(5000)
    service = _service(store, server, capital=Decimal(10000), capital_tolerance_pct=Decimal(20))
    async with running(service) as task:
        recorded = await until(store, lambda r: "execution.reconciled" in types(r))
        assert not task.done()
    (equity,) = _equities(recorded)
    assert equity.difference_pct == Decimal(-50) and not equity.within_tolerance


async def test_claire_run_when_capital_mismatch_refused_then_exit_2_naming_it(
    fresh_database_url: Any, tmp_path: Path
) -> None:
    url = await fresh_database_url()
    await record_preflight(url)
    async with LocalMexcRest(accounts={CLI_KEY: CLI_SECRET}, balance=Decimal(250000)) as local:
        env = live_env(url, local.url, LIVE_CAPITAL_MISMATCH="refuse")
        code, _, err = await claire(
            ["run", "--service", "execution", "--duration", "30"], env, tmp_path
        )
        assert local.count("order/create") == 0
    assert_one_clear_refusal(code, err, "capital_mismatch", "INITIAL_EQUITY_USDT")
