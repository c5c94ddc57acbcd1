"""Who may do what to the ledger, and secrets that never leave the process.

The roles are created by the migrations; each is shown refused every action it must not take
(SET ROLE in a database of the test's own). Then a real ``claire run`` is given a database URL
with a password and fake MEXC keys, and everything it produced — its log output, the ledger's
payloads, ``/metrics``, ``/health`` and the errors of a failing command — is searched for them.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import pytest

from tests.faults.fault_helpers import (
    CLAIRE,
    Proc,
    claire_env,
    connection,
    free_port,
    momentum_tape,
    spawn,
    start_mexc_server,
    wait_for,
    wall_ms,
    write_jsonl,
)

pytestmark = [pytest.mark.db, pytest.mark.timeout(120)]

FILL = [
    "INSERT INTO ledger.events (position, stream, stream_version, event_id, event_type,"
    " schema_version, occurred_at, recorded_at, payload, hash) VALUES (1, 'clock', 1,"
    " gen_random_uuid(), 'clock.ticked', 1, now(), now(), '{\"at_ms\": 1}', decode(repeat('00',"
    " 32), 'hex'))",
]

_REFUSED = "permission denied|must be owner"

#: (role, statement) pairs that must be refused for lack of privilege.
FORBIDDEN = [
    ("claire_app", "UPDATE ledger.events SET stream = 'x'"),
    ("claire_app", "DELETE FROM ledger.events"),
    ("claire_app", "TRUNCATE ledger.events"),
    ("claire_app", "DELETE FROM ledger.head"),
    ("claire_app", "ALTER TABLE ledger.events DISABLE TRIGGER ALL"),
    ("claire_app", "DROP TABLE ledger.events"),
    ("claire_app", "CREATE TABLE ledger.sneaky (x int)"),
    ("claire_app", "UPDATE readmodel.checkpoints SET position = 0"),
    ("claire_auditor", "INSERT INTO ledger.events SELECT * FROM ledger.events"),
    ("claire_auditor", "UPDATE ledger.head SET position = position"),
    ("claire_auditor", "DELETE FROM ledger.events"),
    ("claire_auditor", "UPDATE readmodel.checkpoints SET position = 0"),
    ("claire_auditor", "CREATE TEMPORARY TABLE t (x int)"),
    ("claire_projector", "INSERT INTO ledger.events SELECT * FROM ledger.events"),
    ("claire_projector", "UPDATE ledger.head SET position = position"),
    ("claire_projector", "DELETE FROM ledger.events"),
    ("claire_projector", "TRUNCATE ledger.events"),
    ("claire_projector", "CREATE TABLE ledger.sneaky (x int)"),
]

#: What each role needs, which must work (inside a transaction that is rolled back).
ALLOWED = [
    ("claire_app", "SELECT count(*) FROM ledger.events"),
    ("claire_app", FILL[0]),
    ("claire_app", "UPDATE ledger.head SET position = position"),
    ("claire_app", "SELECT count(*) FROM audit.trade_audit"),
    ("claire_auditor", "SELECT count(*) FROM ledger.events"),
    ("claire_auditor", "SELECT count(*) FROM audit.chain"),
    ("claire_projector", "SELECT count(*) FROM ledger.events"),
    ("claire_projector", "UPDATE readmodel.checkpoints SET position = position"),
]


async def test_roles_when_acting_beyond_their_needs_then_each_action_is_refused(
    fresh_database_url,
) -> None:
    url = await fresh_database_url()
    async with connection(url) as conn:
        for role, statement in FORBIDDEN:
            async with conn.transaction():
                await conn.execute(f"SET LOCAL ROLE {role}")
                with pytest.raises(asyncpg.InsufficientPrivilegeError, match=_REFUSED):
                    await conn.execute(statement)
        for role, statement in ALLOWED:
            transaction = conn.transaction()
            await transaction.start()
            try:
                await conn.execute(f"SET LOCAL ROLE {role}")
                await conn.execute(statement)
            finally:
                await transaction.rollback()
        privileges = await conn.fetch(
            "SELECT privilege_type FROM information_schema.role_table_grants "
            "WHERE grantee = 'claire_app' AND table_schema = 'ledger' AND table_name = 'events'"
        )
    assert sorted(row[0] for row in privileges) == ["INSERT", "SELECT"]


def _with_login(server_url: str, database_url: str, role: str, password: str) -> str:
    parts = urlsplit(database_url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{role}:{password}@{host}"))


async def test_secrets_when_a_run_logs_records_and_serves_metrics_then_none_appears_anywhere(
    fresh_database_url,
    postgres_server_url: str,
    redis_url: str,
    redis_namespace: str,
    workdir: Path,
    processes: list[Proc],
) -> None:
    url = await fresh_database_url()
    role = f"claire_secret_{secrets.token_hex(4)}"
    password = f"pw-{secrets.token_hex(12)}"
    api_key, api_secret = f"mx0{secrets.token_hex(10)}", secrets.token_hex(16)
    async with connection(postgres_server_url) as admin:
        await admin.execute(f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{password}'")
    try:
        secret_url = _with_login(postgres_server_url, url, role, password)
        tape = write_jsonl(workdir / "tape.jsonl", momentum_tape(wall_ms() - 90_000, seconds=70))
        server, ws = start_mexc_server(tape, workdir, "mexc", autoplay_after=3)
        processes.append(server)
        port = free_port()
        env = claire_env(
            secret_url,
            redis_url,
            redis_namespace,
            ws,
            METRICS_PORT=str(port),
            MEXC_API_KEY=api_key,
            MEXC_API_SECRET=api_secret,
        )
        run = spawn([*CLAIRE, "run", "--duration", "6"], env, workdir / "run.log", workdir)
        processes.append(run)
        served = []

        async def scrape() -> bool:
            try:
                async with aiohttp.ClientSession() as http:
                    for path in ("/metrics", "/health"):
                        async with http.get(f"http://127.0.0.1:{port}{path}") as response:
                            served.append(await response.text())
            except aiohttp.ClientError:
                return False
            return True

        await wait_for(scrape, 60, "the run's /metrics and /health")
        assert await asyncio.to_thread(run.wait, 90) == 0, run.output()
        # an error on the way in: a database that does not exist, reached with the password
        bad = urlunsplit(urlsplit(secret_url)._replace(path="/no_such_database_here"))
        failing = spawn([*CLAIRE, "verify"], {"DATABASE_URL": bad}, workdir / "bad.log", workdir)
        assert await asyncio.to_thread(failing.wait, 60) == 2
        async with connection(url) as conn:
            ledger = "\n".join(
                row[0] for row in await conn.fetch("SELECT payload::text FROM ledger.events")
            )
            trades = await conn.fetchval(
                "SELECT count(*) FROM ledger.events WHERE event_type = 'market.trade'"
            )
    finally:
        async with connection(postgres_server_url) as admin:
            await admin.execute(
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"
            )
            await admin.execute(f"DROP ROLE IF EXISTS {role}")
    assert trades > 0  # the run did work with the secret-bearing URL
    everything = {
        "run output": run.output(),
        "failing command": failing.output(),
        "ledger": ledger,
        "metrics and health": "\n".join(served),
    }
    assert "no_such_database_here" in everything["failing command"]  # the error is explained
    for where, text in everything.items():
        for secret in (password, api_key, api_secret):
            assert secret not in text, f"a secret leaked into the {where}"
