"""Attacks on docs/ARCHIVE.md's `replay --archive`: the same walk as before archiving, and a
damaged or foreign archive is exit 1, named, with no traceback."""

from __future__ import annotations

import pytest

from eventstore import EventStore
from eventstore.archive import ArchivedLog, ArchiveError
from tests.blackbox_attack.history.archive_helpers import (
    lie,
    manifests,
    non_utf8,
    parquets,
)
from tests.blackbox_attack.history.conftest import (
    FAR_FUTURE,
    archivable_ledger,
    archived,
    no_traceback,
    run,
)


async def test_replay_when_archive_read_then_same_walk_as_before_archiving(make_ledger, tmp_path):
    ledger = await archivable_ledger(make_ledger)
    before = await run(ledger.url, "--from", "2025-06-02", "-q", tool="replay")
    assert before.code == 0, before.text
    tmp_path.joinpath("a").mkdir()
    done = await run(ledger.url, "archive", "--before", FAR_FUTURE, "--to", str(tmp_path / "a"))
    assert done.code == 0 and parquets(tmp_path / "a"), done.text
    after = await run(
        ledger.url, "--from", "2025-06-02", "-q", "--archive", str(tmp_path / "a"), tool="replay"
    )
    assert after.code == 0, after.text
    assert after.out == before.out


async def test_replay_when_archive_file_corrupted_then_exit_1_named(make_ledger, tmp_path):
    ledger = await archived(make_ledger, tmp_path)
    target = parquets(tmp_path)[0]
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    result = await run(
        ledger.url, "--from", "2025-06-02", "-q", "--archive", str(tmp_path), tool="replay"
    )
    no_traceback(result)
    assert result.code == 1, result.text
    assert target.name.split(".")[0] in result.text


async def test_replay_when_archive_file_missing_then_exit_1_named(make_ledger, tmp_path):
    ledger = await archived(make_ledger, tmp_path)
    target = parquets(tmp_path)[0]
    target.unlink()
    result = await run(
        ledger.url, "--from", "2025-06-02", "-q", "--archive", str(tmp_path), tool="replay"
    )
    no_traceback(result)
    assert result.code == 1, result.text
    assert target.name.split(".")[0] in result.text


async def test_replay_when_archived_positions_but_no_archive_given_then_exit_1_no_traceback(
    make_ledger, tmp_path
):
    ledger = await archived(make_ledger, tmp_path)
    result = await run(ledger.url, "--from", "2025-06-02", "-q", tool="replay")
    no_traceback(result)
    assert result.code in (0, 1), result.text


async def test_replay_when_manifest_lies_then_exit_1_no_traceback(make_ledger, tmp_path):
    ledger = await archived(make_ledger, tmp_path)
    target = manifests(tmp_path)[0]
    original = target.read_text()
    for key, value in (("sha256", "0" * 64), ("last_position", 11)):
        lie(target, key, value)
        result = await run(
            ledger.url, "--from", "2025-06-02", "-q", "--archive", str(tmp_path), tool="replay"
        )
        no_traceback(result)
        assert result.code == 1, (key, result.text)
        target.write_text(original)


# Was a finding: replay --archive / ArchivedLog accepted another ledger's whole archive;
# now the archive must join this table's chain (ArchivedLog checks it before any read).


async def test_replay_when_archive_is_another_ledgers_then_exit_1(make_ledger, tmp_path):
    ours = await archived(make_ledger, tmp_path / "ours")
    await archived(make_ledger, tmp_path / "theirs", first=1000)
    assert (await run(ours.url, "verify", "--archive", str(tmp_path / "theirs"))).code == 1
    foreign = await run(
        ours.url, "--from", "2025-06-02", "-q", "--archive", str(tmp_path / "theirs"), tool="replay"
    )
    no_traceback(foreign)
    assert foreign.code == 1, foreign.text


async def test_archived_log_when_archive_is_another_ledgers_then_raises_archive_error(
    make_ledger, tmp_path
):
    ours = await archived(make_ledger, tmp_path / "ours")
    await archived(make_ledger, tmp_path / "theirs", first=1000)
    store = await EventStore.connect(ours.url)
    try:
        honest = [e.event async for e in ArchivedLog(store, tmp_path / "ours").read_all()]
        assert len(honest) == 45
        with pytest.raises(ArchiveError):
            seen = [e.event async for e in ArchivedLog(store, tmp_path / "theirs").read_all()]
            assert seen == honest, "read another ledger's events as this one's"
    finally:
        await store.close()


async def test_replay_verify_when_archived_with_sound_snapshots_then_same_verdicts(
    make_ledger, tmp_path
):
    # tickers events fold to no machine state, so the empty-state snapshots at 35 are sound
    ledger = await archivable_ledger(make_ledger, kind="tickers")
    before_all = await run(ledger.url, "--verify", "--all", "--jobs", "2", tool="replay")
    before = await run(ledger.url, "--from", "2025-06-02", "--verify", "-q", tool="replay")
    assert before_all.code == 0 and before.code == 0, before_all.text + before.text
    directory = tmp_path / "a"
    directory.mkdir()
    done = await run(ledger.url, "archive", "--before", FAR_FUTURE, "--to", str(directory))
    assert done.code == 0 and parquets(directory), done.text
    for extra in ((), ("--archive", str(directory))):
        every = await run(ledger.url, "--verify", "--all", "--jobs", "2", *extra, tool="replay")
        no_traceback(every)
        assert every.code == 0, every.text
    window = await run(
        ledger.url,
        "--from",
        "2025-06-02",
        "--verify",
        "-q",
        "--archive",
        str(directory),
        tool="replay",
    )
    assert window.code == 0, window.text
    folded = await run(
        ledger.url,
        "--from",
        "2025-06-02",
        "--verify",
        "-q",
        "--no-snapshots",
        "--archive",
        str(directory),
        tool="replay",
    )
    assert folded.code == 0, folded.text
    assert window.out.splitlines()[0] == before.out.splitlines()[0]
    status = await run(ledger.url, "status")
    no_traceback(status)
    assert status.code == 0, status.text


async def test_replay_when_manifest_not_utf8_then_exit_1_no_traceback(make_ledger, tmp_path):
    ledger = await archived(make_ledger, tmp_path)
    non_utf8(manifests(tmp_path)[0])
    replay = await run(
        ledger.url, "--from", "2025-06-02", "-q", "--archive", str(tmp_path), tool="replay"
    )
    no_traceback(replay)
    assert replay.code == 1, replay.text


async def test_replay_verify_all_when_archive_corrupted_then_exit_1_no_traceback(
    make_ledger, tmp_path
):
    ledger = await archived(make_ledger, tmp_path, kind="tickers")
    target = parquets(tmp_path)[0]
    target.write_bytes(target.read_bytes()[:-50])
    for extra in (("--jobs", "1"), ("--jobs", "2")):
        result = await run(
            ledger.url, "--verify", "--all", *extra, "--archive", str(tmp_path), tool="replay"
        )
        no_traceback(result)
        assert result.code == 1, result.text
        assert "events_p0" in result.text, result.text


@pytest.mark.parametrize("snapshots", [(), ("--no-snapshots",)])
async def test_replay_from_verify_when_archive_truncated_then_exit_1_named(
    make_ledger, tmp_path, snapshots
):
    ledger = await archived(make_ledger, tmp_path, kind="tickers")
    target = parquets(tmp_path)[0]
    target.write_bytes(target.read_bytes()[:-50])
    result = await run(
        ledger.url,
        "--from",
        "2025-06-02",
        "--verify",
        "-q",
        *snapshots,
        "--archive",
        str(tmp_path),
        tool="replay",
    )
    no_traceback(result)
    assert result.code == 1, result.text
    assert "events_p0" in result.text, result.text
