"""Fixtures of the fault suite: scratch directories, child processes, a private Redis."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.fault_helpers import PrivateRedis, Proc


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A scratch directory (and the cwd of children, so no stray ``.env`` is picked up)."""
    path = Path(tempfile.mkdtemp(prefix="claire-faults-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def processes() -> Iterator[list[Proc]]:
    """Children started by a test; any still running at the end is killed (by its own id)."""
    started: list[Proc] = []
    yield started
    for proc in started:
        with contextlib.suppress(Exception):
            proc.kill9()


@pytest.fixture
def private_redis(workdir: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(workdir)
    server.start()
    yield server
    server.kill()
