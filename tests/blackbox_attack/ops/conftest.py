"""Fixtures of the operations attack: a private PostgreSQL cluster (roles are cluster-wide, so
attacks on logins never touch the shared server's roles) and a runner for ``claire``."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

from adapters.embedded import start_postgres
from tests.support.cli_run import CliRun, environment, run_tool


@pytest.fixture(scope="module")
def cluster_url() -> Iterator[str]:
    """Admin URL (database ``postgres``) of a PostgreSQL cluster private to this module."""
    base = Path(tempfile.mkdtemp(prefix="a20pg-"))
    server = start_postgres(base / "pgdata", delete_on_stop=True)
    try:
        yield server.url("postgres")
    finally:
        server.stop()


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


def with_login(url: str, login: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    netloc = f"{quote(login, safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


#: what a run of ``claire`` left (``tests/support/cli_run.py``)
Run = CliRun


def claire(args: list[str], env: Mapping[str, str], timeout: float = 120) -> Run:
    """Run ``claire`` in an empty directory (no stray ``.env``) with exactly ``env`` added."""
    base = environment(drop_prefixes=("CLAIRE_", "DATABASE"), **env)
    with tempfile.TemporaryDirectory(prefix="a20cli-") as cwd:
        return run_tool("claire", *args, env=base, cwd=cwd, timeout=timeout)
