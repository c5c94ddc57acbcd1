"""Issue 15, items 2, 6, 8 and the false failure: ``claire verify`` as an auditor runs it.

Black-box: the commands of docs/LEDGER.md and ``from eventstore import ...``; the database is
edited the way a superuser could (these tests' connections are superuser on their own server).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from aggregates import events as ev
from aggregates.envelope import NewEvent
from eventstore import CorruptEvent, EventStore
from tests.blackbox.ledger.ledger_blackbox import claire, claire_verify

pytestmark = [pytest.mark.db]


def ticks(count: int) -> list[NewEvent]:
    return [
        NewEvent(
            event=ev.ClockTicked(at_ms=1_767_225_600_000 + i),
            event_id=uuid.uuid4(),
            occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        )
        for i in range(count)
    ]


async def execute(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def test_verify_while_other_writers_commit_reports_an_intact_chain(
    store: EventStore, ledger_url: str
) -> None:
    for _ in range(12):  # more than one page of the check
        await store.append("bulk", ticks(1000))
    stop = asyncio.Event()

    async def writer() -> None:
        async with await EventStore.connect(ledger_url) as other:
            while not stop.is_set():
                await other.append("live", ticks(1))

    task = asyncio.create_task(writer())
    overlapped = 0
    try:
        for _ in range(30):
            before = (await store.head())[0]
            result = await store.verify()
            after = (await store.head())[0]
            assert result.ok, result.problem
            overlapped += after > before
            if overlapped >= 4:
                break
    finally:
        stop.set()
        await task
    assert overlapped >= 4, "the writer never committed during a verify: nothing was tested"
    run = await asyncio.to_thread(claire_verify, ledger_url)
    assert run.code == 0, run.err


@pytest.mark.parametrize("moment", ["infinity", "-infinity", "294276-12-31 00:00:00+00"])
async def test_a_row_verify_cannot_read_is_named_by_position_exit_1_no_traceback(
    store: EventStore, ledger_url: str, moment: str, tmp_path: Path
) -> None:
    await store.append("s", ticks(3))
    await execute(
        ledger_url,
        f"""INSERT INTO ledger.events (position, stream, stream_version, event_id, event_type,
               schema_version, occurred_at, recorded_at, payload, hash)
            VALUES (4, 's', 4, gen_random_uuid(), 'clock.tick', 1, '{moment}', now(),
                    '{{"type": "clock.tick", "at_ms": 1}}', sha256('x'))""",
        "UPDATE ledger.head SET position = 4, hash = sha256('x')",
    )
    anchor = tmp_path / "head.anchor"
    run = await asyncio.to_thread(claire_verify, ledger_url, "--anchor", str(anchor))
    assert run.code == 1, (run.out, run.err)
    assert "Traceback" not in run.err
    assert "position 4" in run.err
    assert not anchor.exists()
    result = await store.verify()
    assert not result.ok and result.first_bad_position == 4
    with pytest.raises(CorruptEvent) as raised:
        [r async for r in store.read_all()]
    assert raised.value.position == 4


@pytest.mark.parametrize(
    "scope",
    [
        "ALTER DATABASE {db} SET session_replication_role = replica",
        "ALTER ROLE CURRENT_USER IN DATABASE {db} SET session_replication_role = replica",
        "ALTER DATABASE {db} SET session_replication_role = 'local'",
    ],
)
async def test_refusal_triggers_switched_off_by_a_stored_setting_fail_verify_naming_it(
    store: EventStore, ledger_url: str, scope: str, tmp_path: Path
) -> None:
    await store.append("s", ticks(2))
    conn = await asyncpg.connect(ledger_url)
    try:
        db = '"' + await conn.fetchval("SELECT current_database()") + '"'
        await conn.execute(scope.format(db=db))
    finally:
        await conn.close()
    anchor = tmp_path / "head.anchor"
    run = await asyncio.to_thread(claire_verify, ledger_url, "--anchor", str(anchor))
    assert run.code == 1, (run.out, run.err)
    assert "session_replication_role" in run.err
    assert ("ALTER ROLE" if "ROLE" in scope else "ALTER DATABASE") in run.err
    assert not anchor.exists()


async def test_an_anchor_is_written_only_after_verify_passes(
    store: EventStore, ledger_url: str, tmp_path: Path
) -> None:
    await store.append("s", ticks(2))
    anchor = tmp_path / "head.anchor"
    run = await asyncio.to_thread(claire_verify, ledger_url, "--anchor", str(anchor))
    assert run.code == 0, run.err
    written = anchor.read_text().strip()
    anchor.unlink()
    # A row appended behind the head's back (INSERT is allowed to a superuser): chain != head.
    await execute(
        ledger_url,
        """INSERT INTO ledger.events (position, stream, stream_version, event_id, event_type,
               schema_version, occurred_at, recorded_at, payload, hash)
           VALUES (3, 's', 3, gen_random_uuid(), 'clock.tick', 1, now(), now(),
                   '{"type": "clock.tick", "at_ms": 1}', sha256('x'))""",
    )
    run = await asyncio.to_thread(claire_verify, ledger_url, "--anchor", str(anchor))
    assert run.code == 1
    assert not anchor.exists()
    run = await asyncio.to_thread(claire_verify, ledger_url, "--expect", written)
    assert run.code == 1


@pytest.mark.parametrize(
    "command",
    [["projections", "rebuild"], ["replay", "--from", "2020-01-01", "--verify"]],
    ids=" ".join,
)
async def test_no_command_prints_a_traceback_for_a_row_it_cannot_read(
    store: EventStore, ledger_url: str, command: list[str]
) -> None:
    await store.append("s", ticks(3))
    await execute(
        ledger_url,
        """INSERT INTO ledger.events (position, stream, stream_version, event_id, event_type,
               schema_version, occurred_at, recorded_at, payload, hash)
            VALUES (4, 's', 4, gen_random_uuid(), 'clock.tick', 1, 'infinity', now(),
                    '{"type": "clock.tick", "at_ms": 1}', sha256('x'))""",
        "UPDATE ledger.head SET position = 4, hash = sha256('x')",
    )
    run = await asyncio.to_thread(claire, ledger_url, *command)
    assert "Traceback" not in run.err, run.err
    assert run.code == 1, (run.out, run.err)
    assert "position 4" in run.err
