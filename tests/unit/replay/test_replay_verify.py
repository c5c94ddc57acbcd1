"""The pure parts of ``replay``: the verifier over in-memory logs, the window, the walk's series."""

from __future__ import annotations

import io
import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.process import UsageError
from aggregates import events as ev
from aggregates.config import parse_config
from aggregates.envelope import RecordedEvent
from aggregates.machine import record_all
from aggregates.paper import PaperExchange
from aggregates.risk import RiskMachine
from aggregates.signal import SignalMachine
from aggregates.simulation import simulate
from replay.session import Progress
from replay.verify import Verifier
from replay.walk import Series, Tally
from replay.whatif import parse_overrides
from replay.window import parse_moment
from tests.unit.strategies import REPLAY_VALUES

START_MS = 1_748_822_400_000


def market(seed: int, minutes: int) -> list[ev.Event]:
    """One trending symbol, a trade every ~0.5 s, a clock every 5 s (test data: may be random)."""
    rng = random.Random(seed)
    price, drift = Decimal(60000), 0
    events: list[ev.Event] = [parse_config(REPLAY_VALUES).activated(START_MS)]
    at = next_clock = START_MS
    while at < START_MS + minutes * 60_000:
        at += rng.randint(200, 800)
        while next_clock <= at:
            events.append(ev.ClockTicked(at_ms=next_clock))
            next_clock += 5_000
        if rng.random() < 0.02:
            drift = rng.choice([-6, -3, 0, 3, 6])
        price = max(Decimal("0.1"), (price + (drift + rng.randint(-10, 10)) * price / 100_000))
        events.append(
            ev.TradeTicked(
                at_ms=at,
                symbol="BTC_USDT",
                price=price.quantize(Decimal("0.1")),
                contracts=Decimal(rng.randint(1, 400)),
                taker_side="buy",
                position_effect="open",
            )
        )
    return events


_LOGS: dict[tuple[int, int], list[RecordedEvent]] = {}


def recorded(seed: int = 3, minutes: int = 40) -> list[RecordedEvent]:
    key = (seed, minutes)
    if key not in _LOGS:
        machines = [SignalMachine(), RiskMachine(), PaperExchange()]
        _LOGS[key] = list(simulate(machines, record_all(market(seed, minutes))))
    return _LOGS[key]


def verify(log: list[RecordedEvent], first: int = 1, last: int | None = None):
    verifier = Verifier(first, log[-1].position if last is None else last)
    for fact in log:
        verifier.feed(fact)
    return verifier.finish()


def decided(log: list[RecordedEvent]) -> list[RecordedEvent]:
    return [r for r in log if r.causation_position is not None]


def test_verify_when_log_recorded_by_the_machines_then_every_decision_matches() -> None:
    log = recorded()
    result = verify(log)
    assert result.divergence is None
    assert result.decisions_checked == len(decided(log)) > 0
    assert set(result.decisions) == {"signal", "risk", "paper"}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_verify_when_any_decision_in_the_window_is_altered_then_it_is_the_first_divergence(
    data: st.DataObject,
) -> None:
    log = recorded()
    first = data.draw(st.integers(1, len(log) // 2), label="window start")
    candidates = [r for r in decided(log) if r.causation_position >= first]
    target = data.draw(st.sampled_from(candidates), label="altered")
    changed = msgspec.structs.replace(target.event, at_ms=target.event.at_ms + 1)
    altered = [msgspec.structs.replace(r, event=changed) if r is target else r for r in log]
    result = verify(altered, first)
    assert result.divergence is not None
    assert result.divergence.recorded_position == target.position
    assert result.divergence.cause_position == target.causation_position
    assert "at_ms" in result.divergence.problem


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("causation_id", lambda r: uuid.uuid5(uuid.NAMESPACE_OID, str(r.causation_id))),
        ("causation_position", lambda r: r.causation_position - 1),
        ("correlation_id", lambda r: uuid.uuid5(uuid.NAMESPACE_OID, str(r.correlation_id))),
        ("occurred_at", lambda r: datetime(2000, 1, 1, tzinfo=UTC)),
    ],
)
def test_verify_when_a_decision_envelope_field_is_altered_then_that_field_is_named(
    field: str, change: Callable[[RecordedEvent], object]
) -> None:
    log = recorded()
    target = decided(log)[len(decided(log)) // 2]
    altered = msgspec.structs.replace(target, **{field: change(target)})
    result = verify([altered if r is target else r for r in log])
    assert result.divergence is not None
    assert result.divergence.recorded_position == target.position
    assert result.divergence.problem == f"{field} differs"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_verify_when_a_decision_is_missing_from_the_log_then_its_cause_is_reported(
    data: st.DataObject,
) -> None:
    log = recorded()
    target = data.draw(st.sampled_from(decided(log)), label="removed")
    result = verify([r for r in log if r is not target])
    assert result.divergence is not None
    assert result.divergence.cause_position == target.causation_position
    assert result.divergence.recomputed is not None
    assert result.divergence.recomputed["event_id"] == str(target.event_id)


def test_verify_when_a_decision_was_never_decided_then_it_is_reported() -> None:
    log = recorded()
    verdict = next(r for r in log if isinstance(r.event, ev.RiskVerdictIssued))
    forged = msgspec.structs.replace(verdict, event_id=uuid.uuid5(uuid.NAMESPACE_OID, "forged"))
    index = log.index(verdict)
    result = verify([*log[: index + 1], forged, *log[index + 1 :]])
    assert result.divergence is not None
    assert result.divergence.problem == "a recorded event the machine did not decide"
    assert result.divergence.recorded is not None
    assert result.divergence.recorded["event_id"] == str(forged.event_id)


def test_verify_when_fills_come_from_another_venue_then_paper_is_not_verified() -> None:
    log = recorded()
    paper_types = (ev.OrderAccepted, ev.OrderFilled, ev.OrderPartiallyFilled, ev.OrderRejected)

    def venue(r: RecordedEvent) -> RecordedEvent:
        if isinstance(r.event, paper_types):
            return msgspec.structs.replace(
                r, event_id=uuid.uuid5(uuid.NAMESPACE_URL, str(r.event_id))
            )
        return r

    result = verify([venue(r) for r in log])
    assert result.divergence is None
    assert "paper" in result.skipped and "paper" not in result.decisions
    assert result.decisions["risk"] > 0


def test_verify_when_the_window_is_a_slice_then_only_its_decisions_are_checked() -> None:
    log = recorded()
    first, last = len(log) // 3, 2 * len(log) // 3
    result = verify(log, first, last)
    assert result.divergence is None
    assert result.decisions_checked == sum(
        1 for r in decided(log) if first <= r.causation_position <= last
    )


def test_tally_when_fed_the_whole_log_then_counts_match_the_log() -> None:
    log = recorded()
    tally = Tally()
    for fact in log:
        tally.add(fact)
    tally.finish()
    summary = tally.summary
    assert summary.fills == sum(
        isinstance(r.event, ev.OrderFilled | ev.OrderPartiallyFilled) for r in log
    )
    assert summary.trades == len(
        {
            r.event.client_order_id
            for r in log
            if isinstance(r.event, ev.OrderFilled | ev.OrderPartiallyFilled)
        }
    )
    assert summary.start_equity == Decimal(10000)  # the deposit is not profit
    assert tally.day is not None and tally.day.start_equity == Decimal(10000)  # counted once
    assert tally.day.close_equity == summary.end_equity
    assert summary.fees > 0


@given(st.lists(st.integers(0, 10**9), min_size=0, max_size=3000), st.integers(4, 64))
def test_series_when_any_number_of_points_then_at_most_limit_kept_in_time_order(
    times: list[int], limit: int
) -> None:
    series = Series(limit)
    for at in sorted(times):
        series.add(at, Decimal(at))
    assert len(series.points) < limit
    kept = [t for t, _ in series.points]
    assert kept == sorted(kept)
    if times:
        assert series.points


@pytest.mark.parametrize(
    ("text", "end", "expected"),
    [
        ("2025-06-02", False, datetime(2025, 6, 2, tzinfo=UTC)),
        ("2025-06-02", True, datetime(2025, 6, 3, tzinfo=UTC)),
        ("2025-06-02T13:45:00Z", False, datetime(2025, 6, 2, 13, 45, tzinfo=UTC)),
        ("2025-06-02T15:45:00+02:00", False, datetime(2025, 6, 2, 13, 45, tzinfo=UTC)),
        ("2025-06-02T13:45:00", False, datetime(2025, 6, 2, 13, 45, tzinfo=UTC)),
    ],
)
def test_parse_moment_when_date_or_timestamp_then_utc_moment(
    text: str, end: bool, expected: datetime
) -> None:
    assert parse_moment(text, option="--from", end=end) == expected


@pytest.mark.parametrize("text", ["", "2025-02-30", "June 2nd", "2025-06-02T25:00:00Z"])
def test_parse_moment_when_not_a_date_then_usage_error_naming_the_option(text: str) -> None:
    with pytest.raises(UsageError, match="--to"):
        parse_moment(text, option="--to")


def test_parse_overrides_when_malformed_or_repeated_then_usage_error() -> None:
    assert parse_overrides(["A=1", "B= 2 "]) == {"A": "1", "B": "2"}
    with pytest.raises(UsageError, match="KEY=VALUE"):
        parse_overrides(["A"])
    with pytest.raises(UsageError, match="twice"):
        parse_overrides(["A=1", "A=2"])


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("stream", "drawn"), [(_Terminal(), True), (io.StringIO(), False)])
def test_progress_when_stderr_is_or_is_not_a_terminal_then_bar_drawn_only_on_a_terminal(
    stream: io.StringIO, drawn: bool
) -> None:
    progress = Progress("replay", 4096, stream)
    progress.update(2048)
    progress.close()
    assert ("[" in stream.getvalue() and "2048/4096" in stream.getvalue()) is drawn
