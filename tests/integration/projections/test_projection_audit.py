"""SQL an auditor can trust: complete causal chains, read-only roles, atomic rebuild swaps."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal

import asyncpg
import pytest
from hypothesis import HealthCheck, Phase, given, settings

from aggregates import events as ev
from aggregates.envelope import NewEvent, RecordedEvent, derived
from aggregates.streams import stream_for
from eventstore import EventStore
from projections import Projector, rebuild
from projections.core import at
from tests.integration.projections.projection_helpers import (
    append_in_order,
    read_facts,
    snapshot,
    with_acceptances,
)
from tests.unit.strategies import START_MS, drive, market_sequences, trading_config

pytestmark = [pytest.mark.db]

MakeDatabase = Callable[..., Awaitable[str]]
D = Decimal
SYMBOL = "BTC_USDT"


class Log:
    """Appends events one by one with explicit causes, like the services do."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.roots = 0

    async def root(self, event: ev.Event) -> RecordedEvent:
        self.roots += 1
        new = NewEvent(
            event=event, event_id=uuid.uuid5(_NS, str(self.roots)), occurred_at=at(event.at_ms)
        )
        return await self._append(new, event)

    async def caused(self, cause: RecordedEvent, *events: ev.Event) -> list[RecordedEvent]:
        out = []
        self.roots += 1  # a producer name of its own: two steps on one cause get distinct ids
        for new in derived(f"test-{self.roots}", cause, events):
            out.append(await self._append(new, new.event))
        return out

    async def _append(self, new: NewEvent, event: ev.Event) -> RecordedEvent:
        [position] = await self.store.append(stream_for(event), [new])
        [fact] = [f async for f in self.store.read_all(after=position - 1, batch_size=1)][:1]
        return fact


_NS = uuid.UUID("00000000-0000-0000-0000-0000000000aa")


def _tick(ms: int, price: str) -> ev.TradeTicked:
    return ev.TradeTicked(
        at_ms=ms,
        symbol=SYMBOL,
        price=D(price),
        contracts=D(5),
        taker_side="buy",
        position_effect="open",
    )


def _fill(kind: type, ms: int, order: str, contracts: str, **extra: object) -> ev.Event:
    return kind(
        at_ms=ms,
        client_order_id=order,
        symbol=SYMBOL,
        side="buy",
        price=D("50010"),
        contracts=D(contracts),
        fee=D("0.03"),
        fee_currency="USDT",
        liquidity="taker",
        fill_id=f"{order}-{ms}",
        **extra,
    )


async def _trading_day(store: EventStore) -> dict[str, RecordedEvent]:
    """Two orders with the two causal shapes, and a halt. Returns the facts by name."""
    log, t = Log(store), START_MS
    f: dict[str, RecordedEvent] = {}
    f["config"] = await log.root(trading_config().activated(t))
    f["t1"] = await log.root(_tick(t + 1000, "50000"))
    [f["s1"]] = await log.caused(
        f["t1"],
        ev.SignalGenerated(
            at_ms=t + 1000,
            symbol=SYMBOL,
            direction="long",
            strength=D("0.8"),
            momentum=D("0.01"),
            reference_price=D("50000"),
            window_start_ms=t,
            trades_in_window=10,
            contracts_in_window=D(50),
        ),
    )
    # Shape 1: verdict and order are siblings of one risk step (same cause).
    f["v1"], f["o1"] = await log.caused(
        f["s1"],
        ev.RiskVerdictIssued(
            at_ms=t + 1000,
            symbol=SYMBOL,
            decision="trimmed",
            layer="position_size",
            reason="max_position_pct",
            intent="entry",
            side="buy",
            requested_contracts=D(400),
            approved_contracts=D(300),
            numbers={"limit_pct": "20"},
        ),
        ev.OrderRequested(
            at_ms=t + 1000,
            client_order_id="o1",
            symbol=SYMBOL,
            side="buy",
            contracts=D(300),
            order_type="market",
            intent="entry",
            reduce_only=False,
            reference_price=D("50000"),
        ),
    )
    [f["a1"]] = await log.caused(
        f["o1"],
        ev.OrderAccepted(
            at_ms=t + 1000, client_order_id="o1", exchange_order_id="x1", symbol=SYMBOL
        ),
    )
    f["t2"] = await log.root(_tick(t + 2000, "50010"))
    [f["p1"]] = await log.caused(
        f["t2"], _fill(ev.OrderPartiallyFilled, t + 2000, "o1", "100", remaining_contracts=D(200))
    )
    f["t3"] = await log.root(_tick(t + 3000, "50010"))
    [f["f1"]] = await log.caused(f["t3"], _fill(ev.OrderFilled, t + 3000, "o1", "200"))
    # Shape 2: the verdict caused the order, which caused its own fill.
    [f["s2"]] = await log.caused(
        f["t3"],
        ev.SignalGenerated(
            at_ms=t + 3000,
            symbol=SYMBOL,
            direction="long",
            strength=D("0.9"),
            momentum=D("0.02"),
            reference_price=D("50010"),
            window_start_ms=t + 2000,
            trades_in_window=12,
            contracts_in_window=D(60),
        ),
    )
    [f["v2"]] = await log.caused(
        f["s2"],
        ev.RiskVerdictIssued(
            at_ms=t + 3000,
            symbol=SYMBOL,
            decision="approved",
            layer="none",
            reason="all_layers_passed",
            intent="entry",
            side="buy",
            requested_contracts=D(50),
            approved_contracts=D(50),
        ),
    )
    [f["o2"]] = await log.caused(
        f["v2"],
        ev.OrderRequested(
            at_ms=t + 3000,
            client_order_id="o2",
            symbol=SYMBOL,
            side="buy",
            contracts=D(50),
            order_type="market",
            intent="entry",
            reduce_only=False,
            reference_price=D("50010"),
        ),
    )
    [f["a2"]] = await log.caused(
        f["o2"],
        ev.OrderAccepted(
            at_ms=t + 3000, client_order_id="o2", exchange_order_id="x2", symbol=SYMBOL
        ),
    )
    [f["f2"]] = await log.caused(f["o2"], _fill(ev.OrderFilled, t + 3000, "o2", "50"))
    # A halt: one tick, one risk step, three outputs.
    f["t4"] = await log.root(_tick(t + 4000, "40000"))
    f["v3"], f["halt"], f["alert"] = await log.caused(
        f["t4"],
        ev.RiskVerdictIssued(
            at_ms=t + 4000,
            symbol=None,
            decision="halt",
            layer="daily_drawdown",
            reason="max_daily_drawdown_reached",
            intent="flatten",
            numbers={"drawdown_pct": "3.2", "limit_pct": "3"},
        ),
        ev.TradingStateChanged(
            at_ms=t + 4000,
            previous="ACTIVE",
            state="HALTED",
            changed_by="risk",
            reason="daily_drawdown",
        ),
        ev.AlertRaised(at_ms=t + 4000, severity="CRITICAL", code="halted", message="drawdown 3.2%"),
    )
    return f


async def test_trade_audit_when_fills_have_causes_then_each_cites_its_complete_chain(
    fresh_database_url: MakeDatabase,
) -> None:
    url = await fresh_database_url(migrate=True)
    async with await EventStore.connect(url) as store:
        f = await _trading_day(store)
    conn = await asyncpg.connect(url)
    try:
        rows = {r["fill_position"]: r for r in await conn.fetch("SELECT * FROM audit.trade_audit")}
        hashes = dict(await conn.fetch("SELECT position, encode(hash, 'hex') FROM ledger.events"))
    finally:
        await conn.close()
    pos = {name: fact.position for name, fact in f.items()}
    expected = {
        "p1": ("o1", "v1", "s1", ["t1", "t2"], ["p1", "t2", "o1", "v1", "s1", "t1"]),
        "f1": ("o1", "v1", "s1", ["t1", "t3"], ["f1", "t3", "o1", "v1", "s1", "t1"]),
        "f2": ("o2", "v2", "s2", ["t3"], ["f2", "o2", "v2", "s2", "t3"]),
    }
    assert set(rows) == {pos[name] for name in expected}
    for fill, (order, verdict, signal, market, chain) in expected.items():
        row = rows[pos[fill]]
        assert row["order_position"] == pos[order]
        assert row["verdict_position"] == pos[verdict]
        assert row["signal_position"] == pos[signal]
        assert row["market_positions"] == sorted(pos[m] for m in market)
        assert row["chain_positions"] == sorted(pos[c] for c in chain)
        assert row["fill_hash"] == hashes[pos[fill]] == f[fill].hash.hex()
        assert row["verdict_hash"] == hashes[pos[verdict]]
        assert sorted(row["market_hashes"]) == sorted(hashes[pos[m]] for m in market)
    trimmed = rows[pos["p1"]]
    assert (trimmed["verdict_decision"], trimmed["verdict_layer"]) == ("trimmed", "position_size")
    assert trimmed["verdict_requested_contracts"] == D(400)
    assert trimmed["verdict_approved_contracts"] == D(300)


async def test_halts_view_when_risk_halts_then_it_names_the_trigger_verdict_and_alert(
    fresh_database_url: MakeDatabase,
) -> None:
    url = await fresh_database_url(migrate=True)
    async with await EventStore.connect(url) as store:
        f = await _trading_day(store)
    conn = await asyncpg.connect(url)
    try:
        [halt] = await conn.fetch("SELECT * FROM audit.halts")
    finally:
        await conn.close()
    assert halt["position"] == f["halt"].position
    assert halt["cause_position"] == f["t4"].position
    assert halt["cause_type"] == "market.trade"
    assert (halt["verdict_position"], halt["verdict_layer"]) == (f["v3"].position, "daily_drawdown")
    assert '"halted"' in halt["alerts"]


async def _refused(conn: asyncpg.Connection, statement: str) -> bool:
    try:
        async with conn.transaction():
            await conn.execute(statement)
    except asyncpg.InsufficientPrivilegeError:
        return True
    return False


async def test_auditor_when_it_tries_to_write_anything_then_postgres_refuses(
    fresh_database_url: MakeDatabase,
) -> None:
    url = await fresh_database_url(migrate=True)
    async with await EventStore.connect(url) as store:
        await _trading_day(store)
    projector = await Projector.open(url)
    await projector.catch_up()
    await projector.close()
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET ROLE claire_auditor")
        for readable in (
            "ledger.events",
            "readmodel.fills",
            "readmodel.positions",
            "readmodel.checkpoints",
            "audit.trade_audit",
            "audit.halts",
            "audit.chain",
        ):
            assert await conn.fetchval(f"SELECT count(*) FROM {readable}") > 0, readable
        writes = [
            "INSERT INTO readmodel.alerts (position, severity, code, message, at)"
            " VALUES (999, 'INFO', 'x', 'x', now())",
            "UPDATE readmodel.fills SET fee = 0",
            "DELETE FROM readmodel.positions",
            "UPDATE readmodel.checkpoints SET position = 0",
            "TRUNCATE readmodel.fills_g1",
            "SELECT * FROM readmodel.fills_g1",
            "UPDATE ledger.events SET payload = '{}'",
            "DELETE FROM ledger.events",
            "INSERT INTO ledger.events SELECT * FROM ledger.events LIMIT 1",
            "UPDATE ledger.head SET position = 0",
            "CREATE TABLE audit.mine (x int)",
            "CREATE TABLE readmodel.mine (x int)",
            "CREATE TABLE public.mine (x int)",
            "CREATE TEMP TABLE mine (x int)",
            "CREATE SCHEMA mine",
            "CREATE OR REPLACE VIEW readmodel.fills AS SELECT 1 AS position",
            "DROP VIEW audit.trade_audit",
        ]
        allowed = [w for w in writes if not await _refused(conn, w)]
        assert allowed == []
    finally:
        await conn.close()


async def test_projector_role_when_it_tries_to_touch_the_ledger_then_postgres_refuses(
    fresh_database_url: MakeDatabase,
) -> None:
    url = await fresh_database_url(migrate=True)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET ROLE claire_projector")
        assert await conn.fetchval("SELECT position FROM ledger.head") == 0
        for write in (
            "INSERT INTO ledger.events SELECT * FROM ledger.events LIMIT 1",
            "UPDATE ledger.head SET position = 1",
            "CREATE TABLE ledger.mine (x int)",
            "CREATE TABLE audit.mine (x int)",
        ):
            assert await _refused(conn, write), write
    finally:
        await conn.close()


@settings(
    max_examples=1,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(items=market_sequences(min_size=400, max_size=400))
async def test_rebuild_when_readers_query_meanwhile_then_they_see_old_or_new_never_half(
    fresh_database_url: MakeDatabase, items: list
) -> None:
    url = await fresh_database_url(migrate=True)
    async with await EventStore.connect(url) as store:
        await append_in_order(store, with_acceptances(drive(items).facts))
        facts = await read_facts(store)
    stale_at = len(facts) // 4
    projector = await Projector.open(url)
    await projector.project(facts[:stale_at])
    await projector.close()
    observe = """
        SELECT (SELECT position FROM readmodel.checkpoints WHERE projection = 'portfolio'),
               (SELECT count(*) FROM readmodel.equity_daily)
               + (SELECT count(*) FROM readmodel.alerts) + (SELECT count(*) FROM readmodel.fills),
               (SELECT max(updated_position) FROM readmodel.exposure)
    """
    reader = await asyncpg.connect(url)
    try:
        old = tuple(await reader.fetchrow(observe))
        building = asyncio.create_task(rebuild(url, batch_events=20))
        seen = set()
        while not building.done():
            seen.add(tuple(await reader.fetchrow(observe)))
        await building
        new = tuple(await reader.fetchrow(observe))
    finally:
        await reader.close()
    assert old[0] == stale_at and new[0] == len(facts)
    assert seen <= {old, new}

    # A rebuild cut short leaves the old model whole, and the next one completes.
    cut = asyncio.create_task(rebuild(url, batch_events=5))
    await asyncio.sleep(0.05)
    cut.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await cut
    before = await snapshot(url)
    await rebuild(url)
    assert await snapshot(url) == before
