"""The machines together (signal, risk, paper) over a market with finite volume per trade.

The paper exchange fills a big market exit over many trades (finite volume, documented in
aggregates/paper.py), so a stop-loss exit comes back as many partial fills.
"""

from __future__ import annotations

from decimal import Decimal

from aggregates import events as ev
from aggregates.simulation import simulate
from tests.blackbox_attack.decisions.test_determinism_attack import _inputs, _machines

D = Decimal


def _episodes(seed: int, n: int):
    """Per symbol position episode (flat -> held -> flat): its StopLossTriggered count."""
    pos: dict[str, Decimal] = {}
    episode: dict[str, int] = {}
    triggers: dict[tuple[str, int], int] = {}
    pauses = 0
    for r in simulate(_machines(), _inputs(seed, n)):
        e = r.event
        if isinstance(e, ev.OrderFilled | ev.OrderPartiallyFilled):
            before = pos.get(e.symbol, D(0))
            after = before + (e.contracts if e.side == "buy" else -e.contracts)
            if before == 0 and after != 0:
                episode[e.symbol] = episode.get(e.symbol, 0) + 1
            pos[e.symbol] = after
        if isinstance(e, ev.StopLossTriggered):
            key = (e.symbol, episode.get(e.symbol, 0))
            triggers[key] = triggers.get(key, 0) + 1
        if isinstance(e, ev.AlertRaised) and e.code == "loss_streak_pause":
            pauses += 1
    return triggers, pauses


def test_paper_loop_when_stop_loss_exit_fills_in_parts_then_one_trigger_per_position():
    # seed 11 over 6000 trades: since a stop-loss no longer fires while an exit of the position
    # is in progress, seed 3 over 3000 trades has no stop-loss left to check
    triggers, pauses = _episodes(11, 6000)
    assert triggers, "the session has stop-losses"
    assert max(triggers.values()) == 1, sorted(triggers.values(), reverse=True)[:5]
    # every pause needs LOSS_STREAK_COUNT (3) distinct stop-losses
    assert pauses <= len(triggers) // 3


def test_paper_loop_when_one_trade_triggers_a_stop_then_one_trigger_and_no_streak_pause():
    per_input: list[list[ev.Event]] = []
    for r in simulate(_machines(), _inputs(11)):
        if r.causation_id is None:
            per_input.append([])
        else:
            per_input[-1].append(r.event)
    for cascade in per_input:
        stops = [e.symbol for e in cascade if isinstance(e, ev.StopLossTriggered)]
        assert len(stops) == len(set(stops)), stops
        assert not [e for e in cascade if isinstance(e, ev.AlertRaised) and "streak" in e.code] or (
            len(set(stops)) >= 3
        )
