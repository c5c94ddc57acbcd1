"""Immutability by the database, and tamper evidence: verify, the auditor's SQL, anchors, CLI."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from cli.main import main
from eventstore import EventStore
from tests.integration.eventstore.eventstore_helpers import (
    as_superuser_without_triggers,
    audit,
    fill_mixed,
)

pytestmark = [pytest.mark.db]


async def _cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger.events SET stream = 'x' WHERE position = 1",
        "DELETE FROM ledger.events WHERE position = 1",
        "TRUNCATE ledger.events",
        "DELETE FROM ledger.head",
        "UPDATE ledger.head SET position = 0",
    ],
)
async def test_change_when_superuser_with_triggers_then_refused(
    store: EventStore, ledger_url: str, statement: str
) -> None:
    await fill_mixed(store)
    conn = await asyncpg.connect(ledger_url)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match=r"append-only|forward"):
            await conn.execute(statement)
    finally:
        await conn.close()
    assert (await store.verify()).ok


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger.events SET stream = 'x' WHERE position = 1",
        "DELETE FROM ledger.events WHERE position = 1",
        "TRUNCATE ledger.events",
    ],
)
async def test_change_when_application_role_then_permission_denied(
    store: EventStore, ledger_url: str, statement: str
) -> None:
    await fill_mixed(store)
    conn = await asyncpg.connect(ledger_url)
    try:
        await conn.execute("SET ROLE claire_app")
        assert await conn.fetchval("SELECT count(*) FROM ledger.events") == 10
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await conn.execute(statement)
    finally:
        await conn.close()


async def test_auditor_role_when_writing_then_denied_but_can_run_audit_query(
    store: EventStore, ledger_url: str
) -> None:
    from eventstore.sql import AUDIT_QUERY

    await fill_mixed(store)
    conn = await asyncpg.connect(ledger_url)
    try:
        await conn.execute("SET ROLE claire_auditor")
        assert await conn.fetchrow(AUDIT_QUERY) is None
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("INSERT INTO ledger.head VALUES (true, 0, '\\x00')")
    finally:
        await conn.close()


async def test_verify_when_chain_intact_then_ok_everywhere(
    store: EventStore, ledger_url: str
) -> None:
    await fill_mixed(store)
    result = await store.verify()
    assert result.ok and result.events_checked == 10 and result.head_position == 10
    assert await audit(ledger_url) is None
    assert await _cli("--database-url", ledger_url, "verify") == 0


@pytest.mark.parametrize(
    ("tamper", "first_bad"),
    [
        (
            [
                "UPDATE ledger.events SET payload = jsonb_set(payload, '{price}', '\"1\"')"
                " WHERE position = 4"
            ],
            4,
        ),
        (
            [
                "UPDATE ledger.events SET occurred_at = occurred_at + interval '1 ms'"
                " WHERE position = 8"
            ],
            8,
        ),
        (["DELETE FROM ledger.events WHERE position = 5"], 5),
        (
            [
                "UPDATE ledger.events SET position = 1000003 WHERE position = 3",
                "UPDATE ledger.events SET position = 3 WHERE position = 6",
                "UPDATE ledger.events SET position = 6 WHERE position = 1000003",
            ],
            3,
        ),
        (["DELETE FROM ledger.events WHERE position = 10"], 10),
    ],
    ids=["edit-payload", "edit-time", "delete", "reorder", "delete-last"],
)
async def test_verify_when_superuser_tampered_without_triggers_then_first_bad_position_named(
    store: EventStore, ledger_url: str, tamper: list[str], first_bad: int
) -> None:
    await fill_mixed(store)
    await as_superuser_without_triggers(ledger_url, *tamper)
    result = await store.verify()
    assert not result.ok
    assert result.first_bad_position == first_bad
    found = await audit(ledger_url)
    assert found is not None and found[0] == first_bad
    assert await _cli("--database-url", ledger_url, "verify") == 1


async def test_verify_when_tail_truncated_and_head_rewound_then_only_anchor_detects_it(
    store: EventStore, ledger_url: str, tmp_path: Path
) -> None:
    await fill_mixed(store)
    anchor = tmp_path / "head.anchor"
    assert await _cli("--database-url", ledger_url, "verify", "--anchor", str(anchor)) == 0
    expect = anchor.read_text().strip()
    assert expect == (await store.verify()).anchor
    await as_superuser_without_triggers(
        ledger_url,
        "DELETE FROM ledger.events WHERE position > 8",
        "UPDATE ledger.head SET (position, hash) ="
        " (SELECT position, hash FROM ledger.events WHERE position = 8)",
    )
    assert (await store.verify()).ok  # a consistent shorter chain...
    assert await audit(ledger_url) is None
    assert await _cli("--database-url", ledger_url, "verify", "--expect", expect) == 1  # ...caught


async def test_verify_when_chain_rewritten_consistently_then_anchor_detects_it(
    ledger_url: str,
) -> None:
    async with await EventStore.connect(ledger_url) as store:
        await fill_mixed(store)
        expect = (await store.verify()).anchor
    # Rebuild the whole chain after an edit, as an attacker with superuser rights could.
    await as_superuser_without_triggers(
        ledger_url,
        "UPDATE ledger.events SET payload = jsonb_set(payload, '{price}', '\"1\"')"
        " WHERE position = 2",
        f"""
        DO $$
        DECLARE r record; prev bytea := '\\x{"00" * 32}'::bytea;
        BEGIN
            FOR r IN SELECT position FROM ledger.events ORDER BY position LOOP
                UPDATE ledger.events e SET hash = sha256(prev || convert_to(
                    {__import__("eventstore.canonical").canonical.CANONICAL_SQL}, 'UTF8'))
                WHERE e.position = r.position RETURNING e.hash INTO prev;
            END LOOP;
            UPDATE ledger.head SET hash = prev;
        END $$
        """,
    )
    assert await audit(ledger_url) is None
    assert await _cli("--database-url", ledger_url, "verify") == 0
    assert await _cli("--database-url", ledger_url, "verify", "--expect", expect) == 1
    assert await _cli("--database-url", ledger_url, "verify", "--expect", "2:zz") == 2


async def test_verify_when_trigger_disabled_then_fails_naming_it(
    store: EventStore, ledger_url: str
) -> None:
    await fill_mixed(store)
    await as_superuser_without_triggers(
        ledger_url, "ALTER TABLE ledger.events DISABLE TRIGGER events_append_only"
    )
    result = await store.verify()
    assert not result.ok and "events_append_only" in (result.problem or "")


async def test_cli_when_command_unknown_then_usage_exit_code() -> None:
    assert await _cli("bogus") == 2
