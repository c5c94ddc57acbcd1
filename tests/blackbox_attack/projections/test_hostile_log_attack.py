"""Logs the ledger accepts (``EventStore.append`` checks only the event types) against the
projections. README: the read models "can be rebuilt bit for bit at any time"; every `claire`
command answers 0, 1 or 2 with a message, never a traceback; a failed rebuild leaves the read
models in service as they were (docs/ARCHIVE.md, docs/AUDIT.md)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path

import pytest

from aggregates.events import (
    AlertRaised,
    CandleClosed,
    CircuitBreakerCleared,
    CircuitBreakerTripped,
    ClockTicked,
    Event,
    ExecutionReconciled,
    ExecutionStopEnded,
    ExecutionStopPlaced,
    ExecutionStopRequested,
    ExecutionVenueEquity,
    ExecutionVenueInputRejected,
    FundingSettled,
    MoversSelected,
    OperatorCommandIssued,
    OrderFilled,
    OrderRequested,
    PreflightPassed,
    RiskVerdictIssued,
    ServiceAlertRaised,
    SignalGenerated,
    StopLossTriggered,
    TickerQuote,
    TickersSnapshotted,
    TradingStateChanged,
)
from tests.blackbox_attack.projections.proj_helpers import (
    T0,
    Projector,
    append,
    base_ledger,
    caught_up,
    checkpoints,
    claire,
    config_event,
    head,
    order_filled,
    readmodels,
    spec,
    tick,
    until,
)

MakeUrl = Callable[..., Awaitable[str]]
HEX = "ab" * 32


def bare_fill(oid: str, symbol: str = "BTC_USDT") -> OrderFilled:
    return OrderFilled(
        at_ms=T0 + 5,
        client_order_id=oid,
        symbol=symbol,
        side="buy",
        price=Decimal(100),
        contracts=Decimal(1),
        fee=Decimal(0),
        fee_currency="USDT",
        liquidity="taker",
        fill_id=f"{oid}-f",
    )


def request(oid: str) -> OrderRequested:
    return OrderRequested(
        at_ms=T0 + 5,
        client_order_id=oid,
        symbol="BTC_USDT",
        side="buy",
        contracts=Decimal(1),
        order_type="market",
        intent="entry",
        reduce_only=False,
        reference_price=Decimal(100),
    )


#: Each: events the ledger accepts that no projection was written for.
POISON: dict[str, list[Event]] = {
    "fill_for_a_symbol_without_a_contract_spec": order_filled("p1", "XRP_USDT", "buy", "1", "2"),
    "fill_before_its_order_was_accepted": [request("p2"), bare_fill("p2")],
}


async def poisoned(
    fresh_database_url: MakeUrl, case: str
) -> tuple[str, dict[str, list[tuple[object, ...]]]]:
    url = await fresh_database_url()
    await base_ledger(url)
    await append(url, order_filled("ok1", "BTC_USDT", "buy", "3", "100"))
    assert (await claire(url, "projections", "rebuild")).code == 0
    before = await readmodels(url)
    await append(url, POISON[case])
    return url, before


@pytest.mark.parametrize("case", sorted(POISON))
async def test_rebuild_when_the_log_holds_an_event_the_fold_refuses_then_a_message_not_a_traceback(
    fresh_database_url: MakeUrl, case: str
) -> None:
    url, _ = await poisoned(fresh_database_url, case)
    result = await claire(url, "projections", "rebuild")
    assert "Traceback" not in result.text, result.text[-800:]


async def test_rebuild_when_the_fold_fails_or_the_archive_is_missing_then_models_are_unchanged(
    fresh_database_url: MakeUrl, tmp_path: Path
) -> None:
    url, before = await poisoned(fresh_database_url, "fill_before_its_order_was_accepted")
    missing = await claire(url, "projections", "rebuild", "--archive", f"{tmp_path}/nowhere")
    assert "Traceback" not in missing.text, missing.text
    assert missing.code in (1, 2), missing.text
    assert await readmodels(url) == before
    result = await claire(url, "projections", "rebuild")
    assert result.code != 0, result.text  # the fold refuses the fill
    assert await readmodels(url) == before


async def test_projector_when_one_event_breaks_the_portfolio_fold_then_other_models_still_advance(
    fresh_database_url: MakeUrl,
) -> None:
    url = await fresh_database_url()
    await base_ledger(url)
    await append(url, [config_event("0")])
    await append(url, order_filled("after", "BTC_USDT", "buy", "2", "100"))
    projector = Projector(url, duration=4).start()
    code, out = await projector.wait()
    marks = await checkpoints(url)
    assert code == 0, out[-800:]
    assert marks["orders"] == await head(url), marks


def every_other_event() -> list[Event]:
    """One of each event type the trading flow above does not produce."""
    at = T0 + 10
    return [
        CandleClosed(
            at_ms=at,
            symbol="BTC_USDT",
            interval="Min1",
            open=Decimal(1),
            high=Decimal(2),
            low=Decimal("0.5"),
            close=Decimal(1),
            contracts=Decimal(3),
            quote_amount=Decimal(3),
        ),
        TickersSnapshotted(
            at_ms=at,
            quotes=(
                TickerQuote(
                    symbol="BTC_USDT",
                    last_price=Decimal(1),
                    rise_fall_rate=Decimal("0.1"),
                    volume_24h=Decimal(5),
                ),
            ),
        ),
        MoversSelected(at_ms=at, symbols=("BTC_USDT",), scores=(Decimal(1),)),
        FundingSettled(at_ms=at, symbol="BTC_USDT", rate=Decimal("0.0001"), amount=Decimal("-0.5")),
        FundingSettled(at_ms=at, symbol="NEVER_USDT", rate=Decimal("0.0001"), amount=Decimal(1)),
        ClockTicked(at_ms=at),
        OperatorCommandIssued(at_ms=at, command="halt", operator="ops"),
        SignalGenerated(
            at_ms=at,
            symbol="BTC_USDT",
            direction="long",
            strength=Decimal(1),
            momentum=Decimal("0.01"),
            reference_price=Decimal(100),
            window_start_ms=at - 1000,
            trades_in_window=30,
            contracts_in_window=Decimal(300),
        ),
        RiskVerdictIssued(
            at_ms=at,
            symbol="BTC_USDT",
            decision="trimmed",
            layer="position_size",
            reason="trimmed_to_limit",
            intent="entry",
            side="buy",
            requested_contracts=Decimal(10),
            approved_contracts=Decimal(4),
            numbers={"limit": "4"},
        ),
        StopLossTriggered(
            at_ms=at,
            symbol="BTC_USDT",
            entry_price=Decimal(100),
            mark_price=Decimal(90),
            loss_pct=Decimal(10),
            contracts=Decimal(3),
        ),
        CircuitBreakerTripped(at_ms=at, layer="data_silence", symbol=None, reason="silence"),
        CircuitBreakerCleared(at_ms=at, layer="data_silence", symbol=None, reason="data_back"),
        TradingStateChanged(
            at_ms=at, previous="ACTIVE", state="HALTED", changed_by="operator", reason="halt"
        ),
        AlertRaised(at_ms=at, severity="CRITICAL", code="x", message="m" * 2000),
        ExecutionReconciled(at_ms=at, venue="paper", corrections=("fixed",)),
        PreflightPassed(at_ms=at, code_version=HEX, tape="t", tape_sha256=HEX, events=1),
        ExecutionVenueInputRejected(
            at_ms=at, venue="mexc", kind="bad", severity="WARNING", detail="d"
        ),
        ExecutionVenueEquity(
            at_ms=at,
            venue="mexc",
            currency="USDT",
            equity=Decimal(1),
            available=Decimal(1),
            configured_capital=Decimal(1),
            difference_pct=Decimal(0),
            within_tolerance=True,
        ),
        ExecutionStopRequested(
            at_ms=at,
            stop_id="s1",
            symbol="BTC_USDT",
            direction="long",
            contracts=Decimal(1),
            trigger_price=Decimal(90),
        ),
        ExecutionStopPlaced(at_ms=at, stop_id="s1", symbol="BTC_USDT", exchange_stop_id="e1"),
        ExecutionStopEnded(at_ms=at, stop_id="s1", symbol="BTC_USDT", reason="cancelled"),
        ServiceAlertRaised(at_ms=at, severity="WARNING", service="feed", message="quiet"),
    ]


async def test_rebuild_when_every_other_event_type_is_logged_then_it_folds_and_equals_the_service(
    fresh_database_url: MakeUrl,
) -> None:
    url = await fresh_database_url()
    await base_ledger(url)
    await append(url, order_filled("a", "BTC_USDT", "buy", "3", "100"))
    await append(url, every_other_event())
    await append(url, [tick("BTC_USDT", "101"), spec("BTC_USDT", "0.001")])
    await append(url, order_filled("b", "BTC_USDT", "sell", "3", "110"))
    result = await claire(url, "projections", "rebuild")
    assert result.code == 0, result.text[-800:]
    models = await readmodels(url)
    assert len(models["risk_verdicts"]) == 1
    assert len(models["trading_state_history"]) >= 1
    assert len(models["fills"]) == 2
    assert models["positions"][0][2] == 0  # flat again, though the contract size changed
    projector = Projector(url, duration=60).start()
    try:
        assert await until(lambda: caught_up(url)), "the projector never reached the head"
    finally:
        projector.kill()
    assert await readmodels(url) == models
