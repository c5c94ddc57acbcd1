"""Random closed-loop sessions against rule-derived invariants, and determinism.

The test plays market and venue (fills, partial fills, refusals of every kind, cancellations,
funding at 00/08/16 UTC, operator commands, day gaps) and checks after every input:
bounded outputs, no answer to a refusal by an order, exits reduce-only within the contract and
never more than what is held, decisions at their cause's time; then that a rerun, and a run
resumed from a copy of the state mid-session, produce byte-identical outputs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from decimal import Decimal

import pytest

from aggregates import events as ev
from tests.blackbox_attack.decisions.harness import DAY_MS, SYM, T0, Risk, spec

D = Decimal
SYMS = (SYM, "OTH_USDT")
CODES = ("order_quantity_error", "price_limit", "reduce_only_rejected", "rate_limit")
COMMANDS = ("reduce", "halt", "resume", "resume", "flatten", "reset_drawdown", "resume")


@dataclass
class Venue:
    """What the test knows: positions from its own fills, the orders still open."""

    open: dict[str, tuple[ev.OrderRequested, Decimal]] = field(default_factory=dict)
    position: dict[str, Decimal] = field(default_factory=lambda: dict.fromkeys(SYMS, D(0)))
    maxes: dict[str, Decimal] = field(default_factory=lambda: dict.fromkeys(SYMS, D(1_000_000)))
    # the back-off the docs promise, kept by the test: symbol -> (refusals, wait until ms)
    backoff: dict[str, tuple[int, int]] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)
    clock: int = 0  # the latest time seen
    halted_day: int | None = None  # UTC day of a drawdown halt in force (no reset since)


def _signed(side: str, n: Decimal) -> Decimal:
    return n if side == "buy" else -n


def _check_step(cause, out, venue: Venue):
    assert len(out) <= 100, f"{len(out)} outputs for one {type(cause).__name__}"
    for e in out:
        assert e.at_ms == cause.at_ms, "a decision carries its cause's time"
    new = [e for e in out if isinstance(e, ev.OrderRequested)]
    for e in out:
        key = type(e).__name__ + (f":{e.code}" if isinstance(e, ev.AlertRaised) else "")
        venue.stats[key] = venue.stats.get(key, 0) + 1
    _check_backoff(cause, out, new, venue)
    _check_halt(cause, out, new, venue)
    # each verdict is followed by its orders, at most 20 of them, as many as it says
    groups: list[list] = []
    for e in out:
        if isinstance(e, ev.RiskVerdictIssued):
            groups.append([e])
        elif isinstance(e, ev.OrderRequested):
            groups[-1].append(e)
    for verdict, *sent in groups:
        assert len(sent) <= 20, (verdict, len(sent))
        if "orders" in verdict.numbers:
            assert int(verdict.numbers["orders"]) == len(sent), verdict
        if sent and verdict.intent != "entry":
            assert sum(o.contracts for o in sent) == verdict.approved_contracts, verdict
    if isinstance(cause, ev.OrderRejected | ev.OrderCancelled):
        assert new == [], "a refusal is never answered by an order at once"
    for s in SYMS:
        pos = venue.position[s]
        leaving = sum(
            (rest for o, rest in venue.open.values() if o.symbol == s and o.reduce_only), D(0)
        )
        exits = [o for o in new if o.symbol == s and o.reduce_only]
        for o in exits:
            assert pos != 0 and _signed(o.side, D(1)) * pos < 0, ("exit would increase", o, pos)
        # an exit covers only what is not already leaving
        assert sum((o.contracts for o in exits), D(0)) <= max(D(0), abs(pos) - leaving), (
            s,
            pos,
            leaving,
            exits,
        )
    if isinstance(cause, ev.OrderFilled | ev.OrderPartiallyFilled) and cause.reduce_only:
        s = cause.symbol
        pos = venue.position[s]
        leaving = sum(
            (rest for o, rest in venue.open.values() if o.symbol == s and o.reduce_only), D(0)
        )
        if pos != 0 and leaving + venue.maxes[s] <= abs(pos):
            # "every fill continues the exit in progress"; "a fill of an exit ... ends the back-off"
            assert [o for o in new if o.symbol == s and o.reduce_only], (cause, pos, leaving)
    for o in new:
        assert o.contracts <= venue.maxes[o.symbol], o
        venue.open[o.client_order_id] = (o, o.contracts)


def _check_halt(cause, out, new, venue: Venue):
    venue.clock = max(venue.clock, cause.at_ms)
    day = venue.clock // DAY_MS
    if isinstance(cause, ev.OperatorCommandIssued) and cause.command == "reset_drawdown":
        venue.halted_day = None
    if venue.halted_day == day:
        entries = [o for o in new if o.intent == "entry"]
        assert entries == [], ("entry during a drawdown halt", cause, entries)
    for e in out:
        if isinstance(e, ev.TradingStateChanged) and e.reason == "daily_drawdown":
            venue.halted_day = day


def _check_backoff(cause, out, new, venue: Venue):
    if isinstance(cause, ev.OrderFilled | ev.OrderPartiallyFilled) and cause.reduce_only:
        venue.backoff.pop(cause.symbol, None)  # a fill of an exit ends the back-off
    for s in SYMS:
        if venue.position[s] == 0:
            venue.backoff.pop(s, None)  # so does a flat position
    for o in new:
        if o.reduce_only and o.symbol in venue.backoff:
            _, until = venue.backoff[o.symbol]
            assert cause.at_ms >= until, ("exit during back-off", o, venue.backoff[o.symbol])
    refused = [a for a in out if isinstance(a, ev.AlertRaised) and a.code == "exit_refused"]
    for a in refused:
        n, _ = venue.backoff.get(a.symbol, (0, 0))
        venue.backoff[a.symbol] = (n + 1, cause.at_ms + min(1000 * 2**n, 300_000))


def _venue_act(r: Risk, venue: Venue, rnd: random.Random, at: int, price: dict):
    cid = rnd.choice(sorted(venue.open))
    o, rest = venue.open[cid]
    roll = rnd.random()
    px = str(price[o.symbol])
    if roll < 0.25:
        venue.open.pop(cid)
        return r.reject(o, at, rnd.choice(CODES))
    if roll < 0.35:
        venue.open.pop(cid)
        return r.cancel(o, at, remaining=rest, reason="cancelled")
    take = rest
    if o.reduce_only:
        held = venue.position[o.symbol]
        # a venue never lets a reduce-only order increase or flip a position
        take = min(take, abs(held)) if _signed(o.side, D(1)) * held < 0 else D(0)
        if take == 0:
            venue.open.pop(cid)
            return r.reject(o, at, "reduce_only_rejected")
    if roll < 0.6 and take > 1:
        take = D(rnd.randint(1, int(take) - 1))
    venue.position[o.symbol] += _signed(o.side, take)
    common = dict(
        at_ms=at,
        client_order_id=cid,
        symbol=o.symbol,
        side=o.side,
        price=D(px),
        contracts=take,
        fee=D(0),
        fee_currency="USDT",
        liquidity="taker",
        fill_id=f"{cid[:20]}-{rest}",
        reduce_only=o.reduce_only,
    )
    if take < rest:
        venue.open[cid] = (o, rest - take)
        return r.feed(ev.OrderPartiallyFilled(**common, remaining_contracts=rest - take))
    venue.open.pop(cid)
    return r.feed(ev.OrderFilled(**common))


def _session(seed: int, n: int, overrides=None, exits: bool = False):
    """Yield (risk, cause, outputs, venue) for ``n`` random inputs.

    ``exits``: both symbols start with a big position and the contracts then shrink, no funding
    and no halts: the session is about split, refused and retried exits.
    """
    rnd = random.Random(seed)
    r = Risk(dict(overrides or {}))
    venue = Venue()
    price = {s: D(100) for s in SYMS}
    at = T0
    for s in SYMS:
        m = D(rnd.choice(["7", "1000000", "1000000"]))
        venue.maxes[s] = m
        r.feed(spec(at, max_c=str(m), min_c=rnd.choice(["1", "2"]), symbol=s))
    if exits:
        for s in SYMS:
            for i in range(5):
                r.trade(at + i, "100", s)
            direction = rnd.choice(["long", "short"])
            for o in [
                e for e in r.signal(at + 10, direction, "100", s) if hasattr(e, "reduce_only")
            ]:
                r.fill(o, at + 11, "100")
                venue.position[s] += _signed(o.side, o.contracts)
            m = D(rnd.choice(["3", "7"]))
            venue.maxes[s] = m
            r.feed(spec(at + 12, max_c=str(m), min_c=rnd.choice(["1", "2"]), symbol=s))
        at += 20
    for _ in range(n):
        kind = rnd.random()
        if exits and kind >= 0.86:
            kind = 0.86 if kind < 0.93 else 0.999  # clock ticks and flattens only
        gap = rnd.choice([1, 50, 400, 1000, 1000, 2000, 5000])
        if rnd.random() < 0.02:
            gap = rnd.choice([31_000, 600_000, 3_600_000])  # data silences
        if rnd.random() < 0.003:
            gap = DAY_MS  # a whole-day gap
        at += gap
        s = rnd.choice(SYMS)
        if venue.open and kind < 0.35:
            out = _venue_act(r, venue, rnd, at, price)
        elif kind < 0.7:
            step = rnd.choice([0, 1, -1, 2, -2, 5, -5, -9, 9, -40, 40])
            price[s] = max(D(10), price[s] + D(step) / 8)
            out = r.trade(at, str(price[s]), s)
        elif kind < 0.8:
            direction = rnd.choice(["long", "short", "flat"])
            out = r.signal(at, direction, str(price[s]), s, strength=rnd.choice(["0.2", "1"]))
        elif kind < 0.86:
            out = r.clock(at)
        elif kind < 0.88:
            # the venue's contract changes: small maximum orders force exits to be split
            m = D(rnd.choice(["3", "7", "7", "1000000"]))
            venue.maxes[s] = m
            out = r.feed(spec(at, max_c=str(m), min_c="1", symbol=s))
        elif kind < 0.91:
            # funding at a settlement, sometimes large enough to breach the drawdown
            day = at - at % DAY_MS
            settle = day + rnd.choice([0, 8, 16]) * 3_600_000
            at = max(at, settle)
            amount = rnd.choice(["-1", "-50", "30", "-1", "-10", "30", "60", "-5"])
            if rnd.random() < 0.15:
                amount = "-700"  # a breach of the daily drawdown
            out = r.funding(at, amount, s)
        elif kind < 0.92:
            out = r.command(at, rnd.choice(COMMANDS))
        elif exits:
            out = r.command(at, "flatten")
        else:
            out = r.clock(at)
        yield r, r.steps[-1][0].event, out, venue


SEEDS = range(20)


@pytest.mark.parametrize("exits", [False, True])
@pytest.mark.parametrize("seed", SEEDS)
def test_random_session_when_venue_refuses_and_splits_then_invariants_hold(seed, exits):
    for _, cause, out, venue in _session(seed, 1500, exits=exits):
        _check_step(cause, out, venue)
    assert venue.stats, "the session decided nothing"


def _encoded(seed, n, exits=False):
    return [b"".join(ev.encode(e) for e in out) for _, _, out, _ in _session(seed, n, exits=exits)]


@pytest.mark.parametrize("seed", [0, 5])
def test_random_session_when_run_twice_then_byte_identical(seed):
    assert _encoded(seed, 500) == _encoded(seed, 500)


@pytest.mark.parametrize(
    ("seed", "exits", "cut"), [(1, False, 250), (7, False, 250), (2, True, 137), (9, True, 311)]
)
def test_random_session_when_resumed_from_copy_mid_session_then_same_tail(seed, exits, cut):
    whole = _encoded(seed, 500, exits)
    gen = _session(seed, 500, exits=exits)
    head = [next(gen) for _ in range(cut)]
    risk = head[-1][0]
    copy_ = risk.snapshot()
    rest = [b"".join(ev.encode(e) for e in out) for _, _, out, _ in gen]
    assert rest == whole[cut:]
    # the copy, fed the same remaining inputs, decides the same
    replayed = [
        b"".join(ev.encode(e) for e in copy_.feed(fact.event))
        for fact, _ in risk.steps[len(copy_.steps) :]
    ]
    assert replayed == rest


def test_order_results_when_for_orders_never_sent_then_no_exception_and_no_order():
    r = Risk()
    t = T0
    for i in range(5):
        r.trade(t + i, "100")
    ghost = ev.OrderRequested(
        at_ms=t,
        client_order_id="ghost-1",
        symbol=SYM,
        side="sell",
        contracts=D(5),
        order_type="market",
        intent="stop_loss",
        reduce_only=True,
        reference_price=D(100),
    )
    said = [r.reject(ghost, t + 10), r.cancel(ghost, t + 11), r.fill(ghost, t + 12, "100")]
    assert all(not [e for e in out if isinstance(e, ev.OrderRequested)] for out in said[:2])
