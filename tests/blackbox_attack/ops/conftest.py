"""Fixtures of the operations attack: a private PostgreSQL cluster (roles are cluster-wide, so
attacks on logins never touch the shared server's roles) and a runner for ``claire``."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

from adapters.embedded import start_postgres

CLAIRE = str(Path(sys.executable).with_name("claire"))


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


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def claire(args: list[str], env: Mapping[str, str], timeout: float = 120) -> Run:
    """Run ``claire`` in an empty directory (no stray ``.env``) with exactly ``env`` added."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CLAIRE_", "DATABASE"))}
    base.update(env)
    with tempfile.TemporaryDirectory(prefix="a20cli-") as cwd:
        done = subprocess.run(
            [CLAIRE, *args],
            env=base,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    return Run(done.returncode, done.stdout, done.stderr)
