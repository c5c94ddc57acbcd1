"""Benchmark of the pure core: signal engine, risk manager, tick-to-verdict, portfolio fold.

Run: ``.venv/bin/python benchmarks/bench_core.py [--ticks N] [--seed S]``

The tick stream is generated (seeded, reproducible): 5 symbols, ~20 trades/s in total, random
walks with volatility bursts so that signals, entries, stop-losses and breakers all happen; a
clock tick every second; a tiny venue fills each requested order at the next trade of its
symbol. A first, untimed pass records the whole closed-loop log; the timed passes then replay it:

* signal decisions/s — ``SignalMachine.step`` over every trade;
* risk decisions/s — ``RiskMachine.step`` over every fact it consumes (ticks, clock, signals,
  fills);
* tick-to-verdict — per trade: signal step + risk step on the trade + (when the trade produced a
  signal) risk step on that signal, i.e. everything the core does from a trade to its verdict.
  Reported over all trades and separately over the trades that produced a signal (and so a
  verdict);
* portfolio fold events/s — ``evolve`` over every fact of the log.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aggregates.config import parse_config
from aggregates.envelope import RecordedEvent
from aggregates.events import (
    ClockTicked,
    Event,
    OrderFilled,
    OrderRequested,
    SignalGenerated,
    TradeTicked,
)
from aggregates.machine import record
from aggregates.portfolio import EMPTY, evolve
from aggregates.risk import RiskMachine
from aggregates.signal import SignalMachine

D = Decimal
START = 1_767_225_600_000
SYMBOLS = {
    "BTC_USDT": (D(60000), D("0.1"), D("0.0001")),
    "ETH_USDT": (D(3000), D("0.01"), D("0.01")),
    "SOL_USDT": (D(150), D("0.001"), D(1)),
    "XRP_USDT": (D("0.6"), D("0.0001"), D(10)),
    "DOGE_USDT": (D("0.15"), D("0.00001"), D(100)),
}
CONFIG = {
    "INITIAL_EQUITY_USDT": "10000",
    "MAX_POSITION_PCT": "10",
    "MAX_EXPOSURE_PCT": "40",
    "MAX_DAILY_DRAWDOWN_PCT": "5",
    "STOP_LOSS_PCT": "1.5",
    "LOOKBACK_MINUTES": "2",
    "SIGNAL_THRESHOLD_PCT": "0.3",
    "SIGNAL_MIN_TRADES": "20",
    "SIGNAL_MIN_CONTRACTS": "50",
    "ABNORMAL_MOVE_PCT": "5",
    "ABNORMAL_WINDOW_SECONDS": "60",
    "ABNORMAL_PAUSE_SECONDS": "300",
    "DATA_SILENCE_SECONDS": "30",
    "EXIT_COOLDOWN_SECONDS": "60",
    "LOSS_STREAK_COUNT": "4",
    "LOSS_STREAK_WINDOW_MINUTES": "60",
    "LOSS_STREAK_PAUSE_MINUTES": "30",
    "MAX_ORDERS_PER_MINUTE": "20",
    "MAX_ORDER_NOTIONAL_USDT": "1000",
    "TAKER_FEE_RATE": "0.0006",
    "MAKER_FEE_RATE": "0.0002",
    "PAPER_SLIPPAGE_BPS": "2",
    "CONTRACT_SPECS": ",".join(
        f"{s}:{size}:1:1000000:1:{step}" for s, (_, step, size) in SYMBOLS.items()
    ),
}


def generate(ticks: int, seed: int) -> list[Event]:
    """Config, then trades (and a clock tick each second) as random walks with bursts."""
    rng = random.Random(seed)
    config = parse_config(CONFIG)
    events: list[Event] = [config.activated(START)]
    prices = {s: p for s, (p, _, _) in SYMBOLS.items()}
    drift = dict.fromkeys(SYMBOLS, 0.0)
    now, next_clock = START, START + 1000
    names = list(SYMBOLS)
    for _ in range(ticks):
        now += rng.randint(0, 100)
        while next_clock <= now:
            events.append(ClockTicked(at_ms=next_clock))
            next_clock += 1000
        symbol = rng.choice(names)
        if rng.random() < 0.002:
            drift[symbol] = rng.choice([-1, 1]) * rng.uniform(0.00005, 0.0002)
        elif rng.random() < 0.002:
            drift[symbol] = 0.0
        _, step, _ = SYMBOLS[symbol]
        move = drift[symbol] + rng.gauss(0, 0.0004)
        new = (prices[symbol] * D(str(round(1 + move, 8)))).quantize(step)
        prices[symbol] = max(step, new)
        events.append(
            TradeTicked(
                at_ms=now,
                symbol=symbol,
                price=prices[symbol],
                contracts=D(rng.randint(1, 40)),
                taker_side=rng.choice(("buy", "sell")),
                position_effect="open",
            )
        )
    return events


def closed_loop(inputs: list[Event]) -> tuple[list[RecordedEvent], dict[int, RecordedEvent]]:
    """Untimed pass: the committed log, and for each trade position its signal's fact."""
    signal, risk = SignalMachine(), RiskMachine()
    s_state, r_state = signal.initial(), risk.initial()
    facts: list[RecordedEvent] = []
    signal_of: dict[int, RecordedEvent] = {}
    open_orders: dict[str, OrderRequested] = {}
    fills = 0

    def commit(event: Event) -> RecordedEvent:
        nonlocal s_state, r_state
        fact = record(event, len(facts) + 1)
        facts.append(fact)
        outputs: list[Event] = []
        if not risk.owns(event):
            r_state, out = risk.step(r_state, fact)
            outputs += out
        if not signal.owns(event):
            s_state, out = signal.step(s_state, fact)
            outputs += out
        for output in outputs:
            child = commit(output)
            if isinstance(output, SignalGenerated):
                signal_of[fact.position] = child
            if isinstance(output, OrderRequested):
                open_orders[output.client_order_id] = output
        return fact

    for event in inputs:
        commit(event)
        if isinstance(event, TradeTicked):
            for oid, order in list(open_orders.items()):
                if order.symbol == event.symbol:
                    fills += 1
                    del open_orders[oid]
                    size = SYMBOLS[order.symbol][2]
                    notional = event.price * order.contracts * size
                    fee = (notional * D("0.0006")).quantize(D("0.00000001"))
                    commit(
                        OrderFilled(
                            at_ms=event.at_ms,
                            client_order_id=oid,
                            symbol=order.symbol,
                            side=order.side,
                            price=event.price,
                            contracts=order.contracts,
                            fee=fee,
                            fee_currency="USDT",
                            liquidity="taker",
                            fill_id=f"f{fills}",
                            reduce_only=order.reduce_only,
                        )
                    )
    return facts, signal_of


def percentile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ticks", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--gc",
        choices=["on", "off"],
        default="on",
        help="garbage collector during the timed passes (default on, as a user's process runs)",
    )
    args = parser.parse_args()

    inputs = generate(args.ticks, args.seed)
    facts, signal_of = closed_loop(inputs)
    kinds: dict[str, int] = {}
    for fact in facts:
        kinds[fact.event_type] = kinds.get(fact.event_type, 0) + 1
    trade_facts = [f for f in facts if type(f.event) is TradeTicked]
    signal_machine, risk_machine = SignalMachine(), RiskMachine()
    config_fact = facts[0]
    gc.collect()
    if args.gc == "off":
        gc.disable()  # the core alone, without the collector's pauses

    # signal engine alone
    state = signal_machine.initial()
    state, _ = signal_machine.step(state, config_fact)
    begin = time.perf_counter()
    for fact in trade_facts:
        state, _ = signal_machine.step(state, fact)
    signal_rate = len(trade_facts) / (time.perf_counter() - begin)

    # risk manager alone, over everything it consumes
    risk_inputs = [f for f in facts if not risk_machine.owns(f.event)]
    r_state = risk_machine.initial()
    begin = time.perf_counter()
    for fact in risk_inputs:
        r_state, _ = risk_machine.step(r_state, fact)
    risk_rate = len(risk_inputs) / (time.perf_counter() - begin)

    # tick to verdict, replaying the log; non-trade facts are fed untimed
    s_state, r_state = signal_machine.initial(), risk_machine.initial()
    all_ticks: list[int] = []
    signal_ticks: list[int] = []
    clock = time.perf_counter_ns
    s_step, r_step = signal_machine.step, risk_machine.step
    for fact in facts:
        event = fact.event
        if type(event) is TradeTicked:
            signal_fact = signal_of.get(fact.position)
            t0 = clock()
            s_state, _ = s_step(s_state, fact)
            r_state, _ = r_step(r_state, fact)
            if signal_fact is not None:
                r_state, _ = r_step(r_state, signal_fact)
            elapsed = clock() - t0
            all_ticks.append(elapsed)
            if signal_fact is not None:
                signal_ticks.append(elapsed)
        elif not risk_machine.owns(event) and type(event) is not SignalGenerated:
            r_state, _ = r_step(r_state, fact)
            s_state, _ = s_step(s_state, fact)

    # the raw limit, timed the same way: per trade, one bare Decimal multiply-and-compare
    raw_ticks: list[int] = []
    bar = Decimal(6)
    for fact in trade_facts:
        event = fact.event
        t0 = clock()
        _ = event.price * bar >= event.contracts  # type: ignore[attr-defined]
        raw_ticks.append(clock() - t0)

    # portfolio fold
    events = [f.event for f in facts]
    begin = time.perf_counter()
    portfolio = EMPTY
    for event in events:
        portfolio = evolve(portfolio, event)
    fold_rate = len(events) / (time.perf_counter() - begin)
    gc.enable()

    print(f"python {sys.version.split()[0]}; seed {args.seed}; {len(facts):,} facts in the log")
    print("  " + ", ".join(f"{k} {v:,}" for k, v in sorted(kinds.items())))
    print(f"signal engine:        {signal_rate:12,.0f} decisions/s ({len(trade_facts):,} trades)")
    print(f"risk manager:         {risk_rate:12,.0f} decisions/s ({len(risk_inputs):,} facts)")
    print(
        f"tick-to-verdict, all trades:           median {percentile(all_ticks, 0.5):7.2f} us"
        f"   p99 {percentile(all_ticks, 0.99):7.2f} us   (n={len(all_ticks):,})"
    )
    if signal_ticks:
        print(
            f"tick-to-verdict, trades with a signal: median {percentile(signal_ticks, 0.5):7.2f} us"
            f"   p99 {percentile(signal_ticks, 0.99):7.2f} us   (n={len(signal_ticks):,})"
        )
    raw = percentile(raw_ticks, 0.5)
    print(
        f"raw limit (timer + one Decimal op): median {raw:7.2f} us; tick-to-verdict median is "
        f"{percentile(all_ticks, 0.5) / raw:.1f}x the raw limit; garbage collector {args.gc}"
    )
    print(f"portfolio fold:       {fold_rate:12,.0f} events/s ({len(events):,} events)")
    print(
        f"final equity {portfolio.equity:.2f} USDT, open positions "
        f"{sum(1 for p in portfolio.positions.values() if p.contracts)}"
    )
    print(
        f"median per-event timings are {statistics.median(all_ticks) / 1000:.2f} us; "
        "goals: tick-to-verdict median < 20 us, fold >= 500,000 events/s"
    )


if __name__ == "__main__":
    main()
