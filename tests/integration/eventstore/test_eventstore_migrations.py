"""``claire db upgrade`` takes an empty database to head, and again is a no-op."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Awaitable, Callable

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli.main import main
from eventstore.migrations import ROOT, head_revision

pytestmark = [pytest.mark.db]

_spec = importlib.util.spec_from_file_location(
    "checks_0003", ROOT / "alembic" / "versions" / "0003_cheaper_checks.py"
)
assert _spec is not None and _spec.loader is not None
_checks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_checks)
STREAM_OLD, STREAM_NEW = _checks.STREAM_OLD, _checks.STREAM_NEW
TYPE_OLD, TYPE_NEW = _checks.TYPE_OLD, _checks.TYPE_NEW


async def test_db_upgrade_when_database_empty_then_ledger_at_head_and_rerun_is_noop(
    fresh_database_url: Callable[..., Awaitable[str]],
) -> None:
    url = await fresh_database_url(migrate=False)
    for _ in range(2):
        assert await asyncio.to_thread(main, ["--database-url", url, "db", "upgrade"]) == 0
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT version_num FROM alembic_version") == head_revision()
        assert await conn.fetchrow("SELECT position, hash FROM ledger.head") == (0, bytes(32))
        roles = await conn.fetch(
            "SELECT rolname FROM pg_roles WHERE rolname IN ('claire_app', 'claire_auditor')"
        )
        assert len(roles) == 2
    finally:
        await conn.close()


_NAMES = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=210
) | st.text(st.sampled_from("Aaz09_.:-|é \n"), min_size=0, max_size=205)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(names=st.lists(_NAMES, min_size=1, max_size=30))
async def test_name_checks_when_rewritten_by_0003_then_accept_exactly_what_0001_did(
    ledger_url: str, names: list[str]
) -> None:
    names += ["a" * 100, "a" * 101, "a" * 200, "a" * 201, "", "x|y"]
    conn = await asyncpg.connect(ledger_url)
    try:
        rows = await conn.fetch(
            f"SELECT {STREAM_OLD.replace('stream', 'n')}, {STREAM_NEW.replace('stream', 'n')},"
            f" {TYPE_OLD.replace('event_type', 'n')}, {TYPE_NEW.replace('event_type', 'n')}"
            " FROM unnest($1::text[]) AS t(n)",
            names,
        )
    finally:
        await conn.close()
    for name, (stream_old, stream_new, type_old, type_new) in zip(names, rows, strict=True):
        assert (stream_old, type_old) == (stream_new, type_new), name


async def test_event_type_index_when_at_head_then_skips_trades_and_serves_the_audit_lookups(
    ledger_url: str,
) -> None:
    conn = await asyncpg.connect(ledger_url)
    try:
        definition = await conn.fetchval(
            "SELECT pg_get_indexdef('ledger.events_event_type'::regclass)"
        )
        assert "WHERE (event_type <> 'market.trade'::text)" in definition
        async with conn.transaction():
            await conn.execute("SET LOCAL enable_seqscan = off")
            await conn.execute("SET LOCAL enable_bitmapscan = off")
            for where in (
                "event_type = 'risk.verdict'",
                "event_type IN ('order.filled', 'order.partially_filled')",
            ):
                rows = await conn.fetch(
                    f"EXPLAIN SELECT position FROM ledger.events WHERE {where} ORDER BY position"
                )
                plan = "\n".join(row[0] for row in rows)
                # Partitioned (0005): each partition answers from its part of the index.
                scans = [line for line in plan.splitlines() if " on " in line]
                assert scans and all("event_type" in line for line in scans), (where, plan)
                assert "Seq Scan" not in plan, (where, plan)
    finally:
        await conn.close()
