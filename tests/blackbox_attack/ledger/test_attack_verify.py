"""`claire verify` and the plain-SQL audit query against tampering, settings and live appends."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from eventstore import CorruptEvent, EventStore
from tests.blackbox_attack.ledger.attack_ledger_helpers import (
    audit,
    audit_query,
    claire_async,
    new,
    note,
)


@pytest.fixture
async def ledger(fresh_database_url):  # type: ignore[no-untyped-def]
    url = await fresh_database_url()
    store = await EventStore.connect(url)
    await store.append("v", [new() for _ in range(5)])
    await store.append("w", [new(note("caf\u00e9 \U0001f600")) for _ in range(5)])
    try:
        yield store, url
    finally:
        await store.close()


async def _sql(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def _clean(done) -> str:  # type: ignore[no-untyped-def]
    out = done.text
    assert "Traceback" not in out, out
    return out


async def test_verify_when_intact_then_exit_0_prints_head_and_anchor_matches_sql(
    ledger, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    store, url = ledger
    anchor = tmp_path / "head.anchor"
    done = await claire_async(url, "verify", "--anchor", str(anchor))
    assert done.code == 0, _clean(done)
    position, digest = await store.head()
    assert f"{position}:{digest.hex()}" in done.out
    assert anchor.read_text().strip() == f"{position}:{digest.hex()}"
    conn = await asyncpg.connect(url)
    try:
        stored = await conn.fetchval(
            "SELECT encode(hash, 'hex') FROM ledger.events WHERE position = $1", position
        )
    finally:
        await conn.close()
    assert stored == digest.hex()
    for args in (("--expect", anchor.read_text().strip()), ("--since", str(anchor))):
        done = await claire_async(url, "verify", *args)
        assert done.code == 0, _clean(done)


TAMPERINGS = {
    "edit-payload": (
        "UPDATE ledger.events SET payload = jsonb_set(payload, '{price}', '\"1\"') "
        "WHERE position = 3",
        3,
    ),
    "edit-recorded-at": (
        "UPDATE ledger.events SET recorded_at = recorded_at + interval '1 microsecond' "
        "WHERE position = 7",
        7,
    ),
    "delete-middle": ("DELETE FROM ledger.events WHERE position = 4", 4),
    "delete-tail-head-kept": ("DELETE FROM ledger.events WHERE position = 10", 10),
    "edit-stream": ("UPDATE ledger.events SET stream = 'x' WHERE position = 2", 2),
}


@pytest.mark.parametrize("name", list(TAMPERINGS))
async def test_verify_and_audit_when_row_tampered_then_both_name_same_first_position_no_anchor(
    ledger, tmp_path: Path, name: str
) -> None:  # type: ignore[no-untyped-def]
    _, url = ledger
    statement, position = TAMPERINGS[name]
    await _sql(
        url,
        f"""DO $$ BEGIN
            SET LOCAL session_replication_role = replica;
            {statement};
        END $$""",
    )
    anchor = tmp_path / "a"
    anchor.write_text("sentinel")
    done = await claire_async(url, "verify", "--anchor", str(anchor))
    out = _clean(done)
    assert done.code == 1, out
    assert str(position) in out
    assert anchor.read_text() == "sentinel"
    rows = await audit(url)
    assert rows and rows[0][0] == position, rows


async def test_verify_when_row_has_infinity_timestamp_then_exit_1_names_position_no_traceback(
    ledger,
) -> None:  # type: ignore[no-untyped-def]
    store, url = ledger
    await _sql(
        url,
        """DO $$ BEGIN
            SET LOCAL session_replication_role = replica;
            UPDATE ledger.events SET occurred_at = 'infinity' WHERE position = 6;
        END $$""",
    )
    done = await claire_async(url, "verify")
    out = _clean(done)
    assert done.code == 1 and "6" in out, out
    with pytest.raises(CorruptEvent) as raised:
        async for _ in store.read_all(after=0):
            pass
    assert "6" in str(raised.value)
    conn = await asyncpg.connect(url)
    try:
        try:
            rows = await conn.fetch(audit_query())
        except asyncpg.PostgresError:
            rows = None  # documented: an error is a failed audit
    finally:
        await conn.close()
    assert rows != []


async def test_verify_when_payload_not_decodable_then_exit_1_names_position(ledger) -> None:  # type: ignore[no-untyped-def]
    _, url = ledger
    await _sql(
        url,
        """DO $$ BEGIN
            SET LOCAL session_replication_role = replica;
            UPDATE ledger.events SET payload = '{"type": "no.such.type"}' WHERE position = 8;
        END $$""",
    )
    done = await claire_async(url, "verify")
    out = _clean(done)
    assert done.code == 1 and "8" in out, out


@pytest.mark.parametrize(
    "setting",
    [
        "ALTER DATABASE {db} SET session_replication_role = replica",
        "ALTER DATABASE {db} SET session_replication_role = local",
        "ALTER ROLE claire_auditor IN DATABASE {db} SET session_replication_role = replica",
        "ALTER ROLE postgres IN DATABASE {db} SET session_replication_role = replica",
    ],
)
async def test_verify_when_replication_role_stored_for_database_or_role_then_exit_1(
    ledger, setting: str
) -> None:  # type: ignore[no-untyped-def]
    _, url = ledger
    conn = await asyncpg.connect(url)
    try:
        db = await conn.fetchval("SELECT current_database()")
        await conn.execute(setting.format(db=f'"{db}"'))
    finally:
        await conn.close()
    done = await claire_async(url, "verify")
    out = _clean(done)
    assert done.code == 1, out
    assert "session_replication_role" in out or "replica" in out or "local" in out, out


@pytest.mark.parametrize(
    "how", ["DISABLE TRIGGER {t}", "ENABLE REPLICA TRIGGER {t}", "DISABLE TRIGGER USER"]
)
async def test_verify_when_a_refusal_trigger_disabled_or_replica_only_then_exit_1(
    ledger, how: str
) -> None:  # type: ignore[no-untyped-def]
    _, url = ledger
    conn = await asyncpg.connect(url)
    try:
        trigger = await conn.fetchval(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'ledger.events'::regclass "
            "AND NOT tgisinternal AND tgtype & 16 = 16 ORDER BY tgname LIMIT 1"
        )
        assert trigger, "no UPDATE trigger on ledger.events"
        await conn.execute(f"ALTER TABLE ledger.events {how.format(t=trigger)}")
    finally:
        await conn.close()
    done = await claire_async(url, "verify")
    assert done.code == 1, _clean(done)


@pytest.mark.parametrize("expect", ["10:" + "00" * 32, "999:" + "00" * 32], ids=["wrong", "ahead"])
async def test_verify_expect_when_anchor_not_in_chain_then_exit_1(ledger, expect: str) -> None:  # type: ignore[no-untyped-def]
    _, url = ledger
    done = await claire_async(url, "verify", "--expect", expect)
    assert done.code == 1, _clean(done)


@pytest.mark.parametrize(
    "expect", ["garbage", "10", "10:zz", "-1:00", ":", "10:" + "0" * 63, "1e1:" + "00" * 32]
)
async def test_verify_expect_when_malformed_then_exit_2_bad_usage(ledger, expect: str) -> None:  # type: ignore[no-untyped-def]
    _, url = ledger
    done = await claire_async(url, "verify", "--expect", expect)
    assert done.code == 2, _clean(done)


@pytest.mark.parametrize("content", ["", "garbage\n", "5:" + "ab" * 32, "999:" + "00" * 32])
async def test_verify_since_when_anchor_file_bad_or_not_in_chain_then_fails_without_traceback(
    ledger, tmp_path: Path, content: str
) -> None:  # type: ignore[no-untyped-def]
    _, url = ledger
    anchor = tmp_path / "since"
    anchor.write_text(content)
    done = await claire_async(url, "verify", "--since", str(anchor))
    assert done.code in (1, 2), _clean(done)
    _clean(done)


async def test_verify_since_when_file_missing_then_exit_2(ledger, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, url = ledger
    done = await claire_async(url, "verify", "--since", str(tmp_path / "nope"))
    assert done.code == 2, _clean(done)


async def test_verify_since_when_tamper_after_anchor_then_exit_1(ledger, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store, url = ledger
    anchor = tmp_path / "a"
    done = await claire_async(url, "verify", "--anchor", str(anchor))
    assert done.code == 0
    await store.append("later", [new() for _ in range(3)])
    await _sql(
        url,
        """DO $$ BEGIN
            SET LOCAL session_replication_role = replica;
            UPDATE ledger.events SET payload = payload || '{"at_ms": 1}' WHERE position = 12;
        END $$""",
    )
    done = await claire_async(url, "verify", "--since", str(anchor))
    out = _clean(done)
    assert done.code == 1 and "12" in out, out


async def test_verify_when_appends_commit_meanwhile_then_never_false_failure(ledger) -> None:  # type: ignore[no-untyped-def]
    store, url = ledger
    stop = asyncio.Event()

    async def write() -> None:
        while not stop.is_set():
            await asyncio.gather(
                store.append("busy", [new()]),
                store.append("busy-big", [new() for _ in range(250)]),
            )

    writer = asyncio.create_task(write())
    try:
        for _ in range(4):
            done = await claire_async(url, "verify")
            assert done.code == 0, _clean(done)
            result = await store.verify()
            assert result.ok, result
            assert await audit(url) == []
    finally:
        stop.set()
        await writer


async def test_verify_expect_when_position_zero_with_nonzero_hash_then_exit_1(ledger) -> None:  # type: ignore[no-untyped-def]
    _, url = ledger
    done = await claire_async(url, "verify", "--expect", "0:" + "11" * 32)
    assert done.code == 1, _clean(done)
