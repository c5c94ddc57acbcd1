"""Recorded sessions for the replay tests: a generated market run through the real machines.

``simulate()`` runs signal + risk + paper over the market exactly as the pipeline's services
would when keeping up; its log (inputs and derived decisions, with their derived ids and
causation) is appended position by position into a throwaway ledger. Tests may alter events on
the way in (the log itself can never be updated) to build tampered or misconfigured ledgers.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal

from aggregates import events as ev
from aggregates.config import parse_config
from aggregates.envelope import NewEvent, RecordedEvent
from aggregates.machine import record_all
from aggregates.paper import PaperExchange
from aggregates.risk import RiskMachine
from aggregates.signal import SignalMachine
from aggregates.simulation import simulate
from eventstore import EventStore
from tests.unit.strategies import REPLAY_VALUES

#: 2025-06-01T23:30:00Z: sessions cross midnight, so ``--from 2025-06-02`` starts mid-session.
START_MS = int(datetime(2025, 6, 1, 23, 30, tzinfo=UTC).timestamp() * 1000)
SYMBOLS = ("BTC_USDT", "ETH_USDT")


def config_event(at_ms: int, **overrides: str) -> ev.ConfigActivated:
    return parse_config({**REPLAY_VALUES, **overrides}).activated(at_ms, "replay tests")


def market(seed: int = 7, minutes: int = 60, start_ms: int = START_MS) -> list[ev.Event]:
    """Configuration, then two trending symbols (a trade every ~0.5 s) and a clock every 5 s.

    Test data (tests may use ``random``; the pure core may not).
    """
    rng = random.Random(seed)
    price = {"BTC_USDT": Decimal(60000), "ETH_USDT": Decimal(3000)}
    step = {"BTC_USDT": Decimal("0.1"), "ETH_USDT": Decimal("0.01")}
    drift = dict.fromkeys(SYMBOLS, 0)
    events: list[ev.Event] = [config_event(start_ms)]
    next_clock = start_ms
    at = start_ms
    while at < start_ms + minutes * 60_000:
        at += rng.randint(200, 800)
        while next_clock <= at:
            events.append(ev.ClockTicked(at_ms=next_clock))
            next_clock += 5_000
        symbol = rng.choice(SYMBOLS)
        if rng.random() < 0.01:
            drift[symbol] = rng.choice([-6, -3, 0, 0, 3, 6])
        move = (drift[symbol] + rng.randint(-10, 10)) * price[symbol] / 100_000
        price[symbol] = max(step[symbol], (price[symbol] + move).quantize(step[symbol]))
        events.append(
            ev.TradeTicked(
                at_ms=at,
                symbol=symbol,
                price=price[symbol],
                contracts=Decimal(rng.randint(1, 400)),
                taker_side=rng.choice(["buy", "sell"]),
                position_effect="open",
            )
        )
    return events


def machines() -> list:
    return [SignalMachine(), RiskMachine(), PaperExchange()]


def session(events: Iterable[ev.Event]) -> list[RecordedEvent]:
    """The log the machines record over ``events`` (inputs and decisions, positions from 1)."""
    return list(simulate(machines(), record_all(events)))


def to_new(recorded: RecordedEvent) -> NewEvent:
    return NewEvent(
        event=recorded.event,
        event_id=recorded.event_id,
        occurred_at=recorded.occurred_at,
        causation_id=recorded.causation_id,
        causation_position=recorded.causation_position,
        correlation_id=recorded.correlation_id,
    )


async def append_log(
    url: str,
    log: Iterable[RecordedEvent],
    alter: Callable[[RecordedEvent], RecordedEvent | None] | None = None,
    chunk: int = 4000,
) -> int:
    """Append ``log`` in order (``alter`` may change or drop events); returns the head position.

    Appends of a chunk are issued together so the store's group commit takes them in call order,
    one transaction per batch: the ledger's positions are the log's.
    """
    store = await EventStore.connect(url)
    try:
        pending: list[RecordedEvent] = []
        for recorded in log:
            changed = alter(recorded) if alter is not None else recorded
            if changed is None:
                continue
            pending.append(changed)
            if len(pending) >= chunk:
                await _append_chunk(store, pending)
                pending = []
        if pending:
            await _append_chunk(store, pending)
        head, _ = await store.head()
        return head
    finally:
        await store.close()


async def _append_chunk(store: EventStore, chunk: list[RecordedEvent]) -> None:
    await asyncio.gather(*(store.append(r.stream, [to_new(r)]) for r in chunk))
