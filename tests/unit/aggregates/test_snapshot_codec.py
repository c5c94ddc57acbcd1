"""Snapshots of machine state (docs/SNAPSHOTS.md): a machine resumed from the bytes of its state at
any point decides byte-identically to one that folded the whole log, and equal states give equal
bytes. Generated sessions: the closed risk loop of ``tests/unit/strategies.py`` (signal + risk with
its portfolio) and the paper exchange's order flows."""

from __future__ import annotations

import os
import subprocess
import sys

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregates.machine import Machine, record_all, run
from aggregates.paper import PaperExchange
from aggregates.risk import RiskMachine
from aggregates.signal import SignalMachine
from aggregates.snapshot import CODECS, SnapshotDecodeError, digest
from tests.unit.aggregates.test_paper_properties import flows, paper_log, to_events
from tests.unit.strategies import drive, market_sequences

MACHINES: dict[str, Machine] = {
    "signal": SignalMachine(),
    "risk": RiskMachine(),
    "paper": PaperExchange(),
}


def _empty(name: str) -> object:
    """A state of ``name``: its machine's initial one (the screener's fold has no machine)."""
    return MACHINES[name].initial() if name in MACHINES else CODECS[name].state_type()


def _resumed_equals_full(name: str, facts: list, cut: int) -> None:
    machine, codec = MACHINES[name], CODECS[name]
    full_state, full_steps = run(machine, facts)
    head_state, _ = run(machine, facts[:cut])
    data = codec.encode(head_state)
    restored = codec.decode(data)
    assert codec.encode(restored) == data  # the bytes are a fixed point
    resumed_state, resumed_steps = run(machine, facts[cut:], restored)
    tail = [step for step in full_steps if step[0].position > cut]
    assert msgspec.msgpack.encode([outs for _, outs in resumed_steps]) == msgspec.msgpack.encode(
        [outs for _, outs in tail]
    )
    assert codec.encode(resumed_state) == codec.encode(full_state)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(market_sequences(), st.data())
def test_signal_and_risk_when_resumed_from_a_snapshot_anywhere_then_decide_as_the_full_fold(
    items, data
) -> None:
    facts = drive(items).facts
    facts = record_all([fact.event for fact in facts])
    cut = data.draw(st.integers(min_value=0, max_value=len(facts)), label="cut")
    for name in ("signal", "risk"):
        _resumed_equals_full(name, facts, cut)


@settings(max_examples=60, deadline=None)
@given(flows, st.data())
def test_paper_when_resumed_from_a_snapshot_anywhere_then_decides_as_the_full_fold(
    flow, data
) -> None:
    facts = record_all(paper_log(to_events(flow)))
    cut = data.draw(st.integers(min_value=0, max_value=len(facts)), label="cut")
    _resumed_equals_full("paper", facts, cut)


_ENCODE_IN_A_FRESH_PROCESS = """
import sys
from aggregates.paper import PaperState
from aggregates.snapshot import CODECS, digest
state = PaperState(priced=frozenset(f"S{i}_USDT" for i in range(40)))
sys.stdout.write(digest(CODECS["paper"].encode(state)).hex())
"""


def test_state_bytes_when_encoded_by_processes_with_other_hash_seeds_then_equal() -> None:
    digests = {
        subprocess.run(
            [sys.executable, "-c", _ENCODE_IN_A_FRESH_PROCESS],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(digests) == 1


@pytest.mark.parametrize("name", sorted(CODECS))
def test_decode_when_bytes_truncated_or_foreign_then_snapshot_decode_error(name: str) -> None:
    codec = CODECS[name]
    data = codec.encode(_empty(name))
    for bad in (data[: len(data) // 2], b"", b"\x93\x01\x02\x03", b"\x91\xa1x"):
        with pytest.raises(SnapshotDecodeError):
            codec.decode(bad)
    assert len(digest(data)) == 32


@pytest.mark.parametrize("name", sorted(CODECS))
def test_decode_when_bytes_are_another_machines_state_then_snapshot_decode_error(
    name: str,
) -> None:
    for other in sorted(set(CODECS) - {name}):
        data = CODECS[other].encode(_empty(other))
        with pytest.raises(SnapshotDecodeError, match=repr(other)):
            CODECS[name].decode(data)
