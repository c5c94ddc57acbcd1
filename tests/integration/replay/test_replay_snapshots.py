"""``replay`` from verified snapshots (docs/SNAPSHOTS.md): the same walk and verification as a fold
from position 1, reading only from the snapshots on; ``--verify`` checks every later snapshot it
passes, so a wrong snapshot is reported as a divergence instead of hiding one."""

from __future__ import annotations

import asyncio
import io
import json

import pytest

from aggregates.envelope import RecordedEvent
from aggregates.machine import run as fold
from aggregates.snapshot import CODECS
from cli.replay import main
from eventstore import EventStore
from eventstore.snapshots import Snapshots, snapshot_of
from replay.verify import verification_machines
from tests.integration.replay.replay_helpers import append_log, market, session

pytestmark = pytest.mark.db

FROM = "2025-06-02"
MIDNIGHT_MS = 1_748_822_400_000


async def replay(*argv: str) -> tuple[int, list[dict]]:
    out = io.StringIO()
    code = await asyncio.to_thread(main, [*argv, "--json", "-q"], stdout=out)
    return code, [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def of_type(lines: list[dict], kind: str) -> list[dict]:
    return [line for line in lines if line["type"] == kind]


def first_of_window(log: list[RecordedEvent]) -> int:
    return next(r.position for r in log if r.occurred_at.timestamp() * 1000 >= MIDNIGHT_MS)


async def save_true_snapshot(
    store: EventStore, log: list[RecordedEvent], name: str, position: int, *, state_at: int = 0
) -> None:
    """The snapshot of ``name`` at ``position`` (with ``state_at``: the state of another position,
    a wrong snapshot that passes every check but the replay's)."""
    machine = next(m for m in verification_machines() if m.name == name)
    state, _ = fold(machine, log[: state_at or position])
    config = [r.event.config_hash for r in log[:position] if r.event_type == "config.activated"]
    chain = await Snapshots(store).chain_hash_at(position)
    assert chain is not None
    await Snapshots(store).save(
        snapshot_of(name, CODECS[name].encode(state), position, chain, config[-1])
    )


@pytest.fixture
async def recorded(fresh_database_url):
    url = await fresh_database_url()
    log = session(market(seed=11, minutes=50))
    await append_log(url, log)
    store = await EventStore.connect(url)
    try:
        yield url, store, log
    finally:
        await store.close()


async def test_replay_when_snapshots_precede_the_window_then_starts_there_with_the_same_results(
    recorded,
) -> None:
    url, store, log = recorded
    first = first_of_window(log)
    # Each machine's snapshot at its own position: the older ones catch up to the newest.
    for name, position in (("signal", first - 900), ("risk", first - 400), ("paper", first - 1)):
        await save_true_snapshot(store, log, name, position)
    full_code, full = await replay(
        "--from", FROM, "--verify", "--no-snapshots", "--database-url", url
    )
    code, lines = await replay("--from", FROM, "--verify", "--database-url", url)
    assert full_code == code == 0
    [start] = of_type(lines, "snapshot_start")
    assert start["position"] == first - 1
    assert start["snapshots"] == {"signal": first - 900, "risk": first - 400, "paper": first - 1}
    assert not of_type(full, "snapshot_start")
    verify, full_verify = of_type(lines, "verify")[0], of_type(full, "verify")[0]
    assert verify["ok"] and verify["decisions"] == full_verify["decisions"]
    assert verify["chain"]["ok"]
    assert of_type(lines, "summary") == of_type(full, "summary")
    assert of_type(lines, "day") == of_type(full, "day")
    _, walked = await replay("--from", FROM, "--database-url", url)  # the walk alone, too
    assert of_type(walked, "summary") == of_type(full, "summary")


async def test_verify_when_a_later_snapshot_is_wrong_then_reported_as_the_divergence(
    recorded,
) -> None:
    url, store, log = recorded
    first = first_of_window(log)
    wrong_at = first + (len(log) - first) // 2
    for name in ("signal", "risk", "paper"):
        await save_true_snapshot(store, log, name, first - 1)
    await save_true_snapshot(store, log, "risk", first + 50)  # a right one: reproduced
    await save_true_snapshot(store, log, "risk", wrong_at, state_at=wrong_at - 300)
    code, lines = await replay("--from", FROM, "--verify", "--database-url", url)
    assert code == 1
    [checked] = of_type(lines, "snapshots_checked")
    assert checked == {"type": "snapshots_checked", "checked": 2, "bad": 1}
    divergence = of_type(lines, "verify")[0]["divergence"]
    assert divergence["machine"] == "risk" and divergence["cause_position"] == wrong_at
    assert "does not reproduce the risk snapshot" in divergence["problem"]


async def test_verify_when_a_machine_has_no_usable_snapshot_then_folds_from_position_one(
    recorded,
) -> None:
    url, store, log = recorded
    first = first_of_window(log)
    for name in ("signal", "risk"):  # none for paper
        await save_true_snapshot(store, log, name, first - 1)
    code, lines = await replay("--from", FROM, "--verify", "--database-url", url)
    assert code == 0
    assert not of_type(lines, "snapshot_start")
    assert of_type(lines, "verify")[0]["chain"]["events_checked"] == len(log)
    # The walk alone needs only the risk machine's snapshot (its portfolio): it starts there.
    code, walked = await replay("--from", FROM, "--database-url", url)
    assert code == 0
    assert of_type(walked, "snapshot_start")[0]["snapshots"] == {"risk": first - 1}
    _, full = await replay("--from", FROM, "--no-snapshots", "--database-url", url)
    assert of_type(walked, "summary") == of_type(full, "summary")
    assert of_type(walked, "day") == of_type(full, "day")


async def test_verify_all_when_snapshots_are_right_then_every_decision_checked_once_in_any_jobs(
    recorded,
) -> None:
    url, store, log = recorded
    cuts = (len(log) // 4, len(log) // 2, len(log) * 3 // 4)
    for position in cuts:
        for name in ("signal", "risk", "paper"):
            await save_true_snapshot(store, log, name, position)
    await save_true_snapshot(store, log, "risk", len(log) // 3)  # a cut of risk's alone
    _, full = await replay(
        "--from", "2025-06-01", "--verify", "--no-snapshots", "--database-url", url
    )
    whole = of_type(full, "verify")[0]["decisions_checked"]
    results = []
    for jobs in ("1", "2"):
        code, lines = await replay("--verify", "--all", "--jobs", jobs, "--database-url", url)
        assert code == 0, lines
        [result] = of_type(lines, "verify_all")
        results.append({k: v for k, v in result.items() if k != "jobs"})
    assert results[0] == results[1]
    assert results[0]["segments"] == 6  # 4 shared bounds; risk cuts the second in two
    assert results[0]["decisions_checked"] == whole > 0


async def test_verify_all_when_a_snapshot_is_wrong_then_the_first_divergence_in_log_order(
    recorded,
) -> None:
    url, store, log = recorded
    early, late = len(log) // 3, len(log) * 2 // 3
    for name in ("signal", "risk", "paper"):
        await save_true_snapshot(store, log, name, len(log) // 6)
    await save_true_snapshot(store, log, "paper", late, state_at=late - 500)
    await save_true_snapshot(store, log, "signal", early, state_at=early - 200)
    code, lines = await replay("--verify", "--all", "--jobs", "2", "--database-url", url)
    assert code == 1
    divergence = of_type(lines, "verify_all")[0]["divergence"]
    assert divergence["machine"] == "signal" and divergence["cause_position"] <= early
    assert "does not reproduce the signal snapshot" in divergence["problem"]


@pytest.mark.parametrize("argv", [["--all"], ["--verify", "--all", "--jobs", "0"]])
async def test_verify_all_when_options_are_bad_then_exit_2(argv: list[str]) -> None:
    code = await asyncio.to_thread(main, [*argv, "--database-url", "postgresql://x@127.0.0.1:1/x"])
    assert code == 2
