"""Attacks on the retention floor (docs/ARCHIVE.md): never archive what a restore still needs."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from aggregates.envelope import NewEvent
from aggregates.events import ExecutionReconciled
from aggregates.snapshot import CODECS
from aggregates.streams import stream_for
from eventstore import EventStore
from eventstore.snapshots import Snapshot, Snapshots, snapshot_of
from tests.blackbox_attack.history.conftest import (
    FAR_FUTURE,
    archivable_ledger,
    no_traceback,
    run,
)


async def _save(url: str, machines, position: int, spoil: str | None = None) -> None:
    store = await EventStore.connect(url)
    try:
        snaps = Snapshots(store)
        chain = await snaps.chain_hash_at(position)
        config = await snaps.config_hash_at(position)
        for machine in machines:
            codec = CODECS[machine]
            good = snapshot_of(machine, codec.encode(codec.state_type()), position, chain, config)
            if spoil == "config":
                good = snapshot_of(machine, good.state, position, chain, "e" * 64)
            elif spoil == "chain":
                good = snapshot_of(
                    machine, good.state, position, hashlib.sha256(b"x").digest(), config
                )
            elif spoil == "digest":
                good = Snapshot(
                    machine=machine,
                    code_version=good.code_version,
                    schema_version=good.schema_version,
                    config_hash=config,
                    position=position,
                    chain_hash=chain,
                    state_digest=good.state_digest,
                    state=good.state + b"\x00",
                )
            elif spoil == "code":
                good = Snapshot(
                    machine=machine,
                    code_version="1" * 64,
                    schema_version=good.schema_version,
                    config_hash=config,
                    position=position,
                    chain_hash=chain,
                    state_digest=good.state_digest,
                    state=good.state,
                )
            await snaps.save(good)
    finally:
        await store.close()


async def _archive_nothing(ledger, tmp_path) -> None:
    rows = await ledger.rows()
    result = await run(ledger.url, "archive", "--before", FAR_FUTURE, "--to", str(tmp_path))
    no_traceback(result)
    assert result.code == 0, result.text
    assert list(tmp_path.iterdir()) == [], result.text
    assert await ledger.rows() == rows


@pytest.mark.parametrize("missing", ["signal", "risk", "paper", "screener"])
async def test_archive_when_one_service_has_no_snapshot_then_archives_nothing(
    make_ledger, tmp_path, missing
):
    ledger = await archivable_ledger(make_ledger, snapshot_at=None)
    await _save(ledger.url, [m for m in CODECS if m != missing], 35)
    await _archive_nothing(ledger, tmp_path)


@pytest.mark.parametrize("spoil", ["config", "chain", "digest", "code"])
async def test_archive_when_only_snapshots_are_unusable_then_archives_nothing(
    make_ledger, tmp_path, spoil
):
    ledger = await archivable_ledger(make_ledger, snapshot_at=None)
    await _save(ledger.url, list(CODECS), 35, spoil=spoil)
    store = await EventStore.connect(ledger.url)
    try:
        for machine in CODECS:
            assert await Snapshots(store).latest_usable(machine) is None
    finally:
        await store.close()
    await _archive_nothing(ledger, tmp_path)


async def test_archive_when_newest_unusable_but_older_usable_then_floor_at_older(
    make_ledger, tmp_path
):
    ledger = await archivable_ledger(make_ledger, events=45, snapshot_at=None)
    await _save(ledger.url, list(CODECS), 15)
    await _save(ledger.url, list(CODECS), 35, spoil="config")
    result = await run(ledger.url, "archive", "--before", FAR_FUTURE, "--to", str(tmp_path))
    no_traceback(result)
    assert result.code == 0, result.text
    archived = sorted(p.name for p in tmp_path.glob("*.parquet"))
    positions = [p for p, _ in await ledger.rows()]
    # a restore folds from 15: positions 16.. must stay in the table
    assert all(p in positions for p in range(16, 46)), archived
    assert archived == ["events_p0.parquet"], archived


async def test_archive_when_every_service_snapshotted_then_floor_is_oldest_newest(
    make_ledger, tmp_path
):
    ledger = await archivable_ledger(make_ledger, events=45, snapshot_at=None)
    await _save(ledger.url, ["signal", "risk", "screener"], 35)
    await _save(ledger.url, ["paper"], 22)
    result = await run(ledger.url, "archive", "--before", FAR_FUTURE, "--to", str(tmp_path))
    no_traceback(result)
    assert result.code == 0, result.text
    assert "22" in result.text and "paper" in result.text, result.text
    names = sorted(p.name for p in tmp_path.glob("*.parquet"))
    assert names == ["events_p0.parquet", "events_p0000000000000000011.parquet"], names
    positions = [p for p, _ in await ledger.rows()]
    assert positions == list(range(21, 46))


async def _live_ran(url: str, position: int) -> None:
    """A live deployment's start: live execution's reconciliation, in its ``execution`` stream."""
    store = await EventStore.connect(url)
    try:
        event = ExecutionReconciled(at_ms=1_750_000_000_000 + position * 1000, venue="mexc")
        new = NewEvent(
            event=event,
            event_id=uuid.uuid4(),
            occurred_at=datetime(2025, 6, 2, tzinfo=UTC) + timedelta(seconds=position),
        )
        assert await store.append(stream_for(event), [new]) == [position]
    finally:
        await store.close()


async def test_archive_when_live_from_the_start_then_paper_does_not_hold_the_floor(
    make_ledger, tmp_path
):
    ledger = await archivable_ledger(make_ledger, events=44, snapshot_at=None)
    await _live_ran(ledger.url, 45)
    await _save(ledger.url, [m for m in CODECS if m != "paper"], 35)
    result = await run(ledger.url, "archive", "--before", FAR_FUTURE, "--to", str(tmp_path))
    no_traceback(result)
    assert result.code == 0, result.text
    positions = [p for p, _ in await ledger.rows()]
    assert positions == list(range(31, 46)), result.text


async def test_archive_when_live_ran_but_live_execution_has_no_snapshot_then_archives_nothing(
    make_ledger, tmp_path
):
    ledger = await archivable_ledger(make_ledger, events=44, snapshot_at=None)
    await _live_ran(ledger.url, 45)
    await _save(ledger.url, [m for m in CODECS if m != "execution-live"], 35)
    await _archive_nothing(ledger, tmp_path)
