"""Attacks on docs/SNAPSHOTS.md: which snapshot is used, status, replay --verify --all."""

from __future__ import annotations

import hashlib
import logging

import asyncpg
import pytest

from aggregates.snapshot import CODECS
from eventstore import EventStore
from eventstore.snapshots import Snapshot, Snapshots, snapshot_of
from tests.blackbox_attack.history.conftest import no_traceback, run


def _good(machine: str, position: int, chain: bytes, config: str) -> Snapshot:
    codec = CODECS[machine]
    return snapshot_of(machine, codec.encode(codec.state_type()), position, chain, config)


async def _bad_variants(snaps: Snapshots, machine: str, position: int) -> dict[str, Snapshot]:
    chain = await snaps.chain_hash_at(position)
    assert chain is not None
    config = await snaps.config_hash_at(position)
    good = _good(machine, position, chain, config)
    other = "signal" if machine != "signal" else "paper"
    other_bytes = CODECS[other].encode(CODECS[other].state_type())
    return {
        "truncated state": Snapshot(
            machine=machine,
            code_version=good.code_version,
            schema_version=good.schema_version,
            config_hash=good.config_hash,
            position=good.position,
            chain_hash=good.chain_hash,
            state_digest=good.state_digest,
            state=good.state[:-3],
        ),
        "foreign config": _good(machine, position, chain, "f" * 64),
        "foreign chain": _good(machine, position, hashlib.sha256(b"other").digest(), config),
        "other code version": Snapshot(
            machine=machine,
            code_version="0" * 64,
            schema_version=good.schema_version,
            config_hash=config,
            position=position,
            chain_hash=chain,
            state_digest=good.state_digest,
            state=good.state,
        ),
        "other layout": Snapshot(
            machine=machine,
            code_version=good.code_version,
            schema_version=good.schema_version + 7,
            config_hash=config,
            position=position,
            chain_hash=chain,
            state_digest=good.state_digest,
            state=good.state,
        ),
        "bytes of another machine": Snapshot(
            machine=machine,
            code_version=good.code_version,
            schema_version=good.schema_version,
            config_hash=config,
            position=position,
            chain_hash=chain,
            state_digest=hashlib.sha256(other_bytes).digest(),
            state=other_bytes,
        ),
        "garbage bytes": Snapshot(
            machine=machine,
            code_version=good.code_version,
            schema_version=good.schema_version,
            config_hash=config,
            position=position,
            chain_hash=chain,
            state_digest=hashlib.sha256(b"\xc1\xff\x00").digest(),
            state=b"\xc1\xff\x00",
        ),
    }


VARIANTS = [
    "truncated state",
    "foreign config",
    "foreign chain",
    "other code version",
    "other layout",
    "garbage bytes",
]


@pytest.mark.parametrize("variant", VARIANTS)
async def test_restore_when_newest_snapshot_is_bad_then_skipped_with_warning_for_older(
    make_ledger, variant, caplog
):
    ledger = await make_ledger(events=45, snapshot_at=35)
    store = await EventStore.connect(ledger.url)
    try:
        snaps = Snapshots(store)
        for machine in CODECS:
            bad = (await _bad_variants(snaps, machine, 40))[variant]
            await snaps.save(bad)
            assert await snaps.problem(bad), (machine, variant)
            caplog.clear()
            with caplog.at_level(logging.WARNING):
                restored = await snaps.latest_usable(machine)
            assert restored is not None, (machine, variant)
            assert restored.snapshot.position == 35, (machine, variant)
            warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
            assert warnings, (machine, variant)
    finally:
        await store.close()


async def test_restore_when_snapshot_past_head_then_skipped(make_ledger, caplog):
    ledger = await make_ledger(events=45, snapshot_at=35)
    store = await EventStore.connect(ledger.url)
    try:
        snaps = Snapshots(store)
        head, head_hash = await store.head()
        for machine in CODECS:
            await snaps.save(_good(machine, head + 100, head_hash, ""))
            with caplog.at_level(logging.WARNING):
                restored = await snaps.latest_usable(machine)
            assert restored is not None and restored.snapshot.position == 35
    finally:
        await store.close()


async def test_restore_when_only_bad_snapshots_then_none_fold_from_one(make_ledger):
    ledger = await make_ledger(events=45, snapshot_at=None)
    store = await EventStore.connect(ledger.url)
    try:
        snaps = Snapshots(store)
        for machine in CODECS:
            for bad in (await _bad_variants(snaps, machine, 20)).values():
                await snaps.save(bad)
            assert await snaps.latest_usable(machine) is None
    finally:
        await store.close()


async def test_status_when_newest_snapshot_foreign_then_names_older_and_why(make_ledger):
    ledger = await make_ledger(events=45, snapshot_at=35)
    store = await EventStore.connect(ledger.url)
    try:
        snaps = Snapshots(store)
        for machine in CODECS:
            await snaps.save((await _bad_variants(snaps, machine, 40))["foreign config"])
    finally:
        await store.close()
    result = await run(ledger.url, "status")
    no_traceback(result)
    assert result.code == 0, result.text
    section = result.out[result.out.index("snapshots") :]
    for machine in CODECS:
        line = next(ln for ln in section.splitlines() if ln.strip().startswith(machine))
        assert "position 35" in line, section
    assert "40" in section and "config" in section.lower(), section


async def test_snapshots_when_update_or_delete_then_refused(make_ledger):
    ledger = await make_ledger(events=20, snapshot_at=10)
    conn = await asyncpg.connect(ledger.url)
    try:
        before = await conn.fetch("SELECT * FROM ledger.snapshots ORDER BY 1")
        for sql in (
            "UPDATE ledger.snapshots SET position = position + 1",
            "UPDATE ledger.snapshots SET state = ''::bytea",
            "DELETE FROM ledger.snapshots",
        ):
            with pytest.raises(asyncpg.PostgresError):
                await conn.execute(sql)
        assert await conn.fetch("SELECT * FROM ledger.snapshots ORDER BY 1") == before
    finally:
        await conn.close()


async def test_replay_verify_when_newest_snapshots_bad_then_skipped_not_a_crash(make_ledger):
    ledger = await make_ledger(events=45, snapshot_at=None)
    store = await EventStore.connect(ledger.url)
    try:
        snaps = Snapshots(store)
        for machine in CODECS:
            for name, bad in (await _bad_variants(snaps, machine, 30)).items():
                if name in VARIANTS and name not in ("truncated state", "garbage bytes"):
                    await snaps.save(bad)
    finally:
        await store.close()
    plain = await run(ledger.url, "--from", "2025-06-02", "--verify", "-q", tool="replay")
    no_traceback(plain)
    assert plain.code == 0, plain.text
    reference = await run(
        ledger.url, "--from", "2025-06-02", "--verify", "-q", "--no-snapshots", tool="replay"
    )
    assert reference.code == 0, reference.text
    every = await run(ledger.url, "--verify", "--all", "--jobs", "2", tool="replay")
    no_traceback(every)
    assert every.code == 0, every.text


async def test_replay_verify_all_when_snapshot_wrong_then_divergence_at_its_position(
    make_ledger,
):
    # an empty risk/signal state is not the fold of 35 trades: a wrong (but well-formed) snapshot
    ledger = await make_ledger(events=45, snapshot_at=35)
    for jobs in ("1", "2"):
        result = await run(ledger.url, "--verify", "--all", "--jobs", jobs, tool="replay")
        no_traceback(result)
        assert result.code == 1, result.text
        assert "35" in result.text, result.text


@pytest.mark.parametrize("jobs", ["0", "-1", "x"])
async def test_replay_verify_all_when_jobs_invalid_then_usage_error(make_ledger, jobs):
    ledger = await make_ledger(events=5, snapshot_at=None)
    result = await run(ledger.url, "--verify", "--all", "--jobs", jobs, tool="replay")
    no_traceback(result)
    assert result.code == 2, result.text


async def test_snapshots_when_truncated_then_refused_as_on_events(make_ledger):
    ledger = await make_ledger(events=20, snapshot_at=10)
    conn = await asyncpg.connect(ledger.url)
    try:
        with pytest.raises(asyncpg.PostgresError):
            await conn.execute("TRUNCATE ledger.events")
        with pytest.raises(asyncpg.PostgresError):
            await conn.execute("TRUNCATE ledger.snapshots")
    finally:
        await conn.close()


@pytest.mark.parametrize("machine", ["signal", "risk", "paper", "screener"])
async def test_restore_when_snapshot_holds_another_machines_bytes_then_skipped(
    make_ledger, machine, caplog
):
    ledger = await make_ledger(events=45, snapshot_at=35)
    store = await EventStore.connect(ledger.url)
    try:
        snaps = Snapshots(store)
        bad = (await _bad_variants(snaps, machine, 40))["bytes of another machine"]
        await snaps.save(bad)
        assert await snaps.problem(bad)
        with caplog.at_level(logging.WARNING):
            restored = await snaps.latest_usable(machine)
        assert restored is not None and restored.snapshot.position == 35
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("position 40" in w and "not a snapshot state" in w for w in warnings), warnings
    finally:
        await store.close()


@pytest.mark.parametrize("variant", ["truncated state", "garbage bytes"])
async def test_replay_verify_when_snapshot_fails_its_own_checks_then_skipped_not_divergence(
    make_ledger, variant
):
    ledger = await make_ledger(events=45, snapshot_at=None)
    store = await EventStore.connect(ledger.url)
    try:
        snaps = Snapshots(store)
        bad = (await _bad_variants(snaps, "paper", 30))[variant]
        await snaps.save(bad)
        assert await snaps.problem(bad)
        assert await snaps.latest_usable("paper") is None
    finally:
        await store.close()
    every = await run(ledger.url, "--verify", "--all", tool="replay")
    assert every.code == 0, every.text
    window = await run(ledger.url, "--from", "2025-06-02", "--verify", "-q", tool="replay")
    no_traceback(window)
    assert window.code == every.code, window.text
    assert "snapshot at position 30 skipped" in window.err, window.text
