"""The projection framework: a pure fold plus the rows its state changes map to.

A projection is ``evolve(state, fact) -> state`` (STYLE principle 3) and ``rows(state, fact)``:
the read-model rows that ``fact`` may have changed, computed from the state *after* the fact.
The same fold feeds two sinks: :func:`fold` gives the in-memory state services and replay use,
and the projector writes the rows to PostgreSQL. Rows are upserts keyed by the table's key, so
only the last row per key matters: event-by-event, in batches of any size, or in one rebuild,
the tables end up identical (the property ``tests/integration/projections`` checks).

No I/O, no clock here: this module and the fold modules are as pure as ``aggregates/``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from aggregates.envelope import RecordedEvent
from aggregates.envelope import utc_from_ms as at  # re-exported: domain ms as a datetime
from aggregates.events import Event

S = TypeVar("S")
Row = tuple[Any, ...]


def day_of(ms: int) -> date:
    """The UTC day a domain time falls on: the equity curve's bucket and the drawdown reset."""
    return at(ms).date()


class Lazy(NamedTuple):
    """A keyed row computed only if it is still the last one for its key at flush time.

    A keyed table keeps only the last row per key, so rows that a later fact replaces within
    the same batch need never be built. The row is ``make(*args)``; ``make`` and ``args`` must
    hold immutable values only (``args`` rather than a closure: one tuple per row is cheaper).
    """

    key: tuple[Any, ...]
    make: Callable[..., Row]
    args: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Table:
    """A read-model table: public name (a view in ``readmodel``), columns in order, key columns.

    ``append_only`` tables get one row per fact, never rewritten (COPY straight in); the others
    hold current state per key and are upserted.
    """

    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    append_only: bool
    key_index: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        missing = [name for name in self.key if name not in self.columns]
        if missing:
            raise ValueError(f"table {self.name}: key columns {missing} are not columns")
        object.__setattr__(self, "key_index", tuple(self.columns.index(k) for k in self.key))

    def key_of(self, row: Row) -> tuple[Any, ...]:
        if len(row) != len(self.columns):
            raise ValueError(
                f"table {self.name}: row has {len(row)} values, not {len(self.columns)}"
            )
        return tuple(row[i] for i in self.key_index)


class Projection(Protocol[S]):
    """One read model. ``handles`` lets the runner skip facts the projection ignores."""

    # Read-only members (properties), so a class attribute such as ``tables = (A, B)`` fits.
    @property
    def name(self) -> str: ...
    @property
    def tables(self) -> tuple[Table, ...]: ...
    @property
    def handles(self) -> frozenset[type[Event]]: ...

    def initial(self) -> S: ...

    def evolve(self, state: S, fact: RecordedEvent) -> S: ...

    def rows(self, state: S, fact: RecordedEvent) -> Iterable[tuple[str, Row | Lazy]]: ...


def fold(projection: Projection[S], facts: Iterable[RecordedEvent], state: S | None = None) -> S:
    """The in-memory state after ``facts``: what a live service or replay holds."""
    current = projection.initial() if state is None else state
    handles = projection.handles
    for fact in facts:
        if type(fact.event) in handles:
            current = projection.evolve(current, fact)
    return current


class Pending:
    """Rows waiting for the next flush: append-only rows in order, keyed rows last-write-wins."""

    __slots__ = ("appended", "keyed", "tables")

    def __init__(self, tables: Iterable[Table]) -> None:
        self.tables = {table.name: table for table in tables}
        # One container per table, made up front: the per-row path is a lookup and a store.
        self.appended: dict[str, list[Row]] = {
            name: [] for name, table in self.tables.items() if table.append_only
        }
        self.keyed: dict[str, dict[tuple[Any, ...], Row | Lazy]] = {
            name: {} for name, table in self.tables.items() if not table.append_only
        }

    def add(self, table_name: str, row: Row | Lazy) -> None:
        self.add_all(((table_name, row),))

    def add_all(self, rows: Iterable[tuple[str, Row | Lazy]]) -> None:
        """Add a fact's rows (the fold's hot path: one call per fact, not per row)."""
        keyed = self.keyed
        for table_name, row in rows:
            target = keyed.get(table_name)
            if target is None:
                if table_name not in self.appended:
                    raise KeyError(f"no table {table_name!r} in this projection")
                if isinstance(row, Lazy):
                    raise TypeError(f"table {table_name} is append-only: rows are written eagerly")
                self.appended[table_name].append(row)
            elif isinstance(row, Lazy):
                target[row.key] = row
            else:
                target[self.tables[table_name].key_of(row)] = row

    def __len__(self) -> int:
        return sum(map(len, self.appended.values())) + sum(map(len, self.keyed.values()))

    def batches(self) -> Iterator[tuple[Table, Sequence[Row]]]:
        """Each table with rows to write, in a stable order (the tables' declaration order)."""
        for name, table in self.tables.items():
            rows: Sequence[Row] = (
                self.appended[name]
                if table.append_only
                else [_made(table, r) for r in self.keyed[name].values()]
            )
            if rows:
                yield table, rows

    def clear(self) -> None:
        for appended in self.appended.values():
            appended.clear()
        for keyed in self.keyed.values():
            keyed.clear()


def _made(table: Table, row: Row | Lazy) -> Row:
    if not isinstance(row, Lazy):
        return row
    made = row.make(*row.args)
    if table.key_of(made) != row.key:
        raise ValueError(
            f"table {table.name}: lazy row for {row.key} made key {table.key_of(made)}"
        )
    return made


@dataclass(frozen=True)
class Halt:
    """Why a projection stopped: the fact its rules cannot apply, and what they said.

    The log is the truth and holds what the ledger accepted; a projection whose fold refuses a
    fact (a fill before its order was accepted, a config it cannot parse) stops *before* that
    fact rather than guess. Its rows stay as they were up to the fact before; the other
    projections go on (docs/AUDIT.md, "A fact a projection cannot apply").
    """

    projection: str
    position: int
    event: str
    reason: str

    def __str__(self) -> str:
        return (
            f"projection {self.projection} stopped at position {self.position} "
            f"({self.event}): {self.reason}"
        )


class ProjectionHalted(Exception):
    """Raised by :meth:`Runner.fold` once, when its projection stops (see :class:`Halt`)."""

    def __init__(self, halt: Halt) -> None:
        super().__init__(str(halt))
        self.halt = halt


class Runner(Generic[S]):
    """Folds facts through one projection, collecting rows after its checkpoint.

    Facts at or before ``checkpoint`` only rebuild the in-memory state (their rows are already
    in the tables); later facts also produce rows. That is how a restart resumes exactly.
    A fact the projection's fold refuses halts the runner (:class:`Halt`): it keeps the state
    and rows of the facts before, and takes no further facts.
    """

    __slots__ = (
        "_evolve",
        "_rows",
        "checkpoint",
        "halted",
        "pending",
        "position",
        "projection",
        "state",
    )

    def __init__(self, projection: Projection[S], checkpoint: int = 0) -> None:
        self.projection = projection
        self.state: S = projection.initial()
        self.checkpoint = checkpoint
        self.position = 0
        self.pending = Pending(projection.tables)
        self.halted: Halt | None = None
        self._evolve = projection.evolve
        self._rows = projection.rows

    def apply(self, fact: RecordedEvent) -> None:
        """Fold one fact (the next in global order); a halted runner stays where it stopped."""
        if self.halted is not None:
            return
        if fact.position <= self.position:
            raise ValueError(
                f"projection {self.projection.name}: fact {fact.position} after {self.position}"
            )
        if type(fact.event) in self.projection.handles:
            try:
                self.fold(fact)
            except ProjectionHalted:
                return
        self.position = fact.position

    def fold(self, fact: RecordedEvent) -> None:
        """Fold a fact the projection handles; position bookkeeping is the caller's.

        If the fold refuses the fact (any exception from ``evolve`` or ``rows``), the runner
        halts before it and raises :class:`ProjectionHalted`, once; the caller stops feeding it.
        The fact's rows are computed in full before any is kept, so none of them leaks.
        """
        try:
            state = self._evolve(self.state, fact)
            if fact.position > self.checkpoint:
                self.pending.add_all(tuple(self._rows(state, fact)))
        except Exception as error:  # a fold refusing a logged fact: see Halt
            halt = Halt(
                self.projection.name,
                fact.position,
                type(fact.event).__name__,
                f"{type(error).__name__}: {' '.join(str(error).split())}",  # one line
            )
            self.halted = halt
            self.position = fact.position - 1
            raise ProjectionHalted(halt) from error
        self.state = state

    def detach(self) -> Pending:
        """Hand over the pending rows, start a fresh buffer (for writes that overlap folding)."""
        pending, self.pending = self.pending, Pending(self.projection.tables)
        return pending

    def flushed(self) -> None:
        """The pending rows are committed with checkpoint ``position``."""
        self.pending.clear()
        self.checkpoint = max(self.checkpoint, self.position)


class Fanout:
    """Feeds each fact to the runners whose projection handles its type (dispatch cached)."""

    __slots__ = ("_targets", "position", "runners")

    def __init__(self, runners: Sequence[Runner[Any]]) -> None:
        self.runners = tuple(runners)
        self.position = max((r.position for r in self.runners), default=0)
        self._targets: dict[type, tuple[Callable[[RecordedEvent], None], ...]] = {}

    def apply(self, fact: RecordedEvent) -> None:
        self.apply_all((fact,))

    def apply_all(self, facts: Iterable[RecordedEvent]) -> None:
        """Fold ``facts`` (the next ones, in order); one call per batch keeps the loop tight."""
        targets_of = self._targets
        position = self.position
        try:
            for fact in facts:
                if fact.position <= position:
                    raise ValueError(f"fact {fact.position} does not follow {position}")
                position = fact.position
                kind = type(fact.event)
                targets = targets_of.get(kind)
                if targets is None:
                    targets = tuple(
                        r.fold
                        for r in self.runners
                        if kind in r.projection.handles and r.halted is None
                    )
                    targets_of[kind] = targets
                for fold in targets:
                    try:
                        fold(fact)
                    except ProjectionHalted:  # that runner stops; the others go on
                        targets_of.clear()
        finally:
            self.position = position

    def halts(self) -> list[Halt]:
        """The runners that stopped, each at the fact its fold refused."""
        return [r.halted for r in self.runners if r.halted is not None]

    def sync(self) -> None:
        """Every runner has now seen every fact up to ``position`` (call before a flush); a
        halted runner stays just before the fact it refused."""
        for runner in self.runners:
            if runner.halted is None:
                runner.position = self.position
