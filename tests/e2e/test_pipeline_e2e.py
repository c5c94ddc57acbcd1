"""One path through everything: a scripted MEXC market into `claire run`, real PostgreSQL and Redis.

A local WebSocket server speaking MEXC's protocol plays a scripted market — a quiet start, a
rally that the momentum rule buys, a data silence, a gap-down crash that breaches the daily
drawdown, and a few malformed frames — into every service (feed, signal, risk, paper execution,
projector, relay, alerts). Then the ledger is checked as an auditor would.
"""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal

import asyncpg
import pytest

from adapters.mexc.feed import FeedConfig
from adapters.mexc.local_server import LocalMexcServer
from adapters.mexc.secrets import Secret
from adapters.mexc.tape import TapeEntry
from aggregates import events as ev
from aggregates.config import parse_config
from aggregates.envelope import RecordedEvent
from aggregates.portfolio import EMPTY, evolve
from eventstore import EventStore
from pipeline.app import RunOptions, run_pipeline
from pipeline.demo import TapeClock
from pipeline.settings import RuntimeSettings
from projections.projector import rebuild

pytestmark = [pytest.mark.e2e, pytest.mark.db, pytest.mark.redis]

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SYMBOL = "BTC_USDT"
SPEED = 25.0

CONFIG = {
    "INITIAL_EQUITY_USDT": "10000",
    "MAX_POSITION_PCT": "50",
    "MAX_EXPOSURE_PCT": "100",
    "MAX_DAILY_DRAWDOWN_PCT": "2",
    "STOP_LOSS_PCT": "20",
    "LOOKBACK_MINUTES": "1",
    "SIGNAL_THRESHOLD_PCT": "0.3",
    "SIGNAL_MIN_TRADES": "5",
    "SIGNAL_MIN_CONTRACTS": "10",
    "ABNORMAL_MOVE_PCT": "50",
    "ABNORMAL_WINDOW_SECONDS": "60",
    "ABNORMAL_PAUSE_SECONDS": "60",
    "DATA_SILENCE_SECONDS": "15",
    "EXIT_COOLDOWN_SECONDS": "5",
    "LOSS_STREAK_COUNT": "3",
    "LOSS_STREAK_WINDOW_MINUTES": "60",
    "LOSS_STREAK_PAUSE_MINUTES": "60",
    "MAX_ORDERS_PER_MINUTE": "30",
    "MAX_ORDER_NOTIONAL_USDT": "6000",
    "TAKER_FEE_RATE": "0.0006",
    "MAKER_FEE_RATE": "0.0002",
    "PAPER_SLIPPAGE_BPS": "2",
    "CONTRACT_SPECS": "BTC_USDT:0.0001:1:5000000:1:0.1",
}

MALFORMED = [
    '{"channel":"push.deal","symbol":"BTC_USDT","data":{"p":-1,"v":5,"T":1,"O":3,"M":2,"t":1},'
    '"ts":1}',
    "not json at all",
    '{"channel":"push.deal","symbol":"BTC_USDT","data":{"p":"NaN","v":5,"T":1,"O":3,"M":2,'
    '"t":1},"ts":1}',
]


def _price(second: float) -> Decimal:
    """Flat, rally, (silence), then a gap-down crash."""
    base = Decimal(100_000)
    if second < 40:
        return base
    if second < 150:
        return base * (1 + Decimal("0.0004") * Decimal(str(round(second - 40, 1))))
    top = base * (1 + Decimal("0.0004") * 110)
    return top * Decimal("0.92")  # after the silence: 8 % below the top, in one gap


def scripted_tape() -> tuple[list[TapeEntry], int]:
    """The market, and how many valid trades it holds."""
    entries, trades = [], 0
    second = 0.0
    while second < 230:
        if 150 <= second < 185:  # data silence
            second += 0.5
            continue
        at = START_MS + int(second * 1000)
        deal = {
            "p": float(_price(second).quantize(Decimal("0.1"))),
            "v": 20,
            "T": 1,
            "O": 3,
            "M": 2,
            "t": at,
        }
        msg = {"channel": "push.deal", "symbol": SYMBOL, "data": [deal], "ts": at}
        entries.append(TapeEntry(at_ms=at, msg=json.dumps(msg).encode()))  # type: ignore[arg-type]
        trades += 1
        if int(second * 2) in (50, 200, 400):
            entries.append(TapeEntry(at_ms=at, raw=MALFORMED[len(entries) % 3]))
        second += 0.5
    return entries, trades


def _specs() -> list[ev.ContractSpecified]:
    return [
        ev.ContractSpecified(
            at_ms=START_MS,
            symbol=SYMBOL,
            contract_size=Decimal("0.0001"),
            min_contracts=Decimal(1),
            max_contracts=Decimal(5_000_000),
            contracts_step=Decimal(1),
            price_step=Decimal("0.1"),
            taker_fee_rate=Decimal("0.0006"),
            maker_fee_rate=Decimal("0.0002"),
            api_allowed=True,
            source="config",
        )
    ]


async def _readmodel_rows(url: str) -> dict[str, list[tuple[object, ...]]]:
    conn = await asyncpg.connect(url)
    try:
        tables = await conn.fetch(  # the views readers use (tables are per generation)
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'readmodel' AND table_type = 'VIEW' ORDER BY table_name"
        )
        rows = {}
        for (table,) in tables:
            records = await conn.fetch(f'SELECT * FROM readmodel."{table}"')
            rows[table] = sorted(tuple(str(v) for v in record.values()) for record in records)
        return rows
    finally:
        await conn.close()


async def test_scripted_market_when_run_through_every_service_then_ledger_tells_the_whole_story(
    fresh_database_url, redis_url: str, redis_namespace: str
) -> None:
    database_url = await fresh_database_url()
    tape, valid_trades = scripted_tape()
    async with LocalMexcServer(tape=tape, speed=SPEED) as server:
        settings = RuntimeSettings(
            database_url=Secret(database_url),
            redis_url=Secret(redis_url),
            mexc_ws_url=server.url,
            mexc_rest_url="http://127.0.0.1:9",
            metrics_port=0,
            clock_interval_seconds=0.1,
            symbols=(SYMBOL,),
            bus_namespace=redis_namespace,
        )
        pipeline = await run_pipeline(
            settings,
            parse_config(CONFIG),
            RunOptions(
                until=server.played,
                duration=60,
                now_ms=TapeClock(server, START_MS, SPEED),
                contract_specs=_specs(),
                feed_config=FeedConfig(url=server.url, ping_interval=2.0, tickers=False),
            ),
        )
    assert pipeline.feed is not None
    assert pipeline.feed.stats.malformed == 3  # counted and skipped ...

    async with await EventStore.connect(database_url) as store:
        recorded = [r async for r in store.read_all()]
        verification = await store.verify()
    by_type = Counter(r.event_type for r in recorded)
    by_id = {r.event_id: r for r in recorded}

    # ... and never stored: exactly the valid trades reached the ledger
    assert by_type["market.trade"] == valid_trades
    assert by_type["config.activated"] == 1
    assert by_type["signal.generated"] >= 1
    assert by_type["risk.verdict"] >= 1
    assert by_type["order.requested"] >= 2  # the rally's entry and the halt's flatten
    assert by_type["order.filled"] + by_type["order.partially_filled"] >= 2

    # the silence paused entries, the crash halted trading with one CRITICAL alert
    breakers = [r.event for r in recorded if isinstance(r.event, ev.CircuitBreakerTripped)]
    assert any(b.layer == "data_silence" for b in breakers)
    # ... the silence breaker cleared again when data returned, and while it held, no entry was
    # approved (nor trimmed) and no entry order requested
    silence = [
        r
        for r in recorded
        if isinstance(r.event, ev.CircuitBreakerTripped | ev.CircuitBreakerCleared)
        and r.event.layer == "data_silence"
    ]
    assert [type(r.event) for r in silence[:2]] == [
        ev.CircuitBreakerTripped,
        ev.CircuitBreakerCleared,
    ]
    held = range(silence[0].position, silence[1].position)
    during = [r.event for r in recorded if r.position in held]
    assert not [
        v
        for v in during
        if isinstance(v, ev.RiskVerdictIssued)
        and v.intent == "entry"
        and v.decision in ("approved", "trimmed")
    ]
    assert not [o for o in during if isinstance(o, ev.OrderRequested) and o.intent == "entry"]
    halts = [r for r in recorded if isinstance(r.event, ev.TradingStateChanged)]
    assert [h.event.state for h in halts] == ["HALTED"]  # type: ignore[attr-defined]
    alerts = [r.event for r in recorded if isinstance(r.event, ev.AlertRaised)]
    critical = [alert for alert in alerts if alert.severity == "CRITICAL"]
    assert len(critical) == 1
    flattens = [
        r.event
        for r in recorded
        if isinstance(r.event, ev.OrderRequested) and r.event.intent == "flatten"
    ]
    assert flattens and all(order.reduce_only for order in flattens)
    after_halt = [
        r.event
        for r in recorded
        if r.position > halts[0].position
        and isinstance(r.event, ev.OrderRequested)
        and r.event.intent == "entry"
    ]
    assert after_halt == []
    portfolio = EMPTY
    for r in recorded:
        portfolio = evolve(portfolio, r.event)
    assert all(p.contracts == 0 for p in portfolio.positions.values())  # flattened

    # every fill traces back through its order to the market event that started the chain
    requests = {
        r.event.client_order_id: r for r in recorded if isinstance(r.event, ev.OrderRequested)
    }
    for fill in (r for r in recorded if isinstance(r.event, ev.OrderFilled)):
        order: RecordedEvent = requests[fill.event.client_order_id]  # type: ignore[attr-defined]
        chain = [order]
        while chain[-1].causation_id is not None:
            cause = by_id[chain[-1].causation_id]
            assert cause.position == chain[-1].causation_position
            chain.append(cause)
        assert isinstance(chain[-1].event, ev.TradeTicked | ev.ClockTicked)
        assert order.correlation_id == chain[-1].event_id

    assert verification.ok, verification.problem

    # the read models equal a rebuild from scratch
    live_rows = await _readmodel_rows(database_url)
    await rebuild(database_url)
    assert await _readmodel_rows(database_url) == live_rows
    assert any(live_rows.values())
