"""Helpers of the black-box ledger tests: the documented audit query and commands, as an auditor
runs them (a module of its own: test directories share one import namespace)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[3]


def readme_audit_query() -> str:
    """The plain-SQL audit query exactly as docs/LEDGER.md prints it (a psql statement)."""
    page = (ROOT / "docs" / "LEDGER.md").read_text(encoding="utf-8")
    section = page.split("## Verifying the chain with nothing but psql", 1)[1]
    match = re.search(r"```sql\n(.*?)```", section, re.S)
    assert match, "the documented audit query is missing"
    return match.group(1).strip().rstrip(";")


def claire_verify(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """``claire verify`` as an operator runs it."""
    return claire(url, "verify", *extra)


def claire(url: str, *command: str) -> subprocess.CompletedProcess[str]:
    """A ``claire`` command on the ledger at ``url``, as an operator runs it."""
    if command[:1] == ("replay",):  # replay takes its options after the subcommand
        argv = ["replay", "--database-url", url, *command[1:]]
    else:
        argv = ["--database-url", url, *command]
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
        check=False,
    )


async def audit(url: str) -> asyncpg.Record | None:
    """The documented audit query: None when the chain is intact."""
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchrow(readme_audit_query())
    finally:
        await conn.close()


async def rows_in(url: str, stream: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval("SELECT count(*) FROM ledger.events WHERE stream = $1", stream)
    finally:
        await conn.close()
