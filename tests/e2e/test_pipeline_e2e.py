"""One path through everything: a scripted MEXC market into `claire run`, real PostgreSQL and Redis.

A local WebSocket server speaking MEXC's protocol plays a scripted market — a quiet start, a
rally that the momentum rule buys, a data silence, a gap-down crash that breaches the daily
drawdown, and a few malformed frames — into every service (feed, signal, risk, paper execution,
projector, relay, alerts). Then the ledger is checked as an auditor would.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from itertools import pairwise

import msgspec
import pytest

from adapters.mexc.feed import FeedConfig
from adapters.mexc.local_server import LocalMexcServer
from adapters.mexc.tape import TapeEntry
from adapters.secrets import Secret
from adapters.settings import RuntimeSettings
from aggregates import events as ev
from aggregates.config import parse_config
from aggregates.envelope import RecordedEvent
from aggregates.portfolio import EMPTY, evolve
from aggregates.risk import RiskMachine
from eventstore import EventStore
from pipeline.app import SERVICES, Pipeline, RunOptions, run_pipeline
from pipeline.demo import TapeClock
from projections.postgres import readmodel_rows
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


RALLY = Decimal("0.0004")  # +0.04 % a second: the momentum rule goes long after 7.5 s
CRASH = Decimal("0.85")  # after the second rally: 15 % below its top, in one gap


def _rally(base: Decimal, second: float) -> Decimal:
    return base * (1 + RALLY * Decimal(str(round(second, 1))))


def _deal(at: int, price: Decimal) -> dict[str, object]:
    deal = {"p": float(price.quantize(Decimal("0.1"))), "v": 20, "T": 1, "O": 3, "M": 2, "t": at}
    return {"channel": "push.deal", "symbol": SYMBOL, "data": [deal], "ts": at}


def scripted_tape() -> tuple[list[TapeEntry], int]:
    """The market up to the data silence (a flat start, then a rally), and its valid trades."""
    entries, trades = [], 0
    second = 0.0
    base = Decimal(100_000)
    while second < 150:
        at = START_MS + int(second * 1000)
        price = base if second < 40 else _rally(base, second - 40)
        entries.append(TapeEntry(at_ms=at, msg=json.dumps(_deal(at, price)).encode()))  # type: ignore[arg-type]
        trades += 1
        if int(second * 2) in (50, 200, 280):
            entries.append(TapeEntry(at_ms=at, raw=MALFORMED[len(entries) % 3]))
        second += 0.5
    return entries, trades


async def after_the_silence(server: LocalMexcServer, clock: TapeClock) -> int:
    """The market once the silence is over: flat (the momentum rule goes flat), a second rally
    (it goes long), then a gap-down crash; each trade stamped with the clock's time when it is
    sent. Returns how many trades were sent."""
    top = _rally(Decimal(100_000), 110)
    sent = 0
    for step in range(340):  # 170 s of market time, a trade every 0.5 s
        second = step / 2
        if second < 70:
            price = top
        elif second < 130:
            price = _rally(top, second - 70)
        else:
            price = _rally(top, 60) * CRASH
        await server.push(_deal(clock(), price))
        sent += 1
        await asyncio.sleep(0.5 / SPEED)
    return sent


async def _ledger(url: str) -> list[RecordedEvent]:
    async with await EventStore.connect(url, max_connections=1) as store:
        return [r async for r in store.read_all()]


async def _until(url: str, what: str, probe: Callable[[list[RecordedEvent]], bool]) -> None:
    """Poll the ledger until ``probe`` holds (a bound on waiting, never a timing assertion)."""
    for _ in range(600):
        if probe(await _ledger(url)):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


def _silence_tripped(recorded: list[RecordedEvent]) -> bool:
    return any(
        isinstance(r.event, ev.CircuitBreakerTripped) and r.event.layer == "data_silence"
        for r in recorded
    )


def _signals_judged(recorded: list[RecordedEvent]) -> bool:
    """Every entry signal recorded so far has its risk verdict."""
    longs = {
        r.event_id
        for r in recorded
        if isinstance(r.event, ev.SignalGenerated) and r.event.direction != "flat"
    }
    judged = {r.causation_id for r in recorded if isinstance(r.event, ev.RiskVerdictIssued)}
    return bool(longs) and longs <= judged


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


def _entries_without_the_silence_breaker(
    recorded: list[RecordedEvent], held: range
) -> list[ev.RiskVerdictIssued]:
    """Risk's entry verdicts on the inputs recorded while the breaker held, had the silence limit
    been out of reach (a day): what the breaker alone refused."""
    machine, lenient = RiskMachine(), parse_config({**CONFIG, "DATA_SILENCE_SECONDS": "86400"})
    state = machine.initial()
    verdicts = []
    for fact in recorded:
        if fact.position >= held.stop:
            break
        if machine.owns(fact.event):
            continue
        if isinstance(fact.event, ev.ConfigActivated):
            fact = msgspec.structs.replace(fact, event=lenient.activated(fact.event.at_ms))
        state, outputs = machine.step(state, fact)
        if fact.position in held:
            verdicts += [
                out
                for out in outputs
                if isinstance(out, ev.RiskVerdictIssued) and out.intent == "entry"
            ]
    return verdicts


async def test_scripted_market_when_run_through_every_service_then_ledger_tells_the_whole_story(
    fresh_database_url, redis_url: str, redis_namespace: str
) -> None:
    database_url = await fresh_database_url()
    tape, valid_trades = scripted_tape()
    done = asyncio.Event()
    async with LocalMexcServer(tape=tape, speed=SPEED) as server:
        clock = TapeClock(server, START_MS, SPEED)
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

        def options(services: tuple[str, ...]) -> RunOptions:
            return RunOptions(
                services=services,
                until=done,
                duration=90,
                now_ms=clock,
                contract_specs=_specs(),
                feed_config=FeedConfig(url=server.url, ping_interval=2.0, tickers=False),
            )

        # Every service but signal. The signal service starts late, once the silence has
        # tripped the breaker: it catches up on the rally and records its entry signal while the
        # breaker holds, an entry that would otherwise be approved.
        others = tuple(s for s in SERVICES if s != "signal")
        main = asyncio.create_task(run_pipeline(settings, parse_config(CONFIG), options(others)))
        late: asyncio.Task[Pipeline] | None = None
        try:
            await server.played.wait()
            await _until(database_url, "the data-silence breaker", _silence_tripped)
            late = asyncio.create_task(
                run_pipeline(settings, parse_config(CONFIG), options(("signal",)))
            )
            await _until(database_url, "verdicts on the late signals", _signals_judged)
            valid_trades += await after_the_silence(server, clock)
            done.set()
            pipeline = await main
            await late
        finally:
            for task in (main, late):
                if task is not None and not task.done():
                    task.cancel()
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

    # The silence, judged by our own oracle from the market trades: the input holds exactly one
    # gap longer than DATA_SILENCE_SECONDS. The breaker trips inside it, once, and clears on the
    # first trade after it.
    limit_ms = int(CONFIG["DATA_SILENCE_SECONDS"]) * 1000
    trades = [r for r in recorded if isinstance(r.event, ev.TradeTicked)]
    gaps = [(a, b) for a, b in pairwise(trades) if b.event.at_ms - a.event.at_ms > limit_ms]
    assert len(gaps) == 1, gaps
    last_before, first_after = gaps[0]
    silence = [
        r
        for r in recorded
        if isinstance(r.event, ev.CircuitBreakerTripped | ev.CircuitBreakerCleared)
        and r.event.layer == "data_silence"
    ]
    assert [type(r.event) for r in silence] == [ev.CircuitBreakerTripped, ev.CircuitBreakerCleared]
    tripped, cleared = silence
    assert last_before.position < tripped.position < first_after.position < cleared.position
    assert last_before.event.at_ms + limit_ms < tripped.event.at_ms <= first_after.event.at_ms
    assert cleared.causation_id == first_after.event_id  # lifted by the data's return
    # While it held, an entry came before risk (the late signal service's) and was refused by
    # the data-silence layer; no entry was approved or trimmed, no entry order requested ...
    held = range(tripped.position, cleared.position)
    verdicts = [r for r in recorded if isinstance(r.event, ev.RiskVerdictIssued)]
    entries = [r for r in verdicts if r.event.intent == "entry"]  # type: ignore[attr-defined]
    refused = [r for r in entries if r.position in held]
    assert refused, "no entry reached risk while the breaker held: the test could not fail"
    assert {
        (r.event.decision, r.event.layer, r.event.reason)  # type: ignore[attr-defined]
        for r in refused
    } == {("rejected", "data_silence", "circuit_breaker_data_silence")}
    assert not [
        r
        for r in recorded
        if r.position in held
        and isinstance(r.event, ev.OrderRequested)
        and r.event.intent == "entry"
    ]
    # ... nor any entry approved whose time lies in the silent window ...
    window = range(tripped.event.at_ms, first_after.event.at_ms)
    assert not [
        r
        for r in entries
        if r.event.decision != "rejected" and r.event.at_ms in window  # type: ignore[attr-defined]
    ]
    # ... and those entries would have been approved without the breaker: the same log through
    # the risk machine with DATA_SILENCE_SECONDS out of reach approves them.
    unbroken = _entries_without_the_silence_breaker(recorded, held)
    assert [v.decision for v in unbroken] and {v.decision for v in unbroken} <= {
        "approved",
        "trimmed",
    }, unbroken

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
    live_rows = await readmodel_rows(database_url)
    await rebuild(database_url)
    assert await readmodel_rows(database_url) == live_rows
    assert any(live_rows.values())
