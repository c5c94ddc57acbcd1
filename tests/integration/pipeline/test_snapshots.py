"""Verified snapshots (docs/SNAPSHOTS.md), on a real ledger: a decision service restores from the
latest usable snapshot and folds only the tail, to the same state as a fold from position 1; a
snapshot failing any check (truncated, edited, another code/layout version, configuration or
chain, a digest that does not match) is skipped with a WARNING and the one before it used."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgspec
import pytest

from aggregates.machine import record_all, run
from aggregates.snapshot import CODECS, digest
from cli.main import main
from eventstore import EventStore
from eventstore.snapshots import Snapshots, code_version, snapshot_of
from pipeline.decider import DecisionService
from tests.integration.replay.replay_helpers import append_log, machines, market, session

pytestmark = pytest.mark.db

MACHINES = {machine.name: machine for machine in machines()}
MIDNIGHT_MS = 1_748_822_400_000  # 2025-06-02T00:00:00Z, inside the generated sessions


@pytest.fixture
async def recorded(fresh_database_url):
    """A ledger holding a recorded session, the session in memory, and an open store on it."""
    url = await fresh_database_url()
    log = session(market(seed=3, minutes=8))
    await append_log(url, log)
    store = await EventStore.connect(url)
    try:
        yield store, log
    finally:
        await store.close()


def _no_feed(position: int):  # restore() never reads the live feed
    raise AssertionError("restore must not follow the feed")


async def _restored(store: EventStore, name: str, *, snapshots: bool = True) -> DecisionService:
    service = DecisionService(
        MACHINES[name], store, _no_feed, snapshots=Snapshots(store) if snapshots else None
    )
    await service.restore()
    return service


async def _snapshot_at(store: EventStore, log: list, name: str, position: int):
    """The true snapshot of ``name`` at ``position``, from folding the session in memory."""
    state, _ = run(MACHINES[name], log[:position])
    configs = [r.event.config_hash for r in log[:position] if r.event_type == "config.activated"]
    chain = await Snapshots(store).chain_hash_at(position)
    assert chain is not None
    return snapshot_of(name, CODECS[name].encode(state), position, chain, configs[-1])


@pytest.mark.parametrize("name", sorted(MACHINES))  # the screener's: test_screener_snapshots.py
async def test_service_when_a_snapshot_exists_then_restores_from_it_to_the_full_fold_state(
    recorded, name: str
) -> None:
    store, log = recorded
    full = await _restored(store, name, snapshots=False)
    position = len(log) * 2 // 3
    await Snapshots(store).save(await _snapshot_at(store, log, name, position))
    resumed = await _restored(store, name)
    assert resumed.progress.snapshot_position == position
    assert resumed.progress.recovered == 0  # nothing appended: the ledger is untouched
    assert resumed.progress.last_position == full.progress.last_position == len(log)
    assert CODECS[name].encode(resumed.state) == CODECS[name].encode(full.state)


async def test_service_when_snapshotting_every_n_events_then_the_next_restore_starts_there(
    recorded,
) -> None:
    store, log = recorded
    first = DecisionService(
        MACHINES["risk"], store, _no_feed, snapshots=Snapshots(store), snapshot_every=100
    )
    await first.restore()
    await first.wait_snapshots()
    assert first.progress.snapshot_position == 0
    second = await _restored(store, "risk")
    assert second.progress.snapshot_position == len(log)
    assert CODECS["risk"].encode(second.state) == CODECS["risk"].encode(first.state)


def _truncated(s):
    return msgspec.structs.replace(s, state=s.state[:-7])


def _edited(s):
    flipped = bytes([s.state[len(s.state) // 2] ^ 1])
    middle = len(s.state) // 2
    return msgspec.structs.replace(s, state=s.state[:middle] + flipped + s.state[middle + 1 :])


def _truncated_and_rehashed(s):
    state = s.state[: len(s.state) // 2]
    return msgspec.structs.replace(s, state=state, state_digest=digest(state))


BAD = {
    "truncated": (_truncated, "SHA-256"),
    "edited": (_edited, "SHA-256"),
    "digest_mismatch": (
        lambda s: msgspec.structs.replace(s, state_digest=digest(b"other")),
        "SHA-256",
    ),
    "undecodable": (_truncated_and_rehashed, "not a snapshot state"),
    "other_code_version": (
        lambda s: msgspec.structs.replace(s, code_version="0123456789abcdef"),
        "code version",
    ),
    "other_layout": (lambda s: msgspec.structs.replace(s, schema_version=99), "layout"),
    "other_config": (
        lambda s: msgspec.structs.replace(s, config_hash="ab" * 32),
        "configuration hash",
    ),
    "other_chain": (lambda s: msgspec.structs.replace(s, chain_hash=b"\x11" * 32), "chain hash"),
    "past_the_head": (
        lambda s: msgspec.structs.replace(s, position=s.position + 10_000),
        "past the ledger's head",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
async def test_restore_when_the_latest_snapshot_is_bad_then_skipped_with_warning_and_previous_used(
    recorded, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    store, log = recorded
    spoil, reason = BAD[case]
    snapshots = Snapshots(store)
    good = len(log) // 3
    await snapshots.save(await _snapshot_at(store, log, "risk", good))
    bad = spoil(await _snapshot_at(store, log, "risk", len(log) * 2 // 3))
    await snapshots.save(bad)
    full = await _restored(store, "risk", snapshots=False)
    with caplog.at_level(logging.WARNING, logger="eventstore.snapshots"):
        resumed = await _restored(store, "risk")
    assert resumed.progress.snapshot_position == good
    assert CODECS["risk"].encode(resumed.state) == CODECS["risk"].encode(full.state)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"position {bad.position} skipped" in w and reason in w for w in warnings), warnings
    assert await snapshots.problem(bad) is not None


async def test_restore_when_no_snapshot_is_usable_then_folds_from_position_one(
    recorded, caplog: pytest.LogCaptureFixture
) -> None:
    store, log = recorded
    snapshots = Snapshots(store)
    for position in (len(log) // 4, len(log) // 2):
        await snapshots.save(_edited(await _snapshot_at(store, log, "signal", position)))
    full = await _restored(store, "signal", snapshots=False)
    with caplog.at_level(logging.WARNING, logger="eventstore.snapshots"):
        resumed = await _restored(store, "signal")
    assert resumed.progress.snapshot_position == 0
    assert CODECS["signal"].encode(resumed.state) == CODECS["signal"].encode(full.state)
    assert len([r for r in caplog.records if "skipped" in r.getMessage()]) == 2


def test_code_version_is_stable_within_a_process() -> None:
    assert code_version() == code_version()
    assert len(code_version()) == 16


async def test_service_when_restored_from_a_snapshot_then_its_own_next_snapshot_is_usable(
    recorded,
) -> None:
    store, log = recorded
    snapshots = Snapshots(store)
    await snapshots.save(await _snapshot_at(store, log, "paper", len(log) // 2))
    service = DecisionService(
        MACHINES["paper"], store, _no_feed, snapshots=snapshots, snapshot_every=1
    )
    await service.restore()
    await service.wait_snapshots()
    assert service.progress.snapshot_position == len(log) // 2
    [taken] = await snapshots.candidates("paper", limit=1)
    assert taken.position == len(log)
    assert await snapshots.problem(taken) is None


async def test_claire_status_when_snapshots_exist_then_shows_what_each_service_would_use(
    recorded, capsys: pytest.CaptureFixture[str]
) -> None:
    store, log = recorded
    snapshots = Snapshots(store)
    good, bad = len(log) // 3, len(log) // 2
    await snapshots.save(await _snapshot_at(store, log, "risk", good))
    await snapshots.save(_edited(await _snapshot_at(store, log, "risk", bad)))
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["--database-url", store.url, "status"]) == 0
    out = capsys.readouterr().out
    assert f"risk    position {good} " in out
    assert f"folds {len(log) - good} events" in out
    assert f"skipped at {bad}: state bytes do not hash" in out
    assert f"signal  none usable: folds {len(log)} events from position 1" in out


async def test_live_service_when_running_then_snapshots_every_n_events_and_at_midnight(
    fresh_database_url,
) -> None:
    from pipeline.source import LedgerFeed
    from tests.integration.replay.replay_helpers import to_new

    url = await fresh_database_url()
    inputs = record_all(market(seed=5, minutes=45))  # 23:30 .. 00:15 UTC: crosses midnight
    store = await EventStore.connect(url)
    try:
        snapshots = Snapshots(store)
        service = DecisionService(
            MACHINES["signal"],
            store,
            lambda after: LedgerFeed(store, None, after=after),
            snapshots=snapshots,
            snapshot_every=1_000,
        )
        task = asyncio.create_task(service.run())
        await service.ready.wait()
        for chunk in range(0, len(inputs), 200):  # the market arrives while it runs
            await store.append("market", [to_new(r) for r in inputs[chunk : chunk + 200]])
            await asyncio.sleep(0.01)
        for _ in range(600):  # until it has read its own last decision
            await asyncio.sleep(0.05)
            head, _ = await store.head()
            if service.progress.last_position == head and head > len(inputs):
                break
        await service.wait_snapshots()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        taken = await snapshots.candidates("signal", limit=1000)
        assert len(taken) >= 3 and service.progress.snapshots_taken == len(taken)
        assert [await snapshots.problem(s) for s in taken] == [None] * len(taken)
        full = await _restored(store, "signal", snapshots=False)
        log = [r async for r in store.read_all()]
        first_of_day = next(r.position for r in log if r.event.at_ms >= MIDNIGHT_MS)
        assert first_of_day - 1 in {s.position for s in taken}  # the day before's last state
        for snapshot in taken:  # each one is the fold of its prefix
            state, _ = run(MACHINES["signal"], log[: snapshot.position])
            assert CODECS["signal"].encode(state) == snapshot.state, snapshot.position
        resumed = await _restored(store, "signal")
        assert resumed.progress.snapshot_position == max(s.position for s in taken)
        assert CODECS["signal"].encode(resumed.state) == CODECS["signal"].encode(full.state)
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("role", "statement"),
    [
        ("claire_projector", "INSERT INTO ledger.snapshots {insert}"),
        ("claire_auditor", "INSERT INTO ledger.snapshots {insert}"),
        ("claire_app", "UPDATE ledger.snapshots SET position = position + 1"),
        ("claire_app", "DELETE FROM ledger.snapshots"),
        ("claire_app", "TRUNCATE ledger.snapshots"),
        (None, "UPDATE ledger.snapshots SET state = ''::bytea"),  # even a superuser: refused
    ],
)
async def test_snapshot_rows_when_another_role_writes_or_anyone_changes_them_then_refused(
    recorded, role: str | None, statement: str
) -> None:
    import asyncpg

    store, log = recorded
    await Snapshots(store).save(await _snapshot_at(store, log, "risk", len(log) // 2))
    insert = (
        "(machine, code_version, schema_version, config_hash, position, chain_hash,"
        " state_digest, state) VALUES ('risk', 'x', 1, '', 1, '\\x{0}'::bytea, '\\x{0}'::bytea,"
        " ''::bytea)".format("00" * 32)
    )
    conn = await asyncpg.connect(store.url)
    try:
        async with conn.transaction():
            if role is not None:
                await conn.execute(f"SET LOCAL ROLE {role}")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement.format(insert=insert))
        allowed = conn.transaction()  # the services' role may insert (rolled back)
        await allowed.start()
        try:
            await conn.execute("SET LOCAL ROLE claire_app")
            await conn.execute(f"INSERT INTO ledger.snapshots {insert}")
        finally:
            await allowed.rollback()
    finally:
        await conn.close()
    assert await Snapshots(store).problem((await Snapshots(store).candidates("risk"))[0]) is None


async def test_restore_when_the_snapshot_table_is_missing_then_warns_and_folds_from_one(
    fresh_database_url, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.integration.eventstore.eventstore_helpers import as_superuser_without_triggers

    url = await fresh_database_url()
    log = session(market(seed=3, minutes=3))
    await append_log(url, log)
    await as_superuser_without_triggers(url, "DROP TABLE ledger.snapshots")  # not upgraded yet
    store = await EventStore.connect(url)
    try:
        full = await _restored(store, "risk", snapshots=False)
        with caplog.at_level(logging.WARNING, logger="pipeline.decider"):
            resumed = await _restored(store, "risk")
        assert resumed.progress.snapshot_position == 0
        assert CODECS["risk"].encode(resumed.state) == CODECS["risk"].encode(full.state)
        assert any("snapshots unreadable" in r.getMessage() for r in caplog.records)
    finally:
        await store.close()
