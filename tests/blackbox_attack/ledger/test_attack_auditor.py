"""The audit query and `claire verify` as `claire_auditor` (SELECT only)."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from eventstore import EventStore
from tests.blackbox_attack.ledger.attack_ledger_helpers import audit_query, claire_async, new, note


async def test_audit_and_verify_when_run_as_auditor_login_then_intact_and_replica_setting_seen(
    fresh_database_url,
) -> None:  # type: ignore[no-untyped-def]
    url = await fresh_database_url()
    store = await EventStore.connect(url)
    login = f"attack_auditor_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(url)
    try:
        await store.append("a", [new(note("\u00e9\U0001f600")) for _ in range(300)])
        await admin.execute(f"CREATE ROLE {login} LOGIN IN ROLE claire_auditor")
        parts = urlsplit(url)
        host = parts.netloc.split("@", 1)[-1]
        auditor_url = urlunsplit(parts._replace(netloc=f"{login}@{host}"))
        conn = await asyncpg.connect(auditor_url)
        try:
            assert await conn.fetch(audit_query()) == []
        finally:
            await conn.close()
        done = await claire_async(auditor_url, "verify")
        assert done.code == 0, done.text
        db = await admin.fetchval("SELECT current_database()")
        await admin.execute(
            f'ALTER ROLE {login} IN DATABASE "{db}" SET session_replication_role = replica'
        )
        done = await claire_async(auditor_url, "verify")
        out = done.text
        assert done.code == 1 and "Traceback" not in out, out
    finally:
        await store.close()
        await admin.execute(f"DROP OWNED BY {login}")
        await admin.execute(f"DROP ROLE IF EXISTS {login}")
        await admin.close()
