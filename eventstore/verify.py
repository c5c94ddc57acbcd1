"""``verify``: recompute the whole hash chain from the stored rows, in one snapshot.

Why one REPEATABLE READ snapshot: the head, the chain pages, the triggers and the settings used
to be read in separate statements, so an append committing meanwhile made the chain end after
the head it had read: a false "tampered" while the ledger was fine. Now every read sees the same
committed state.

Why every row is guarded: ``verify`` is the command an auditor runs on a ledger that may have been
edited by a superuser. Whatever a row holds (a timestamp of ``infinity``, a value the driver
cannot decode), it is named by its position as the first bad one, never a traceback.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from aggregates.envelope import ENVELOPE_FIELDS
from eventstore import sql
from eventstore.canonical import canonical_line, chain, epoch_micros
from eventstore.chain import anchor_problem
from eventstore.driver import CONNECTION_ERRORS, check_open
from eventstore.errors import EventStoreError, StoreUnavailable
from eventstore.port import VerifyResult

_PAGE = 5000
#: Where a verify row holds the payload's text and the hash (sql.VERIFY_COLUMNS).
_PAYLOAD, _HASH = len(ENVELOPE_FIELDS), len(ENVELOPE_FIELDS) + 1


class _Bad(Exception):
    def __init__(self, position: int | None, problem: str) -> None:
        super().__init__(problem)
        self.position = position
        self.problem = problem


async def verify(
    pool: asyncpg.Pool,
    expect: tuple[int, bytes] | None = None,
    resume: tuple[int, bytes] | None = None,
) -> VerifyResult:
    """:meth:`eventstore.EventStore.verify` (see there); driver errors become ours."""
    if expect is not None and resume is not None:
        raise EventStoreError("verify: expect and resume cannot be combined")
    check_open(pool)
    try:
        async with (
            pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            return await _Verify(conn).run(expect, resume)
    except CONNECTION_ERRORS as error:
        raise StoreUnavailable(f"lost the ledger connection during verify: {error}") from error
    except asyncpg.PostgresError as error:
        raise EventStoreError(f"verify failed: {error}") from error


class _Verify:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.checked = 0

    async def run(
        self, expect: tuple[int, bytes] | None, resume: tuple[int, bytes] | None
    ) -> VerifyResult:
        head_row = await self.conn.fetchrow(sql.READ_HEAD)
        head, head_hash = head_row[0], head_row[1]
        try:
            await self._check(head, head_hash, expect, resume)
        except _Bad as bad:
            return VerifyResult(
                ok=False,
                events_checked=self.checked,
                head_position=head,
                head_hash=head_hash,
                first_bad_position=bad.position,
                problem=bad.problem,
            )
        return VerifyResult(
            ok=True, events_checked=self.checked, head_position=head, head_hash=head_hash
        )

    async def _check(
        self,
        head: int,
        head_hash: bytes,
        expect: tuple[int, bytes] | None,
        resume: tuple[int, bytes] | None,
    ) -> None:
        # Positions up to the archive floor left the table (``claire archive``): the chain
        # continues from the last archived hash (``claire verify --archive`` checks the files).
        floor = await self.conn.fetchrow(sql.ARCHIVE_FLOOR)
        after, previous = floor[0], floor[1]
        expected = after + 1
        if resume is not None:
            after, previous = resume
            expected, self.checked = after + 1, after
        anchor_hash: bytes | None = None
        while True:
            rows = await self._page(after)
            for row in rows:
                position = row[0]
                if position != expected:
                    raise _Bad(expected, f"position {expected} is missing (next is {position})")
                if chain(previous, _canonical(row)) != row[_HASH]:
                    raise _Bad(position, f"position {position}: hash does not match its content")
                previous = row[_HASH]
                if expect is not None and position == expect[0]:
                    anchor_hash = previous
                expected += 1
                self.checked += 1
            if len(rows) < _PAGE:
                break
            after = rows[-1][0]
        last = expected - 1
        if head != last or head_hash != previous:
            raise _Bad(last + 1, f"the head says {head} but the chain ends at {last}")
        triggers = dict(await self.conn.fetch(sql.REFUSAL_TRIGGERS))
        for name in sorted(sql.EXPECTED_TRIGGERS):
            if name not in triggers:
                raise _Bad(None, f"refusal trigger {name} is missing")
            if triggers[name] not in ("O", "A"):  # D: disabled; R: fires only on replicas
                raise _Bad(None, f"refusal trigger {name} is disabled")
        settings = await self.conn.fetch(sql.REPLICATION_ROLE_SETTINGS)
        if settings:
            found = "; ".join(
                f"{scope} session_replication_role = {value}" for scope, value in settings
            )
            raise _Bad(
                None,
                f"the refusal triggers do not fire in sessions with these settings: {found}",
            )
        if expect is not None:
            problem = anchor_problem(expect, last, anchor_hash)
            if problem is not None:
                raise _Bad(*problem)

    async def _page(self, after: int) -> list[Any]:
        """The next rows; if the driver cannot decode one, the first such row is named."""
        try:
            async with self.conn.transaction():  # a savepoint: the snapshot survives a failure
                return list(await self.conn.fetch(sql.READ_FOR_VERIFY, after, _PAGE))
        except CONNECTION_ERRORS:
            raise
        except Exception:
            pass
        for (position,) in await self.conn.fetch(sql.READ_POSITIONS, after, _PAGE):
            try:
                async with self.conn.transaction():
                    await self.conn.fetchrow(sql.READ_ONE_FOR_VERIFY, position)
            except CONNECTION_ERRORS:
                raise
            except Exception as error:
                raise _Bad(position, f"position {position} cannot be read: {error}") from None
        raise _Bad(after + 1, f"the rows after position {after} cannot be read")


def row_canonical(row: Any) -> str:
    """The canonical text of a :data:`eventstore.sql.READ_FOR_VERIFY` row: the envelope in
    :data:`aggregates.envelope.ENVELOPE_FIELDS` order (its timestamps at 6 and 7), the payload's
    text, then the hash. ``ValueError``/``TypeError``/... for a row it cannot render."""
    return canonical_line(
        row[0], row[1], row[2], row[3], row[4], row[5], epoch_micros(row[6]),
        epoch_micros(row[7]), row[8], row[9], row[10], row[_PAYLOAD],
    )  # fmt: skip


def _canonical(row: Any) -> str:
    """:func:`row_canonical`, a row it cannot render named as the first bad one."""
    try:
        return row_canonical(row)
    except (ValueError, TypeError, OverflowError, ArithmeticError) as error:
        raise _Bad(row[0], f"position {row[0]} cannot be read: {error}") from None
