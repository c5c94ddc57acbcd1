"""Attacks on docs/SNAPSHOTS.md 'Incremental chain verification': verify --anchor / --since."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from eventstore import EventStore
from tests.blackbox_attack.history.conftest import (
    append_trades,
    archived,
    no_traceback,
    run,
)


async def _anchored(make_ledger, tmp_path: Path, events: int = 30):
    ledger = await make_ledger(events=events, snapshot_at=None)
    anchor = tmp_path / "anchor"
    result = await run(ledger.url, "verify", "--anchor", str(anchor))
    assert result.code == 0, result.text
    return ledger, anchor


async def _grow(ledger, count: int = 5) -> None:
    store = await EventStore.connect(ledger.url)
    try:
        await append_trades(store, 500, count)
    finally:
        await store.close()


async def test_since_when_anchor_honest_then_passes_after_growth(make_ledger, tmp_path):
    ledger, anchor = await _anchored(make_ledger, tmp_path)
    text = anchor.read_text().strip()
    position, digest = text.split(":")
    assert int(position) == 30 and len(bytes.fromhex(digest)) == 32
    await _grow(ledger)
    result = await run(ledger.url, "verify", "--since", str(anchor))
    assert result.code == 0, result.text


def _flip_hex(text: str) -> str:
    position, digest = text.strip().split(":")
    last = "0" if digest[-1] != "0" else "1"
    return f"{position}:{digest[:-1]}{last}\n"


BAD_ANCHORS = {
    "empty": "",
    "whitespace": "   \n",
    "no colon": "abc",
    "position only": "30",
    "hash only": ":" + "ab" * 32,
    "short hash": "30:abcd",
    "non-hex hash": "30:" + "zz" * 32,
    "long hash": "30:" + "ab" * 33,
    "negative position": "-1:" + "ab" * 32,
    "non-integer position": "3x:" + "ab" * 32,
    "past head": "999999:" + "ab" * 32,
    "huge position": "9" * 40 + ":" + "ab" * 32,
    "three fields": "30:" + "ab" * 32 + ":1",
    "binary": "\x00\xff\xfe",
}


@pytest.mark.parametrize("name", sorted(BAD_ANCHORS))
async def test_since_when_anchor_malformed_then_named_failure_no_traceback(
    make_ledger, tmp_path, name
):
    ledger, anchor = await _anchored(make_ledger, tmp_path)
    anchor.write_bytes(BAD_ANCHORS[name].encode("latin-1"))
    rows = await ledger.rows()
    result = await run(ledger.url, "verify", "--since", str(anchor))
    no_traceback(result)
    assert result.code in (1, 2), result.text
    assert result.code == 2 or "FAIL" in result.text.upper() or "anchor" in result.text.lower()
    assert await ledger.rows() == rows


async def test_since_when_anchor_hash_tampered_then_exit_1(make_ledger, tmp_path):
    ledger, anchor = await _anchored(make_ledger, tmp_path)
    anchor.write_text(_flip_hex(anchor.read_text()))
    await _grow(ledger)
    result = await run(ledger.url, "verify", "--since", str(anchor))
    no_traceback(result)
    assert result.code == 1, result.text


async def test_since_when_anchor_position_moved_back_then_exit_1(make_ledger, tmp_path):
    ledger, anchor = await _anchored(make_ledger, tmp_path)
    _, digest = anchor.read_text().strip().split(":")
    anchor.write_text(f"29:{digest}\n")
    result = await run(ledger.url, "verify", "--since", str(anchor))
    no_traceback(result)
    assert result.code == 1, result.text


async def test_since_when_anchor_file_missing_then_named_failure(make_ledger, tmp_path):
    ledger = await make_ledger(events=5, snapshot_at=None)
    result = await run(ledger.url, "verify", "--since", str(tmp_path / "absent"))
    no_traceback(result)
    assert result.code in (1, 2), result.text
    assert "absent" in result.text


async def test_since_when_anchor_is_a_directory_then_named_failure(make_ledger, tmp_path):
    ledger = await make_ledger(events=5, snapshot_at=None)
    result = await run(ledger.url, "verify", "--since", str(tmp_path))
    no_traceback(result)
    assert result.code in (1, 2), result.text


@pytest.mark.parametrize("where", ["directory", "missing parent"])
async def test_anchor_when_target_not_writable_then_named_failure(make_ledger, tmp_path, where):
    ledger = await make_ledger(events=5, snapshot_at=None)
    target = tmp_path if where == "directory" else tmp_path / "no" / "such" / "anchor"
    result = await run(ledger.url, "verify", "--anchor", str(target))
    no_traceback(result)
    assert result.code in (1, 2), result.text


async def test_since_when_anchor_at_position_zero_with_wrong_hash_then_exit_1(
    make_ledger, tmp_path
):
    ledger, anchor = await _anchored(make_ledger, tmp_path)
    anchor.write_text("0:" + "ab" * 32 + "\n")
    result = await run(ledger.url, "verify", "--since", str(anchor))
    no_traceback(result)
    assert result.code == 1, result.text


async def test_since_when_anchor_at_position_zero_with_genesis_hash_then_full_check(
    make_ledger, tmp_path
):
    ledger, anchor = await _anchored(make_ledger, tmp_path)
    anchor.write_text("0:" + "00" * 32 + "\n")
    result = await run(ledger.url, "verify", "--since", str(anchor))
    no_traceback(result)
    assert result.code == 0, result.text


async def _tamper(ledger, sql: str) -> None:
    conn = await asyncpg.connect(ledger.url)
    try:
        await conn.execute("SET session_replication_role = replica")
        await conn.execute(sql)
    finally:
        await conn.close()


async def test_since_when_stored_hash_at_anchor_rewritten_then_exit_1(make_ledger, tmp_path):
    ledger, anchor = await _anchored(make_ledger, tmp_path)
    await _grow(ledger)
    await _tamper(ledger, "UPDATE ledger.events SET hash = sha256(hash) WHERE position = 30")
    result = await run(ledger.url, "verify", "--since", str(anchor))
    no_traceback(result)
    assert result.code == 1, result.text
    assert "30" in result.text


async def test_since_when_row_after_anchor_rewritten_then_names_position(make_ledger, tmp_path):
    ledger, anchor = await _anchored(make_ledger, tmp_path)
    await _grow(ledger)
    await _tamper(
        ledger,
        "UPDATE ledger.events SET payload = jsonb_set(payload, '{contracts}', '\"3\"')"
        " WHERE position = 33",
    )
    result = await run(ledger.url, "verify", "--since", str(anchor))
    no_traceback(result)
    assert result.code == 1, result.text
    assert "33" in result.text


async def test_since_when_tail_truncated_below_anchor_then_exit_1(make_ledger, tmp_path):
    ledger, anchor = await _anchored(make_ledger, tmp_path)
    await _tamper(ledger, "DELETE FROM ledger.events WHERE position > 25")
    result = await run(ledger.url, "verify", "--since", str(anchor))
    no_traceback(result)
    assert result.code == 1, result.text


async def test_since_when_anchor_inside_archived_range_then_no_traceback(make_ledger, tmp_path):
    ledger = await make_ledger(events=45, snapshot_at=None)
    anchor = tmp_path / "anchor"
    early = await run(ledger.url, "verify", "--anchor", str(anchor))
    assert early.code == 0, early.text
    position, digest = anchor.read_text().strip().split(":")
    # an anchor taken when the head was 15: recompute it from the table before archiving
    conn = await asyncpg.connect(ledger.url)
    try:
        stored = await conn.fetchval("SELECT hash FROM ledger.events WHERE position = 15")
    finally:
        await conn.close()
    anchor.write_text(f"15:{bytes(stored).hex()}\n")
    ok = await run(ledger.url, "verify", "--since", str(anchor))
    assert ok.code == 0, ok.text
    assert int(position) == 45 and digest
    # now archive (the floor needs snapshots and projections at the head)
    from tests.blackbox_attack.history.conftest import snapshot_all

    store = await EventStore.connect(ledger.url)
    try:
        await snapshot_all(store, 35)
    finally:
        await store.close()
    assert (await run(ledger.url, "projections", "rebuild")).code == 0
    (tmp_path / "a").mkdir()
    done = await run(ledger.url, "archive", "--before", "2100-01-01", "--to", str(tmp_path / "a"))
    assert done.code == 0, done.text
    result = await run(ledger.url, "verify", "--since", str(anchor))
    no_traceback(result)
    assert result.code in (0, 1), result.text


async def test_verify_when_archived_then_plain_verify_passes_from_archive_floor(
    make_ledger, tmp_path
):
    ledger = await archived(make_ledger, tmp_path)
    result = await run(ledger.url, "verify")
    no_traceback(result)
    assert result.code == 0, result.text
