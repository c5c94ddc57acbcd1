"""The risk machine on a desk: fed one event at a time as the pipeline does (shared by the risk
unit tests), with the outputs they look at."""

from __future__ import annotations

from decimal import Decimal

from aggregates.events import (
    ClockTicked,
    Event,
    OperatorCommandIssued,
    OrderFilled,
    OrderRequested,
    RiskVerdictIssued,
    SignalGenerated,
    TradeTicked,
)
from aggregates.machine import record
from aggregates.risk import RiskMachine
from tests.unit.strategies import START_MS, trading_config

D = Decimal
T = START_MS + 3_600_000


class Desk:
    """A risk machine fed one event at a time, as the pipeline does."""

    def __init__(self, **overrides: str) -> None:
        self.machine = RiskMachine()
        self.state = self.machine.initial()
        self.position = 0
        self.now = T
        self.config = trading_config(**overrides)
        self.feed(self.config.activated(T))
        self.tick("BTC_USDT", 50000)
        self.tick("ETH_USDT", 3000)

    def feed(self, event: Event) -> list[Event]:
        self.position += 1
        fact = record(event, self.position)
        self.last_fact = fact
        self.state, out = self.machine.step(self.state, fact)
        return list(out)

    def at(self, advance_ms: int = 1_000) -> int:
        self.now += advance_ms
        return self.now

    def tick(self, symbol: str, price: int | str, advance_ms: int = 1_000) -> list[Event]:
        return self.feed(
            TradeTicked(
                at_ms=self.at(advance_ms),
                symbol=symbol,
                price=D(price),
                contracts=D(1),
                taker_side="buy",
                position_effect="open",
            )
        )

    def clock(self, advance_ms: int) -> list[Event]:
        return self.feed(ClockTicked(at_ms=self.at(advance_ms)))

    def signal(self, symbol: str, direction: str, strength: str = "1") -> list[Event]:
        price = self.state.last_price[symbol]
        return self.feed(
            SignalGenerated(
                at_ms=self.at(0),
                symbol=symbol,
                direction=direction,  # type: ignore[arg-type]
                strength=D(strength) if direction != "flat" else D(0),
                momentum=D(1),
                reference_price=price,
                window_start_ms=self.now - 60_000,
                trades_in_window=10,
                contracts_in_window=D(50),
            )
        )

    def fill(
        self,
        symbol: str,
        side: str,
        contracts: int | str,
        price: int | str,
        client_order_id: str = "manual",
    ) -> list[Event]:
        return self.feed(
            OrderFilled(
                at_ms=self.at(0),
                client_order_id=client_order_id,
                symbol=symbol,
                side=side,  # type: ignore[arg-type]
                price=D(price),
                contracts=D(contracts),
                fee=D(0),
                fee_currency="USDT",
                liquidity="taker",
                fill_id=f"f{self.position}",
            )
        )

    def fill_all(self, orders: list[Event]) -> list[Event]:
        out: list[Event] = []
        for order in orders:
            if isinstance(order, OrderRequested):
                out += self.fill(
                    order.symbol,
                    order.side,
                    order.contracts,
                    self.state.last_price[order.symbol],
                    order.client_order_id,
                )
        return out

    def command(self, command: str) -> list[Event]:
        return self.feed(
            OperatorCommandIssued(
                at_ms=self.at(0),
                command=command,  # type: ignore[arg-type]
                operator="ops",
            )
        )


def verdict(out: list[Event]) -> RiskVerdictIssued:
    found = [e for e in out if isinstance(e, RiskVerdictIssued) and e.intent == "entry"]
    assert len(found) == 1, out
    return found[0]


def orders(out: list[Event]) -> list[OrderRequested]:
    return [e for e in out if isinstance(e, OrderRequested)]
