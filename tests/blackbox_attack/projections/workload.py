"""A deterministic trading session (fills across symbols, flips, partial fills, marks) and an
independent reference fold of positions over it, from the usual netting rules."""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal

from aggregates.events import (
    ContractSpecified,
    Event,
    OrderFilled,
    OrderPartiallyFilled,
    TradeTicked,
)
from tests.blackbox_attack.projections.proj_helpers import order_filled, tick


def session(
    orders: int, symbols: tuple[str, ...] = ("BTC_USDT", "ETH_USDT"), seed: int = 7
) -> list[Event]:
    rng = random.Random(seed)
    events: list[Event] = []
    price = {s: Decimal(100 + 10 * i) for i, s in enumerate(symbols)}
    for n in range(orders):
        symbol = rng.choice(symbols)
        price[symbol] += Decimal(rng.randint(-30, 30)) / 10
        if price[symbol] <= 1:
            price[symbol] = Decimal(5)
        side = rng.choice(("buy", "sell"))
        qty = Decimal(rng.randint(1, 40))
        partial = Decimal(rng.randint(1, int(qty) - 1)) if qty > 1 and rng.random() < 0.3 else None
        fee = Decimal(rng.randint(0, 500)) / 1000
        events.extend(
            order_filled(f"o{seed}-{n}", symbol, side, qty, price[symbol], fee, n, partial)
        )
        if rng.random() < 0.5:
            events.append(tick(symbol, price[symbol] + Decimal(rng.randint(-9, 9)) / 10, n))
    return events


@dataclass
class Book:
    contracts: Decimal = Decimal(0)  # signed
    entry: Decimal = Decimal(0)
    realised: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)
    size: Decimal = Decimal(1)


def reference(events: list[Event]) -> dict[str, Book]:
    """Netting: adds average the entry; reductions realise (exit - entry) x size x contracts."""
    books: dict[str, Book] = {}
    for event in events:
        if isinstance(event, ContractSpecified):
            books.setdefault(event.symbol, Book()).size = event.contract_size
        if not isinstance(event, OrderFilled | OrderPartiallyFilled):
            continue
        book = books.setdefault(event.symbol, Book())
        book.fees += event.fee
        signed = event.contracts if event.side == "buy" else -event.contracts
        held = book.contracts
        if held == 0 or (held > 0) == (signed > 0):
            total = abs(held) + abs(signed)
            book.entry = (abs(held) * book.entry + abs(signed) * event.price) / total
            book.contracts = held + signed
            continue
        closed = min(abs(held), abs(signed))
        direction = 1 if held > 0 else -1
        book.realised += closed * (event.price - book.entry) * book.size * direction
        book.contracts = held + signed
        if book.contracts == 0:
            book.entry = Decimal(0)
        elif (book.contracts > 0) != (held > 0):
            book.entry = event.price
    return books


def close(a: object, b: Decimal, places: int = 9) -> bool:
    return abs(Decimal(str(a)) - b) <= Decimal(10) ** -places * max(Decimal(1), abs(b))


__all__ = ["Book", "TradeTicked", "close", "reference", "session"]
