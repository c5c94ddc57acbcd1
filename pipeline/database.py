"""Which ledger a command talks to: ``--database-url``, then ``DATABASE_URL``, then the demo's.

After ``claire demo`` the ledger lives in an embedded PostgreSQL under ``.data/``; commands run
with no URL configured start that server again, so ``claire verify`` and ``replay --from`` work
against the demo's data with nothing else to set.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

DEMO_DATA_DIR = Path(".data")
DEMO_DATABASE = "claire_demo"


class NoDatabase(Exception):
    """No ledger is configured and there is no demo ledger to fall back to."""


def resolve_database_url(
    explicit: str | None, environment: Mapping[str, str], data_dir: Path = DEMO_DATA_DIR
) -> str:
    if explicit:
        return explicit
    configured = environment.get("DATABASE_URL", "").strip()
    if configured:
        return configured
    if (data_dir / "postgres" / "PG_VERSION").is_file():
        from adapters.embedded import start_postgres

        return start_postgres(data_dir / "postgres").url(DEMO_DATABASE)
    raise NoDatabase("no database: set DATABASE_URL, pass --database-url, or run `make demo` first")
