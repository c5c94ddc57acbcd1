"""The one backoff schedule (adapters/backoff.py) every retry loop waits by."""

from __future__ import annotations

import random

from hypothesis import assume, given
from hypothesis import strategies as st

from adapters.backoff import Backoff


def doubling_loop(initial: float, cap: float, waits: int) -> list[float]:
    """The loops the schedule replaced: ``delay = min(delay * 2, cap)`` after each wait."""
    delays, delay = [], initial
    for _ in range(waits):
        delays.append(delay)
        delay = min(delay * 2, cap)
    return delays


def test_backoff_when_attempts_grow_then_each_wait_doubles_until_the_cap() -> None:
    schedule = Backoff(0.2, 5.0)
    assert [schedule.delay(n) for n in range(8)] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]


@given(
    initial=st.sampled_from([0.01, 0.05, 0.2, 0.5, 1.0]),
    cap=st.sampled_from([0.1, 1.0, 5.0, 10.0, 30.0]),
    waits=st.integers(1, 40),
)
def test_backoff_when_compared_with_the_doubling_loops_it_replaced_then_every_wait_is_equal(
    initial: float, cap: float, waits: int
) -> None:
    assume(initial <= cap)  # as in every loop replaced (0.2 to 5 s, 0.5 to 10 s)
    schedule = Backoff(initial, cap)
    assert [schedule.delay(n) for n in range(waits)] == doubling_loop(initial, cap, waits)


def test_backoff_when_no_cap_then_waits_grow_by_the_factor() -> None:
    assert [Backoff(0.2).delay(n) for n in range(3)] == [0.2, 0.4, 0.8]
    assert Backoff(1.0, factor=3.0).delay(2) == 9.0


def test_backoff_when_attempt_is_huge_then_the_wait_is_the_cap_without_overflow() -> None:
    assert Backoff(0.5, 30.0).delay(10**9) == 30.0


@given(attempt=st.integers(0, 100), seed=st.integers(0, 2**32))
def test_backoff_when_jittered_then_the_wait_lies_between_half_the_step_and_the_step(
    attempt: int, seed: int
) -> None:
    schedule = Backoff(0.5, 30.0)
    step = schedule.delay(attempt)
    assert step / 2 <= schedule.delay(attempt, random.Random(seed)) <= step


def test_backoff_when_jittered_then_one_draw_a_wait_so_a_seeded_feed_waits_as_before() -> None:
    schedule, ours, theirs = Backoff(0.5, 30.0, 2.0), random.Random(7), random.Random(7)
    for attempt in range(12):
        step = min(30.0, 0.5 * 2.0 ** min(attempt, 30))
        assert schedule.delay(attempt, ours) == step / 2 + theirs.uniform(0, step / 2)
