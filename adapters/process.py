"""What a command receives from and returns to its caller: environment, ledger URL, exit codes.

The one module that reads ``os.environ`` and ``.env`` (:func:`load_environment`); everything else
receives the mapping, so tests and what-if runs pass their own values and nothing reads
configuration behind anyone's back. It sits below ``pipeline/`` and ``replay/`` so that both
command lines resolve the ledger the same way and answer with the same exit codes.

Which ledger a command talks to (:func:`database_url`), first match wins:

1. the ``--database-url`` option;
2. ``DATABASE_URL`` in the process environment;
3. ``DATABASE_URL`` in ``.env`` (in the working directory);
4. the demo's ledger: after ``claire demo`` it lives in an embedded PostgreSQL under ``.data/``,
   and a command run with nothing configured starts that server again, so ``claire verify`` and
   ``replay --from`` work against the demo's data with nothing else to set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values

#: Exit codes of every command: fine; a check found a problem; bad usage or configuration
#: (or no reachable ledger).
OK, CHECK_FAILED, USAGE = 0, 1, 2

DEMO_DATA_DIR = Path(".data")
DEMO_DATABASE = "claire_demo"


class UsageError(Exception):
    """Bad arguments or configuration, or a window with nothing in it: exit code ``USAGE``.

    The one usage error of every command line (``claire``, ``replay``), so a library function
    that refuses its input (a window, a sweep grid) is answered the same way by both."""


class NoDatabase(Exception):
    """No ledger is configured and there is no demo ledger to fall back to."""


def load_environment(dotenv_path: Path | None = None) -> dict[str, str]:
    """Values from ``.env`` (if present), overridden by the real environment."""
    path = dotenv_path if dotenv_path is not None else Path.cwd() / ".env"
    merged: dict[str, str] = {}
    if path.is_file():
        merged.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    merged.update(os.environ)
    return merged


def database_url(
    option: str | None,
    environment: Mapping[str, str] | None = None,
    data_dir: Path = DEMO_DATA_DIR,
) -> str:
    """The ledger's URL by the precedence above; :class:`NoDatabase` when there is none.

    ``environment`` defaults to :func:`load_environment` (the process environment over ``.env``).
    """
    if option:
        return option
    values = load_environment() if environment is None else environment
    configured = values.get("DATABASE_URL", "").strip()
    if configured:
        return configured
    if (data_dir / "postgres" / "PG_VERSION").is_file():
        from adapters.embedded import start_postgres

        return start_postgres(data_dir / "postgres").url(DEMO_DATABASE)
    raise NoDatabase("no database: set DATABASE_URL, pass --database-url, or run `make demo` first")
