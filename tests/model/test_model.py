"""The risk manager judged against the reference model (tests/model/reference.py).

For every input of a generated closed-loop session (the risk manager, the signal engine and a
deterministic venue that fills, partly fills or rejects), the model folds the same input and
says what the risk manager must decide; the real machine's outputs for that step must match it:
same verdicts (decision, layer, reason, quantities), same orders, same alerts, breakers and state
changes, in the same order, at the same time. The number of examples follows the Hypothesis
profile (tests/hypothesis_profiles.py): ``thorough`` runs ten times as many.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from aggregates.events import OrderRequested
from aggregates.risk import RiskMachine
from aggregates.signal import SignalMachine
from tests.hypothesis_profiles import model_examples
from tests.model.reference import Model, SignalModel, said, said_signal
from tests.model.sessions import sessions
from tests.unit.strategies import drive

#: No input may cause more risk outputs than this (every cascade of decisions ends).
MAX_OUTPUTS_PER_INPUT = 100


def judge(items: list, resume_at: float = 0.0) -> None:  # type: ignore[type-arg]
    run = drive(items)
    resumed(run.steps, int(resume_at * len(run.steps)))
    signals(run.facts)
    model = Model()
    for index, (fact, outputs) in enumerate(run.steps):
        expected = [said(e) for e in model.step(fact.event)]
        actual = [said(e) for e in outputs]
        assert actual == expected, (index, fact.event, actual, expected)
        assert len(outputs) <= MAX_OUTPUTS_PER_INPUT
        model.adopt([e.client_order_id for e in outputs if isinstance(e, OrderRequested)])


def signals(facts: list) -> None:  # type: ignore[type-arg]
    """The signal engine against the model's momentum rule, over every trade of the run."""
    machine, model = SignalMachine(), SignalModel()
    state = machine.initial()
    for fact in facts:
        state, out = machine.step(state, fact)
        assert [said_signal(e) for e in out] == model.step(fact.event), fact.event


def resumed(steps: list, split: int) -> None:  # type: ignore[type-arg]
    """A risk service restarted mid-session: a fresh machine folds the log up to ``split`` (its
    outputs discarded: they are in the log), then decides the rest exactly as the run did, so
    the model's judgement of the run holds for the resumed service too."""
    machine = RiskMachine()
    state = machine.initial()
    for fact, _ in steps[:split]:
        state, _ = machine.step(state, fact)
    for fact, outputs in steps[split:]:
        state, again = machine.step(state, fact)
        assert again == outputs, (fact.event, again, outputs)


@settings(max_examples=model_examples())
@given(sessions(), st.floats(0, 1))
def test_every_risk_decision_matches_the_reference_model(items: list, resume_at: float) -> None:  # type: ignore[type-arg]
    judge(items, resume_at)
