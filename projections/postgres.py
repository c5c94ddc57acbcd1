"""The read models' PostgreSQL sink: the only module of ``projections/`` that speaks SQL.

Layout (created by the migration ``alembic/versions/0002_readmodel.py``): every read-model table
is a *view* ``readmodel.<name>`` over a physical generation ``readmodel.<name>_g<N>``;
``readmodel.checkpoints`` holds, per projection, the last global position folded into its rows
and the generation in force. A flush writes the rows and moves the checkpoint in one transaction
(exactly once). A rebuild fills generation N+1 out of sight, then repoints the views and moves the
checkpoint in one transaction, so readers see the old model or the new one, never a half-built one.

Rows go in by COPY (binary): straight into the table for append-only tables, through a temporary
staging table and ``INSERT .. ON CONFLICT DO UPDATE`` for tables keyed by current state.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from eventstore.driver import connect
from projections.core import Row, Table

SCHEMA = "readmodel"
PROJECTOR_ROLE = "claire_projector"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")

IS_PROJECTOR_MEMBER = "SELECT pg_has_role(session_user, 'claire_projector', 'MEMBER')"
SET_PROJECTOR_ROLE = "SET ROLE claire_projector"
READ_CHECKPOINTS = """
SELECT projection, position, generation, event_recorded_at
FROM readmodel.checkpoints WHERE projection = ANY($1::text[]) ORDER BY projection
"""
# FOR UPDATE: a flush and a rebuild's swap of the same projection serialise on this row; the
# loser sees the moved position and reloads instead of writing rows twice.
LOCK_CHECKPOINTS = READ_CHECKPOINTS.strip() + " FOR UPDATE"
SAVE_CHECKPOINT = """
UPDATE readmodel.checkpoints
SET position = $2, generation = $3, event_recorded_at = $4, updated_at = clock_timestamp()
WHERE projection = $1
"""
LEDGER_HEAD = "SELECT position FROM ledger.head"
# The last position `claire archive` moved out of the table (0: nothing archived).
ARCHIVED_UP_TO = "SELECT coalesce(max(last_position), 0) FROM ledger.archived"
# Session-level: one rebuild per projection at a time (two would fill the same new generation).
LOCK_REBUILD = "SELECT pg_advisory_lock(hashtext('claire.rebuild.' || $1))"
CREATE_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE readmodel.{physical} INCLUDING DEFAULTS)"
    " ON COMMIT DELETE ROWS"
)
UPSERT_FROM_STAGE = (
    "INSERT INTO readmodel.{physical} ({columns}) SELECT {columns} FROM {stage}"
    " ON CONFLICT ({key}) DO UPDATE SET {assignments}"
)
DROP_TABLE = "DROP TABLE IF EXISTS readmodel.{physical}"
LOCK_VIEWS = "LOCK TABLE {views} IN ACCESS EXCLUSIVE MODE"
# The server's deadlock check delay, in ms; the swap's lock waits stay well below it.
DEADLOCK_TIMEOUT_MS = "SELECT setting::int FROM pg_settings WHERE name = 'deadlock_timeout'"
# Transaction-local (is_local): a savepoint's rollback undoes it too.
SET_LOCK_TIMEOUT = "SELECT set_config('lock_timeout', $1, true)"
CREATE_GENERATION = "CREATE TABLE readmodel.{physical} (LIKE readmodel.{template} INCLUDING ALL)"
REPOINT_VIEW = (
    "CREATE OR REPLACE VIEW readmodel.{name} AS SELECT {columns} FROM readmodel.{physical}"
)
SELECT_TABLE = "SELECT {columns} FROM readmodel.{name} ORDER BY {key}"
STATUS_POSITIONS = """
SELECT symbol, direction, contracts, average_entry, mark, notional, unrealised_pnl, realised_pnl
FROM readmodel.positions WHERE contracts <> 0 ORDER BY symbol
"""
STATUS_EXPOSURE = """
SELECT equity, cash, gross_notional, exposure_ratio, drawdown, open_positions, updated_position
FROM readmodel.exposure WHERE account = 'account'
"""
STATUS_TODAY = """
SELECT day, start_equity, peak_equity, close_equity, drawdown, max_drawdown
FROM readmodel.equity_daily ORDER BY day DESC LIMIT 1
"""
STATUS_TRADING_STATE = """
SELECT state, reason, changed_by, at, position
FROM readmodel.trading_state_history ORDER BY position DESC LIMIT 1
"""
STATUS_HALTS = """
SELECT count(*) FROM readmodel.trading_state_history WHERE state = 'HALTED'
"""
STATUS_CHECKPOINTS = """
SELECT c.projection, c.position, c.generation, c.event_recorded_at, h.position AS head
FROM readmodel.checkpoints c CROSS JOIN ledger.head h ORDER BY c.projection
"""


class CheckpointMissing(RuntimeError):
    """The read-model schema is not there: run ``claire db upgrade``."""


@dataclass(frozen=True)
class Checkpoint:
    projection: str
    position: int
    generation: int
    event_recorded_at: datetime | None


def physical(name: str, generation: int) -> str:
    """The physical table behind view ``name`` in ``generation``."""
    if not _NAME.match(name) or generation < 1:
        raise ValueError(f"bad read-model table {name!r} generation {generation}")
    return f"{name}_g{generation}"


class PostgresSink:
    """One connection writing read-model rows; acts as ``claire_projector`` when it may."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self._staged: set[str] = set()
        self._lock_wait_ms: int | None = None

    @classmethod
    async def connect(cls, url: str, *, as_projector: bool = True) -> PostgresSink:
        conn = await connect(url)  # unreachable: StoreUnavailable, a sentence, not a traceback
        # Least privilege: the projector role may read the ledger and write read models only.
        if as_projector and await conn.fetchval(IS_PROJECTOR_MEMBER):
            await conn.execute(SET_PROJECTOR_ROLE)
        return cls(conn)

    async def close(self) -> None:
        await self.conn.close()

    def transaction(self) -> asyncpg.transaction.Transaction:
        return self.conn.transaction()

    async def checkpoints(
        self, names: Sequence[str], *, lock: bool = False
    ) -> dict[str, Checkpoint]:
        """Checkpoints of ``names``; with ``lock`` (inside a transaction) held until commit."""
        records = await self.conn.fetch(LOCK_CHECKPOINTS if lock else READ_CHECKPOINTS, list(names))
        found = {r["projection"]: Checkpoint(**dict(r)) for r in records}
        missing = sorted(set(names) - set(found))
        if missing:
            raise CheckpointMissing(f"no checkpoint rows for {missing}: run `claire db upgrade`")
        return found

    async def save_checkpoint(
        self, name: str, position: int, generation: int, recorded_at: datetime | None
    ) -> None:
        await self.conn.execute(SAVE_CHECKPOINT, name, position, generation, recorded_at)

    async def write(self, table: Table, generation: int, rows: Sequence[Row]) -> None:
        """COPY ``rows`` into ``table``'s ``generation`` (call inside a transaction)."""
        target = physical(table.name, generation)
        if table.append_only:
            await self.conn.copy_records_to_table(
                target, schema_name=SCHEMA, columns=table.columns, records=rows
            )
            return
        stage = f"stage_{table.name}"
        if stage not in self._staged:
            await self.conn.execute(CREATE_STAGE.format(stage=stage, physical=target))
            self._staged.add(stage)
        await self.conn.copy_records_to_table(stage, columns=table.columns, records=rows)
        columns = ", ".join(table.columns)
        assignments = ", ".join(f"{c} = EXCLUDED.{c}" for c in table.columns if c not in table.key)
        await self.conn.execute(
            UPSERT_FROM_STAGE.format(
                physical=target,
                columns=columns,
                stage=stage,
                key=", ".join(table.key),
                assignments=assignments,
            )
        )

    async def prepare_generation(self, tables: Iterable[Table], current: int, new: int) -> None:
        """Empty tables of generation ``new`` shaped like ``current`` (leftovers of a crash go).

        One round trip: the statements go as one simple-protocol script (names are checked).
        """
        statements = []
        for table in tables:
            if current > 1:  # a rebuild that died between its swap and its clean-up left these
                statements.append(DROP_TABLE.format(physical=physical(table.name, current - 1)))
            statements.append(DROP_TABLE.format(physical=physical(table.name, new)))
            statements.append(
                CREATE_GENERATION.format(
                    physical=physical(table.name, new), template=physical(table.name, current)
                )
            )
        if statements:
            await self.conn.execute(";\n".join(statements))

    async def lock_views(self, tables: Iterable[Table], *, wait: bool) -> bool:
        """Take every view exclusively in one statement (inside the swap transaction); locking a
        view locks the tables it reads too. Always in one order (by name). False: not now.

        Without ``wait`` (NOWAIT) it gives up at once if a reader holds one. With ``wait`` it
        queues for at most a quarter of the server's ``deadlock_timeout``: the LOCK takes the
        views one by one, so a reader of several views can hold one the swap still needs while
        waiting for one the swap took. Whoever waits ``deadlock_timeout`` first runs the
        deadlock check and is aborted; the swap gives up well before, so that is never a reader
        (nor the rebuild): the caller retries.
        """
        views = ", ".join(f"readmodel.{t.name}" for t in sorted(tables, key=lambda t: t.name))
        statement = LOCK_VIEWS.format(views=views) + ("" if wait else " NOWAIT")
        try:
            async with self.conn.transaction():  # a savepoint: a refusal leaves ours usable
                if wait:
                    if self._lock_wait_ms is None:
                        deadlock_ms = int(await self.conn.fetchval(DEADLOCK_TIMEOUT_MS))
                        self._lock_wait_ms = max(1, deadlock_ms // 4)
                    await self.conn.execute(SET_LOCK_TIMEOUT, f"{self._lock_wait_ms}ms")
                await self.conn.execute(statement)
                if wait:
                    await self.conn.execute(SET_LOCK_TIMEOUT, "0")
        except (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError):
            return False
        return True

    async def repoint(self, tables: Iterable[Table], generation: int) -> None:
        """Point the views at ``generation`` (inside the swap transaction, views locked)."""
        for table in tables:
            await self.conn.execute(
                REPOINT_VIEW.format(
                    name=table.name,
                    columns=", ".join(table.columns),
                    physical=physical(table.name, generation),
                )
            )

    async def drop_generation(self, tables: Iterable[Table], generation: int) -> None:
        for table in tables:
            await self.conn.execute(DROP_TABLE.format(physical=physical(table.name, generation)))

    async def lock_rebuild(self, names: Sequence[str]) -> None:
        """Wait for any other rebuild of ``names``; held until this connection closes."""
        for name in sorted(names):
            await self.conn.execute(LOCK_REBUILD, name)

    async def archived_up_to(self) -> int:
        """The last position archived out of the table (0 if none): a rebuild from the table
        alone would start after it."""
        return int(await self.conn.fetchval(ARCHIVED_UP_TO))

    async def ledger_head(self) -> int:
        return int(await self.conn.fetchval(LEDGER_HEAD))

    async def table_rows(self, table: Table) -> list[tuple[object, ...]]:
        """Every row of a read model in key order (tests and tools compare models with this)."""
        records = await self.conn.fetch(
            SELECT_TABLE.format(
                columns=", ".join(table.columns), name=table.name, key=", ".join(table.key)
            )
        )
        return [tuple(r) for r in records]

    async def status_rows(self) -> dict[str, list[asyncpg.Record]]:
        """What ``claire status`` prints, read from the views."""
        queries = {
            "positions": STATUS_POSITIONS,
            "exposure": STATUS_EXPOSURE,
            "today": STATUS_TODAY,
            "trading_state": STATUS_TRADING_STATE,
            "halts": STATUS_HALTS,
            "checkpoints": STATUS_CHECKPOINTS,
        }
        return {key: await self.conn.fetch(sql) for key, sql in queries.items()}


async def readmodel_rows(url: str) -> dict[str, list[tuple[str, ...]]]:
    """Every read-model view's rows as sorted text tuples: two snapshots compare with ``==``.

    What the end-to-end checks compare before and after a rebuild (``claire preflight``, tests).
    """
    conn = await connect(url)
    try:
        views = await conn.fetch(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'readmodel' AND table_type = 'VIEW' ORDER BY table_name"
        )
        rows = {}
        for (view,) in views:
            records = await conn.fetch(f'SELECT * FROM readmodel."{view}"')
            rows[view] = sorted(tuple(str(v) for v in record.values()) for record in records)
        return rows
    finally:
        await conn.close()
