"""The heartbeat watch: silent for more than three intervals is a WARNING, heard again an INFO."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import example, given
from hypothesis import strategies as st

from adapters.bus import Heartbeat
from aggregates import events as ev
from pipeline.heartbeats import HeartbeatWatch, beat_payload, render_heard


def beat(service: str = "risk", interval: float = 1.0) -> Heartbeat:
    payload = beat_payload(
        instance="host:1",
        version="0.1.0",
        interval=interval,
        position=7,
        head=10,
        dependencies={"postgres": True, "redis": False},
    )
    return Heartbeat(service=service, at=datetime(2026, 1, 1, tzinfo=UTC), payload=payload)


def test_payload_when_built_then_carries_identity_progress_lag_and_dependencies() -> None:
    payload = beat().payload
    assert payload["instance"] == "host:1" and payload["version"] == "0.1.0"
    assert (payload["position"], payload["lag"]) == ("7", "3")
    assert payload["dependency.postgres"] == "up" and payload["dependency.redis"] == "down"


def test_watch_when_three_intervals_pass_then_not_yet_and_just_after_then_warning_once() -> None:
    watch = HeartbeatWatch(default_interval=5.0)
    assert watch.saw(beat(interval=1.0), now=100.0) == []
    assert watch.check(103.0) == []  # three intervals: still within
    (change,) = watch.check(103.01)
    assert (change.severity, change.service) == ("WARNING", "risk")
    assert watch.check(200.0) == []  # said once


def test_watch_when_a_silent_service_returns_then_info_and_silence_can_be_reported_again() -> None:
    watch = HeartbeatWatch(default_interval=1.0)
    watch.saw(beat(), now=0.0)
    assert [c.severity for c in watch.check(10.0)] == ["WARNING"]
    assert [c.severity for c in watch.saw(beat(), now=11.0)] == ["INFO"]
    assert watch.saw(beat(), now=11.5) == []  # back, and nothing to say
    assert [c.severity for c in watch.check(20.0)] == ["WARNING"]


def test_watch_when_one_service_is_silent_then_only_it_is_reported() -> None:
    watch = HeartbeatWatch(default_interval=1.0)
    watch.saw(beat("risk"), now=0.0)
    watch.saw(beat("signal"), now=0.0)
    watch.saw(beat("signal"), now=2.5)
    assert [(c.severity, c.service) for c in watch.check(3.5)] == [("WARNING", "risk")]


@given(st.lists(st.floats(0.0, 10.0, allow_nan=False), min_size=1, max_size=30))
@example([1.905374273690982, 3.8682440665666835, 3.0])  # a 3.0 gap a hair over 3.0 in floats
def test_watch_when_beats_arrive_with_any_gaps_then_one_warning_per_long_gap(
    gaps: list[float],
) -> None:
    """Checked often: a WARNING for each gap longer than 3 intervals, an INFO after each."""
    watch = HeartbeatWatch(default_interval=1.0)
    now = 0.0
    watch.saw(beat(), now)
    severities = []
    expected = []
    for gap in gaps:
        steps = int(gap / 0.25)
        for step in range(1, steps + 1):
            severities += [c.severity for c in watch.check(now + step * 0.25)]
        # the silence as the watch measures it, in the same float arithmetic (1.9 + 3.8 + 3.0
        # minus 5.7 is a hair over 3.0)
        if (now + gap) - now > 3.0:
            expected += ["WARNING", "INFO"]
        now += gap
        severities += [c.severity for c in watch.check(now)]
        severities += [c.severity for c in watch.saw(beat(), now)]
    assert severities == expected


def test_render_when_services_heard_then_one_line_each_with_lag_and_dependencies() -> None:
    text = render_heard({"risk": beat()}, datetime(2026, 1, 1, 0, 0, 2, tzinfo=UTC))
    assert "risk" in text and "lag 3" in text and "redis down" in text and "2.0s ago" in text
    assert render_heard({}, datetime(2026, 1, 1, tzinfo=UTC)).endswith("none")


def _alert(severity: str, service: str) -> ev.ServiceAlertRaised:
    return ev.ServiceAlertRaised(at_ms=1, severity=severity, service=service, message="m")


def test_watch_when_the_ledger_last_says_a_service_is_silent_then_its_first_beat_is_info() -> None:
    watch = HeartbeatWatch(default_interval=1.0)
    watch.recall(
        [
            _alert("WARNING", "risk"),
            _alert("WARNING", "signal"),
            _alert("INFO", "signal"),
            _alert("INFO", "feed"),
        ]
    )
    assert [(c.severity, c.service) for c in watch.saw(beat("risk"), now=0.0)] == [("INFO", "risk")]
    assert watch.saw(beat("signal"), now=0.0) == []
    assert watch.saw(beat("feed"), now=0.0) == []
    assert watch.saw(beat("risk"), now=0.5) == []  # told once
    assert watch.check(0.9) == []  # nobody silent in this run yet


def test_watch_when_a_recalled_silent_service_stays_silent_then_no_second_warning() -> None:
    watch = HeartbeatWatch(default_interval=1.0)
    watch.recall([_alert("WARNING", "risk")])
    watch.saw(beat("feed"), now=0.0)
    assert [(c.severity, c.service) for c in watch.check(10.0)] == [("WARNING", "feed")]
