"""A black-box driver for the risk manager: the test plays the venue and the market.

Built only from the documented API: the event types, ``aggregates.config.parse_config``,
``aggregates.machine.record`` and the machines' ``initial``/``step``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from decimal import Decimal

from aggregates import events as ev
from aggregates.config import parse_config
from aggregates.envelope import RecordedEvent
from aggregates.machine import record
from aggregates.risk import RiskMachine
from tests.support.trading_env import ATTACK_LIMITS

D = Decimal
SYM = "TST_USDT"
DAY_MS = 86_400_000
T0 = 1_780_000_000_000 - (1_780_000_000_000 % DAY_MS) + 3_600_000  # 01:00 UTC of some day

BASE = {
    **ATTACK_LIMITS,
    "TAKER_FEE_RATE": "0",
    "MAKER_FEE_RATE": "0",
    "PAPER_SLIPPAGE_BPS": "0",
    # contract_size 0.01, so at price 100 one contract is 1 USDT of notional.
    "CONTRACT_SPECS": "TST_USDT:0.01:1:1000000:1:0.01,OTH_USDT:0.01:1:1000000:1:0.01",
}


def spec(at_ms: int, *, max_c: str, min_c: str = "1", step: str = "1", symbol: str = SYM):
    return ev.ContractSpecified(
        at_ms=at_ms,
        symbol=symbol,
        contract_size=D("0.01"),
        min_contracts=D(min_c),
        max_contracts=D(max_c),
        contracts_step=D(step),
        price_step=D("0.01"),
        taker_fee_rate=D(0),
        maker_fee_rate=D(0),
        api_allowed=True,
        source="exchange",
    )


@dataclass
class Risk:
    """The risk machine driven one input at a time; every output is kept with its cause."""

    overrides: dict[str, str] = field(default_factory=dict)
    machine: RiskMachine = field(default_factory=RiskMachine)
    position: int = 0
    steps: list[tuple[RecordedEvent, tuple[ev.Event, ...]]] = field(default_factory=list)
    fills: int = 0
    filled: dict[str, Decimal] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.state = self.machine.initial()
        cfg = parse_config({**BASE, **self.overrides})
        self.feed(cfg.activated(T0 - 60_000))

    def feed(self, event: ev.Event) -> tuple[ev.Event, ...]:
        self.position += 1
        fact = record(event, self.position)
        self.state, out = self.machine.step(self.state, fact)
        self.steps.append((fact, out))
        # the machine's own outputs come back through the log; it skips them (owns)
        for o in out:
            self.position += 1
            assert self.machine.owns(o)
        return out

    def snapshot(self) -> Risk:
        return copy.deepcopy(self)

    # ------------------------------------------------------------------ inputs
    def trade(self, at_ms: int, price: str, symbol: str = SYM, contracts: str = "1"):
        return self.feed(
            ev.TradeTicked(
                at_ms=at_ms,
                symbol=symbol,
                price=D(price),
                contracts=D(contracts),
                taker_side="buy",
                position_effect="open",
            )
        )

    def clock(self, at_ms: int):
        return self.feed(ev.ClockTicked(at_ms=at_ms))

    def signal(self, at_ms: int, direction: str, price: str, symbol: str = SYM, strength="1"):
        return self.feed(
            ev.SignalGenerated(
                at_ms=at_ms,
                symbol=symbol,
                direction=direction,
                strength=D(strength) if direction != "flat" else D(0),
                momentum=D("1")
                if direction == "long"
                else D("-1")
                if direction == "short"
                else D(0),
                reference_price=D(price),
                window_start_ms=max(0, at_ms - 300_000),
                trades_in_window=100,
                contracts_in_window=D(1000),
            )
        )

    def fill(self, order: ev.OrderRequested, at_ms: int, price: str, contracts=None):
        self.fills += 1
        c = order.contracts if contracts is None else D(contracts)
        common = dict(
            at_ms=at_ms,
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=order.side,
            price=D(price),
            contracts=c,
            fee=D(0),
            fee_currency="USDT",
            liquidity="taker",
            fill_id=f"f{self.fills}",
            reduce_only=order.reduce_only,
        )
        if c < order.contracts:
            return self.feed(
                ev.OrderPartiallyFilled(**common, remaining_contracts=order.contracts - c)
            )
        return self.feed(ev.OrderFilled(**common))

    def reject(self, order: ev.OrderRequested, at_ms: int, code: str = "order_quantity_error"):
        return self.feed(
            ev.OrderRejected(
                at_ms=at_ms,
                client_order_id=order.client_order_id,
                symbol=order.symbol,
                code=code,
                message="refused",
            )
        )

    def cancel(self, order: ev.OrderRequested, at_ms: int, remaining=None, reason="cancelled"):
        return self.feed(
            ev.OrderCancelled(
                at_ms=at_ms,
                client_order_id=order.client_order_id,
                symbol=order.symbol,
                reason=reason,
                remaining_contracts=order.contracts if remaining is None else D(remaining),
            )
        )

    def funding(self, at_ms: int, amount: str, symbol: str = SYM):
        return self.feed(
            ev.FundingSettled(at_ms=at_ms, symbol=symbol, rate=D("0.001"), amount=D(amount))
        )

    def command(self, at_ms: int, command: str):
        return self.feed(
            ev.OperatorCommandIssued(at_ms=at_ms, command=command, operator="attacker")
        )


def of(out, kind):
    return [e for e in out if isinstance(e, kind)]


def orders(out) -> list[ev.OrderRequested]:
    return of(out, ev.OrderRequested)


def verdicts(out) -> list[ev.RiskVerdictIssued]:
    return of(out, ev.RiskVerdictIssued)


def alerts(out, code=None) -> list[ev.AlertRaised]:
    return [a for a in of(out, ev.AlertRaised) if code is None or a.code == code]


def warm(r: Risk, start: int, seconds: int = 10, price: str = "100", symbol: str = SYM) -> int:
    """One trade a second for ``seconds``; returns the time of the last one."""
    t = start
    for i in range(seconds):
        t = start + i * 1000
        r.trade(t, price, symbol)
    return t


def open_long(r: Risk, at_ms: int, price: str = "100", symbol: str = SYM):
    """Signal long, fill every entry order in full at ``price``; returns (outputs, filled)."""
    out = r.signal(at_ms, "long", price, symbol)
    filled = D(0)
    for o in orders(out):
        r.fill(o, at_ms, price)
        filled += o.contracts
    return out, filled
