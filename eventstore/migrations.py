"""Schema migrations: Alembic renders them, asyncpg runs them (one driver for the project).

``upgrade(url)`` reads the database's current revision, asks Alembic (offline mode) for the SQL
from there to head, and executes it in one transaction under an advisory lock, so two processes
upgrading the same database at once cannot interleave.
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg

from eventstore.driver import connect
from eventstore.errors import MigrationRefused, StoreUnavailable

ROOT = Path(__file__).resolve().parent.parent
_LOCK_KEY = 0x0C1A1E_0001  # pg_advisory_xact_lock key for migrations

if TYPE_CHECKING:
    from alembic.config import Config

_HAS_VERSION_TABLE = "SELECT to_regclass('public.alembic_version') IS NOT NULL"
_CURRENT_REVISION = "SELECT version_num FROM public.alembic_version LIMIT 1"
_HAS_LEDGER = "SELECT to_regclass('ledger.events') IS NOT NULL"


@contextmanager
def _quiet_alembic() -> Iterator[None]:
    """Alembic logs its plugins' set-up at INFO when first imported: a start-up check prints
    nothing but its verdict, so Alembic is imported (lazily, here) with INFO silenced."""
    logger = logging.getLogger("alembic")
    before = logger.level
    logger.setLevel(max(logging.WARNING, before))
    try:
        yield
    finally:
        logger.setLevel(before)


def alembic_config() -> Config:
    """The project's Alembic configuration (``alembic.ini`` next to the ``alembic/`` folder)."""
    with _quiet_alembic():
        from alembic.config import Config

    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "alembic"))
    return config


def head_revision() -> str:
    """The newest revision the code knows."""
    with _quiet_alembic():
        from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "alembic/versions holds no migration"
    return head


async def schema_state(url: str) -> tuple[str | None, bool]:
    """The database's Alembic revision (None: never migrated) and whether ``ledger.events`` exists.

    Read-only; raises :class:`StoreUnavailable` when the database cannot be reached at all.
    """
    conn = await connect(url)
    try:
        current = None
        if await conn.fetchval(_HAS_VERSION_TABLE):
            current = await conn.fetchval(_CURRENT_REVISION)
        return current, bool(await conn.fetchval(_HAS_LEDGER))
    finally:
        await conn.close()


def render_sql(current: str | None, target: str = "head") -> str:
    """The SQL that takes a database from ``current`` (None: empty) to ``target``."""
    with _quiet_alembic():
        from alembic import command

    config = alembic_config()
    buffer = io.StringIO()
    config.output_buffer = buffer
    command.upgrade(config, f"{current}:{target}" if current else target, sql=True)
    return buffer.getvalue()


async def upgrade_async(url: str, target: str = "head") -> str:
    """Migrate the database at ``url`` to ``target``; returns the revision it is now at."""
    try:
        conn = await asyncpg.connect(url)
    except (OSError, asyncpg.PostgresError) as error:
        raise StoreUnavailable(f"cannot connect to the database: {error}") from error
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
            current = None
            if await conn.fetchval(_HAS_VERSION_TABLE):
                current = await conn.fetchval(_CURRENT_REVISION)
            wanted = head_revision() if target == "head" else target
            if current != wanted:
                await conn.execute(render_sql(current, target))
            return wanted
    except asyncpg.PostgresError as error:  # a state of the database: a message, not a traceback
        raise MigrationRefused(
            f"the database refused the migration: {error}; run it as the role that owns the"
            " ledger (a superuser, or one with CREATEROLE that is a member of the claire_* roles)"
        ) from error
    finally:
        await conn.close()


def upgrade(url: str, target: str = "head") -> str:
    """Synchronous :func:`upgrade_async`; safe to call from inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(upgrade_async(url, target))
    result: list[str] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(asyncio.run(upgrade_async(url, target)))
        except BaseException as error:
            failure.append(error)

    worker = threading.Thread(target=run, name="claire-migrate")
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return result[0]
