"""``replay`` against real PostgreSQL ledgers recorded by the machines (and tampered copies)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import secrets
from collections.abc import Awaitable, Callable
from decimal import Decimal

import msgspec
import pytest

from aggregates import events as ev
from aggregates.envelope import RecordedEvent
from cli.replay import main
from eventstore import EventStore
from tests.integration.replay.replay_helpers import append_log, config_event, market, session

pytestmark = pytest.mark.db

FROM = "2025-06-02"

Fresh = Callable[..., Awaitable[str]]


async def run(*argv: str) -> tuple[int, str, list[dict]]:
    """``replay`` in a thread (it runs its own event loop); exit code, stdout, JSON lines."""
    out = io.StringIO()
    code = await asyncio.to_thread(main, list(argv), stdout=out)
    text = out.getvalue()
    lines = []
    if "--json" in argv:
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    return code, text, lines


def only(lines: list[dict], kind: str) -> dict:
    found = [line for line in lines if line["type"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} lines"
    return found[0]


@pytest.fixture(scope="module")
def recorded_log() -> list[RecordedEvent]:
    """About 70 market minutes across midnight, with signals, verdicts, orders and fills."""
    return session(market(seed=11, minutes=70))


@pytest.fixture(scope="module")
async def ledger(recorded_log: list[RecordedEvent], postgres_server_url: str):
    """One intact recorded ledger shared by the read-only tests of this module."""
    from eventstore.admin import create_database, drop_database
    from eventstore.migrations import upgrade_async

    name = f"claire_test_replay_{os.getpid()}_{secrets.token_hex(4)}"
    url = await create_database(postgres_server_url, name)
    try:
        await upgrade_async(url)
        await append_log(url, recorded_log)
        yield url
    finally:
        await drop_database(postgres_server_url, name)


def window_positions(log: list[RecordedEvent]) -> int:
    """The first position on 2025-06-02 (what ``--from 2025-06-02`` resolves to)."""
    midnight = 1_748_822_400_000
    return next(r.position for r in log if r.occurred_at.timestamp() * 1000 >= midnight)


# --------------------------------------------------------------------------- verify


async def test_verify_when_session_recorded_by_the_machines_then_zero_divergences_and_exit_0(
    ledger: str, recorded_log: list[RecordedEvent]
) -> None:
    code, _, lines = await run("--from", FROM, "--verify", "--json", "-q", "--database-url", ledger)
    verify = only(lines, "verify")
    assert code == 0, verify
    assert verify["ok"] and verify["divergence"] is None
    assert verify["chain"]["ok"] and verify["chain"]["events_checked"] == len(recorded_log)
    first = window_positions(recorded_log)
    owned_in_window = sum(
        1
        for r in recorded_log
        if r.causation_position is not None and r.causation_position >= first
    )
    assert verify["decisions_checked"] == owned_in_window > 0
    assert set(verify["decisions"]) == {"signal", "risk", "paper"}
    assert all(verify["decisions"][name] > 0 for name in ("signal", "risk", "paper"))
    # The walk's figures are the same whether it folds the portfolio or reads the risk machine's.
    _, _, walked = await run("--from", FROM, "--json", "-q", "--database-url", ledger)
    assert only(walked, "summary") == only(lines, "summary")
    assert [x for x in walked if x["type"] == "day"] == [x for x in lines if x["type"] == "day"]


async def test_verify_when_text_output_then_states_how_many_decisions_were_checked(
    ledger: str,
) -> None:
    code, text, _ = await run("--from", FROM, "--verify", "-q", "--database-url", ledger)
    assert code == 0
    assert re.search(r"verify ok: \d+ decisions checked, zero divergences", text)
    assert "hash chain intact" in text


async def test_verify_when_a_recorded_verdict_was_altered_then_it_is_the_first_divergence(
    fresh_database_url: Fresh, recorded_log: list[RecordedEvent]
) -> None:
    first = window_positions(recorded_log)
    verdicts = [
        r for r in recorded_log if isinstance(r.event, ev.RiskVerdictIssued) and r.position > first
    ]
    assert len(verdicts) >= 3
    target, later = verdicts[1], verdicts[2]

    def alter(recorded: RecordedEvent) -> RecordedEvent:
        if recorded.position in (target.position, later.position):
            event = msgspec.structs.replace(recorded.event, detail="edited after the fact")
            return msgspec.structs.replace(recorded, event=event)
        return recorded

    url = await fresh_database_url(migrate=True)
    await append_log(url, recorded_log, alter)
    code, _, lines = await run("--from", FROM, "--verify", "--json", "-q", "--database-url", url)
    assert code == 1
    divergence = only(lines, "verify")["divergence"]
    assert divergence["machine"] == "risk"
    assert divergence["position"] == target.position
    assert divergence["cause_position"] == target.causation_position
    assert "detail" in divergence["problem"]
    assert "edited after the fact" in divergence["recorded"]["payload"]
    assert "edited after the fact" not in divergence["recomputed"]["payload"]
    assert only(lines, "verify")["chain"]["ok"]  # appended honestly: the chain is intact


async def test_verify_when_recorded_configuration_has_another_parameter_then_divergence(
    fresh_database_url: Fresh, recorded_log: list[RecordedEvent]
) -> None:
    def alter(recorded: RecordedEvent) -> RecordedEvent:
        if isinstance(recorded.event, ev.ConfigActivated):
            changed = config_event(recorded.event.at_ms, MAX_POSITION_PCT="10")
            return msgspec.structs.replace(recorded, event=changed)
        return recorded

    url = await fresh_database_url(migrate=True)
    await append_log(url, recorded_log, alter)
    code, _, lines = await run("--from", FROM, "--verify", "--json", "-q", "--database-url", url)
    assert code == 1
    divergence = only(lines, "verify")["divergence"]
    first = window_positions(recorded_log)
    first_entry = next(
        r for r in recorded_log if isinstance(r.event, ev.RiskVerdictIssued) and r.position >= first
    )
    assert divergence["machine"] == "risk"
    assert divergence["cause_position"] == first_entry.causation_position
    assert "payload differs" in divergence["problem"]
    code, text, _ = await run("--from", FROM, "--verify", "-q", "--database-url", url)
    assert "first divergence at position" in text and "recorded:" in text and "recomputed:" in text


async def test_verify_when_a_recorded_fill_is_missing_then_the_paper_decision_is_reported(
    fresh_database_url: Fresh, recorded_log: list[RecordedEvent]
) -> None:
    first = window_positions(recorded_log)
    fill = next(
        r for r in recorded_log if isinstance(r.event, ev.OrderFilled) and r.position > first
    )
    url = await fresh_database_url(migrate=True)
    await append_log(url, recorded_log, lambda r: None if r.position == fill.position else r)
    code, _, lines = await run("--from", FROM, "--verify", "--json", "-q", "--database-url", url)
    assert code == 1
    divergence = only(lines, "verify")["divergence"]
    assert divergence["machine"] == "paper"
    assert divergence["cause_position"] == fill.causation_position
    assert divergence["recorded"] is None
    assert divergence["recomputed"]["event_id"] == str(fill.event_id)
    assert "does not hold" in divergence["problem"]


async def test_verify_when_window_ends_before_a_divergence_then_the_window_passes(
    fresh_database_url: Fresh, recorded_log: list[RecordedEvent]
) -> None:
    last = recorded_log[-1]
    verdict = [r for r in recorded_log if isinstance(r.event, ev.RiskVerdictIssued)][-1]

    def alter(recorded: RecordedEvent) -> RecordedEvent:
        if recorded.position == verdict.position:
            event = msgspec.structs.replace(recorded.event, detail="late edit")
            return msgspec.structs.replace(recorded, event=event)
        return recorded

    url = await fresh_database_url(migrate=True)
    await append_log(url, recorded_log, alter)
    assert verdict.position < last.position
    until = verdict.occurred_at.strftime("%Y-%m-%dT%H:%M:%S.%f")
    end = "2025-06-02T00:10:00Z" if until > "2025-06-02T00:10:00" else None
    assert end is not None
    code, _, lines = await run(
        "--from", FROM, "--to", end, "--verify", "--json", "-q", "--database-url", url
    )
    assert code == 0, only(lines, "verify")
    code, _, _ = await run("--from", FROM, "--verify", "--json", "-q", "--database-url", url)
    assert code == 1


# --------------------------------------------------------------------------- walk


async def test_walk_when_window_crosses_midnight_then_prints_decisions_days_and_totals(
    ledger: str, recorded_log: list[RecordedEvent]
) -> None:
    code, text, _ = await run("--from", "2025-06-01T23:40:00Z", "--database-url", ledger)
    assert code == 0
    assert "day 2025-06-01:" in text and "day 2025-06-02:" in text
    for word in ("signal ", "verdict ", "order ", "fill "):
        assert word in text
    assert "max daily drawdown" in text and "peak equity" in text


async def test_walk_when_json_then_every_line_is_an_object_and_state_starts_from_the_log(
    ledger: str, recorded_log: list[RecordedEvent]
) -> None:
    code, _, lines = await run("--from", FROM, "--json", "--database-url", ledger)
    assert code == 0
    summary = only(lines, "summary")
    first = window_positions(recorded_log)
    assert summary["first_position"] == first
    assert summary["last_position"] == recorded_log[-1].position
    # The window starts from the state folded before it: equity is not the initial deposit.
    from aggregates.portfolio import EMPTY, evolve

    portfolio = EMPTY
    for r in recorded_log[: first - 1]:
        portfolio = evolve(portfolio, r.event)
    assert Decimal(summary["start_equity"]) == portfolio.equity
    events = [line for line in lines if line["type"] == "event"]
    assert events and all(line["position"] >= first for line in events)
    fills = sum(
        isinstance(r.event, ev.OrderFilled | ev.OrderPartiallyFilled)
        for r in recorded_log[first - 1 :]
    )
    assert summary["fills"] == fills


async def test_walk_when_symbol_given_then_only_that_symbols_events_are_shown(
    ledger: str,
) -> None:
    code, _, lines = await run(
        "--from", FROM, "--symbol", "ETH_USDT", "--json", "--database-url", ledger
    )
    assert code == 0
    symbols = {line["symbol"] for line in lines if line["type"] == "event"}
    assert "ETH_USDT" in symbols and "BTC_USDT" not in symbols


# --------------------------------------------------------------------------- what-if


async def test_what_if_when_recorded_parameters_then_counterfactual_equals_actual(
    ledger: str,
) -> None:
    code, _, lines = await run(
        "--from", FROM, "-q", "--json", "--what-if", "MAX_POSITION_PCT=40", "--database-url", ledger
    )
    assert code == 0
    what_if = only(lines, "what_if")
    assert what_if["identical"] and what_if["reproduced"]
    assert what_if["actual"] == what_if["counterfactual"] == what_if["baseline"]
    assert what_if["actual"]["trades"] > 0


async def test_what_if_when_parameters_change_then_differs_and_nothing_is_written(
    ledger: str,
) -> None:
    async with await EventStore.connect(ledger) as store:
        before = await store.head()
    code, text, lines = await run(
        "--from", FROM, "-q", "--what-if", "MAX_POSITION_PCT=5", "STOP_LOSS_PCT=1",
        "--json", "--database-url", ledger,
    )  # fmt: skip
    assert code == 0
    what_if = only(lines, "what_if")
    assert not what_if["identical"]
    assert what_if["reproduced"]  # a session the machines recorded keeping up
    assert what_if["overrides"] == {"MAX_POSITION_PCT": "5", "STOP_LOSS_PCT": "1"}
    actual, counter = what_if["actual"], what_if["counterfactual"]
    assert Decimal(counter["fees"]) < Decimal(actual["fees"])  # smaller positions, smaller fees
    async with await EventStore.connect(ledger) as store:
        assert await store.head() == before
    code, text, _ = await run(
        "--from", FROM, "-q", "--what-if", "MAX_POSITION_PCT=5", "--database-url", ledger
    )
    assert "actual" in text and "counterfactual" in text


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("NO_SUCH_PARAMETER=1", "NO_SUCH_PARAMETER"),
        ("MAX_POSITION_PCT=lots", "MAX_POSITION_PCT"),
        ("MAX_POSITION_PCT=500", "MAX_POSITION_PCT"),
        ("MAX_POSITION_PCT", "KEY=VALUE"),
    ],
)
async def test_what_if_when_key_or_value_is_bad_then_exit_2_naming_it(
    ledger: str, override: str, named: str, capfd: pytest.CaptureFixture[str]
) -> None:
    code, _, _ = await run("--from", FROM, "--what-if", override, "--database-url", ledger)
    assert code == 2
    assert named in capfd.readouterr().err


# --------------------------------------------------------------------------- report


async def test_report_when_written_then_contains_every_chart_and_the_trade_table(
    ledger: str, recorded_log: list[RecordedEvent], tmp_path
) -> None:
    path = tmp_path / "audit.html"
    code, _, _ = await run(
        "--from", FROM, "-q", "--verify", "--report", str(path), "--database-url", ledger
    )
    assert code == 0
    html = path.read_text(encoding="utf-8")
    for chart in ("equity", "drawdown", "exposure", "verdicts"):
        figure = re.search(rf'<figure id="chart-{chart}" class="chart">(.*?)</figure>', html, re.S)
        assert figure is not None, chart
        assert "<svg" in figure.group(1), chart
    assert "<script" not in html and "<link" not in html and 'src="' not in html
    assert 'href="http' not in html
    first = window_positions(recorded_log)
    fills = [
        r
        for r in recorded_log[first - 1 :]
        if isinstance(r.event, ev.OrderFilled | ev.OrderPartiallyFilled)
    ]
    table = re.search(r'<table class="trades">.*?<tbody>(.*?)</tbody>', html, re.S)
    assert table is not None
    rows = table.group(1).count("<tr>")
    assert rows == len(fills) > 0
    for fill in fills:
        assert f"fill #{fill.position} " in html
        assert fill.hash.hex()[:12] in html
    entry = next(r for r in fills if "entry" in _intent_of(recorded_log, r.event.client_order_id))
    row = next(row for row in table.group(1).split("</tr>") if f"fill #{entry.position} " in row)
    for link in ("order #", "verdict #", "signal #", "tick #"):
        assert link in row, link


def _intent_of(log: list[RecordedEvent], client_order_id: str) -> str:
    return next(
        r.event.intent
        for r in log
        if isinstance(r.event, ev.OrderRequested) and r.event.client_order_id == client_order_id
    )


# --------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--from", "2025-13-45"], "not a date"),
        (["--from", "yesterday"], "not a date"),
        (["--from", FROM, "--to", "2025-06-01T12:00:00Z"], "must be after"),
        (["--from", "2025-06-03", "--to", "2025-06-02"], "a date alone is a whole day"),
        (["--from", "2031-01-01"], "past the end"),
        (["--from", "2025-05-01", "--to", "2025-05-02"], "holds no events"),
        (["--from", FROM, "--symbol", "btc"], "--symbol"),
        ([], "--from"),
        (["--from", FROM, "--bogus"], "unrecognized"),
        (["--from", FROM, "--report", "/nonexistent/folder/r.html"], "does not exist"),
    ],
)
async def test_replay_when_arguments_are_bad_then_exit_2_with_a_clear_message(
    ledger: str, argv: list[str], message: str, capfd: pytest.CaptureFixture[str]
) -> None:
    code, _, _ = await run(*argv, "--database-url", ledger)
    assert code == 2
    assert message in capfd.readouterr().err


async def test_replay_when_ledger_is_empty_then_exit_2(fresh_database_url: Fresh, capfd) -> None:
    url = await fresh_database_url(migrate=True)
    code, _, _ = await run("--from", FROM, "--database-url", url)
    assert code == 2
    assert "empty" in capfd.readouterr().err


async def _edit_recorded_at(url: str, position: int) -> None:
    """What only a superuser bypassing the refusal triggers could do: edit a stored row."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET session_replication_role = replica")
        await conn.execute(
            "UPDATE ledger.events SET recorded_at = recorded_at + interval '1 second' "
            "WHERE position = $1",
            position,
        )
    finally:
        await conn.close()


async def test_verify_when_an_event_was_edited_in_place_then_the_broken_chain_fails_it(
    fresh_database_url: Fresh, recorded_log: list[RecordedEvent]
) -> None:
    url = await fresh_database_url(migrate=True)
    await append_log(url, recorded_log)
    first = window_positions(recorded_log)
    tick = next(
        r for r in recorded_log if isinstance(r.event, ev.ClockTicked) and r.position > first
    )
    await _edit_recorded_at(url, tick.position)
    code, _, lines = await run("--from", FROM, "--verify", "--json", "-q", "--database-url", url)
    assert code == 1
    verify = only(lines, "verify")
    assert verify["divergence"] is None  # the decisions still hold ...
    assert not verify["chain"]["ok"]  # ... but the ledger was edited
    assert verify["chain"]["first_bad_position"] == tick.position


async def test_verify_when_an_event_past_the_window_was_edited_then_the_chain_check_still_finds_it(
    fresh_database_url: Fresh, recorded_log: list[RecordedEvent]
) -> None:
    """The fold stops reading soon after the window; the chain is still checked to the head."""
    url = await fresh_database_url(migrate=True)
    await append_log(url, recorded_log)
    last = recorded_log[-1].position
    await _edit_recorded_at(url, last)
    argv = ("--from", FROM, "--to", "2025-06-02T00:05:00Z", "--verify", "--json", "-q")
    code, _, lines = await run(*argv, "--database-url", url)
    assert code == 1
    verify = only(lines, "verify")
    assert verify["last_position"] < last - 2000  # at least two chunks the fold never read
    assert verify["divergence"] is None
    assert verify["chain"] == {
        "ok": False,
        "events_checked": last - 1,
        "first_bad_position": last,
        "problem": f"position {last}: hash does not match its content",
    }
